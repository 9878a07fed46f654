"""An append-only JSON-lines cache of paid-for teacher answers.

One line per answer, keyed by the sha256 of (provider, model, prompt text). Each answer is
appended and flushed the moment it arrives, so an interrupted run, a crash or an endpoint that
starts failing loses nothing already received; a half-written last line is skipped on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from nla_lens.errors import CacheError

CACHE_FILE = "answers.jsonl"


def cache_key(provider: str, model: str, prompt_text: str) -> str:
    """sha256 hex digest identifying one request."""
    return hashlib.sha256(json.dumps([provider, model, prompt_text]).encode("utf-8")).hexdigest()


class AnswerCache:
    """Answers on disk at ``folder/answers.jsonl``, safe to append to from several threads.

    Args:
        folder: Cache folder (created on first write).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / CACHE_FILE
        self._lock = threading.Lock()

    def load(self) -> dict[str, str]:
        """Every complete cached answer, ``key -> text`` (later lines win)."""
        answers: dict[str, str] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return answers
        except OSError as exc:
            raise CacheError(
                f"Cannot read the teacher cache {self.path}: {exc}. Delete it or pass another cache_dir."
            ) from exc
        for line in lines:
            try:
                entry = json.loads(line)
                answers[entry["key"]] = entry["text"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
        return answers

    def put(self, key: str, text: str, **info: str) -> None:
        """Append one answer and flush it to disk."""
        line = json.dumps({"key": key, **info, "text": text}, ensure_ascii=False)
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                with self.path.open("a+b") as fh:
                    fh.seek(0, os.SEEK_END)
                    if fh.tell():  # start on a fresh line even after a crash mid-line
                        fh.seek(-1, os.SEEK_END)
                        if fh.read(1) != b"\n":
                            fh.write(b"\n")
                    fh.write(line.encode("utf-8") + b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise CacheError(f"Cannot write the teacher cache {self.path}: {exc}. Pass another cache_dir.") from exc
