"""Batched ``verbalize`` against a one-vector-at-a-time loop, on the embedded model, in one run.

    python benchmarks/bench_verbalize.py [--vectors 32] [--max-new-tokens 32]

Both decode greedily with the same vectors, so they produce the same explanations; prints
vectors/second of each and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

import nla_lens
from nla_lens.models import NLA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    bridge = nla_lens.load_subject("smollm2-135m")
    docs = nla_lens.load_corpus(max_documents=args.vectors)
    vectors = nla_lens.extract_activations(bridge, docs, "blocks.20.hook_resid_post", positions_per_doc=1,
                                           max_length=64, progress=False).vectors[: args.vectors]
    av = NLA.untrained("smollm2-135m").av
    kwargs = dict(max_new_tokens=args.max_new_tokens, progress=False)
    av.verbalize(vectors[:2], **kwargs)  # warm-up

    start = time.perf_counter()
    batched = av.verbalize(vectors, batch_size=args.vectors, **kwargs)
    t_batch = time.perf_counter() - start
    start = time.perf_counter()
    single = [av.verbalize(v[None], batch_size=1, **kwargs).explanation[0] for v in vectors]
    t_loop = time.perf_counter() - start

    same = sum(a == b for a, b in zip(batched.explanation, single))
    print(f"threads={torch.get_num_threads()} vectors={len(vectors)} max_new_tokens={args.max_new_tokens} "
          f"(mean response {batched.n_tokens.mean():.1f} tokens)")
    print(f"one at a time:       {t_loop:7.2f} s  {len(vectors) / t_loop:6.2f} vectors/s")
    print(f"batch {len(vectors):<3d}            {t_batch:7.2f} s  {len(vectors) / t_batch:6.2f} vectors/s")
    print(f"speed-up: {t_loop / t_batch:.1f}x   identical explanations: {same}/{len(vectors)}")


if __name__ == "__main__":
    main()
