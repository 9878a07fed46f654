"""What a finished ``nla-lens train --preset smoke`` run (the ``smoke_run`` fixture) leaves behind:
a complete run folder, a report and model card with every stage, and the final NLA after RL."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nla_lens.models import NLA

pytestmark = pytest.mark.embedded


def test_smoke_recipe_writes_a_complete_run_folder(smoke_run):
    out, printed = smoke_run
    assert all(f"{stage:11s} held-out fve_nrm" in printed for stage in ("teacher_sft", "sft", "rl"))
    for name in (
        "config.json",
        "report.json",
        "history_ar_sft.csv",
        "history_av_sft.csv",
        "history_rl.csv",
        "teacher_explanations.parquet",
        "activations/activations.parquet",
        "nla/av/nla_meta.yaml",
        "nla/ar/value_head.safetensors",
        "nla/README.md",
        "nla-sft/ar/nla_meta.yaml",
        "nla-teacher-sft/ar/nla_meta.yaml",
        "av_explanations.parquet",
        "history_ar_refit.csv",
    ):
        assert (out / name).exists(), name


def test_report_and_model_card_give_every_stage_and_the_current_token_baseline(smoke_run):
    out, _ = smoke_run
    report = json.loads((out / "report.json").read_text())
    for stage in ("teacher_sft", "sft", "rl"):
        assert {"fve_nrm", "fve_nrm_shuffled", "predict_mean", "failure_rate"} <= set(report[stage]), stage
    card = (out / "nla" / "README.md").read_text()
    assert "AR refit: 2 steps" in card and "the AV warm-start split at 6 per document" in card
    baseline = report["current_token_control"]
    assert isinstance(baseline, float) and baseline == baseline and f"scores {baseline:.3f}" in card
    # Every stage before the report was timed once (the run's stage list, minus the report itself).
    stages = [
        "activations",
        "teacher_texts",
        "av_activations",
        "av_teacher_texts",
        "ar_sft",
        "av_sft",
        "ar_refit",
        "rl",
    ]
    assert list(report["cpu_minutes"]) == stages and all(m >= 0 for m in report["cpu_minutes"].values())
    assert list(json.loads((out / "stage_minutes.json").read_text())) == [*stages, "report"]


def test_the_final_nla_is_the_rl_stage_at_layer_20(smoke_run):
    out, _ = smoke_run
    assert len(pd.read_csv(out / "history_rl.csv")) == 2
    nla = NLA.from_pretrained(out / "nla")
    assert nla.av.cfg.provenance["stage"] == "rl" and nla.hook_name == "blocks.20.hook_resid_post"
