"""KL to the reference AV, decided by measurement: equal GRPO runs from one warm start, kl_coef each.

    python scripts/kl_ablation.py runs/r30 [--steps 40] [--coefficients 0.01 0] [--precision auto]
    python scripts/kl_ablation.py runs/r30 --steps 50 --trained 0.01=runs/r30/nla-rl50

``--trained COEF=FOLDER`` evaluates an NLA the recipe already trained from the same warm start with
that coefficient for the same number of steps (a recipe run stopped there, its ``nla/`` kept)
instead of training that arm again; its seconds per step are the run's ``history_rl.csv`` over
those steps. The recipe's run evaluates every ``eval_every`` steps, which draws from the random
generator, so its samples are not bit-identical to a fresh arm's: same start, settings and steps.

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
from nla_lens.precision import capability, resolve_precision
from nla_lens.subjects.embedded import load_embedded_hf
from nla_lens.training import GRPOTrainer
from nla_lens.training.model_card import kl_decision
from nla_lens.training.recipe import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--coefficients", type=float, nargs="+", default=[0.01, 0.0])
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--trained",
        action="append",
        default=[],
        metavar="COEF=FOLDER",
        help="an arm already trained by the recipe for --steps steps: evaluated, not retrained",
    )
    args = parser.parse_args()
    trained = {float(c): Path(f) for c, f in (item.split("=", 1) for item in args.trained)}
    print(capability())

    recipe = Recipe.from_json(args.run)
    data = ActivationDataset.load(args.run / "activations")
    rl_data, eval_data = data.split("rl"), data.split("eval")
    eval_vectors = eval_data.vectors[: recipe.eval_size]
    judge, tokenizer = load_embedded_hf()
    judge.eval()

    rows = []
    for coefficient in args.coefficients:
        rl = dataclasses.replace(
            recipe.rl, kl_coef=coefficient, precision=args.precision, seed=recipe.seed, eval_every=0
        )
        if coefficient in trained:
            nla = NLA.from_pretrained(trained[coefficient])
            steps = int(nla.av.cfg.provenance.get("rl_steps", -1))
            if steps != args.steps:
                raise SystemExit(f"{trained[coefficient]} was trained for {steps} GRPO steps, not --steps {args.steps}")
            history = pd.read_csv(args.run / "history_rl.csv").head(args.steps)
            seconds, precision = float(history["seconds"].mean()), resolve_precision(recipe.rl.precision)
        else:
            nla = NLA.from_pretrained(args.run / "nla-sft", is_trainable=True)
            trainer = GRPOTrainer(nla, rl_data, rl)
            start = time.perf_counter()
            trainer.train(args.steps)
            seconds = (time.perf_counter() - start) / args.steps
            history, precision = trainer.history, trainer.precision
        frame = nla.av.verbalize(eval_vectors, max_new_tokens=rl.max_new_tokens, progress=False, warn=False)
        logprobs = [x for x in text_logprobs(judge, tokenizer, frame["explanation"].tolist()) if not math.isnan(x)]
        mean_logprob = sum(logprobs) / len(logprobs) if logprobs else math.nan
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
                "precision": precision,
                "arm": str(trained[coefficient]) if coefficient in trained else "trained here",
            }
        )
        print(pd.DataFrame(rows).to_string(index=False), flush=True)

    (args.run / "kl_ablation.json").write_text(json.dumps(rows, indent=2))
    print("\n" + kl_decision(rows)[1])


if __name__ == "__main__":
    main()
