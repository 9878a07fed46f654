"""Warm-start throughput in 1 and 2 data-parallel processes on the embedded model, in one run.

    python benchmarks/bench_data_parallel.py [--steps 4] [--batch 8]

Runs the AR and AV warm starts (LoRA r8, the same global batch) once in one process and once
under ``accelerate launch`` with 2 processes (gloo on CPU; ``--multi_gpu`` with
``ACCELERATE_USE_CPU=true``, which is how accelerate 1.x starts several CPU processes without
mpirun), and prints training samples/s of each and the ratio. The first step of each run is a
warm-up and is not timed. On a 2-core machine two processes share the same cores that one
process's threads use, so expect little gain: the point of data parallelism is several GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nla_lens.testing.processes import CPU_LAUNCH_ENV, cpu_launch_command


def worker(args: argparse.Namespace) -> None:
    import torch

    import nla_lens
    from nla_lens.models import NLA
    from nla_lens.training import ARWarmStart, AVWarmStart, WarmStartConfig

    bridge = nla_lens.load_subject("smollm2-135m")
    data = nla_lens.extract_activations(
        bridge, nla_lens.load_corpus(max_documents=16), layer=20, max_length=64, progress=False
    )
    del bridge
    # Any text trains at the same speed; the current token in a short sentence keeps responses short.
    texts = [f"The text has just reached the word {token!r}." for token in data.frame["token"]]
    nla = NLA.untrained("smollm2-135m")
    results = {}
    for name, make in (
        ("ar", lambda cfg: ARWarmStart(nla.ar, data, texts, cfg)),
        ("av", lambda cfg: AVWarmStart(nla.av, data, texts, cfg)),
    ):
        trainer = make(WarmStartConfig(lr=1e-4, batch_size=args.batch, lora_r=8))
        trainer.step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.step()
        seconds = time.perf_counter() - start
        results[name] = args.steps * args.batch / seconds
    if trainer.is_main_process:
        Path(args.result).write_text(
            json.dumps(
                {"samples_per_second": results, "processes": trainer.world_size, "threads": torch.get_num_threads()}
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8, help="global batch (pairs per step)")
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.result:
        worker(args)
        return
    cores = os.cpu_count() or 1
    runs = {
        1: ([sys.executable], {"OMP_NUM_THREADS": str(cores)}),
        2: (
            cpu_launch_command(2),
            {**CPU_LAUNCH_ENV, "OMP_NUM_THREADS": str(max(1, cores // 2))},
        ),
    }
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for processes, (launcher, env) in runs.items():
            result = Path(tmp) / f"{processes}.json"
            subprocess.run(
                [*launcher, __file__, "--steps", str(args.steps), "--batch", str(args.batch), "--result", str(result)],
                env={**os.environ, **env},
                check=True,
                stdout=subprocess.DEVNULL,
            )
            figures[processes] = json.loads(result.read_text())
    print(f"cores={cores} global batch={args.batch} timed steps={args.steps} (LoRA r8, embedded model)")
    for stage in ("ar", "av"):
        one, two = (figures[p]["samples_per_second"][stage] for p in (1, 2))
        print(
            f"{stage.upper()} warm start: 1 process {one:.2f} samples/s ({figures[1]['threads']} threads), "
            f"2 processes {two:.2f} samples/s ({figures[2]['threads']} threads each): ratio {two / one:.2f}x"
        )


if __name__ == "__main__":
    main()
