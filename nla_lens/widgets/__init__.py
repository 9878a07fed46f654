"""Live notebook widgets: :class:`NLADashboard` (training) and :class:`NLAExplorer` (explanations).

Imported lazily, so ``import nla_lens.widgets`` costs nothing until a widget is used and the
core never needs ``anywidget`` (install it with ``pip install nla_lens[widgets]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nla_lens.widgets.dashboard import NLADashboard
    from nla_lens.widgets.explorer import NLAExplorer

__all__ = ["NLADashboard", "NLAExplorer"]


def __getattr__(name: str) -> Any:
    if name == "NLADashboard":
        from nla_lens.widgets.dashboard import NLADashboard

        return NLADashboard
    if name == "NLAExplorer":
        from nla_lens.widgets.explorer import NLAExplorer

        return NLAExplorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
