"""The course's measured times (tutorials/timings.json, from scripts/time_course.py) against the notebooks.

The measurements are data, taken on a quiet 2-core machine; these tests check that the notebooks
say what was measured and fit what they promise: every long cell carries a note (its ``timed``
key), every keyed cell was measured at both sizes, and each tutorial's lab mode fits the time its
header advertises once its exercises' minutes are counted.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

from nla_lens.tutorials.timings import (
    NOTE_FROM_SECONDS,
    compute_minutes,
    course_table,
    header_minutes,
    lab_plan_table,
)

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted(ROOT.glob("tutorials/[0-9]*.ipynb"))
TIMINGS = json.loads((ROOT / "tutorials" / "timings.json").read_text())


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_every_long_cell_is_keyed_and_every_keyed_cell_measured(path):
    for mode in ("full", "lab"):
        assert path.stem in TIMINGS.get(mode, {}), f"{path.stem} has no {mode}-mode timing: run scripts/time_course.py"
    measured = TIMINGS["full"][path.stem]["cells"]
    # A cell at least as long as the notes' threshold must carry a note (its ``timed`` key).
    unkeyed = [c for c in measured if c["seconds"] >= NOTE_FROM_SECONDS and not c["timed"]]
    assert not unkeyed, f"cells over {NOTE_FROM_SECONDS} s without a timing note: {unkeyed}"
    keys = [(c.metadata.get("nla_lens") or {}).get("timed") for c in _cells(path) if c.cell_type == "code"]
    for mode in ("full", "lab"):
        known = {c["timed"] for c in TIMINGS[mode][path.stem]["cells"]}
        missing = {k for k in keys if k} - known
        assert not missing, f"{path.stem}: cells {missing} were never timed in {mode} mode"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_lab_mode_fits_the_advertised_time(path):
    advertised, exercises = header_minutes(_cells(path))
    compute = compute_minutes(TIMINGS, "lab", path.stem)
    assert compute + exercises <= advertised, (
        f"{path.stem}: lab mode computes {compute:.1f} min and its exercises take {exercises} min, over the "
        f"{advertised} min its header advertises"
    )


def test_the_course_table_and_the_lab_plan_show_the_measurements():
    spec = importlib.util.spec_from_file_location("tutorials_build", ROOT / "tutorials" / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    table = course_table(TIMINGS, {p.stem: _cells(p) for p in TUTORIALS})
    assert table in (ROOT / "tutorials" / "README.md").read_text(), "re-run python tutorials/_build.py"
    assert lab_plan_table(TIMINGS, build.LAB_PLAN) in (ROOT / "tutorials" / "INSTRUCTORS.md").read_text()
