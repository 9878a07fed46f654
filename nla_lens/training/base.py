"""The notebook-native trainer base: ``step()``, ``train(n)``, callbacks, history, checkpoints.

Every nla_lens trainer (AR/AV warm starts, joint GRPO) is a :class:`Trainer`: it owns a config
dataclass, a seeded data generator, a list of per-step metric rows (``history``, a pandas
DataFrame), callbacks (``on_step``, ``on_eval``, ``on_checkpoint``) for progress bars and live
widgets, periodic held-out evaluation, atomic checkpoints (weights, optimizer states, RNG states,
history) every N steps, ``resume_from`` a checkpoint, and a clean stop on ``KeyboardInterrupt``
or :meth:`Trainer.request_stop` (the dashboard's stop button).

We write our own loop rather than use ``transformers.Trainer``/TRL's trainers because those own
the loop (``train()`` only) and have no place for a step-at-a-time notebook API, a jointly
trained reconstructor, or vectors injected into every pass; ``accelerate`` still handles devices
and distribution, so ``accelerate launch`` scales the same code.

Data parallel (``accelerate launch --num_processes N``, or ``notebook_launcher``): every process
draws the same global batch of vector ids from the trainer's seeded generator and keeps its own
contiguous shard (:meth:`Trainer._shard`; ``N`` must divide the batch); losses are written so that
accelerate's gradient averaging gives exactly the combined batch's gradient; metrics are gathered,
so every process holds the same ``history``; only the main process runs callbacks (progress bars,
widgets, stop files — a stop request reaches every process) and writes checkpoints and
``history.csv``. A checkpoint records the world size and resumes only with the same one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from tqdm.auto import tqdm

from nla_lens.atomic import atomic_folder
from nla_lens.errors import CheckpointError, InputError
from nla_lens.jsonable import from_fields, json_safe
from nla_lens.optional import require
from nla_lens.precision import FrozenWeightCast, autocast, resolve_precision
from nla_lens.training.callbacks import TrainerCallback
from nla_lens.training.checkpoint import STATE_FILE, load_optimizer, load_rng, save_optimizer, save_rng

if TYPE_CHECKING:
    from nla_lens.widgets.dashboard import NLADashboard


@dataclasses.dataclass
class TrainerConfig:
    """Fields every trainer has.

    Attributes:
        seed: Seeds data order, sampling and dropout.
        eval_every: Evaluate on the held-out set every N steps (0: never).
        eval_size: Held-out vectors used per evaluation.
        checkpoint_every: Write a checkpoint every N steps (0: never); needs ``output_dir``.
        output_dir: Folder for ``checkpoint-{step}`` subfolders and ``history.csv`` (written with
            every checkpoint and at the end of ``train``).
        keep_checkpoints: Older checkpoints beyond this many are deleted.
        max_grad_norm: Gradient clipping.
        precision: ``"auto"`` (default), ``"fp32"`` or ``"bf16"`` (:mod:`nla_lens.precision`): the
            training step's matrix products run in bf16 under autocast where the hardware
            multiplies bf16 natively (``"auto"``), with float32 weights, optimizer states and
            losses; held-out evaluation always runs in float32.
    """

    seed: int = 0
    eval_every: int = 0
    eval_size: int = 32
    checkpoint_every: int = 0
    output_dir: str | None = None
    keep_checkpoints: int = 2
    max_grad_norm: float = 1.0
    precision: str = "auto"

    #: Fields a resumed run may change; any other difference refuses the resume.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("eval_every", "checkpoint_every", "output_dir", "keep_checkpoints")

    def __post_init__(self) -> None:
        for name in ("eval_every", "eval_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise InputError(f"{type(self).__name__}.{name} must be >= 0, got {getattr(self, name)}.")
        if self.checkpoint_every and not self.output_dir:
            raise InputError("checkpoint_every needs output_dir= (where checkpoints go).")
        resolve_precision(self.precision)  # a clear error for an unknown name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        return from_fields(cls, data)


def process_state() -> Any:
    """accelerate's ``PartialState`` (rank, world size, barriers), made as ``Accelerator()`` makes it.

    ``PartialState()`` alone ignores ``ACCELERATE_USE_CPU``, and the first state made is shared by
    everything after it: code that runs before a trainer (the recipe's data stages) would fix a
    multi-process CPU launch to one process. Reading the flag here keeps them the same world.
    """
    accelerate = require("accelerate", "Training")
    utils = require("accelerate.utils", "Training")
    return accelerate.PartialState(cpu=utils.parse_flag_from_env("ACCELERATE_USE_CPU"))


class Trainer:
    """Base class; subclasses implement ``_step``, ``_evaluate``, ``_modules`` and ``_optimizers``."""

    config_class: ClassVar[type[TrainerConfig]] = TrainerConfig

    def __init__(self, config: TrainerConfig | None = None, callbacks: Iterable[TrainerCallback] = ()):
        self.config = config or self.config_class()
        if not isinstance(self.config, self.config_class):
            raise InputError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(self.config).__name__}."
            )
        self.accelerator = require("accelerate", type(self).__name__).Accelerator()
        self.generator = torch.Generator().manual_seed(self.config.seed)
        torch.manual_seed(self.config.seed)
        self.step_count = 0
        self.records: list[dict[str, Any]] = []
        self.callbacks: list[TrainerCallback] = list(callbacks)
        self.last_checkpoint: Path | None = None
        self._stop_requested = False
        self._frozen_casts: dict[tuple[int, ...], FrozenWeightCast] = {}

    # -- processes ---------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        """Processes training together (1 without ``accelerate launch``)."""
        return self.accelerator.num_processes

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"bf16"``: what ``config.precision`` resolves to on this trainer's device."""
        return resolve_precision(self.config.precision, self.accelerator.device)

    def _frozen_weights_cast(self, *modules: torch.nn.Module) -> contextlib.AbstractContextManager:
        """Around a forward and backward pass: in bf16, the frozen weights of ``modules`` swapped for
        bf16 copies made on first use (:class:`~nla_lens.precision.FrozenWeightCast`); in fp32, nothing.

        Only while autocast is on: a pass outside it (held-out evaluation runs in fp32 after the
        step's autocast has ended) feeds float32 inputs, which bf16 weights would refuse.
        """
        if self.precision != "bf16" or not torch.is_autocast_enabled(self.accelerator.device.type):
            return contextlib.nullcontext()
        key = tuple(id(module) for module in modules)
        if key not in self._frozen_casts:
            self._frozen_casts[key] = FrozenWeightCast(modules)
        return self._frozen_casts[key].swapped()

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def _check_divides(self, n: int, what: str) -> None:
        if n % self.world_size:
            raise InputError(
                f"{what}={n} does not split across {self.world_size} processes. Use a multiple of "
                f"{self.world_size} (the global batch stays {what}; each process takes {what} / "
                f"{self.world_size}), or launch with a number of processes that divides {n}."
            )

    def _shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global batch of indices ``[B]`` -> ``[B / N]``."""
        self._check_divides(len(indices), "the batch")
        size = len(indices) // self.world_size
        rank = self.accelerator.process_index
        return indices[rank * size : (rank + 1) * size]

    def _sum_over_processes(self, value: torch.Tensor | float) -> torch.Tensor:
        """The sum over processes of a local scalar (the value itself in one process)."""
        local = torch.as_tensor(value, dtype=torch.float32).reshape(1).to(self.accelerator.device)
        if self.world_size > 1:
            local = self.accelerator.reduce(local, reduction="sum")
        return local.squeeze(0).cpu()

    def _mean_over_processes(self, value: torch.Tensor | float) -> float:
        """The mean over processes of a local scalar: a batch mean when the shards are equal."""
        return float(self._sum_over_processes(value)) / self.world_size

    def _global_mean(self, local_sum: torch.Tensor, total: torch.Tensor | float) -> tuple[torch.Tensor, float]:
        """A mean over terms spread unevenly across processes (tokens, successful samples).

        Args:
            local_sum: Differentiable sum of this process's terms.
            total: The number of terms in all processes together.

        Returns:
            ``(loss, mean)``: this process's loss, ``local_sum * N / total``, whose gradient averaged
            over the N processes (as accelerate reduces it) is the gradient of the global mean; and
            that global mean.
        """
        total = torch.as_tensor(total, dtype=local_sum.dtype, device=local_sum.device)
        loss = local_sum * (self.world_size / total)
        return loss, float(self._sum_over_processes(local_sum.detach()) / total.cpu())

    def _gather(self, values: torch.Tensor) -> torch.Tensor:
        """Concatenate each process's ``[n, ...]`` along dim 0 in process order (the global batch)."""
        if self.world_size == 1:
            return values
        return self.accelerator.gather(values.to(self.accelerator.device)).cpu()

    def _gather_objects(self, values: list[Any]) -> list[Any]:
        if self.world_size == 1:
            return values
        return require("accelerate.utils").gather_object(values)

    def _callbacks(self, event: str, *args: Any) -> None:
        """Run ``event`` on every callback, in the main process only."""
        if self.is_main_process:
            for callback in self.callbacks:
                getattr(callback, event)(self, *args)

    def _stop_agreed(self) -> bool:
        """Whether any process was asked to stop (all processes then stop after the same step)."""
        if self.world_size == 1:
            return self._stop_requested
        return bool(self._sum_over_processes(float(self._stop_requested)) > 0)

    # -- to implement ------------------------------------------------------------------------
    def _step(self) -> dict[str, Any]:
        raise NotImplementedError

    def _evaluate(self) -> dict[str, Any]:
        return {}

    def _modules(self) -> dict[str, torch.nn.Module]:
        """Trained modules by name (their weights go into checkpoints)."""
        raise NotImplementedError

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """One row per completed step (evaluation columns are NaN on steps without one)."""
        return pd.DataFrame(self.records)

    def request_stop(self) -> None:
        """Ask ``train`` to stop cleanly after the current step (used by the dashboard)."""
        self._stop_requested = True

    def step(self) -> dict[str, Any]:
        """Run one training step (plus evaluation / checkpoint when due); return its metrics."""
        start = time.perf_counter()
        with autocast(self.config.precision, self.accelerator.device):
            metrics = {"step": self.step_count + 1, **self._step()}
        self.step_count += 1
        metrics["seconds"] = time.perf_counter() - start
        if self.config.eval_every and self.step_count % self.config.eval_every == 0:
            metrics.update(self.evaluate())
        self.records.append(metrics)
        self._callbacks("on_step", metrics)
        if self.config.checkpoint_every and self.step_count % self.config.checkpoint_every == 0:
            self.save_checkpoint()
        return metrics

    def evaluate(self) -> dict[str, Any]:
        """Held-out metrics now (prefixed ``eval_``), reported to ``on_eval`` callbacks."""
        with torch.no_grad():
            metrics = {f"eval_{k}": v for k, v in self._evaluate().items()}
        self._callbacks("on_eval", metrics)
        return metrics

    def train(
        self,
        n_steps: int,
        *,
        progress: bool = True,
        callbacks: Iterable[TrainerCallback] = (),
        dashboard: bool | NLADashboard = False,
    ) -> pd.DataFrame:
        """Run ``n_steps`` steps with a progress bar; Ctrl-C (or ``request_stop``) stops cleanly.

        Args:
            n_steps: Steps to run.
            progress: Show a ``tqdm`` progress bar.
            callbacks: Extra callbacks for this call only.
            dashboard: ``True`` displays a live :class:`~nla_lens.widgets.NLADashboard` (curves,
                latest samples, a stop button) for this call; pass an existing one to reuse it.

        Returns:
            The ``history`` DataFrame.
        """
        extra = list(callbacks)
        if dashboard is not False and dashboard is not None and self.is_main_process:
            from nla_lens.widgets.dashboard import dashboard_for  # optional dependency: anywidget

            board = dashboard_for(self, dashboard)
            if board not in self.callbacks and board not in extra:
                extra.append(board)
        self.callbacks.extend(extra)
        self._stop_requested = False
        bar = tqdm(total=n_steps, desc=type(self).__name__, disable=not (progress and self.is_main_process))
        try:
            self._callbacks("on_train_begin", n_steps)
            for _ in range(n_steps):
                if self._stop_agreed():
                    break
                metrics = self.step()
                bar.set_postfix(
                    {
                        k: f"{v:.3g}"
                        for k, v in metrics.items()
                        if k in self.progress_keys and isinstance(v, float) and math.isfinite(v)
                    }
                )
                bar.update()
        except KeyboardInterrupt:
            where = f"; the last checkpoint is {self.last_checkpoint}" if self.last_checkpoint else ""
            warnings.warn(
                f"Training interrupted during step {self.step_count + 1}; history holds the "
                f"{self.step_count} completed steps{where}.",
                stacklevel=2,
            )
        finally:
            bar.close()
            self._callbacks("on_train_end")
            self._write_history()
            for callback in extra:
                self.callbacks.remove(callback)
        return self.history

    progress_keys: ClassVar[tuple[str, ...]] = ("loss", "reward_mean", "eval_fve_nrm")

    def _check_av_replicas(self, av: Any) -> None:
        """Refuse a cross-architecture AV in a multi-process run: its input map lives outside the
        model accelerate wraps, so its gradients would not be averaged across processes."""
        if av.input_map is not None and self.world_size > 1:
            raise InputError(
                "A cross-architecture AV (with an input map) trains in one process for now: its map is outside the "
                "model accelerate replicates, so processes would drift apart. Launch without accelerate "
                "(one process), or use an AV base as wide as the subject."
            )

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write weights, optimizer and RNG states, config and history atomically.

        Args:
            path: Target folder (default ``{output_dir}/checkpoint-{step}``).
        """
        if path is None:
            if not self.config.output_dir:
                raise InputError("save_checkpoint needs a path or config.output_dir.")
            path = Path(self.config.output_dir) / f"checkpoint-{self.step_count}"
        path = Path(path)
        if self.is_main_process:
            with atomic_folder(path) as tmp:
                for name, module in self._modules().items():
                    _save_module(self.accelerator.unwrap_model(module), tmp / f"{name}.safetensors")
                for name, optimizer in self._optimizers().items():
                    save_optimizer(optimizer, tmp, f"optimizer_{name}")
                save_rng(tmp, self.generator)
                (tmp / STATE_FILE).write_text(
                    json.dumps(
                        json_safe(
                            {
                                "trainer": type(self).__name__,
                                "step": self.step_count,
                                "world_size": self.world_size,
                                "config": self.config.to_dict(),
                                "history": self.records,
                            }
                        )
                    )
                )
            self._prune_checkpoints(path.parent)
        self.accelerator.wait_for_everyone()
        self.last_checkpoint = path
        self._callbacks("on_checkpoint", path)
        self._write_history()
        return path

    def _write_history(self) -> None:
        """``{output_dir}/history.csv`` (main process; replaced atomically) when there is an output_dir."""
        if not (self.config.output_dir and self.is_main_process and self.records):
            return
        folder = Path(self.config.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".history.csv.tmp"
        self.history.to_csv(tmp, index=False)
        tmp.replace(folder / "history.csv")

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint of this trainer class written with the same config."""
        path = Path(path)
        state_file = path / STATE_FILE
        if not state_file.is_file():
            raise CheckpointError(f"{path} is not a trainer checkpoint ({STATE_FILE} is missing).")
        state = json.loads(state_file.read_text())
        if state["trainer"] != type(self).__name__:
            raise CheckpointError(f"{path} was written by {state['trainer']}, not {type(self).__name__}.")
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            raise CheckpointError(
                f"Cannot resume from {path}: it was written by a run of {saved_world} process(es), and this run has "
                f"{self.world_size}. Each process trains on its own shard of every batch, so another number of "
                f"processes would not continue the run identically. Resume with `accelerate launch --num_processes "
                f"{saved_world} ...` (or from one process when it was 1), or start a new run."
            )
        differing = {
            k: (state["config"].get(k), v)
            for k, v in self.config.to_dict().items()
            if k not in self.config.RESUMABLE and json_safe(state["config"].get(k)) != json_safe(v)
        }
        if differing:
            listed = ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, (a, b) in differing.items())
            raise CheckpointError(
                f"Cannot resume from {path}: the config differs in {listed}. "
                "Use the checkpoint's config, or start a new run."
            )
        for name, module in self._modules().items():
            _load_module(self.accelerator.unwrap_model(module), path / f"{name}.safetensors")
        for name, optimizer in self._optimizers().items():
            load_optimizer(optimizer, path, f"optimizer_{name}")
        load_rng(path, self.generator)
        self.step_count = int(state["step"])
        self.records = list(state["history"])
        self.last_checkpoint = path

    def _prune_checkpoints(self, folder: Path) -> None:
        if not self.config.keep_checkpoints:
            return
        found = sorted(
            (p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
            key=lambda p: int(p.name.split("-")[-1]),
        )
        for old in found[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def _sample_indices(self, n_available: int, n: int) -> torch.Tensor:
        """``n`` distinct indices drawn with the trainer's own generator (saved in checkpoints)."""
        if n_available < 1:
            raise InputError("The training set is empty.")
        return torch.randperm(n_available, generator=self.generator)[: min(n, n_available)]

    def _optimizer_step(self, loss: torch.Tensor, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
        """Backward, clip, step, zero; returns the pre-clip gradient norm."""
        self.accelerator.backward(loss)
        return self._apply_gradients(module, optimizer)

    def _apply_gradients(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
        """Clip the accumulated gradients, step, zero; returns the pre-clip gradient norm."""
        # The optimizer's parameters, not only the module's: a cross-architecture AV's input map
        # trains with its model's adapters and is clipped with them.
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm) if params else torch.tensor(0.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(norm)


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint must hold: LoRA/head parameters of a PEFT model, else all."""
    state = module.state_dict()
    if hasattr(module, "peft_config") or any("lora_" in k for k in state):
        names = {n for n, p in module.named_parameters() if p.requires_grad}
        return {k: v for k, v in state.items() if "lora_" in k or k in names}
    return state


def _save_module(module: torch.nn.Module, file: Path) -> None:
    state = trainable_state(module)
    if len(state) == len(module.state_dict()):
        save_model(module, str(file))  # handles tied weights
    else:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(file))


def _load_module(module: torch.nn.Module, file: Path) -> None:
    if not file.is_file():
        raise CheckpointError(f"Checkpoint weights {file} are missing.")
    expected = trainable_state(module)
    try:
        if len(expected) == len(module.state_dict()):
            load_model(module, str(file))
            return
        state = load_file(str(file))
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"Could not load checkpoint weights {file}: {exc}") from exc
    missing = set(expected) - set(state)
    if missing:
        raise CheckpointError(f"{file} lacks {len(missing)} trained tensors (e.g. {sorted(missing)[:2]}).")
    module.load_state_dict(state, strict=False)
