"""The published-stack tier: nla_lens's exports read by plain transformers 4.57.1 (locks/tf457.txt).

It runs in an environment without nla_lens (.ci/run's fourth stage). ``scripts/export_reference.py``,
run in the main environment, writes the exports and nla_lens's outputs on them into a folder named
by ``NLA_LENS_EXPORT_REFERENCE``; without it the tests that need it skip, naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REFERENCE_ENV = "NLA_LENS_EXPORT_REFERENCE"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The folder scripts/export_reference.py wrote."""
    value = os.environ.get(REFERENCE_ENV)
    if not value:
        pytest.skip(
            f"needs the exports and reference outputs of scripts/export_reference.py: run it in the main "
            f"environment and set {REFERENCE_ENV} to its folder"
        )
    folder = Path(value)
    if not (folder / "reference.json").is_file():
        raise FileNotFoundError(f"{REFERENCE_ENV}={value} holds no reference.json; run scripts/export_reference.py")
    return folder
