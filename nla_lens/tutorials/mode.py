"""``Mode``: the size a tutorial or research notebook runs at (smoke, lab or full), and the run sizes it picks.

Full mode is what a student runs alone on a laptop CPU. Lab mode shortens the long runs (training,
SAE labels, big sweeps) so that each tutorial fits its advertised time in a class; it is full mode
everywhere a notebook names no lab size. Smoke mode shrinks every run (documents, vectors, steps,
tokens) so that a notebook executes top to bottom in a minute or two in CI; its numbers mean
nothing. The notebook decides which (it reads the environment variable ``NLA_LENS_MODE``); this
class only carries the answer, seeds the random generators, picks torch's thread count and keeps
Hugging Face offline.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, TypeVar

T = TypeVar("T")

#: The environment variable the notebooks read: ``full`` (unset), ``lab`` or ``smoke`` (CI).
MODE_VARIABLE = "NLA_LENS_MODE"

#: The sizes, smallest first.
SIZES = ("smoke", "lab", "full")

_UNSET: Any = object()

_BANNERS = {
    "smoke": "<b>Smoke mode</b> (NLA_LENS_MODE=smoke): every run is shrunk to CI size; numbers are "
    "meaningless, the code path is the real one.",
    "lab": "<b>Lab mode</b> (NLA_LENS_MODE=lab): the long runs are shortened to fit a class period; "
    "numbers are rougher than full mode's.",
    "full": "<b>Full mode</b>: the sizes a student runs on a laptop CPU.",
}


@dataclasses.dataclass
class Mode:
    """The size one notebook runs at: ``"full"``, ``"lab"`` or ``"smoke"``.

    Args:
        size: ``"full"`` (a student alone on a laptop), ``"lab"`` (long runs shortened to fit a
            class period) or ``"smoke"`` (CI-sized runs).
        seed: Seed for ``torch``, ``numpy`` and ``random``, set by :meth:`setup`.
        threads: torch's CPU threads; ``None`` lets :meth:`setup` choose (:func:`choose_threads`).

    Raises:
        ValueError: ``size`` is not one of :data:`SIZES`.

    Example::

        import os
        mode = Mode(os.environ.get("NLA_LENS_MODE", "full")).setup()
        n_documents = mode.pick(full=200, lab=100, smoke=8)
    """

    size: str = "full"
    seed: int = 0
    threads: int | None = None
    thread_note: str = dataclasses.field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        size = str(self.size).strip().lower()
        if size not in SIZES:
            raise ValueError(
                f"unknown notebook mode {self.size!r}: use one of {', '.join(SIZES)} "
                f"(the environment variable {MODE_VARIABLE} sets it; unset means full)."
            )
        self.size = size

    @property
    def smoke(self) -> bool:
        """``True`` in smoke mode (CI-sized runs)."""
        return self.size == "smoke"

    def pick(self, full: T, smoke: T, lab: T = _UNSET) -> T:
        """The value for this mode: ``full``, ``smoke``, or ``lab`` (``full`` when no lab size is given)."""
        if self.size == "smoke":
            return smoke
        if self.size == "lab" and lab is not _UNSET:
            return lab
        return full

    def setup(self, *, offline: bool = True) -> Mode:
        """Seed every generator, quiet known noise and (by default) keep Hugging Face offline.

        Args:
            offline: Set ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` (unless already set), so
                nothing reaches for the hub: every notebook runs on the embedded model. Pass
                ``False`` (before anything imports ``transformers``) to load models by name.

        Returns:
            ``self``, so ``mode = Mode(...).setup()`` reads as one line.
        """
        import random

        import numpy as np
        import torch

        if offline:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)
        threads, self.thread_note = choose_threads(self.threads)
        torch.set_num_threads(threads)
        # Deprecation chatter from dependencies distracts students; our own warnings stay visible.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover
            pass
        return self

    def _repr_html_(self) -> str:
        return _BANNERS[self.size] + (f"<br>{self.thread_note}" if self.thread_note else "")

    def __repr__(self) -> str:
        return f"Mode({self.size!r}, seed={self.seed})"


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """torch's CPU thread count for a notebook, and a sentence saying why.

    torch starts one thread per core and every thread waits for the slowest: on a machine whose
    cores are busy with other work (a shared JupyterHub, a training run beside the notebook) that
    makes the same computation several times slower than one thread (measured 3-7x on 2 cores at a
    load of 4-6). So: the ``requested`` count if given, else ``OMP_NUM_THREADS`` if set, else the
    cores left idle by the load of the last minute (at least 1).

    Returns:
        ``(threads, note)``: the note is ``""`` when every core is used.
    """
    cores = os.cpu_count() or 1
    if requested is not None:
        return max(1, int(requested)), f"torch threads: {max(1, int(requested))} (as asked)."
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        n = max(1, int(os.environ["OMP_NUM_THREADS"]))
        return n, f"torch threads: {n} (OMP_NUM_THREADS)."
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores, ""
    idle = max(1, min(cores, round(cores - load)))
    if idle == cores:
        return cores, ""
    return idle, (
        f"torch threads: {idle} of {cores} cores: the machine is busy (load {load:.1f}), and fewer "
        "threads run faster beside other work. Mode(threads=N) overrides this."
    )
