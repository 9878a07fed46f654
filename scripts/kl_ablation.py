"""KL to the reference AV, decided by measurement: equal GRPO runs from one warm start, kl_coef each.

    python scripts/kl_ablation.py runs/r30 [--steps 40] [--coefficients 0.01 0] [--precision auto]

Reads a recipe run folder (its ``nla-sft/`` warm start, activations and ``config.json``), then for
each coefficient trains a fresh copy of the warm start with the recipe's GRPO settings (same seed,
same batches) for ``--steps`` steps and reports, on the run's 64 held-out vectors (greedy, fp32):
fve_nrm and its shuffled control, the failure, missing-tag, truncated and non-English rates, and
readability, the base model's mean per-token perplexity of the explanations (lower reads more like
ordinary text; :func:`nla_lens.analysis.fluency.text_logprobs`), and seconds per step. Writes
``kl_ablation.json`` into the run folder (the model card's KL table reads it). The rule the recipe follows: ship
``kl_coef=0`` only if its readability is within 10 % of the KL run's and its fve_nrm is not lower.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import pandas as pd

from nla_lens.analysis.fluency import perplexity, text_logprobs
from nla_lens.data.dataset import ActivationDataset
from nla_lens.metrics import held_out_metrics
from nla_lens.models import NLA
from nla_lens.precision import capability
from nla_lens.subjects.embedded import load_embedded_hf
from nla_lens.training import GRPOTrainer
from nla_lens.training.recipe import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--coefficients", type=float, nargs="+", default=[0.01, 0.0])
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    print(capability())

    recipe = Recipe.from_json(args.run)
    data = ActivationDataset.load(args.run / "activations")
    rl_data, eval_data = data.split("rl"), data.split("eval")
    eval_vectors = eval_data.vectors[: recipe.eval_size]
    judge, tokenizer = load_embedded_hf()
    judge.eval()

    rows = []
    for coefficient in args.coefficients:
        nla = NLA.from_pretrained(args.run / "nla-sft", is_trainable=True)
        rl = dataclasses.replace(
            recipe.rl, kl_coef=coefficient, precision=args.precision, seed=recipe.seed, eval_every=0
        )
        trainer = GRPOTrainer(nla, rl_data, rl)
        start = time.perf_counter()
        trainer.train(args.steps)
        seconds = (time.perf_counter() - start) / args.steps
        frame = nla.av.verbalize(eval_vectors, max_new_tokens=rl.max_new_tokens, progress=False, warn=False)
        logprobs = [x for x in text_logprobs(judge, tokenizer, frame["explanation"].tolist()) if not math.isnan(x)]
        mean_logprob = sum(logprobs) / len(logprobs) if logprobs else math.nan
        history = trainer.history
        rows.append(
            {
                "kl_coef": coefficient,
                "steps": args.steps,
                **held_out_metrics(frame, eval_vectors, nla.ar),
                "missing_tag": float(frame["missing_tag"].mean()),
                "truncated": float(frame["truncated"].mean()),
                "non_english": float(frame["non_english"].mean()),
                "perplexity": perplexity(mean_logprob),
                "train_reward_last10": float(history["reward_mean"].tail(10).mean()),
                "seconds_per_step": seconds,
                "precision": trainer.precision,
            }
        )
        print(pd.DataFrame(rows).to_string(index=False), flush=True)

    table = pd.DataFrame(rows)
    (args.run / "kl_ablation.json").write_text(json.dumps(rows, indent=2))
    with_kl, without = table.iloc[0], table.iloc[-1]
    readable = without["perplexity"] <= 1.1 * with_kl["perplexity"]
    ships = readable and without["fve_nrm"] >= with_kl["fve_nrm"]
    print(
        f"\nkl_coef={without['kl_coef']:g}: perplexity {without['perplexity']:.1f} vs {with_kl['perplexity']:.1f} "
        f"({'within' if readable else 'beyond'} 10 %), fve_nrm {without['fve_nrm']:.3f} vs {with_kl['fve_nrm']:.3f}: "
        f"{'ship it' if ships else 'keep the KL'}"
    )


if __name__ == "__main__":
    main()
