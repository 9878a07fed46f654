"""Faithfulness report of an NLA on held-out text of the embedded corpus; prints it and writes JSON.

Usage (offline, CPU, a few minutes for the shipped NLA)::

    python scripts/faithfulness_report.py                       # the shipped NLA, JSON to ./faithfulness_report.json
    python scripts/faithfulness_report.py --nla runs/x/nla --n 128 --json out.json

The held-out vectors come from corpus documents the shipped recipe never reads (it trains on the
first 800); the predict-the-mean and current-token controls use vectors of the first training documents.
The paraphrase table covers every surface style of ``nla_lens.rewrites`` (held-out and training ones,
labelled), the rule paraphraser with all its rules, and each rule alone (``rules_<op>``).
"""

from __future__ import annotations

import argparse
import time

import nla_lens
from nla_lens.analysis import RuleParaphraser, faithfulness_report
from nla_lens.analysis.paraphrase import OPS, RULES
from nla_lens.models import NLA
from nla_lens.rewrites import HELD_OUT_STYLES, TRAIN_STYLES
from nla_lens.subjects.adapters import as_subject


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nla", default=None, help="NLA folder or shipped name (default: the shipped NLA)")
    parser.add_argument("--subject", default="smollm2-135m")
    parser.add_argument(
        "--start", type=int, default=800, help="first held-out corpus document (training used 0..start-1)"
    )
    parser.add_argument("--documents", type=int, default=60, help="held-out documents to read")
    parser.add_argument(
        "--train-documents",
        type=int,
        default=400,
        help="training documents for the predict-the-mean and current-token controls",
    )
    parser.add_argument("--positions-per-doc", type=int, default=6)
    parser.add_argument(
        "--train-positions-per-doc",
        type=int,
        default=24,
        help="positions per training document (the current-token baseline is a regression)",
    )
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--n", type=int, default=64, help="held-out vectors evaluated")
    parser.add_argument("--n-random", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="faithfulness_report.json")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    nla = NLA.from_pretrained(args.nla)
    subject = nla_lens.load_subject(args.subject)
    docs = nla_lens.load_corpus()
    held_docs = docs[args.start : args.start + args.documents]
    extract = dict(
        positions_per_doc=args.positions_per_doc,
        max_length=args.max_length,
        seed=args.seed,
        splits={"eval": 1.0},
        progress=False,
    )
    held = nla_lens.extract_activations(subject, held_docs, nla.hook_name, **extract)
    train = nla_lens.extract_activations(
        subject,
        docs[: args.train_documents],
        nla.hook_name,
        **{**extract, "positions_per_doc": args.train_positions_per_doc},
    )
    # Held-out styles first (the acceptance figures), then the training styles for comparison, then
    # which surface change costs what: one rewrite rule at a time, each one AR pass on the same explanations.
    styles = {name: name for name in (*HELD_OUT_STYLES, RULES, *TRAIN_STYLES)}
    styles.update({f"rules_{op}": RuleParaphraser(ops=(op,)) for op in OPS})
    report = faithfulness_report(
        nla,
        held,
        n=args.n,
        train_vectors=train.vectors,
        n_random=args.n_random,
        token_embeddings=as_subject(subject).token_embeddings(),
        train_token_ids=train.frame["token_id"].tolist(),
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        paraphrase_styles=styles,
    )
    report.summary.update(
        nla=args.nla or "shipped",
        held_out_documents=[args.start, args.start + len(held_docs)],
        minutes=(time.perf_counter() - start) / 60,
    )
    print(report.to_json(args.json))
    return report.summary


if __name__ == "__main__":
    main()
