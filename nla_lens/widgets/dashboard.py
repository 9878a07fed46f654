"""The live training dashboard: :class:`NLADashboard`, an anywidget that is a trainer callback.

Owns the widget's synced state (metric history, latest samples, step counter, clock, status and
the stop request), the trainer callbacks that fill it, and ``dashboard_for``, which
``Trainer.train(dashboard=...)`` calls. Everything the view draws lives in synced traitlets, so a
saved notebook's widget state redraws the final curves without a kernel. The view itself is the
inline ES module ``dashboard.js`` with ``dashboard.css``: hand-built SVG, no plotting library,
nothing fetched from the network.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nla_lens.errors import InputError
from nla_lens.jsonable import json_safe
from nla_lens.optional import require
from nla_lens.training.callbacks import TrainerCallback, TrainerLike
from nla_lens.widgets.assets import asset

if TYPE_CHECKING:  # the real module, so that the class below has a base class mypy knows
    import anywidget
else:
    anywidget = require("anywidget", "NLADashboard")
traitlets = require("traitlets", "NLADashboard")


#: Metric columns copied into ``NLADashboard.history`` (the ones the view plots, plus ``step``).
PLOTTED: tuple[str, ...] = (
    "step",
    "loss",
    "ar_loss",
    "eval_fve_nrm",
    "eval_fve_nrm_shuffled",
    "reward_mean",
    "reward_std",
    "eval_reward_mean",
    "kl",
    "response_length",
)
STATUSES: tuple[str, ...] = ("idle", "running", "stopping", "stopped", "done")


def _row(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: json_safe(metrics[key]) for key in PLOTTED if key in metrics}


def _has_eval(row: dict[str, Any]) -> bool:
    return any(key.startswith("eval_") and value is not None for key, value in row.items())


def thin(rows: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    """Drop every other row until at most ``max_points`` remain.

    Evaluation rows (rare, and the only points of the held-out curves) and the latest row are
    kept while that is enough; otherwise every other row goes regardless.
    """
    while len(rows) > max_points:
        last = len(rows) - 1
        kept = [r for i, r in enumerate(rows) if i % 2 == 0 or i == last or _has_eval(r)]
        if len(kept) > max_points:
            kept = [r for i, r in enumerate(rows) if i % 2 == 0 or i == last]
        rows = kept
    return rows


def _samples(trainer: TrainerLike, limit: int) -> list[dict[str, Any]] | None:
    """The first ``limit`` rows of ``trainer.last_samples``, or ``None`` if it has none."""
    frame = getattr(trainer, "last_samples", None)
    if frame is None:
        return None
    out = []
    for record in frame.head(limit).to_dict("records"):
        row = {
            "explanation": str(record.get("explanation", "")),
            "reward": json_safe(record.get("reward")),
            "failed": bool(record.get("failed", False)),
        }
        if "vector" in record:
            row["vector"] = json_safe(record["vector"])
        out.append(row)
    return out


class NLADashboard(anywidget.AnyWidget, TrainerCallback):
    """Live training curves, the latest samples and a stop button for a :class:`Trainer`.

    The view draws only the panels whose metrics exist: loss (``loss`` of a warm start,
    ``ar_loss`` of GRPO), held-out ``eval_fve_nrm`` with its shuffled control dashed,
    ``reward_mean`` with a ±``reward_std`` band, ``kl`` and ``response_length``.

    Args:
        trainer: The trainer to follow. Its existing ``records`` seed the history.
        max_points: Most rows kept in ``history``; older rows are thinned beyond it.
        max_samples: Rows of ``trainer.last_samples`` shown.
        title: Header text (default: the trainer's class name).
        attach: Register on ``trainer.callbacks`` now, so every later ``train``/``step``
            updates it (``Trainer.train(dashboard=True)`` passes ``False`` and uses it for
            that call only).

    Example::

        board = NLADashboard(trainer)
        board            # display it, then
        trainer.train(500)
    """

    _esm = asset("dashboard.js")
    _css = asset("dashboard.css")

    history = traitlets.List(traitlets.Dict(), help="One JSON-safe row of PLOTTED metrics per step.").tag(sync=True)
    samples = traitlets.List(traitlets.Dict(), help="Latest explanations: explanation, reward, failed.").tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    total_steps = traitlets.Int(0, help="Step the current train() call ends at.").tag(sync=True)
    elapsed = traitlets.Float(0.0, help="Seconds since the current train() call began.").tag(sync=True)
    eta = traitlets.Float(None, allow_none=True, help="Estimated seconds left (None: unknown).").tag(sync=True)
    status = traitlets.Enum(STATUSES, default_value="idle").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    stop_requested = traitlets.Bool(False, help="Set by the view's stop button.").tag(sync=True)

    def __init__(
        self,
        trainer: TrainerLike,
        *,
        max_points: int = 2000,
        max_samples: int = 8,
        title: str | None = None,
        attach: bool = True,
        **kwargs: Any,
    ):
        if max_points < 4:
            raise InputError(f"max_points must be >= 4, got {max_points}.")
        super().__init__(title=type(trainer).__name__ if title is None else title, **kwargs)
        self.trainer = trainer
        self.max_points = max_points
        self.max_samples = max_samples
        self._started: float | None = None
        self._first_step = 0
        with self.hold_sync():
            self.history = thin([_row(r) for r in trainer.records], max_points)
            self.samples = _samples(trainer, max_samples) or []
            self.step = trainer.step_count
        if attach and self not in trainer.callbacks:
            trainer.callbacks.append(self)
        self._watch_comm()

    def __repr__(self) -> str:
        return (
            f"NLADashboard(title={self.title!r}, step={self.step}/{self.total_steps}, "
            f"status={self.status!r}, points={len(self.history)})"
        )

    def show(self) -> NLADashboard:
        """Display the widget when running under IPython; a no-op elsewhere. Returns ``self``."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return self
        if get_ipython() is not None:
            display(self)
        return self

    # -- trainer callbacks ---------------------------------------------------------------------
    def on_train_begin(self, trainer: TrainerLike, n_steps: int) -> None:
        self.trainer = trainer
        self._started = time.perf_counter()
        self._first_step = trainer.step_count
        with self.hold_sync():
            self.stop_requested = False
            self.step = trainer.step_count
            self.total_steps = trainer.step_count + n_steps
            self.elapsed, self.eta = 0.0, None
            self.status = "running"

    def on_step(self, trainer: TrainerLike, metrics: dict[str, Any]) -> None:
        with self.hold_sync():
            self.history = thin([*self.history, _row(metrics)], self.max_points)
            samples = _samples(trainer, self.max_samples)
            if samples is not None:
                self.samples = samples
            self.step = trainer.step_count
            if self._started is not None:
                self.elapsed = time.perf_counter() - self._started
                done = trainer.step_count - self._first_step
                left = max(self.total_steps - trainer.step_count, 0)
                self.eta = self.elapsed / done * left if done > 0 else None

    def on_train_end(self, trainer: TrainerLike) -> None:
        with self.hold_sync():
            if self._started is not None:
                self.elapsed = time.perf_counter() - self._started
            finished = trainer.step_count >= self.total_steps
            self.eta = 0.0 if finished else None
            self.status = "done" if finished else "stopped"
        self._started = None

    # -- the stop button -----------------------------------------------------------------------
    @traitlets.observe("stop_requested")
    def _on_stop_requested(self, change: dict[str, Any]) -> None:
        if change["new"] and self.status == "running":
            self.trainer.request_stop()
            self.status = "stopping"

    def _watch_comm(self) -> None:
        """Let the stop button reach a kernel that is busy running ``train``.

        While a cell runs, ipykernel queues the view's messages until the cell ends, so the
        ``stop_requested`` update would arrive too late. ipykernel >= 7 routes each incoming
        comm message on its shell-channel thread through ``comm._reply_subshell_for(data,
        default)``; wrapping that hook lets us see the stop request as it arrives and set the
        trainer's stop flag (a plain bool) from that thread. The message itself is still
        delivered normally. Older kernels never call the hook: the button then acts when the
        kernel is next idle (between ``step()`` calls, or after ``train`` returns).

        ``_reply_subshell_for`` is private to ipykernel: no public API (ipykernel's, comm's,
        ipywidgets' or anywidget's) delivers a widget message to Python code while the shell thread
        runs a cell, so this is the one place nla_lens reaches into ipykernel, guarded (a kernel
        without the hook is left alone). ``touch {run}/STOP`` (:class:`~nla_lens.training.callbacks.StopFileCallback`) is the
        public way to stop a busy run.
        """
        comm = getattr(self, "comm", None)
        if comm is None:
            return
        route = getattr(comm, "_reply_subshell_for", None)

        def peek(data: Any, default: Any) -> Any:
            try:
                state = data.get("state") if isinstance(data, dict) and data.get("method") == "update" else None
                if isinstance(state, dict) and state.get("stop_requested") is True and self.status == "running":
                    self.trainer.request_stop()
            except Exception:
                pass
            return route(data, default) if route is not None else default

        comm._reply_subshell_for = peek


def dashboard_for(trainer: TrainerLike, dashboard: bool | NLADashboard) -> NLADashboard:
    """The dashboard ``Trainer.train(dashboard=...)`` uses.

    Args:
        trainer: The trainer about to train.
        dashboard: ``True`` makes a new, unattached dashboard and displays it (under IPython);
            an :class:`NLADashboard` is returned as is.
    """
    if isinstance(dashboard, NLADashboard):
        return dashboard
    if dashboard is True:
        return NLADashboard(trainer, attach=False).show()
    raise InputError(f"dashboard= takes True, False or an NLADashboard, got {type(dashboard).__name__}.")
