"""Loading memory: peak resident memory of loading an NLA half in fp32, in bfloat16 with
``device_map="auto"``, and as an AR that keeps 2 of the base's blocks, each in a fresh process.

    python benchmarks/bench_loading.py [--d-model 1024] [--layers 12]

A random llama (about 200M parameters at the defaults, saved in fp32 as a published-layout AV
folder) stands in for a released NLA. Prints each load's peak RSS above the interpreter's own
(torch + transformers imported), next to the fp32 weights' size, both in all (file pages of the
memory-mapped safetensors included) and anonymous (copies the process made): a bfloat16 load that
never materialises an fp32 copy keeps its anonymous peak near half the fp32 size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CHILD = r"""
import json, sys, torch, transformers
from nla_lens.models import ActivationReconstructor, ActivationVerbalizer

def rss_mib(field):  # VmRSS now, VmHWM the peak so far (kB in /proc)
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024

import threading, time
peak_anon = [0.0]
def sample():  # anonymous memory (copies the process made), apart from file pages it maps
    while True:
        peak_anon[0] = max(peak_anon[0], rss_mib("RssAnon:"))
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()
time.sleep(0.05)
before, anon_before = rss_mib("VmRSS:"), rss_mib("RssAnon:")
kind, folder = sys.argv[1], sys.argv[2]
if kind == "fp32":
    model = ActivationVerbalizer.from_pretrained(folder + "/av", dtype=torch.float32).model
elif kind == "bf16_auto":
    model = ActivationVerbalizer.from_pretrained(folder + "/av", dtype=torch.bfloat16, device_map="auto").model
else:
    model = ActivationReconstructor.from_pretrained(folder + "/ar", dtype=torch.bfloat16, device_map="auto")
# Touch every weight, so lazily mapped files count as they will once the model runs.
params = sum(p.numel() for p in model.parameters() if float(p.detach().float().sum()) == float(p.detach().float().sum()))
print(json.dumps({"peak_mib": rss_mib("VmHWM:") - before, "peak_anon_mib": peak_anon[0] - anon_before, "resident_mib": rss_mib("VmRSS:") - before,
                  "params": params}))
"""


def build(folder: Path, d_model: int, layers: int) -> int:
    """Save a random llama of that size as an NLA pair (AV whole, AR keeping 2 blocks); return its fp32 bytes."""
    from nla_lens.models import NLA
    from nla_lens.testing.models import tiny_llama
    from nla_lens.testing.tokenizers import tiny_tokenizer

    av_tok, ar_tok = tiny_tokenizer(), tiny_tokenizer()
    av = tiny_llama(av_tok, n_layers=layers, d_model=d_model, n_heads=d_model // 64)
    ar = tiny_llama(ar_tok, n_layers=layers, d_model=d_model, n_heads=d_model // 64, seed=1)
    nla = NLA.untrained("bench", layer=1, injection_scale=100.0, base_models=((av, av_tok), (ar, ar_tok)))
    nla.save_pretrained(folder)
    return sum(p.numel() * 4 for p in av.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fp32_bytes = build(Path(tmp), args.d_model, args.layers)
        print(f"AV: {args.layers} blocks of width {args.d_model}, fp32 weights {fp32_bytes / 2**20:.0f} MiB")
        rows = {}
        for kind in ("fp32", "bf16_auto", "ar_2_blocks_bf16"):
            out = subprocess.run([sys.executable, "-c", CHILD, kind, tmp], capture_output=True, text=True, check=True)
            rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = rows[kind]["peak_mib"] / (fp32_bytes / 2**20)
            anon = rows[kind]["peak_anon_mib"] / (fp32_bytes / 2**20)
            print(
                f"{kind:17s} peak RSS {rows[kind]['peak_mib']:5.0f} MiB ({ratio:.2f} x fp32 weights; file pages "
                f"included), peak anonymous {rows[kind]['peak_anon_mib']:5.0f} MiB ({anon:.2f} x), resident after "
                f"{rows[kind]['resident_mib']:5.0f} MiB, {rows[kind]['params'] / 1e6:.0f}M parameters built"
            )


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
