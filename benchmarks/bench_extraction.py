"""Extraction speed: ``extract_activations`` (stops at the hook's block, caches one hook) against a
naive full ``run_with_cache`` (all blocks, every hook cached) on the same batches, in one run.

    python benchmarks/bench_extraction.py [--documents 48] [--max-length 128] [--batch-size 8]

Prints documents/second of each and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

import nla_lens

HOOK = "blocks.20.hook_resid_post"


def naive(bridge, documents, max_length: int, batch_size: int) -> int:
    """The baseline a TransformerLens user would write first: cache everything, then index."""
    tokenizer = bridge.tokenizer
    encoded = [tokenizer(d, add_special_tokens=False)["input_ids"][:max_length] for d in documents]
    encoded.sort(key=len)
    n = 0
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(map(len, batch))
        tokens = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = torch.tensor(ids)
        with torch.no_grad():
            _, cache = bridge.run_with_cache(tokens)
        n += cache[HOOK][:, 10:].shape[0]
        del cache
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    bridge = nla_lens.load_subject("smollm2-135m")
    documents = nla_lens.load_corpus(max_documents=args.documents)
    run = dict(max_length=args.max_length, batch_size=args.batch_size)
    nla_lens.extract_activations(bridge, documents[:8], HOOK, progress=False, **run)  # warm-up

    ours, base = [], []
    for _ in range(args.repeats):  # interleave so both see the same machine load
        start = time.perf_counter()
        nla_lens.extract_activations(bridge, documents, HOOK, progress=False, **run)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        naive(bridge, documents, **run)
        base.append(time.perf_counter() - start)
    t_ours, t_base = min(ours), min(base)
    print(
        f"threads={torch.get_num_threads()} documents={args.documents} max_length={args.max_length} "
        f"batch_size={args.batch_size} hook={HOOK}"
    )
    print(f"naive run_with_cache (30 blocks, all hooks): {t_base:7.2f} s  {args.documents / t_base:6.2f} docs/s")
    print(f"extract_activations (stop at block 21):     {t_ours:7.2f} s  {args.documents / t_ours:6.2f} docs/s")
    print(f"speed-up: {t_base / t_ours:.2f}x")


if __name__ == "__main__":
    main()
