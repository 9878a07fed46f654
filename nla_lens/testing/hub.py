"""A local Hugging Face hub cache built on disk, so hub ids load offline in tests and smoke runs."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

__all__ = ["add_to_hub_cache"]


def add_to_hub_cache(folder: str | Path, cache: str | Path, repo_id: str) -> Path:
    """Place ``folder``'s files as the cached ``main`` snapshot of the model repo ``repo_id``.

    Writes the layout ``huggingface_hub`` reads (``models--org--name/snapshots/<commit>/`` and
    ``refs/main``), so ``snapshot_download(repo_id, cache_dir=cache)`` finds it with
    ``HF_HUB_OFFLINE=1``.

    Returns:
        The snapshot folder.
    """
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
