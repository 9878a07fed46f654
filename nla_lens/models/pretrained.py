"""Deprecated entry points of the shipped NLA; use ``NLA.from_pretrained(name)`` and the registry."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from nla_lens.models.nla import NLA
from nla_lens.models.registry import get_pretrained, resolve_source

DEFAULT = "smollm2-135m-L20"


def pretrained_dir(name: str = DEFAULT) -> Path:
    """Folder of an NLA shipped inside the package (its ``av/`` folder's parent)."""
    return resolve_source(get_pretrained(name).av).parent


def load_pretrained_nla(path_or_name: str | None = None, **kwargs: Any) -> NLA:
    """Deprecated alias of :meth:`NLA.from_pretrained` (same arguments)."""
    warnings.warn(
        "load_pretrained_nla is deprecated; use nla_lens.NLA.from_pretrained(name_or_path).",
        DeprecationWarning,
        stacklevel=2,
    )
    return NLA.from_pretrained(path_or_name, **kwargs)
