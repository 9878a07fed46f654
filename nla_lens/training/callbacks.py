"""Trainer callbacks: the hooks a progress view, a widget or a stop file attaches to a training run.

Kept apart from :mod:`nla_lens.training.base` so that views (the dashboard) import the callback
interface without importing the trainer: callbacks see the trainer as :class:`TrainerLike`, the
part of :class:`~nla_lens.training.base.Trainer` they read, so this module imports nothing of the
trainer's, not even for annotations (and ``widgets`` never reaches back to ``training.base``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

__all__ = ["StopFileCallback", "TrainerCallback", "TrainerLike"]


class TrainerLike(Protocol):
    """What a callback reads from the trainer that calls it (every
    :class:`~nla_lens.training.base.Trainer` has it). A callback that needs more of a particular
    trainer (its ``history``, ``nla``, ``last_samples``) reads it with ``getattr`` or narrows the type."""

    @property
    def step_count(self) -> int:
        """Steps completed so far."""
        ...

    @property
    def records(self) -> list[dict[str, Any]]:
        """One metrics row per completed step (``history`` is their DataFrame)."""
        ...

    @property
    def callbacks(self) -> list[TrainerCallback]:
        """The callbacks every ``train`` / ``step`` calls (a callback may add itself)."""
        ...

    def request_stop(self) -> None:
        """Ask ``train`` to stop cleanly after the current step."""
        ...


class TrainerCallback:
    """Subclass and override what you need; every method is a no-op by default."""

    def on_train_begin(self, trainer: TrainerLike, n_steps: int) -> None: ...

    def on_step(self, trainer: TrainerLike, metrics: dict[str, Any]) -> None: ...

    def on_eval(self, trainer: TrainerLike, metrics: dict[str, Any]) -> None: ...

    def on_checkpoint(self, trainer: TrainerLike, path: Path) -> None: ...

    def on_train_end(self, trainer: TrainerLike) -> None: ...


class StopFileCallback(TrainerCallback):
    """Stop training cleanly when a file appears (for runs in the background, where Ctrl-C cannot reach).

    ``touch {run}/STOP`` ends the current stage after its step; the file is removed so the next
    stage runs.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_step(self, trainer: TrainerLike, metrics: dict[str, Any]) -> None:
        if self.path.exists():
            self.path.unlink(missing_ok=True)
            trainer.request_stop()
