"""``json_safe``: the one conversion of metrics, configs and tables to plain JSON values; and
``from_fields``, the one way a config dataclass is read back from such a dict.

Used wherever nla_lens writes JSON (trainer checkpoints, the faithfulness report, widget traitlets),
so a NaN, a numpy scalar or a tensor is written the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from nla_lens.errors import InputError

__all__ = ["from_fields", "json_safe"]

T = TypeVar("T")


def from_fields(cls: type[T], data: dict[str, Any]) -> T:
    """``cls(**data)`` for a dataclass ``cls``, after refusing keys it has no field for (named in the
    error, with the known ones), so a misspelt setting in a config file never passes silently."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"Unknown {cls.__name__} fields {unknown}; known: {sorted(names)}.")
    return cls(**data)


def json_safe(value: Any) -> Any:
    """A copy of ``value`` made of JSON types only.

    NaN and infinities become ``None`` (JSON has neither); numpy and torch scalars become Python
    numbers and bools; arrays and tensors become (nested) lists; dicts (keys as strings), lists and
    tuples are converted item by item; strings, bools, ints and ``None`` pass through; anything
    else (a path, a dtype) becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # numpy arrays, torch tensors
        return json_safe(value.tolist())
    if hasattr(value, "item") and not isinstance(value, (int, float)):  # numpy / torch scalars
        value = value.item()
        if isinstance(value, (bool, str)):
            return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)
