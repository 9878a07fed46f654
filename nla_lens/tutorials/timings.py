"""The course's measured times (``tutorials/timings.json``) and what is written from them.

``scripts/time_course.py`` executes each tutorial at one size (full or lab) on a quiet machine and
records every code cell's seconds, ``{mode: {notebook: {"total_s", "machine", "date", "cells":
[{"id", "timed", "section", "first_line", "seconds"}]}}}``. From that file, and only from it,
come the note before each long cell (:func:`timing_note`), the course table of
``tutorials/README.md`` (:func:`course_table`) and the minutes per section of the instructor's
lab plan (:func:`section_minutes`); ``tutorials/_build.py`` writes them between
``<!-- name -->`` / ``<!-- /name -->`` markers (:func:`replace_block`).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

__all__ = [
    "NOTE_FROM_SECONDS",
    "compute_minutes",
    "course_table",
    "header_minutes",
    "lab_plan_table",
    "replace_block",
    "section_minutes",
    "timing_note",
]

#: Cells shorter than this in full mode get no note: a few seconds need no warning.
NOTE_FROM_SECONDS = 20.0


def timing_note(timings: dict[str, Any], notebook: str, key: str, *, steps: dict[str, int] | None = None) -> str | None:
    """The sentence before a long cell: its measured minutes in full and lab mode, and per step.

    Args:
        timings: ``tutorials/timings.json`` as written by ``scripts/time_course.py``:
            ``{mode: {notebook: {"machine", "cells": [{"timed", "seconds", ...}]}}}``.
        notebook: The notebook's file stem.
        key: The cell's ``timed`` key.
        steps: Training steps the cell runs per mode (``{"full": 30, "lab": 10}``), to say how long
            each step takes (the dashboard's first point appears after the first one).

    Returns:
        The note, or ``None`` while the cell has no full-mode measurement or takes less than
        :data:`NOTE_FROM_SECONDS` in full mode.
    """

    def seconds(mode: str) -> float | None:
        cells = timings.get(mode, {}).get(notebook, {}).get("cells", [])
        found = [c["seconds"] for c in cells if c.get("timed") == key]
        return found[0] if found else None

    def duration(s: float) -> str:
        return f"{max(5, round(s / 5) * 5):.0f} s" if s < 90 else f"{round(s / 30) / 2:g} min"

    full = seconds("full")
    if full is None or full < NOTE_FROM_SECONDS:
        return None
    lab = seconds("lab")
    text = f"This cell takes about {duration(full)} in full mode"
    if lab is not None and abs(lab - full) > 0.15 * full:
        text += f" and {duration(lab)} in lab mode"
    if steps and steps.get("full"):
        text += (
            f" (about {duration(full / steps['full'])} per step: the dashboard draws its first point after the first)"
        )
    return f"*{text}, measured on a 2-core CPU with nothing else running.*"


def header_minutes(cells: list[Any]) -> tuple[int, int]:
    """``(advertised, exercises)``: a tutorial's advertised minutes (its header) and its exercises' minutes."""
    advertised = re.search(r"\*\*Time\*\* about (\d+) minutes", cells[0].source)
    if advertised is None:
        raise ValueError("the tutorial's first cell does not say '**Time** about N minutes'")
    exercises = sum(
        int(m) for c in cells if c.cell_type == "markdown" for m in re.findall(r"\*\*Time\*\* ~(\d+) min", c.source)
    )
    return int(advertised.group(1)), exercises


def compute_minutes(timings: dict[str, Any], mode: str, notebook: str) -> float:
    """Minutes one notebook's code cells took in ``mode`` (the kernel's start-up not included)."""
    return sum(cell["seconds"] for cell in timings[mode][notebook]["cells"]) / 60


def section_minutes(timings: dict[str, Any], notebook: str) -> pd.DataFrame:
    """Compute minutes per ``##`` section of one notebook, a column per measured mode (full, lab)."""
    rows = [
        {"section": cell["section"] or "(setup)", "mode": mode, "minutes": cell["seconds"] / 60}
        for mode in ("full", "lab")
        for cell in timings.get(mode, {}).get(notebook, {}).get("cells", [])
    ]
    return pd.DataFrame(rows).pivot_table(index="section", columns="mode", values="minutes", aggfunc="sum", sort=False)


def course_table(timings: dict[str, Any], tutorials: dict[str, list[Any]]) -> str:
    """The markdown table of every tutorial's advertised time against its measured compute.

    Args:
        timings: ``tutorials/timings.json``.
        tutorials: ``{notebook stem: its cells}``, in course order.

    Returns:
        A markdown table: advertised minutes, exercise minutes, compute minutes in full and lab mode,
        and how many times slower than the measuring machine a student's share of a machine may be
        for lab mode still to fit (the advertised time less the exercises, over lab compute).
    """
    lines = [
        "| tutorial | advertised | exercises | compute, full | compute, lab | lab fits a machine up to |",
        "|---|---|---|---|---|---|",
    ]
    for stem, cells in tutorials.items():
        advertised, exercises = header_minutes(cells)
        full, lab = (compute_minutes(timings, mode, stem) for mode in ("full", "lab"))
        lines.append(
            f"| {stem[:2].lstrip('0')} | {advertised} min | {exercises} min | {full:.1f} min | {lab:.1f} min | "
            f"{(advertised - exercises) / lab:.0f}x slower |"
        )
    return "\n".join(lines)


def lab_plan_table(timings: dict[str, Any], plan: list[tuple[str, str | None, list[str] | None, str]]) -> str:
    """The instructor's lab plan as a markdown table, each row's compute minutes from the measurements.

    Args:
        timings: ``tutorials/timings.json``.
        plan: Rows ``(clock, notebook stem or None, its sections or None for all, what happens)``.

    Returns:
        A markdown table: clock, what happens, and the measured compute minutes of the named sections
        in full and lab mode (blank for rows with no notebook).
    """
    lines = ["| time | what | compute, full | compute, lab |", "|---|---|---|---|"]
    for clock, notebook, sections, what in plan:
        cells = ["", ""]
        if notebook is not None:
            minutes = section_minutes(timings, notebook)
            if sections is not None:
                unknown = set(sections) - set(minutes.index)
                if unknown:
                    raise ValueError(f"{notebook} has no section {sorted(unknown)}: sections are {list(minutes.index)}")
                minutes = minutes.loc[sections]
            cells = [f"{minutes[mode].sum():.1f} min" for mode in ("full", "lab")]
        lines.append(f"| {clock} | {what} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with what stands between ``<!-- name -->`` and ``<!-- /name -->`` replaced by ``content``."""
    pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n)(?:.*?\n)?(<!-- /{re.escape(name)} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name} --> ... <!-- /{name} --> block to fill")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(2), text)
