"""Steering strength sweep on the embedded model: topic gain against fluency, per coefficient.

Usage (offline, CPU, a few minutes with the defaults)::

    python scripts/steering_sweep.py
    python scripts/steering_sweep.py --coefficients 0.1 0.3 1.0 --max-new-tokens 16

Runs :func:`nla_lens.analysis.steering_sweep` with the shipped NLA on the embedded SmolLM2-135M
for two explanations (the sea and a kitchen, each scored on its own topic words) over three
prompts, prints one table per explanation and the mean over both, and names the largest
coefficient that stayed fluent for both: the measurement behind ``steer``'s default strength.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import nla_lens
from nla_lens.analysis import steering_sweep
from nla_lens.analysis.steering import SWEEP_COEFFICIENTS
from nla_lens.models import NLA

EXPLANATIONS = {
    "sea": (
        '1. Recent context: "…the ocean waves crashed on the beach as the sailors pulled the boat to the sea"\n'
        '2. Likely next: "sea", "ocean", "ship"\n3. Current token: " sea"',
        ["sea", "ocean", "ship", "boat", "waves", "beach", "sailors", "water"],
    ),
    "kitchen": (
        "Recent context: the cook stirred the soup in the kitchen. Likely next: pot, stove, bread.",
        ["kitchen", "soup", "cook", "bread", "pot", "stove"],
    ),
}
PROMPTS = ["I want to tell you about", "Yesterday afternoon we went to the", "The most important thing in life is"]
COLUMNS = ["coefficient", "gain_vs_none", "gain_vs_random", "logprob_drop", "repetition_explanation", "fluent"]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nla", default="smollm2-135m-L20", help="NLA folder or shipped name")
    parser.add_argument("--subject", default="smollm2-135m")
    parser.add_argument("--coefficients", type=float, nargs="+", default=list(SWEEP_COEFFICIENTS))
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    nla = NLA.from_pretrained(args.nla)
    subject = nla_lens.load_subject(args.subject)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    tables = []
    for name, (explanation, words) in EXPLANATIONS.items():
        table = steering_sweep(
            nla,
            subject,
            PROMPTS,
            explanation,
            topic_words=words,
            coefficients=args.coefficients,
            max_new_tokens=args.max_new_tokens,
            progress=False,
        )
        print(f"\n## {name} ({len(PROMPTS)} prompts, {args.max_new_tokens} new tokens)")
        print(table[[*COLUMNS, "example"]].round(3).to_string(index=False), flush=True)
        tables.append(table.assign(explanation=name))
    both = pd.concat(tables)
    mean = both.groupby("coefficient")[COLUMNS[1:-1]].mean()
    mean["fluent"] = both.groupby("coefficient")["fluent"].all()
    print("\n## mean over both explanations (fluent: fluent for both)")
    print(mean.round(3).to_string())
    print(
        f"\nunsteered: perplexity {both['perplexity_none'].mean():.1f}, "
        f"trigram repetition {both['repetition_none'].mean():.3f}"
    )
    fluent = mean.index[mean["fluent"]]
    print(f"largest fluent coefficient: {fluent.max() if len(fluent) else None}")
    print(f"({time.perf_counter() - start:.0f} s)")
    return both


if __name__ == "__main__":
    main()
