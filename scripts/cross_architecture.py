"""Must an NLA share its subject's architecture? The 2 x 2 (subject x NLA base) at one reduced budget.

    python scripts/cross_architecture.py [--out runs/cross] [--seeds 0 1] [--smoke]
    python scripts/cross_architecture.py --subjects smollm2-135m --bases gemma3-270m --seeds 0   # one cell
    python scripts/cross_architecture.py --finished results/cross_architecture/rows.json   # go on from the kept rows
    python scripts/cross_architecture.py --finished results/cross_architecture/rows.json --table-only --readme

Trains (or resumes) every cell and seed (:mod:`nla_lens.training.cross_architecture`), then prints the
table: held-out fve_nrm with the shuffled, predict-the-mean and current-token controls, paraphrase
retention, explanation length (words), readability (perplexity under the embedded SmolLM2), CPU
minutes, a bootstrap interval over the held-out vectors and the spread across seeds. Writes
``rows.json`` and ``table.csv`` into ``--out``; cells whose rows are in ``--finished`` (the rows
kept in the repository, ``results/cross_architecture/rows.json``) are read, not retrained.
Needs ``nla_lens[gemma]``. A full run is hours on a 2-core CPU; ``nice`` it in the background.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from nla_lens.precision import capability
from nla_lens.training.cross_architecture import (
    BASES,
    BUDGET,
    SMOKE,
    SUBJECT_LAYERS,
    cross_architecture_markdown,
    cross_architecture_table,
    run_cross_architecture,
)
from nla_lens.tutorials.timings import replace_block

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/cross")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--subjects", nargs="+", default=list(SUBJECT_LAYERS), choices=list(SUBJECT_LAYERS))
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    parser.add_argument("--smoke", action="store_true", help="smoke-size cells (minutes; not for conclusions)")
    parser.add_argument("--finished", type=Path, help="rows.json of cells scored earlier: read, not retrained")
    parser.add_argument(
        "--readme", action="store_true", help="write the table into README.md's cross-architecture block"
    )
    parser.add_argument("--table-only", action="store_true", help="the table of the --finished rows; train nothing")
    args = parser.parse_args()
    finished = json.loads(args.finished.read_text()) if args.finished else []
    if args.table_only:
        table = cross_architecture_table(finished)
    else:
        print(capability())
        table = run_cross_architecture(
            args.out,
            seeds=tuple(args.seeds),
            budget=SMOKE if args.smoke else BUDGET,
            subjects=tuple(args.subjects),
            bases=tuple(args.bases),
            finished=finished,
        )
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print(table.to_string(index=False))
    if args.readme:
        README.write_text(replace_block(README.read_text(), "cross-architecture", cross_architecture_markdown(table)))
        print(f"wrote the table into {README}")


if __name__ == "__main__":
    main()
