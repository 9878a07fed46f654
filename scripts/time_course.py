"""Time every cell of the course notebooks at one size, and keep the measurements for the docs.

    python scripts/time_course.py --mode full               # the six tutorials, full size
    python scripts/time_course.py --mode lab tutorials/04_training_an_nla.ipynb

Each notebook runs top to bottom through ``nbclient`` (exercise stubs replaced by their solutions,
as CI runs them), in a fresh kernel with ``NLA_LENS_MODE`` set, on a machine left alone: run
``nla-lens prepare-course`` first, as an instructor would, so the SAE and model caches exist. The
seconds of every code cell (nbclient's execution timestamps) go into ``tutorials/timings.json``
under the mode, with the section heading each cell sits under and the machine's CPU line; the
tutorials' long-cell notes, ``tutorials/README.md``'s table and the instructor's lab plan are
written from that file (``python tutorials/_build.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import nbformat
import pandas as pd

from nla_lens.tutorials.mode import SIZES

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tutorials" / "timings.json"


def _seconds(cell: nbformat.NotebookNode) -> float:
    """Wall seconds nbclient recorded for one executed code cell."""
    execution = cell.metadata.get("execution", {})
    start = execution.get("iopub.execute_input") or execution.get("shell.execute_request")
    end = execution.get("shell.execute_reply")
    if not (start and end):
        raise RuntimeError("nbclient recorded no timing for a cell: is record_timing off?")
    parse = dt.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def time_notebook(path: Path, mode: str, *, timeout: int = 3600) -> dict:
    """Execute one notebook at ``mode``; return its total and per-cell seconds.

    Returns:
        ``{"total_s", "cells": [{"id", "timed", "section", "first_line", "seconds"}]}``: ``id`` is
        the cell's id, ``timed`` its ``metadata.nla_lens.timed`` key (long cells; ``None`` for the
        rest), ``section`` the ``##`` heading above it.
    """
    from nla_lens.tutorials import authoring

    nb, total = authoring.execute(path, mode, timeout=timeout)
    cells, section = [], ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("## ")]
            section = headings[-1] if headings else section
            continue
        if cell.cell_type != "code":
            continue
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        timed = (cell.metadata.get("nla_lens") or {}).get("timed")
        cells.append(
            {
                "id": cell.get("id"),
                "timed": timed,
                "section": section,
                "first_line": first[:80],
                "seconds": round(_seconds(cell), 1),
            }
        )
    return {"total_s": round(total, 1), "cells": cells}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every tutorial")
    parser.add_argument("--mode", choices=SIZES)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--table", action="store_true", help="print the minutes per section in markdown; run nothing")
    args = parser.parse_args(argv)
    if args.table:
        from nla_lens.tutorials.timings import section_minutes

        record = json.loads(args.out.read_text())
        for notebook in record.get("full", {}):
            print(f"\n{notebook}\n" + section_minutes(record, notebook).round(1).to_markdown())
        return 0

    if args.mode is None:
        parser.error("--mode is required (or --table)")
    from nla_lens.precision import capability

    paths = args.notebooks or sorted((ROOT / "tutorials").glob("[0-9]*.ipynb"))
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    machine = f"{capability()}; {os.cpu_count()} cores; load before {os.getloadavg()[0]:.1f}"
    print(machine, flush=True)
    for path in paths:
        result = time_notebook(path, args.mode)
        result.update(machine=machine, date=dt.date.today().isoformat())
        record.setdefault(args.mode, {})[path.stem] = result
        # Written after each notebook: a cut run keeps what it measured.
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        slow = pd.DataFrame(result["cells"]).query("seconds >= 10")[["id", "timed", "section", "first_line", "seconds"]]
        print(f"\n{path.stem} ({args.mode}): {result['total_s'] / 60:.1f} min", flush=True)
        if not slow.empty:
            print(slow.to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
