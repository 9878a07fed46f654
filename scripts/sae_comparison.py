"""NLA ⇄ SAE comparison on the embedded model: per-position agreement and NLA labels for SAE features.

Usage (offline, CPU, about ten minutes with the shipped NLA and the cached default SAE)::

    python scripts/sae_comparison.py                  # shipped NLA, SAE of scripts/embedded_sae.py
    python scripts/sae_comparison.py --nla runs/x/nla --json sae_comparison.json

Three disjoint sets of embedded-corpus documents: positions scored for agreement come from the
documents neither the shipped NLA nor the default SAE read (900 on); the features' top contexts
from documents 400-599; the positions searched for each labelled feature's strongest activations
from documents 600-799. The labelled features are those most often among the scored positions'
top features whose top contexts all peak on a content word (at least three letters, not a stop
word), leaving out features active at more than half of them: punctuation, function-word and
position features carry syntax an explanation of content has no reason to name. A random SAE of
the same width, read on the same positions with the same explanations, is the second control
beside the shuffled pairings.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter

import pandas as pd

import nla_lens
from nla_lens.analysis import content_words, nla_feature_labels, sae_agreement, top_feature_contexts
from nla_lens.jsonable import json_safe
from nla_lens.models import NLA
from nla_lens.testing import TinySAE
from nla_lens.training.sae import train_embedded_sae

MARKED = re.compile("«(.*?)»", re.DOTALL)


def is_content_feature(snippets: list[str] | None) -> bool:
    """Whether every top context of a feature peaks on a content word (not punctuation or a function word)."""
    marked = [m.group(1) for m in map(MARKED.search, snippets or []) if m]
    return bool(marked) and all(content_words(token) for token in marked)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nla", default="smollm2-135m-L20", help="NLA folder or shipped name")
    parser.add_argument("--top-k", type=int, default=5, help="SAE features per position")
    parser.add_argument("--features", type=int, default=12, help="features to label")
    parser.add_argument("--positions-per-doc", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    bridge = nla_lens.load_subject("smollm2-135m")
    nla = NLA.from_pretrained(args.nla)
    corpus = nla_lens.load_corpus()
    sae = train_embedded_sae(bridge, corpus[:900], hook_name=nla.hook_name)  # the cached default SAE
    contexts = top_feature_contexts(sae, bridge, corpus[400:600], nla.hook_name, k=5)
    held_out = nla_lens.extract_activations(
        bridge,
        corpus[900:],
        nla.hook_name,
        positions_per_doc=args.positions_per_doc,
        splits={"eval": 1.0},
        progress=False,
    )
    agreement = sae_agreement(
        nla, sae, held_out, feature_contexts=contexts, top_k=args.top_k, max_new_tokens=args.max_new_tokens
    )
    random_sae = TinySAE(sae.cfg.d_in, sae.cfg.d_sae, int(sae.cfg.k), nla.hook_name, seed=0)
    baseline = sae_agreement(
        nla,
        random_sae,
        held_out,
        feature_contexts=top_feature_contexts(random_sae, bridge, corpus[400:600], nla.hook_name, k=5),
        explanations=agreement.frame["explanation"].tolist(),
        top_k=args.top_k,
    )
    print(agreement)
    print(pd.concat({"trained SAE": agreement.table(), "random SAE": baseline.table()}, axis=1).round(3).to_string())

    counts = Counter(f for row in agreement.frame["features"] for f in row)
    common = [
        f for f, c in counts.most_common() if c <= len(agreement.frame) / 2 and is_content_feature(contexts.get(f))
    ]
    common = common[: args.features]
    labels = nla_feature_labels(
        nla,
        sae,
        corpus[600:800],
        common,
        subject=bridge,
        feature_contexts=contexts,
        positions_per_doc=args.positions_per_doc,
        max_new_tokens=args.max_new_tokens,
    )
    print(labels)
    with pd.option_context("display.max_colwidth", 70, "display.width", 200):
        print(labels.frame[["feature", "n_active", "label", "label_grounding", "label_grounding_shuffled"]])
        print(labels.frame[["feature", "direction_explanation", "direction_grounding"]])
    minutes = (time.perf_counter() - start) / 60
    print(f"{minutes:.1f} min")
    result = {
        "nla": args.nla,
        "agreement": agreement.summary,
        "random_sae_agreement": baseline.summary,
        "labels": labels.summary,
        "features": labels.frame[["feature", "label", "direction_explanation"]].to_dict("records"),
        "minutes": minutes,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_safe(result), f, indent=2)
    return result


if __name__ == "__main__":
    main()
