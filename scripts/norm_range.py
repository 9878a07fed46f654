"""Measure the activation-norm range of the embedded subject at some hooks, on the embedded corpus.

    python scripts/norm_range.py [--layers 10 20] [--documents 800] [--max-length 128] [--min-position 10]

Reads the first ``--documents`` documents of the embedded corpus (the shipped NLA's recipe
``smollm2-135m``: 800 documents, at most 128 tokens, positions >= 10), every eligible position of
each (not only the six the recipe samples: the same distribution, measured on more vectors;
special tokens skipped), and prints each hook's :class:`~nla_lens.norm_range.NormRange` (1st
percentile, median, 99th percentile of the L2 norms) plus the minimum and maximum. The figures in
the shipped NLA's sidecars (``extraction.norm_range``) come from this script.
"""

from __future__ import annotations

import argparse
import json

import torch

import nla_lens
from nla_lens.norm_range import NormRange
from nla_lens.subjects.adapters import as_subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--documents", type=int, default=800)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--min-position", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    subject = as_subject(nla_lens.load_subject("smollm2-135m"))
    hooks = [subject.resolve_hook(layer=layer) for layer in args.layers]
    special = subject.special_token_ids()
    docs = [subject.encode(text, args.max_length) for text in nla_lens.load_corpus(max_documents=args.documents)]
    norms: dict[str, list[torch.Tensor]] = {hook.name: [] for hook in hooks}
    pad = subject.tokenizer.pad_token_id or 0
    for start in range(0, len(docs), args.batch_size):
        batch = docs[start : start + args.batch_size]
        tokens = torch.full((len(batch), max(len(ids) for ids in batch)), pad, dtype=torch.long)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = torch.tensor(ids)
        for hook in hooks:
            acts = subject.activations(tokens, hook)  # [batch, seq, d_model]
            for row, ids in enumerate(batch):
                keep = [p for p in range(args.min_position, len(ids)) if ids[p] not in special]
                norms[hook.name].append(acts[row, keep].norm(dim=-1))
    report = {}
    for name, parts in norms.items():
        values = torch.cat(parts)
        report[name] = {
            **NormRange.from_norms(values).to_dict(),
            "min": round(float(values.min()), 2),
            "max": round(float(values.max()), 2),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
