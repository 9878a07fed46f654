"""Continue a recipe run's AR on its AV explanations with surface-form rewrites, then save the NLA.

    python scripts/ar_continue.py runs/issue19 /tmp/nla-continued [--share 0.8] [--steps 150] [--lr 1e-4]
    python scripts/faithfulness_report.py --nla /tmp/nla-continued --json f.json

For comparing AR training rewrites (``nla_lens.rewrites``) without a whole retrain: the run's final
NLA (``{run}/nla``) is loaded, its AR trained ``--steps`` more steps on the AR-split vectors paired
with the AV explanations the recipe's refit cached (``av_explanations.parquet``), a share
``--share`` of them rewritten into training styles, and the NLA written to ``out``. Run it at two
commits (two versions of the training styles) and compare the faithfulness reports' per-style
retention. The AV is untouched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from nla_lens.data.dataset import ActivationDataset
from nla_lens.models import NLA
from nla_lens.training.sft import ARWarmStart, WarmStartConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `nla-lens train` run folder")
    parser.add_argument("out", type=Path, help="where the NLA with the continued AR is written")
    parser.add_argument("--share", type=float, default=0.8, help="share of explanations rewritten")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    cache = args.run / "av_explanations.parquet"
    if not cache.is_file():
        raise SystemExit(f"{cache} is missing: run the recipe with its AR refit (ar_refit_steps > 0) first.")
    nla = NLA.from_pretrained(args.run / "nla", is_trainable=True)
    ar_split = ActivationDataset.load(args.run / "activations").split("ar_sft")
    texts = pd.read_parquet(cache)["explanation"].tolist()[: len(ar_split)]
    keep = [i for i, text in enumerate(texts) if text.strip()]
    train = ActivationDataset(ar_split.vectors[keep], ar_split.frame.iloc[keep], dict(ar_split.meta))
    config = WarmStartConfig(lr=args.lr, batch_size=args.batch_size, augment=args.share, seed=args.seed)
    run = ARWarmStart(nla.ar, train, [texts[i] for i in keep], config)
    history = run.train(args.steps)
    first, last = history["loss"].head(5).mean(), history["loss"].tail(5).mean()
    print(f"AR loss over the first / last 5 steps: {first:.4f} / {last:.4f}")
    nla.save_pretrained(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
