"""Rows of cells scored in an earlier run (the ones kept in the repository) are read, not retrained."""

from __future__ import annotations

import json

import pytest

from nla_lens.training.cross_architecture import SMOKE, cell_folder, run_cross_architecture


def test_finished_rows_are_read_not_retrained(tmp_path):
    row = dict(subject="smollm2-135m", base="gemma3-270m", seed=3, fve_nrm=0.25, current_token_control=0.2, words=9.0)
    table = run_cross_architecture(
        tmp_path, seeds=(3,), budget=SMOKE, subjects=("smollm2-135m",), bases=("gemma3-270m",), finished=[row]
    )
    folder = cell_folder(tmp_path, "smollm2-135m", "gemma3-270m", 3)
    assert not (folder / "nla").exists() and not (folder / "activations").exists()  # nothing was trained
    assert table["fve_nrm"].tolist() == [0.25]
    assert table["over_current_token"].tolist() == [pytest.approx(0.05)]
    assert json.loads((tmp_path / "rows.json").read_text()) == [row]
