"""Data-parallel training: 2 CPU processes (gloo) make the same update as 1 process.

Each run is ``tests/integration/scripts/data_parallel_run.py`` (AR warm start 3 steps, AV warm start
3 steps, GRPO 4 steps) from the same warm-started tiny NLA, once with ``python`` and once under
``accelerate launch`` with 2 processes. On CPU, accelerate 1.x starts several processes through
torchrun only with ``--multi_gpu`` and ``ACCELERATE_USE_CPU=true`` (``--cpu --num_processes 2``
starts one process unless mpirun is installed), which gives the gloo backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from nla_lens.testing.processes import CPU_LAUNCH_ENV, cpu_launch_command
from nla_lens.testing.synthetic import concept_dataset
from nla_lens.training import ARWarmStart, AVWarmStart, WarmStartConfig

SCRIPT = Path(__file__).parent / "scripts" / "data_parallel_run.py"
TWO_PROCESSES = cpu_launch_command(2)


def run(command: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **CPU_LAUNCH_ENV, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The warm NLA, a 1-process run, a 2-process run and a 2-process resume from its step-2 checkpoint."""
    from test_training import untrained

    root = tmp_path_factory.mktemp("data_parallel")
    nla = untrained()
    data, texts = concept_dataset(64, 64)
    ARWarmStart(nla.ar, data, texts, WarmStartConfig(lr=3e-3, batch_size=16)).train(40, progress=False)
    AVWarmStart(nla.av, data, texts, WarmStartConfig(lr=3e-3, batch_size=16)).train(70, progress=False)
    nla.save_pretrained(root / "warm")
    results = {
        "one": run([sys.executable], str(root / "warm"), str(root / "one")),
        "two": run(TWO_PROCESSES, str(root / "warm"), str(root / "two")),
    }
    results["resumed"] = run(
        TWO_PROCESSES,
        str(root / "warm"),
        str(root / "resumed"),
        "--resume",
        str(root / "two" / "grpo" / "checkpoint-2"),
    )
    results["one_from_two"] = run(
        [sys.executable],
        str(root / "warm"),
        str(root / "one_from_two"),
        "--resume",
        str(root / "two" / "grpo" / "checkpoint-2"),
    )
    for name in ("one", "two", "resumed"):
        assert results[name].returncode == 0, f"{name} run failed:\n{results[name].stderr[-4000:]}"
    return root, results


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _count_differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tolerance: float) -> int:
    """How many weights of ``a`` and ``b`` differ by more than ``tolerance``."""
    assert a.keys() == b.keys()
    return sum(int(((a[k] - b[k]).abs() > tolerance).sum()) for k in a)


@pytest.mark.parametrize("stage", ["ar", "av", "grpo"])
def test_two_processes_make_the_same_update_as_one(runs, stage):
    root, _ = runs
    one, two = (
        load_file(str(root / "one" / f"{stage}.safetensors")),
        load_file(str(root / "two" / f"{stage}.safetensors")),
    )
    # Adam divides each gradient element by its own running scale. Where that scale is near zero, float
    # rounding that differs between one process and two (reduction order, the CPU's vector width) can flip
    # one element's update and move that weight by up to a step (lr 1e-3): seen once in 300k weights on an
    # AVX512 CPU without bf16. A wrong gradient or a missed all-reduce moves nearly every weight.
    total = sum(t.numel() for t in one.values())
    assert _count_differing(one, two, 1e-4) <= max(1, total // 10_000)
    assert _max_difference(one, two) < 1e-2  # even a flipped element moves by at most a few steps
    # ... and the update is real: far larger than that tolerance.
    warm = {**{f"av.{k}": v for k, v in load_file(str(root / "warm" / "av" / "model.safetensors")).items()}}
    changed = [float((two[k] - warm[k]).abs().max()) for k in warm if k in two]
    if stage != "ar":
        assert changed and max(changed) > 1e-3
    history_one, history_two = pd.read_csv(root / "one" / f"{stage}.csv"), pd.read_csv(root / "two" / f"{stage}.csv")
    columns = [c for c in history_one.columns if not c.endswith("seconds")]
    assert len(history_two) == len(history_one) == (4 if stage == "grpo" else 3)
    assert (history_one[columns] - history_two[columns]).abs().max().max() < 1e-4  # gathered metrics


def test_the_ar_warm_start_moves_the_reconstructor(runs):
    root, _ = runs
    two = load_file(str(root / "two" / "ar.safetensors"))
    head = load_file(str(root / "warm" / "ar" / "value_head.safetensors"))
    (key,) = [k for k in two if k.endswith("value_head.weight")]
    assert float((two[key] - next(iter(head.values()))).abs().max()) > 1e-4


def test_one_run_folder_one_set_of_checkpoints_one_history(runs):
    root, _ = runs
    folder = root / "two" / "grpo"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2", "checkpoint-4", "history.csv"]
    history = pd.read_csv(folder / "history.csv")
    assert history["step"].tolist() == [1, 2, 3, 4]
    assert json.loads((folder / "checkpoint-4" / "trainer_state.json").read_text())["world_size"] == 2


def test_resume_in_two_processes_continues_identically(runs):
    root, _ = runs
    straight = load_file(str(root / "two" / "grpo.safetensors"))
    resumed = load_file(str(root / "resumed" / "grpo.safetensors"))
    assert _max_difference(straight, resumed) < 1e-6
    a, b = pd.read_csv(root / "two" / "grpo.csv"), pd.read_csv(root / "resumed" / "grpo.csv")
    columns = ["step", "reward_mean", "kl", "ar_loss", "policy_loss"]
    assert (a[columns] - b[columns]).abs().max().max() < 1e-6


def test_resume_in_one_process_is_refused_with_the_reason(runs):
    _, results = runs
    refused = results["one_from_two"]
    assert refused.returncode != 0
    assert "CheckpointError" in refused.stderr and "2 process(es), and this run has 1" in refused.stderr


def test_a_batch_the_processes_cannot_split_is_refused(runs):
    root, _ = runs
    errors = json.loads((root / "resumed" / "errors.json").read_text())
    assert errors["grpo"].startswith("InputError: n_vectors=5 does not split across 2 processes")
    assert errors["ar"].startswith("InputError: batch_size=5 does not split across 2 processes")
