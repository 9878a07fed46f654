"""Copy a trained embedded-model NLA from a run folder into the package (nla_lens/pretrained/).

    python scripts/ship_pretrained.py runs/smollm2-135m [--name smollm2-135m-L20] [--faithfulness f.json]

Copies the LoRA adapter folders ``av/`` and ``ar/`` (with the AR's value head, the AR's
truncated-base ``config.json`` and both sidecars)
but not the tokenizer files: adapter folders load the embedded base model's tokenizer, which is
the same. LoRA weights are stored in bfloat16 (``--adapter-dtype float32`` keeps them as trained):
that halves the package, loading casts them back to the model's fp32, and on the shipped AR the
reconstructions moved by about 3e-5 of their largest entry. Writes the model card and report,
and refuses anything over 25 MB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from nla_lens.norm_range import NormRange
from nla_lens.schema import NLAMeta
from nla_lens.training.model_card import write_model_card

# config.json: an AR adapter folder's record of its truncated base (K+1 blocks), which makes
# transformers refuse to build the whole base under it.
KEEP = ("adapter_config.json", "adapter_model.safetensors", "value_head.safetensors", "nla_meta.yaml", "config.json")
LIMIT_MB = 25.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", default="smollm2-135m-L20")
    parser.add_argument(
        "--adapter-dtype",
        choices=("bfloat16", "float32"),
        default="bfloat16",
        help="storage dtype of the LoRA weights (default bfloat16)",
    )
    parser.add_argument(
        "--faithfulness",
        type=Path,
        default=None,
        help="JSON from scripts/faithfulness_report.py, added to the report and the model card",
    )
    args = parser.parse_args()
    target = Path(__file__).resolve().parent.parent / "nla_lens" / "pretrained" / args.name
    kept_range = _shipped_norm_range(target, args.run / "nla" / "av")
    shutil.rmtree(target, ignore_errors=True)
    for role in ("av", "ar"):
        (target / role).mkdir(parents=True)
        for name in KEEP:
            if (args.run / "nla" / role / name).is_file():
                shutil.copy2(args.run / "nla" / role / name, target / role / name)
        adapters = target / role / "adapter_model.safetensors"
        if not adapters.is_file():
            raise SystemExit(f"{args.run}/nla/{role} holds no LoRA adapters; only adapter NLAs are shipped.")
        dtype = getattr(torch, args.adapter_dtype)
        save_file(
            {k: v.to(dtype) for k, v in load_file(str(adapters)).items()}, str(adapters), metadata={"format": "pt"}
        )
    if kept_range is not None:
        for role in ("av", "ar"):
            meta = NLAMeta.load(target / role)
            dataclasses.replace(meta, norm_range=kept_range).save(target / role)
        print(f"norm range kept from the shipped NLA: {kept_range}")
    report = json.loads((args.run / "report.json").read_text())
    recipe = json.loads((args.run / "config.json").read_text())
    # Stages may have been ended early (STOP file): record the steps and seconds really run.
    report["steps"], report["train_minutes"] = {}, {}
    for stage in ("ar_sft", "av_sft", "ar_refit", "rl"):
        history = args.run / f"history_{stage}.csv"
        if history.is_file():
            frame = pd.read_csv(history)
            report["steps"][stage] = int(len(frame))
            report["train_minutes"][stage] = round(float(frame["seconds"].sum()) / 60, 1)
    if args.faithfulness is not None:
        report["faithfulness"] = json.loads(args.faithfulness.read_text())
    if (args.run / "kl_ablation.json").is_file():  # scripts/kl_ablation.py RUN: the card's KL table
        report["kl_ablation"] = json.loads((args.run / "kl_ablation.json").read_text())
    (target / "report.json").write_text(json.dumps(report, indent=2))
    write_model_card(target, report, recipe)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 2**20
    print(f"shipped {target} ({size:.1f} MB)")
    if size > LIMIT_MB:
        shutil.rmtree(target)
        raise SystemExit(f"{size:.1f} MB is over the {LIMIT_MB} MB budget; lower the LoRA ranks.")


def _shipped_norm_range(target: Path, new_av: Path) -> NormRange | None:
    """The norm range in the NLA shipped now at ``target``, if it reads the same subject and hook as the new one.

    A trainer records the range of the first vectors each half trains on (the AV's and the AR's warm
    start splits differ); the shipped sidecars carry the range of every eligible position of the
    recipe's 800 documents instead (``scripts/norm_range.py``), the same for both halves. It depends
    on the subject and the hook only, so a re-shipped NLA keeps it.
    """
    if not (target / "av").is_dir():
        return None
    old, new = NLAMeta.load(target / "av"), NLAMeta.load(new_av)
    same = (old.hook_name, old.provenance.get("base_model")) == (new.hook_name, new.provenance.get("base_model"))
    return old.norm_range if same else None


if __name__ == "__main__":
    main()
