"""The notes before long tutorial cells: read from the measurements, never invented."""

from __future__ import annotations

import pytest

pytest.importorskip("nbformat", reason="the notebooks extra (nbformat) builds notebook cells")

from nla_lens.tutorials.authoring import timed_cells
from nla_lens.tutorials.timings import timing_note


def _timings(full: float | None, lab: float | None = None) -> dict:
    def measured(seconds: float | None) -> dict:
        cells = [{"timed": "other", "seconds": 1.0}]
        if seconds is not None:
            cells.append({"timed": "train", "seconds": seconds})
        return {"04_training": {"cells": cells}}

    return {"full": measured(full), **({"lab": measured(lab)} if lab is not None else {})}


def test_a_cell_without_a_full_mode_measurement_or_a_short_one_gets_no_note():
    assert timing_note(_timings(None), "04_training", "train") is None
    assert timing_note(_timings(12.0), "04_training", "train") is None
    assert timing_note({}, "04_training", "train") is None
    cells = timed_cells("x = 1", "train", timings={}, notebook="04_training")
    assert [c.cell_type for c in cells] == ["code"] and cells[0].metadata["nla_lens"] == {"timed": "train"}


def test_the_note_gives_full_and_lab_times_from_the_measurements():
    note = timing_note(_timings(361.0, 118.0), "04_training", "train")
    assert "about 6 min in full mode" in note and "2 min in lab mode" in note
    assert "2-core" in note


def test_lab_mode_is_left_out_when_it_runs_the_same_size():
    note = timing_note(_timings(40.0, 42.0), "04_training", "train")
    assert "about 40 s in full mode" in note and "lab" not in note


def test_steps_give_the_time_of_one_step():
    note = timing_note(_timings(362.0), "04_training", "train", steps={"full": 2})
    assert "about 3 min per step" in note
    cells = timed_cells("x = 1", "train", timings=_timings(362.0), notebook="04_training", steps={"full": 2})
    assert [c.cell_type for c in cells] == ["markdown", "code"] and "per step" in cells[0].source
