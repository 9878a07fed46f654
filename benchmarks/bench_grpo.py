"""Seconds per GRPO step and peak memory on the embedded model (8 vectors x group 4, 64 new tokens).

    python benchmarks/bench_grpo.py [--steps 3] [--lora-r 8]

Prints per-step wall time split into generation / policy update (log-probs of policy and
reference, backward) / AR update, the share spent generating, and the process's peak RSS.
Starts from an untrained NLA: sampled explanations run to the token cap, the slowest case.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

import nla_lens
from nla_lens.models import NLA
from nla_lens.training import GRPOConfig, GRPOTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--n-vectors", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lora-r", type=int, default=8, help="0 for full fine-tuning")
    args = parser.parse_args()

    bridge = nla_lens.load_subject("smollm2-135m")
    data = nla_lens.extract_activations(bridge, nla_lens.load_corpus(max_documents=16), 20, max_length=64,
                                        progress=False)
    del bridge
    nla = NLA.untrained("smollm2-135m")
    config = GRPOConfig(n_vectors=args.n_vectors, group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                        lora_r=args.lora_r or None)
    trainer = GRPOTrainer(nla, data, config)
    start = time.perf_counter()
    trainer.train(args.steps, progress=False)
    total = time.perf_counter() - start
    h = trainer.history
    per_step = h["seconds"].mean()
    print(f"threads={torch.get_num_threads()} steps={args.steps} vectors={args.n_vectors} group={args.group_size} "
          f"max_new_tokens={args.max_new_tokens} lora_r={args.lora_r or 'full'} "
          f"mean response {h['response_length'].mean():.1f} tokens")
    print(f"seconds per step: {per_step:.1f} (total {total:.1f} s)")
    for part in ("generate_seconds", "policy_seconds", "ar_seconds"):
        print(f"  {part:18s} {h[part].mean():6.1f} s  ({100 * h[part].mean() / per_step:4.1f} %)")
    print(f"share generating: {100 * h['generate_seconds'].mean() / per_step:.0f} %")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
