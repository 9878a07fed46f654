"""The deprecation shim only: names that moved out of ``nla_lens.vis`` still import from their old paths.

The views render prepared data and import no computing code. A name that moved to the analysis or
training layer is looked up by its new module's name, a string given to
``importlib.import_module`` (no import statement, so the views still import nothing but
themselves), only when old code asks for it, with a ``DeprecationWarning`` naming the new path.
Delete this module with the aliases.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["moved"]


def moved(old: str, name: str, homes: Mapping[str, str]) -> Any:
    """The body of a module-level ``__getattr__`` in ``old``: fetch ``name`` from its new home.

    Args:
        old: The module asked, e.g. ``"nla_lens.vis"``.
        name: The attribute asked.
        homes: ``{moved name: new module}``.

    Returns:
        The object, from ``homes[name]``.

    Raises:
        AttributeError: ``name`` is not one of the moved names.
    """
    if name not in homes:
        raise AttributeError(f"module {old!r} has no attribute {name!r}")
    warnings.warn(
        f"{old}.{name} has moved to {homes[name]}.{name}; import it from there "
        f"({old} only renders prepared data). The old path will be removed.",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(homes[name]), name)
