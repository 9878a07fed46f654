"""Pure data -> self-contained HTML views (nothing is fetched from the network to render them).

Owns the public names of the view layer: :func:`side_by_side` and :class:`SideBySide` (NLA
explanations beside attention and SAE features), the page helpers :func:`page`,
:class:`Section`, :class:`HTMLView` and :func:`circuitsvis_html`, and the SAE helpers
:func:`train_embedded_sae`, :func:`load_sae` and :func:`top_feature_contexts`. No core module
imports this package; it needs ``circuitsvis`` (and ``sae-lens`` to train or load SAEs; the views
take any SAE with the interface of :mod:`nla_lens.sae`).
"""

from __future__ import annotations

from nla_lens.vis.html import HTMLView, Section, circuitsvis_html, external_references, page
from nla_lens.vis.sae import check_sae, load_sae, top_feature_contexts, train_embedded_sae
from nla_lens.vis.side_by_side import SideBySide, side_by_side

__all__ = [
    "HTMLView", "Section", "SideBySide", "check_sae", "circuitsvis_html", "external_references", "load_sae",
    "page", "side_by_side", "top_feature_contexts", "train_embedded_sae",
]
