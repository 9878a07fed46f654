"""SAE features as HTML: a feature chip with its activation, and its top-activating contexts.

Owns :data:`HIGHLIGHT` (the marks around the max-activating token of a context snippet, written
by :func:`nla_lens.analysis.sae_features.top_feature_contexts`), :func:`highlight_context`,
:class:`FeatureLabel` (a label with its grounding, the only way a label is shown) and
:func:`feature_html`, which marks dense features and ungrounded labels. Pure data -> HTML: no SAE or model is called here. Training an SAE lives in
:mod:`nla_lens.training.sae`, finding its top contexts in :mod:`nla_lens.analysis.sae_features`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from nla_lens.vis.html import esc

__all__ = ["HIGHLIGHT", "FeatureLabel", "feature_html", "highlight_context"]

#: Marks around the max-activating token in a context snippet.
HIGHLIGHT: tuple[str, str] = ("«", "»")

_MARK_RE = re.compile(re.escape(esc(HIGHLIGHT[0])) + "(.*?)" + re.escape(esc(HIGHLIGHT[1])), re.DOTALL)


def highlight_context(context: str) -> str:
    """Escape a context snippet and turn its ``«token»`` into ``<mark>token</mark>``."""
    return _MARK_RE.sub(r"<mark>\1</mark>", esc(context))


@dataclass(frozen=True)
class FeatureLabel:
    """A feature's label with its grounding in the feature's contexts, beside a shuffled feature's.

    Attributes:
        text: The label (e.g. the NLA's label words joined).
        grounding: Share of its content words found in the feature's top contexts (NaN: unknown).
        shuffled: The same against another feature's contexts (the control; NaN: unknown).
    """

    text: str
    grounding: float = math.nan
    shuffled: float = math.nan

    @property
    def grounded(self) -> bool:
        """True only when the grounding is known and above its shuffled control."""
        g, c = float(self.grounding), float(self.shuffled)
        return math.isfinite(g) and math.isfinite(c) and g > c

    def html(self) -> str:
        """The label in italics with its grounding beside it; an ungrounded label struck through."""

        def num(v: float) -> str:
            return f"{v:.2f}" if math.isfinite(float(v)) else "—"

        score = f"grounding {num(self.grounding)} vs shuffled {num(self.shuffled)}"
        if self.grounded:
            return f' <i class="nla-label">{esc(self.text)}</i> <span class="nla-meta">({score})</span>'
        return (
            f' <s class="nla-label nla-ungrounded" title="ungrounded: its words are no more in this feature\'s '
            f"contexts than in another feature's\">{esc(self.text)}</s>"
            f' <span class="nla-meta">(ungrounded: {score})</span>'
        )


def _as_label(label: FeatureLabel | str | None) -> FeatureLabel | None:
    if label is None or isinstance(label, FeatureLabel):
        return label
    return FeatureLabel(str(label))  # no grounding measured: shown as ungrounded


def feature_html(
    feature: int,
    activation: float,
    contexts: Sequence[str] | None = None,
    label: FeatureLabel | str | None = None,
    *,
    density: float | None = None,
) -> str:
    """One SAE feature: ``#id``, its label with its grounding, and its activation, opening onto its top contexts.

    Args:
        feature: The feature id.
        activation: Its activation on the token shown.
        contexts: Its top-activating snippets (``«token»`` marked), or ``None``.
        label: Its label as a :class:`FeatureLabel` (e.g. from
            :func:`~nla_lens.analysis.feature_labels.nla_feature_labels`), or a bare string (shown as
            ungrounded: no grounding was measured), or ``None``.
        density: The feature's firing density when it is *dense* (fires on nearly every token):
            shown as a "dense" badge. ``None`` for an ordinary feature.

    Returns:
        An HTML fragment (a ``<details>`` with the contexts, or a plain ``<span>`` without).
    """
    shown = _as_label(label)
    named = shown.html() if shown is not None and shown.text else ""
    badge = (
        f' <span class="nla-dense" title="fires on {density:.0%} of content tokens: says little about any one">'
        f"dense {density:.0%}</span>"
        if density is not None
        else ""
    )
    head = f'#{feature}{named}{badge} <span class="nla-num">{activation:.2f}</span>'
    if not contexts:
        return f'<span class="nla-feat nla-num" data-feature="{feature}">{head}</span>'
    items = "".join(f'<div class="nla-ctx">{highlight_context(c)}</div>' for c in contexts)
    return f'<details class="nla-feat" data-feature="{feature}"><summary>{head}</summary>{items}</details>'
