"""The `nla-lens train` recipe end to end on the embedded model (smoke preset), and its resume."""

from __future__ import annotations

import json

import pandas as pd

from nla_lens.cli import main
from nla_lens.models import NLA


def test_smoke_recipe_writes_a_complete_run_folder_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sft  held-out fve_nrm" in printed and "rl   held-out fve_nrm" in printed
    for name in ("config.json", "report.json", "history_ar_sft.csv", "history_av_sft.csv", "history_rl.csv",
                 "teacher_explanations.parquet", "activations/activations.parquet", "nla/av/nla_meta.yaml",
                 "nla/ar/value_head.safetensors", "nla/README.md", "nla-sft/ar/nla_meta.yaml"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert {"fve_nrm", "fve_nrm_shuffled", "predict_mean", "failure_rate"} <= set(report["rl"])
    assert len(pd.read_csv(out / "history_rl.csv")) == 2
    nla = NLA.from_pretrained(out / "nla")
    assert nla.av.cfg.provenance["stage"] == "rl" and nla.hook_name == "blocks.20.hook_resid_post"
    teacher = pd.read_parquet(out / "teacher_explanations.parquet")["explanation"]
    assert teacher.str.contains("Current token:").all()

    # A second call finds every stage done: nothing is retrained.
    stamp = (out / "history_ar_sft.csv").stat().st_mtime
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    assert (out / "history_ar_sft.csv").stat().st_mtime == stamp
    assert len(pd.read_csv(out / "history_rl.csv")) == 2
