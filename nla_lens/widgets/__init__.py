"""Live notebook widgets: :class:`NLADashboard`, the training dashboard.

Imported lazily, so ``import nla_lens.widgets`` costs nothing until a widget is used and the
core never needs ``anywidget`` (install it with ``pip install nla_lens[widgets]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nla_lens.widgets.dashboard import NLADashboard

__all__ = ["NLADashboard"]


def __getattr__(name: str) -> Any:
    if name == "NLADashboard":
        from nla_lens.widgets.dashboard import NLADashboard

        return NLADashboard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
