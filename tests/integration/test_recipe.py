"""The `nla-lens train` recipe end to end on the embedded model (smoke preset), and its resume."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from safetensors.torch import load_file

from nla_lens.cli import main
from nla_lens.data.dataset import ActivationDataset
from nla_lens.models import NLA


def test_smoke_recipe_writes_a_complete_run_folder_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(f"{stage:11s} held-out fve_nrm" in printed for stage in ("teacher_sft", "sft", "rl"))
    for name in ("config.json", "report.json", "history_ar_sft.csv", "history_av_sft.csv", "history_rl.csv",
                 "teacher_explanations.parquet", "activations/activations.parquet", "nla/av/nla_meta.yaml",
                 "nla/ar/value_head.safetensors", "nla/README.md", "nla-sft/ar/nla_meta.yaml",
                 "nla-teacher-sft/ar/nla_meta.yaml", "av_explanations.parquet", "history_ar_refit.csv"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    for stage in ("teacher_sft", "sft", "rl"):
        assert {"fve_nrm", "fve_nrm_shuffled", "predict_mean", "failure_rate"} <= set(report[stage]), stage
    card = (out / "nla" / "README.md").read_text()
    assert "AR refit: 2 steps" in card and "the AV warm-start split at 6 per document" in card
    baseline = report["current_token_control"]
    assert isinstance(baseline, float) and baseline == baseline and f"scores {baseline:.3f}" in card

    # The AR refit trained the reconstructor that ends the warm start, on the AV's own explanations;
    # the verbalizer is the teacher-warm-started one.
    refit = pd.read_parquet(out / "av_explanations.parquet")
    assert len(refit) > 0 and refit["explanation"].str.len().gt(0).any()
    assert len(pd.read_csv(out / "history_ar_refit.csv")) == 2
    before = load_file(out / "nla-teacher-sft" / "ar" / "value_head.safetensors")
    after = load_file(out / "nla-sft" / "ar" / "value_head.safetensors")
    assert any(not before[k].equal(after[k]) for k in before)
    av_before = load_file(out / "nla-teacher-sft" / "av" / "adapter_model.safetensors")
    av_after = load_file(out / "nla-sft" / "av" / "adapter_model.safetensors")
    assert all(av_before[k].equal(av_after[k]) for k in av_before)
    assert len(pd.read_csv(out / "history_rl.csv")) == 2
    nla = NLA.from_pretrained(out / "nla")
    assert nla.av.cfg.provenance["stage"] == "rl" and nla.hook_name == "blocks.20.hook_resid_post"
    teacher = pd.read_parquet(out / "teacher_explanations.parquet")["explanation"]
    assert teacher.str.contains("Current token:").all()

    # The AV warm start read its split drawn with more positions per document: same documents.
    main_av = ActivationDataset.load(out / "activations").split("av_sft")
    av_split = ActivationDataset.load(out / "activations_av")
    assert av_split.splits == {"av_sft": len(av_split)} and len(av_split) > len(main_av)
    assert set(av_split.frame["doc_id"]) == set(main_av.frame["doc_id"])
    assert len(pd.read_parquet(out / "teacher_explanations_av.parquet")) == len(av_split)

    # A second call finds every stage done: nothing is retrained.
    stamp = (out / "history_ar_sft.csv").stat().st_mtime
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    assert (out / "history_ar_sft.csv").stat().st_mtime == stamp

    # Without the finished warm start the refit is redone from the cached AV explanations.
    shutil.rmtree(out / "nla-sft")
    stamp = (out / "av_explanations.parquet").stat().st_mtime
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    assert (out / "av_explanations.parquet").stat().st_mtime == stamp
    assert (out / "nla-sft" / "ar" / "nla_meta.yaml").is_file()
    assert len(pd.read_csv(out / "history_rl.csv")) == 2

    # Interrupted during the AV warm start: the finished AR warm start is loaded, not redone.
    for name in ("nla-sft", "nla-teacher-sft", "av_explanations.parquet", "history_av_sft.csv"):
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    stamp = (out / "history_ar_sft.csv").stat().st_mtime
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 0
    assert (out / "history_ar_sft.csv").stat().st_mtime == stamp
    assert len(pd.read_csv(out / "history_av_sft.csv")) == 3
    kept = load_file(out / "ar-teacher-sft" / "value_head.safetensors")["weight"]
    assert kept.equal(load_file(out / "nla-teacher-sft" / "ar" / "value_head.safetensors")["weight"])
