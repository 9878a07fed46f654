"""Copy a trained embedded-model NLA from a run folder into the package (nla_lens/pretrained/).

    python scripts/ship_pretrained.py runs/smollm2-135m [--name smollm2-135m-L20] [--faithfulness f.json]

Copies the LoRA adapter folders ``av/`` and ``ar/`` (with the AR's value head and both sidecars)
but not the tokenizer files: adapter folders load the embedded base model's tokenizer, which is
the same. Writes the model card and report, and refuses anything over 25 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from nla_lens.training.model_card import write_model_card

KEEP = ("adapter_config.json", "adapter_model.safetensors", "value_head.safetensors", "nla_meta.yaml")
LIMIT_MB = 25.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", default="smollm2-135m-L20")
    parser.add_argument("--faithfulness", type=Path, default=None,
                        help="JSON from scripts/faithfulness_report.py, added to the report and the model card")
    args = parser.parse_args()
    target = Path(__file__).resolve().parent.parent / "nla_lens" / "pretrained" / args.name
    shutil.rmtree(target, ignore_errors=True)
    for role in ("av", "ar"):
        (target / role).mkdir(parents=True)
        for name in KEEP:
            if (args.run / "nla" / role / name).is_file():
                shutil.copy2(args.run / "nla" / role / name, target / role / name)
        if not (target / role / "adapter_model.safetensors").is_file():
            raise SystemExit(f"{args.run}/nla/{role} holds no LoRA adapters; only adapter NLAs are shipped.")
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
    (target / "report.json").write_text(json.dumps(report, indent=2))
    write_model_card(target, report, recipe)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 2**20
    print(f"shipped {target} ({size:.1f} MB)")
    if size > LIMIT_MB:
        shutil.rmtree(target)
        raise SystemExit(f"{size:.1f} MB is over the {LIMIT_MB} MB budget; lower the LoRA ranks.")


if __name__ == "__main__":
    main()
