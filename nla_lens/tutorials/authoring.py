"""How course notebooks are written and read back: cell builders and the exercise format.

An exercise is four cells, built by :func:`exercise`:

1. a markdown cell with the task (title, difficulty, time estimate, what to implement);
2. a code cell tagged ``exercise`` with the stub the student fills in;
3. a code cell tagged ``test`` calling a ``nla_lens.tutorials.checks.check_*`` function;
4. a markdown cell tagged ``solution`` holding the reference code in a collapsed
   ``<details>`` block.

Cells 2 and 4 carry ``metadata["nla_lens"]["exercise"] = <name>``. :func:`with_solutions`
returns a copy of a notebook in which every exercise stub is replaced by its solution; the CI
test executes that copy, which proves the published solutions pass the visible tests, while
students open the stubs. Notebooks are written without outputs (:func:`write`).

A long-running cell is built by :func:`timed_cells`: the code cell carries
``metadata["nla_lens"]["timed"] = <key>`` (``scripts/time_course.py`` records its seconds under that
key in ``tutorials/timings.json``), and a note before it says how long it takes in full and lab mode,
from those measurements.
"""

from __future__ import annotations

import copy
import os
import re
import time
from pathlib import Path
from typing import Any

from nla_lens.optional import require
from nla_lens.tutorials.timings import timing_note

nbformat = require("nbformat", "Building the tutorials")
new_code_cell, new_markdown_cell, new_notebook = (
    require("nbformat.v4").new_code_cell,
    require("nbformat.v4").new_markdown_cell,
    require("nbformat.v4").new_notebook,
)

_SOLUTION_RE = re.compile(r"```python\n(.*?)\n```", re.DOTALL)
#: How an exercise's difficulty reads, in words: emoji render as missing-glyph boxes where no emoji
#: font is installed (Debian's Chromium without fonts-noto-color-emoji, for one).
DIFFICULTY = {1: "1 of 3 (easy)", 2: "2 of 3 (medium)", 3: "3 of 3 (hard)"}


def md(text: str, **meta: Any) -> Any:
    """A markdown cell (leading/trailing blank lines stripped)."""
    return new_markdown_cell(text.strip("\n"), **meta)


def code(text: str, *, tags: tuple[str, ...] = (), **meta: Any) -> Any:
    """A code cell without outputs."""
    cell = new_code_cell(text.strip("\n"), **meta)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def timed_cells(
    text: str, key: str, *, timings: dict[str, Any], notebook: str, steps: dict[str, int] | None = None
) -> list[Any]:
    """A long-running code cell keyed ``key``, after its measured :func:`timing_note` (when there is one)."""
    cell = code(text)
    cell.metadata["nla_lens"] = {"timed": key}
    note = timing_note(timings, notebook, key, steps=steps)
    return [md(note), cell] if note else [cell]


def exercise(
    name: str, title: str, *, difficulty: int, minutes: int, task: str, stub: str, solution: str, test: str
) -> list[Any]:
    """The four cells of one exercise (see the module docstring)."""
    header = (
        f"### Exercise: {title}\n\n> **Difficulty** {DIFFICULTY[difficulty]} · **Time** ~{minutes} min\n\n"
        + task.strip("\n")
    )
    stub_cell = code(stub, tags=("exercise",))
    stub_cell.metadata["nla_lens"] = {"exercise": name}
    solution_cell = md(f"<details><summary>Solution</summary>\n\n```python\n{solution.strip()}\n```\n\n</details>")
    solution_cell.metadata["tags"] = ["solution"]
    solution_cell.metadata["nla_lens"] = {"exercise": name}
    return [md(header), stub_cell, code(test, tags=("test",)), solution_cell]


def notebook(cells: list[Any]) -> Any:
    """A notebook with the python3 kernel and no outputs."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def write(nb: Any, path: str | Path) -> Path:
    """Validate and write ``nb`` without outputs (deterministic cell ids, so rebuilds diff cleanly)."""
    path = Path(path)
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem[:40]}-{index:03d}".replace("_", "-")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path


def build_all(builders: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write ``{name: build() -> cells}`` as ``folder/{name}.ipynb``; the ``_build.py`` scripts' main."""
    folder = Path(folder)
    paths = [write(notebook(build()), folder / f"{name}.ipynb") for name, build in builders.items()]
    for path in paths:
        print("wrote", path.relative_to(folder.parent))
    return paths


#: The kernel environment of an executed course notebook: offline, no tokenizer threads, no display.
KERNEL_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MPLBACKEND": "Agg",
}


def execute(path: str | Path, mode: str, *, timeout: int) -> tuple[Any, float]:
    """Run a course notebook top to bottom in a fresh kernel, as CI and ``scripts/time_course.py`` do.

    Exercise stubs are replaced by their solutions (:func:`with_solutions`); the kernel gets
    :data:`KERNEL_ENV`, ``NLA_LENS_MODE=mode`` and, unless set, ``OMP_NUM_THREADS`` = every core
    (each kernel has the machine to itself: ``Mode.setup`` would otherwise read the load the previous
    notebook left in the one-minute average as a busy machine, and take one thread). nbclient
    records each cell's execution timestamps in ``cell.metadata.execution``.

    Args:
        path: The ``.ipynb`` file.
        mode: ``"full"``, ``"lab"`` or ``"smoke"``.
        timeout: Seconds allowed per cell.

    Returns:
        ``(executed notebook, wall seconds)``.
    """
    client_class = require("nbclient", "Executing the course notebooks").NotebookClient
    path = Path(path)
    nb = with_solutions(nbformat.read(path, as_version=4))
    env = {**os.environ, **KERNEL_ENV, "NLA_LENS_MODE": mode}
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    client = client_class(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute(env=env)
    return nb, time.perf_counter() - start


def exercise_name(cell: Any) -> str | None:
    """The exercise a cell belongs to, or ``None``."""
    return (cell.get("metadata", {}).get("nla_lens") or {}).get("exercise")


def tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def solution_code(cell: Any) -> str:
    """The python code inside a ``solution`` markdown cell's ``<details>`` block."""
    match = _SOLUTION_RE.search(cell.source)
    if match is None:
        raise ValueError(f"Solution cell of {exercise_name(cell)!r} has no ```python block.")
    return match.group(1)


def exercises(nb: Any) -> dict[str, dict[str, Any]]:
    """``{name: {"stub": str, "solution": str, "test": str}}`` for every exercise of a notebook.

    Raises:
        ValueError: An exercise without a solution, or a test cell, or listed twice.
    """
    found: dict[str, dict[str, Any]] = {}
    cells = nb.cells
    for index, cell in enumerate(cells):
        name = exercise_name(cell)
        if name is None or "exercise" not in tags(cell):
            continue
        if name in found:
            raise ValueError(f"Exercise {name!r} appears twice.")
        test = next((c for c in cells[index + 1 :] if "test" in tags(c)), None)
        solution = next((c for c in cells if "solution" in tags(c) and exercise_name(c) == name), None)
        if test is None or solution is None:
            raise ValueError(f"Exercise {name!r} lacks its {'test' if test is None else 'solution'} cell.")
        found[name] = {"stub": cell.source, "solution": solution_code(solution), "test": test.source}
    return found


def with_solutions(nb: Any) -> Any:
    """A copy of ``nb`` with every ``exercise`` cell's source replaced by its solution."""
    nb = copy.deepcopy(nb)
    solutions = {name: parts["solution"] for name, parts in exercises(nb).items()}
    for cell in nb.cells:
        name = exercise_name(cell)
        if "exercise" in tags(cell) and name is not None and name in solutions:
            cell.source = solutions[name]
    return nb
