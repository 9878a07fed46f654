"""``Mode``: the smoke switch of a tutorial or research notebook, and the run sizes it picks.

Smoke mode shrinks every run (documents, vectors, steps, tokens) so that a notebook executes top
to bottom in a minute or two in CI; full mode is what a student runs on a laptop CPU. The
notebook decides which (it reads the environment variable ``NLA_LENS_SMOKE``); this class only
carries the answer, seeds the random generators, and keeps Hugging Face offline.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import TypeVar

T = TypeVar("T")

#: The environment variable the notebooks read (CI sets it to ``1``).
SMOKE_VARIABLE = "NLA_LENS_SMOKE"


@dataclasses.dataclass
class Mode:
    """Smoke or full mode for one notebook.

    Args:
        smoke: ``True`` for CI-sized runs.
        seed: Seed for ``torch``, ``numpy`` and ``random``, set by :meth:`setup`.

    Example::

        import os
        mode = Mode(smoke=os.environ.get("NLA_LENS_SMOKE") == "1").setup()
        n_documents = mode.pick(full=200, smoke=8)
    """

    smoke: bool = False
    seed: int = 0

    def pick(self, full: T, smoke: T) -> T:
        """``smoke`` in smoke mode, else ``full``."""
        return smoke if self.smoke else full

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
        if self.smoke:
            return (
                "<b>Smoke mode</b> (NLA_LENS_SMOKE=1): every run is shrunk to CI size; numbers are "
                "meaningless, the code path is the real one."
            )
        return "<b>Full mode</b>: the sizes a student runs on a laptop CPU."

    def __repr__(self) -> str:
        return f"Mode(smoke={self.smoke}, seed={self.seed})"
