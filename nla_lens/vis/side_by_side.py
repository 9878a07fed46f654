"""The side-by-side view: NLA explanations, attention and SAE features for one prompt, as HTML.

Owns :class:`SideBySide` (a prepared table and its self-contained HTML: a token strip coloured by
each token's gain over the mean direction, a table of explanations and top SAE features with their top-activating
contexts, and a circuitsvis ``attention_heads`` view rendered offline), :func:`score_colour` and :data:`GAIN_LEGEND`.
Pure data -> HTML: the table is computed by :func:`nla_lens.analysis.compare.side_by_side`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from nla_lens.vis.html import BASE_CSS, HTMLView, circuitsvis_html, esc, unique_id
from nla_lens.vis.sae import FeatureLabel, feature_html

if TYPE_CHECKING:
    import torch

__all__ = ["FRAME_COLUMNS", "GAIN_LEGEND", "SideBySide", "cosine_colour", "score_colour"]

#: The leading columns of ``SideBySide.frame`` (the verbalizer's flags follow them).
FRAME_COLUMNS: tuple[str, ...] = ("position", "token", "explanation", "mse", "cosine", "gain", "sae_features")


def score_colour(value: float | None) -> str:
    """Background colour of a score in [0, 1]: red at <= 0, through yellow, to green at 1 (grey for NaN).

    The views colour tokens by their ``gain`` over the mean direction
    (:func:`~nla_lens.metrics.gain_over_mean`), so a token explained no better than the mean
    direction is red, however high its raw cosine.
    """
    if value is None or not math.isfinite(value):
        return "#eaeef2"
    hue = 120.0 * min(1.0, max(0.0, float(value)))
    return f"hsl({hue:.0f}, 75%, 82%)"


cosine_colour = score_colour
"""The same colour ramp, for a raw cosine (the layer sweep's cosine cells)."""

#: What the token colours mean, shown under every view that uses them.
GAIN_LEGEND = (
    "Colour: the token's gain over the mean direction, 1 − mse / (mse of predicting the mean direction) "
    '(<span style="background:hsl(0,75%,82%)">&nbsp;≤ 0: no better than the mean direction&nbsp;</span> → '
    '<span style="background:hsl(60,75%,82%)">&nbsp;0.5&nbsp;</span> → '
    '<span style="background:hsl(120,75%,82%)">&nbsp;1: perfect&nbsp;</span>; grey: unknown). The cosine column '
    "is the raw round-trip cosine: the mean direction alone often scores 0.7-0.8 there."
)


def _gain(row: Any) -> float:
    """A row's ``gain`` (NaN for a hand-made table without the column)."""
    value = getattr(row, "gain", math.nan)
    return math.nan if value is None else float(value)


class SideBySide(HTMLView):
    """Explanations of a prompt's tokens next to its attention and SAE features (renders only).

    Built by :func:`nla_lens.analysis.compare.side_by_side`, or by hand from a prepared table.

    Attributes:
        frame: One row per explained token: ``position``, ``token``, ``explanation``, ``mse``,
            ``cosine``, ``gain`` (over the mean direction; the token colour), ``sae_features`` (list of ``(feature id, activation)``, strongest first;
            empty without an SAE), then the verbalizer's columns (``ok``, ``truncated``, ...).
        tokens: Every token of the (possibly truncated) prompt, decoded one by one.
        attention: ``[n_heads_shown, seq, seq]`` attention pattern of ``layer``, or ``None``.
        layer: Layer of the attention view.
        heads: Head indices shown.
        hook_name: Hook the NLA (and SAE) read.
        feature_contexts: ``{feature id: [snippet, ...]}`` shown under each feature.
        feature_labels: ``{feature id: FeatureLabel}`` shown beside each feature's id with its
            grounding (e.g. ``FeatureLabels.labels()``); a bare string label has no grounding and is
            shown as ungrounded.
        dense_features: ``{feature id: density}`` of the features that fire on nearly every token,
            marked "dense" wherever they appear.
        notices: Visible warnings (e.g. the prompt was truncated, an attention sink left out).
    """

    title = "nla_lens side by side"

    def __init__(
        self,
        frame: pd.DataFrame,
        tokens: list[str],
        *,
        hook_name: str,
        attention: torch.Tensor | None = None,
        layer: int | None = None,
        heads: Sequence[int] = (),
        feature_contexts: Mapping[int, Sequence[str]] | None = None,
        feature_labels: Mapping[int, FeatureLabel | str] | None = None,
        dense_features: Mapping[int, float] | None = None,
        notices: Sequence[str] = (),
        description: str = "",
    ):
        super().__init__()
        self.frame = frame
        self.tokens = list(tokens)
        self.hook_name = hook_name
        self.attention = attention
        self.layer = layer
        self.heads = list(heads)
        self.feature_contexts = {int(f): list(c) for f, c in (feature_contexts or {}).items()}
        self.feature_labels = {
            int(f): label if isinstance(label, FeatureLabel) else FeatureLabel(str(label))
            for f, label in (feature_labels or {}).items()
        }
        self.dense_features = {int(f): float(d) for f, d in (dense_features or {}).items()}
        self.notices = list(notices)
        self.description = description

    def __repr__(self) -> str:
        return (
            f"SideBySide({len(self.tokens)} tokens, {len(self.frame)} explained, hook={self.hook_name!r}, "
            f"attention layer={self.layer})"
        )

    # -- HTML ---------------------------------------------------------------------------------
    def render(self) -> str:
        parts = [
            f'<div class="nla-vis nla-side-by-side" data-nla-vis="side-by-side" id="{unique_id()}">',
            f"<style>{BASE_CSS}</style>",
            "<h2>NLA explanations, attention and SAE features</h2>",
            f'<div class="nla-meta">{esc(self.description)} · hook <code>{esc(self.hook_name)}</code> · '
            f"{len(self.tokens)} tokens, {len(self.frame)} explained</div>",
        ]
        parts += [f'<div class="nla-notice" role="alert">{esc(n)}</div>' for n in self.notices]
        parts += [self._strip_html(), self._table_html(), self._attention_html(), "</div>"]
        return "\n".join(parts)

    def _strip_html(self) -> str:
        rows = {int(r.position): r for r in self.frame.itertuples(index=False)}
        spans = []
        for pos, token in enumerate(self.tokens):
            shown = esc(token.replace("\n", "↵\n"))
            row = rows.get(pos)
            if row is None:
                spans.append(f'<span class="nla-tok" data-pos="{pos}">{shown}</span>')
                continue
            gain = _gain(row)
            tip = f"#{pos} {token!r}  gain {gain:.3f}  cosine {row.cosine:.3f}  mse {row.mse:.3f}\n{row.explanation}"
            spans.append(
                f'<span class="nla-tok nla-explained" data-pos="{pos}" title="{esc(tip)}" '
                f'style="background:{score_colour(gain)}">{shown}</span>'
            )
        legend = f'<div class="nla-legend">Explained tokens are framed. {GAIN_LEGEND} Hover for the explanation.</div>'

        return f'<h3>Tokens</h3><div class="nla-strip">{"".join(spans)}</div>{legend}'

    def _table_html(self) -> str:
        has_sae = any(len(f) for f in self.frame["sae_features"])
        head = "<tr><th>pos</th><th>token</th><th>explanation</th><th>gain</th><th>cosine</th><th>mse</th>"
        head += "<th>top SAE features</th></tr>" if has_sae else "</tr>"
        rows = []
        for r in self.frame.itertuples(index=False):
            cells = (
                f'<td class="nla-num">{int(r.position)}</td>'
                f'<td class="nla-num" style="background:{score_colour(_gain(r))}">{esc(repr(r.token))}</td>'
                f'<td>{esc(r.explanation)}</td><td class="nla-num">{_gain(r):.3f}</td>'
                f'<td class="nla-num">{r.cosine:.3f}</td>'
                f'<td class="nla-num">{r.mse:.3f}</td>'
            )
            if has_sae:
                chips = (
                    feature_html(
                        f,
                        a,
                        self.feature_contexts.get(int(f)),
                        self.feature_labels.get(int(f)),
                        density=self.dense_features.get(int(f)),
                    )
                    for f, a in r.sae_features
                )
                cells += "<td>" + "".join(chips) + "</td>"
            rows.append(f"<tr>{cells}</tr>")
        return f'<h3>Explanations</h3><table class="nla-table">{head}{"".join(rows)}</table>'

    def _attention_html(self) -> str:
        if self.attention is None:
            return ""
        from nla_lens.optional import require

        cv = require("circuitsvis", "The side-by-side attention view")
        view = cv.attention.attention_heads(
            attention=self.attention,
            tokens=self.tokens,
            attention_head_names=[f"L{self.layer}H{h}" for h in self.heads],
        )
        return f"<h3>Attention, layer {self.layer}</h3>{circuitsvis_html(view)}"
