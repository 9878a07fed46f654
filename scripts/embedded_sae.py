"""Train (or load from the cache) the default SAE for the embedded model and print its figures.

    python scripts/embedded_sae.py     # d_sae 2048, TopK k=32, 1M samples, batches of 512, lr 1e-3

The SAE reads ``blocks.20.hook_resid_post`` of the embedded SmolLM2 (the shipped NLA's hook). It
is trained with SAELens on the first 900 documents of the embedded corpus and evaluated on the
rest: fraction of variance explained, L0 (features per token), features never active on the
held-out tokens, and its size on disk. A second run loads it from ``~/.cache/nla_lens/saes``.
"""

from __future__ import annotations

import argparse
import inspect
import time

import torch

import nla_lens
from nla_lens.training.sae import collect_activations, train_embedded_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = inspect.signature(train_embedded_sae).parameters  # the script reports the library's defaults
    for name in ("d_sae", "k", "training_tokens", "max_activations", "batch_size_tokens", "lr"):
        default = defaults[name].default
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    parser.add_argument("--train-docs", type=int, default=900)
    args = parser.parse_args()

    bridge = nla_lens.load_subject("smollm2-135m")
    corpus = nla_lens.load_corpus()
    train_texts, eval_texts = corpus[: args.train_docs], corpus[args.train_docs :]
    hook = "blocks.20.hook_resid_post"
    start = time.perf_counter()
    sae = train_embedded_sae(
        bridge,
        train_texts,
        hook_name=hook,
        d_sae=args.d_sae,
        k=args.k,
        training_tokens=args.training_tokens,
        max_activations=args.max_activations,
        batch_size_tokens=args.batch_size_tokens,
        lr=args.lr,
    )
    seconds = time.perf_counter() - start

    adapter = nla_lens.as_subject(bridge)
    acts = collect_activations(
        adapter, eval_texts, adapter.resolve_hook(hook), limit=20_000, max_length=128, batch_size=8
    )
    with torch.no_grad():
        features = sae.encode(acts)
        recon = sae.decode(features)
    fve = 1 - (acts - recon).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()
    l0 = (features > 0).sum(-1).float().mean()
    dead = ((features > 0).sum(0) == 0).float().mean()
    size_mb = sum(p.numel() * p.element_size() for p in sae.parameters()) / 1e6
    print(
        f"SAE {args.d_sae} features, TopK k={args.k}, {args.training_tokens:,} training samples in batches of "
        f"{args.batch_size_tokens} at lr {args.lr:g}, from {len(train_texts)} documents: {seconds / 60:.1f} min "
        "(train or cache load)"
    )
    print(
        f"held-out ({len(eval_texts)} documents, {acts.shape[0]:,} tokens): variance explained {fve:.3f}, "
        f"L0 {l0:.1f}, features never active {dead:.1%}, weights {size_mb:.1f} MB"
    )


if __name__ == "__main__":
    main()
