"""Sphinx configuration of the nla_lens documentation site.

Build it as CI does (warnings are errors, so a broken link or a docstring Sphinx cannot read fails):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Sphinx rather than mkdocs: the docstrings are reStructuredText roles (``:func:``, ````code````) with
Google-style sections, which autodoc and napoleon read as written (TransformerLens builds its site
the same way). Pages are MyST Markdown; the course notebooks are rendered, never executed here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "nla_lens"
author = "the nla_lens authors"
copyright = "2026, the nla_lens authors"

extensions = [
    "myst_nb",  # MyST Markdown pages and .ipynb notebooks (myst_parser comes with it)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_copybutton",
]

html_theme = "furo"
html_title = "nla_lens"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# The course is rendered as committed (without outputs): nothing runs at build time.
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# One page per module, generated from the docstrings (docs/api.md starts the tree).
autosummary_generate = True
autosummary_imported_members = False
# ignore-module-all: a package page documents what it defines, not what its `__all__` re-exports
# (those are documented once, in the module that defines them).
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
add_module_names = False

suppress_warnings = ["myst.header"]  # notebooks start their sections at level 2 after a title cell


def _copy_course() -> None:
    """Copy the course and research notebooks under docs/course/ (git ignores the copies).

    Sphinx reads sources only below its source folder; the notebooks stay where users run them.
    """
    for folder in ("tutorials", "notebooks"):
        target = DOCS / "course" / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for notebook in sorted((ROOT / folder).glob("[0-9]*.ipynb")):
            shutil.copy2(notebook, target / notebook.name)


_copy_course()


# napoleon reads the first line of a constant's or attribute's docstring as "type: description", so
# "Reward floor (...) for failed samples: missing tag, ..." would render its first half as a type.
# nla_lens's constants and attributes describe themselves in prose: keep those docstrings as written.
_as_written: dict[str, list[str]] = {}


def _keep_attribute_docstring(app, what, name, obj, options, lines) -> None:
    if what in ("data", "attribute"):
        _as_written[name] = list(lines)


def _restore_attribute_docstring(app, what, name, obj, options, lines) -> None:
    if what in ("data", "attribute") and name in _as_written:
        lines[:] = _as_written.pop(name)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _keep_attribute_docstring, priority=100)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=900)
