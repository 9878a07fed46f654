"""``evaluating(*modules)``: eval mode for a block of code, each module's own mode restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["evaluating"]


@contextlib.contextmanager
def evaluating(*modules: nn.Module | None) -> Iterator[None]:
    """Put ``modules`` in eval mode (dropout off) inside the block; restore each one's mode after.

    Every submodule's own ``training`` flag is restored, not just the top one's, so a frozen part
    kept in eval mode inside a training model stays so. ``None`` entries are skipped.
    """
    saved = [(m, [(sub, sub.training) for sub in m.modules()]) for m in modules if m is not None]
    for module, _ in saved:
        module.eval()
    try:
        yield
    finally:
        for _, flags in saved:
            for sub, flag in flags:
                sub.train(flag)
