"""Trainer callbacks: the hooks a progress view, a widget or a stop file attaches to a training run.

Kept apart from :mod:`nla_lens.training.base` so that views (the dashboard) import the callback
interface without importing the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the trainer imports this module, not the other way round
    from nla_lens.training.base import Trainer

__all__ = ["StopFileCallback", "TrainerCallback"]


class TrainerCallback:
    """Subclass and override what you need; every method is a no-op by default."""

    def on_train_begin(self, trainer: Trainer, n_steps: int) -> None: ...

    def on_step(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class StopFileCallback(TrainerCallback):
    """Stop training cleanly when a file appears (for runs in the background, where Ctrl-C cannot reach).

    ``touch {run}/STOP`` ends the current stage after its step; the file is removed so the next
    stage runs.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_step(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if self.path.exists():
            self.path.unlink(missing_ok=True)
            trainer.request_stop()
