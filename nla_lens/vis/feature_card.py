"""Feature cards: one SAE feature read through the NLA, as HTML.

Owns :class:`FeatureCard`: for each feature, its top contexts with the max-activating token
marked, the NLA's label words, the NLA's explanation of the feature's direction, and the
grounding of both in the feature's contexts beside a shuffled feature's. Pure data -> HTML: the
rows are computed by :func:`nla_lens.analysis.feature_labels.nla_feature_labels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nla_lens.vis.html import BASE_CSS, HTMLView, esc, unique_id
from nla_lens.vis.sae import FeatureLabel, highlight_context
from nla_lens.vis.side_by_side import score_colour

__all__ = ["FeatureCard"]

_CARD_CSS = """
.nla-vis .nla-card { border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 10px; margin: 6px 0; }
.nla-vis .nla-word { display: inline-block; background: #ddf4ff; border-radius: 10px; padding: 0 7px;
  margin: 1px 3px 1px 0; }
.nla-vis .nla-ground { display: inline-block; border-radius: 3px; padding: 0 4px; }
"""

GROUNDING_LEGEND = (
    "Grounding: share of the words' content found in the feature's top contexts, beside the same "
    "words read against another feature's contexts (shuffled); a label that fits any feature scores "
    "the same on both."
)


def _number(value: Any) -> str:
    return "—" if value is None or not math.isfinite(float(value)) else f"{float(value):.2f}"


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _grounding_html(own: Any, shuffled: Any) -> str:
    shade = score_colour(float(own) if own is not None else math.nan)
    return (
        f'<span class="nla-ground nla-num" style="background:{shade}">{_number(own)}</span>'
        f' <span class="nla-meta">vs shuffled {_number(shuffled)}</span>'
    )


class FeatureCard(HTMLView):
    """Cards for SAE features labelled by an NLA (renders only).

    Args:
        rows: One mapping per feature with the columns of ``FeatureLabels.frame``: ``feature``,
            ``label_words``, ``direction_explanation``, ``label_grounding``,
            ``label_grounding_shuffled``, ``direction_grounding``, ``direction_grounding_shuffled``,
            ``top_contexts`` (``«token»`` marked), and optionally ``top_explanations``,
            ``reference_label``, ``n_active``, ``density``, ``dense``, ``max_activation``. A label
            whose grounding is not above its shuffled control is shown as ungrounded; a dense
            feature (fires on nearly every token) is marked.
        summary: The labels' summary (shown above the cards when given).
    """

    title = "nla_lens feature cards"

    def __init__(self, rows: Sequence[Mapping[str, Any]], *, summary: Mapping[str, Any] | None = None):
        super().__init__()
        self.rows = [dict(r) for r in rows]
        self.summary = dict(summary or {})

    def __repr__(self) -> str:
        return f"FeatureCard({[int(r['feature']) for r in self.rows]})"

    def render(self) -> str:
        parts = [
            f'<div class="nla-vis nla-feature-cards" data-nla-vis="feature-card" id="{unique_id()}">',
            f"<style>{BASE_CSS}{_CARD_CSS}</style>",
            "<h2>SAE features read by the NLA</h2>",
        ]
        if self.summary:
            parts.append(
                f'<div class="nla-meta">{int(self.summary.get("n_features", len(self.rows)))} features · mean label '
                f"grounding {_number(self.summary.get('label_grounding'))} vs shuffled "
                f"{_number(self.summary.get('label_grounding_shuffled'))}</div>"
            )
        parts += [self._card(r) for r in self.rows]
        parts += [f'<div class="nla-legend">{esc(GROUNDING_LEGEND)}</div>', "</div>"]
        return "\n".join(parts)

    def _card(self, row: Mapping[str, Any]) -> str:
        feature = int(row["feature"])
        words = row.get("label_words") or []
        chips = (
            "".join(f'<span class="nla-word">{esc(w)}</span>' for w in words)
            or '<span class="nla-meta">(no recurring words)</span>'
        )
        meta = []
        if row.get("n_active") is not None:
            meta.append(f"fires at {int(row['n_active'])} positions")
        if row.get("density") is not None and math.isfinite(float(row["density"])):
            meta.append(f"on {float(row['density']):.0%} of tokens")
        if row.get("max_activation") is not None and math.isfinite(float(row["max_activation"])):
            meta.append(f"max {float(row['max_activation']):.2f}")
        label = FeatureLabel(
            " ".join(words), _float(row.get("label_grounding")), _float(row.get("label_grounding_shuffled"))
        )
        dense = (
            ' <span class="nla-dense" title="fires on nearly every token: says little about any one">dense</span>'
            if row.get("dense")
            else ""
        )
        verdict = (
            ""
            if label.grounded or not words
            else ' <span class="nla-ungrounded" data-ungrounded="1">ungrounded: no better than a shuffled feature</span>'
        )
        if words and not label.grounded:
            chips = f'<s class="nla-ungrounded">{chips}</s>'
        lines = [
            f'<div class="nla-card" data-feature="{feature}">',
            f'<h3>Feature #{feature}{dense} <span class="nla-meta">{esc(" · ".join(meta))}</span></h3>',
            f"<div><b>NLA label</b> {chips}{verdict} "
            f"{_grounding_html(row.get('label_grounding'), row.get('label_grounding_shuffled'))}</div>",
            f"<div><b>Its direction, explained</b> <q>{esc(row.get('direction_explanation') or '')}</q> "
            f"{_grounding_html(row.get('direction_grounding'), row.get('direction_grounding_shuffled'))}</div>",
        ]
        if row.get("reference_label"):
            lines.append(f"<div><b>Reference label</b> {esc(row['reference_label'])}</div>")
        contexts = row.get("top_contexts") or []
        lines.append("<div><b>Top contexts</b></div>")
        lines += [f'<div class="nla-ctx">{highlight_context(c)}</div>' for c in contexts] or [
            '<div class="nla-ctx">(no contexts)</div>'
        ]
        explanations = row.get("top_explanations") or []
        if explanations:
            items = "".join(f'<div class="nla-ctx">{esc(e)}</div>' for e in explanations)
            lines.append(
                f"<details><summary>The NLA's explanations where it fires hardest ({len(explanations)})</summary>"
                f"{items}</details>"
            )
        lines.append("</div>")
        return "\n".join(lines)
