"""Rows of cells scored in an earlier run (the ones kept in the repository) are read, not retrained."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_the_readme_shows_the_kept_rows():
    from nla_lens.training.cross_architecture import cross_architecture_markdown, cross_architecture_table

    root = Path(__file__).resolve().parents[2]
    rows = json.loads((root / "results" / "cross_architecture" / "rows.json").read_text())
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- cross-architecture -->\n")[1].split("<!-- /cross-architecture -->")[0]
    assert block == cross_architecture_markdown(cross_architecture_table(rows)), (
        "README's table differs from results/cross_architecture/rows.json: run python scripts/cross_architecture.py "
        "--finished results/cross_architecture/rows.json --table-only --readme"
    )
