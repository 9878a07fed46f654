"""Resuming ``nla-lens train --preset smoke``: each test calls it again on its own copy of the finished
smoke run (the ``smoke_run`` fixture), after removing what an interruption would not have written."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from safetensors.torch import load_file

from nla_lens.cli import main

pytestmark = pytest.mark.embedded


@pytest.fixture()
def run(smoke_run, tmp_path):
    """A private copy of the finished smoke run, to resume and break without touching the shared one."""
    return shutil.copytree(smoke_run[0], tmp_path / "run")


def train(out) -> int:
    return main(["train", "--preset", "smoke", "--out", str(out)])


def test_a_second_call_finds_every_stage_done_and_retrains_nothing(run):
    stamp = (run / "history_ar_sft.csv").stat().st_mtime
    assert train(run) == 0
    assert (run / "history_ar_sft.csv").stat().st_mtime == stamp


def test_without_the_finished_warm_start_the_refit_is_redone_from_the_cached_av_explanations(run):
    shutil.rmtree(run / "nla-sft")
    stamp = (run / "av_explanations.parquet").stat().st_mtime
    assert train(run) == 0
    assert (run / "av_explanations.parquet").stat().st_mtime == stamp
    assert (run / "nla-sft" / "ar" / "nla_meta.yaml").is_file()
    assert len(pd.read_csv(run / "history_rl.csv")) == 2


def test_interrupted_during_the_av_warm_start_the_finished_ar_warm_start_is_loaded_not_redone(run):
    for name in ("nla-sft", "nla-teacher-sft", "av_explanations.parquet", "history_av_sft.csv"):
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    stamp = (run / "history_ar_sft.csv").stat().st_mtime
    assert train(run) == 0
    assert (run / "history_ar_sft.csv").stat().st_mtime == stamp
    assert len(pd.read_csv(run / "history_av_sft.csv")) == 3
    kept = load_file(run / "ar-teacher-sft" / "value_head.safetensors")["weight"]
    assert kept.equal(load_file(run / "nla-teacher-sft" / "ar" / "value_head.safetensors")["weight"])


def test_interrupted_during_the_av_warm_start_it_resumes_from_the_last_av_checkpoint(run):
    for name in ("nla-sft", "nla-teacher-sft", "av_explanations.parquet", "history_av_sft.csv"):
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    state_file = run / "av-checkpoints" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["step"] == 2
    state["history"][0]["loss"] = 123.0  # a mark only a loaded checkpoint can carry into the history
    state_file.write_text(json.dumps(state))
    assert train(run) == 0
    history = pd.read_csv(run / "history_av_sft.csv")
    assert history["loss"].tolist()[0] == 123.0
    assert history["step"].tolist() == [1, 2, 3]
