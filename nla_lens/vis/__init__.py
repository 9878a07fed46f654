"""Pure data -> self-contained HTML views (nothing is fetched from the network to render them).

Owns the public names of the view layer: :class:`SideBySide` (NLA explanations beside attention
and SAE features, from a prepared table), :class:`FeatureCard` (an SAE feature read by the NLA),
:class:`DifferenceView` (two explanations compared, the words that change and a control), the page helpers :func:`page`, :class:`Section`,
:class:`HTMLView` and :func:`circuitsvis_html`, and the SAE feature helpers
:func:`feature_html` and :func:`highlight_context`. Like circuitsvis, the views render what they
are given: they import no model, subject, SAE, training or analysis code and call no model.
No core module imports this package; the attention view needs ``circuitsvis``.

The tables are computed elsewhere: :func:`nla_lens.analysis.side_by_side` (module
:mod:`nla_lens.analysis.compare`), :func:`nla_lens.analysis.difference.compare`,
:func:`nla_lens.analysis.top_feature_contexts` (module
:mod:`nla_lens.analysis.sae_features`), and SAEs are trained and loaded by
:mod:`nla_lens.training.sae`.
"""

from __future__ import annotations

from nla_lens.vis.difference import DifferenceView
from nla_lens.vis.feature_card import FeatureCard
from nla_lens.vis.html import HTMLView, Section, circuitsvis_html, external_references, page
from nla_lens.vis.sae import feature_html, highlight_context
from nla_lens.vis.side_by_side import SideBySide

__all__ = [
    "DifferenceView",
    "FeatureCard",
    "HTMLView",
    "Section",
    "SideBySide",
    "circuitsvis_html",
    "external_references",
    "feature_html",
    "highlight_context",
    "page",
]
