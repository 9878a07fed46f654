"""The data and warm-start stages of the smoke run (the ``smoke_run`` fixture): the teacher's
explanations, the AV's own split of the same documents, and the AR refit on the AV's explanations."""

from __future__ import annotations

import pandas as pd
import pytest
from safetensors.torch import load_file

from nla_lens.data.dataset import ActivationDataset

pytestmark = pytest.mark.embedded


def test_teacher_explanations_name_the_current_token(smoke_run):
    out, _ = smoke_run
    teacher = pd.read_parquet(out / "teacher_explanations.parquet")["explanation"]
    assert teacher.str.contains("Current token:").all()


def test_the_av_warm_start_reads_its_split_drawn_with_more_positions_of_the_same_documents(smoke_run):
    out, _ = smoke_run
    main_av = ActivationDataset.load(out / "activations").split("av_sft")
    av_split = ActivationDataset.load(out / "activations_av")
    assert av_split.splits == {"av_sft": len(av_split)} and len(av_split) > len(main_av)
    assert set(av_split.frame["doc_id"]) == set(main_av.frame["doc_id"])
    assert len(pd.read_parquet(out / "teacher_explanations_av.parquet")) == len(av_split)


def test_the_ar_refit_trains_the_reconstructor_on_the_avs_own_explanations(smoke_run):
    # The AR refit trained the reconstructor that ends the warm start, on the AV's own explanations;
    # the verbalizer is the teacher-warm-started one.
    out, _ = smoke_run
    refit = pd.read_parquet(out / "av_explanations.parquet")
    assert len(refit) > 0 and refit["explanation"].str.len().gt(0).any()
    assert len(pd.read_csv(out / "history_ar_refit.csv")) == 2
    before = load_file(out / "nla-teacher-sft" / "ar" / "value_head.safetensors")
    after = load_file(out / "nla-sft" / "ar" / "value_head.safetensors")
    assert any(not before[k].equal(after[k]) for k in before)
    av_before = load_file(out / "nla-teacher-sft" / "av" / "adapter_model.safetensors")
    av_after = load_file(out / "nla-sft" / "av" / "adapter_model.safetensors")
    assert all(av_before[k].equal(av_after[k]) for k in av_before)
