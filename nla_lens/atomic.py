"""Atomic folder writes: build beside the target, then swap it in with renames.

Used for every folder nla_lens writes (activation datasets, NLA checkpoints, trainer
checkpoints), so an interrupted or killed save never leaves a half-written folder where a
complete one is expected. The folder it swaps in has the modes a plain ``mkdir`` and ``open`` would
give (0755 folders and 0644 files under the usual umask 022), not the private 0700/0600 of temporary
files, so another user of a shared machine can read what was saved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename.

    On any error (or KeyboardInterrupt) the temporary folder is removed and an existing
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        _public_modes(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    """The process umask (read without changing it where Linux reports it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _public_modes(root: Path) -> None:
    """Give ``root`` and everything in it the modes of a normal ``mkdir``/``open`` under the umask.

    Temporary folders are created 0700 and some writers create files 0600 (through temporary
    files); execute bits of files are kept.
    """
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o777 & ~mask)
        for name in files:
            file = os.path.join(folder, name)
            if not os.path.islink(file):
                executable = os.stat(file).st_mode & 0o111
                os.chmod(file, (0o777 if executable else 0o666) & ~mask)
