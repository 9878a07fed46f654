"""The side-by-side view: NLA explanations, attention and SAE features for one prompt.

Owns :func:`side_by_side` (reads the prompt's activations once, runs the NLA round trip on the
chosen tokens, the SAE on the same vectors, and the attention pattern of one layer) and
:class:`SideBySide` (its DataFrame and its self-contained HTML: a token strip coloured by
round-trip cosine, a table of explanations and top SAE features with their top-activating
contexts, and a circuitsvis ``attention_heads`` view rendered offline).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from nla_lens.errors import InputError
from nla_lens.hooks import nla_hook_name
from nla_lens.subjects.adapters import SubjectAdapter, as_subject
from nla_lens.vis.html import BASE_CSS, HTMLView, circuitsvis_html, esc, unique_id
from nla_lens.sae import check_sae, sae_device_dtype
from nla_lens.vis.sae import HIGHLIGHT

__all__ = ["FRAME_COLUMNS", "SideBySide", "side_by_side"]

#: The leading columns of ``SideBySide.frame`` (the verbalizer's flags follow them).
FRAME_COLUMNS: tuple[str, ...] = ("position", "token", "explanation", "mse", "cosine", "sae_features")

_MARK_RE = re.compile(re.escape(esc(HIGHLIGHT[0])) + "(.*?)" + re.escape(esc(HIGHLIGHT[1])), re.DOTALL)


def _highlight(context: str) -> str:
    """Escape a context snippet and turn its ``«token»`` into ``<mark>token</mark>``."""
    return _MARK_RE.sub(r"<mark>\1</mark>", esc(context))


def cosine_colour(value: float) -> str:
    """Background colour of a token: red at cosine <= 0, through yellow, to green at 1 (grey for NaN)."""
    if value is None or not math.isfinite(value):
        return "#eaeef2"
    hue = 120.0 * min(1.0, max(0.0, float(value)))
    return f"hsl({hue:.0f}, 75%, 82%)"


class SideBySide(HTMLView):
    """Explanations of a prompt's tokens next to its attention and SAE features.

    Attributes:
        frame: One row per explained token: ``position``, ``token``, ``explanation``, ``mse``,
            ``cosine``, ``sae_features`` (list of ``(feature id, activation)``, strongest first;
            empty without an SAE), then the verbalizer's columns (``ok``, ``truncated``, ...).
        tokens: Every token of the (possibly truncated) prompt, decoded one by one.
        attention: ``[n_heads_shown, seq, seq]`` attention pattern of ``layer``, or ``None``.
        layer: Layer of the attention view.
        heads: Head indices shown.
        hook_name: Hook the NLA (and SAE) read.
        feature_contexts: ``{feature id: [snippet, ...]}`` shown under each feature.
        notices: Visible warnings (e.g. the prompt was truncated).
    """

    title = "nla_lens side by side"

    def __init__(self, frame: pd.DataFrame, tokens: list[str], *, hook_name: str,
                 attention: torch.Tensor | None = None, layer: int | None = None,
                 heads: Sequence[int] = (), feature_contexts: Mapping[int, Sequence[str]] | None = None,
                 notices: Sequence[str] = (), description: str = ""):
        super().__init__()
        self.frame = frame
        self.tokens = list(tokens)
        self.hook_name = hook_name
        self.attention = attention
        self.layer = layer
        self.heads = list(heads)
        self.feature_contexts = {int(f): list(c) for f, c in (feature_contexts or {}).items()}
        self.notices = list(notices)
        self.description = description

    def __repr__(self) -> str:
        return (f"SideBySide({len(self.tokens)} tokens, {len(self.frame)} explained, hook={self.hook_name!r}, "
                f"attention layer={self.layer})")

    # -- HTML ---------------------------------------------------------------------------------
    def render(self) -> str:
        parts = [f'<div class="nla-vis nla-side-by-side" data-nla-vis="side-by-side" id="{unique_id()}">',
                 f"<style>{BASE_CSS}</style>",
                 "<h2>NLA explanations, attention and SAE features</h2>",
                 f'<div class="nla-meta">{esc(self.description)} · hook <code>{esc(self.hook_name)}</code> · '
                 f"{len(self.tokens)} tokens, {len(self.frame)} explained</div>"]
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
            tip = f"#{pos} {token!r}  cosine {row.cosine:.3f}  mse {row.mse:.3f}\n{row.explanation}"
            spans.append(f'<span class="nla-tok nla-explained" data-pos="{pos}" title="{esc(tip)}" '
                         f'style="background:{cosine_colour(row.cosine)}">{shown}</span>')
        legend = ('<div class="nla-legend">Explained tokens are framed and coloured by the round-trip cosine '
                  '(<span style="background:hsl(0,75%,82%)">&nbsp;0&nbsp;</span> → '
                  '<span style="background:hsl(60,75%,82%)">&nbsp;0.5&nbsp;</span> → '
                  '<span style="background:hsl(120,75%,82%)">&nbsp;1&nbsp;</span>); hover for the explanation.'
                  '</div>')
        return f'<h3>Tokens</h3><div class="nla-strip">{"".join(spans)}</div>{legend}'

    def _feature_html(self, feature: int, activation: float) -> str:
        label = f"#{feature} <span class=\"nla-num\">{activation:.2f}</span>"
        contexts = self.feature_contexts.get(int(feature))
        if not contexts:
            return f'<span class="nla-feat nla-num" data-feature="{feature}">{label}</span>'
        items = "".join(f'<div class="nla-ctx">{_highlight(c)}</div>' for c in contexts)
        return (f'<details class="nla-feat" data-feature="{feature}"><summary>{label}</summary>'
                f"{items}</details>")

    def _table_html(self) -> str:
        has_sae = any(len(f) for f in self.frame["sae_features"])
        head = "<tr><th>pos</th><th>token</th><th>explanation</th><th>cosine</th><th>mse</th>"
        head += "<th>top SAE features</th></tr>" if has_sae else "</tr>"
        rows = []
        for r in self.frame.itertuples(index=False):
            cells = (f'<td class="nla-num">{int(r.position)}</td>'
                     f'<td class="nla-num" style="background:{cosine_colour(r.cosine)}">{esc(repr(r.token))}</td>'
                     f"<td>{esc(r.explanation)}</td><td class=\"nla-num\">{r.cosine:.3f}</td>"
                     f'<td class="nla-num">{r.mse:.3f}</td>')
            if has_sae:
                cells += "<td>" + "".join(self._feature_html(f, a) for f, a in r.sae_features) + "</td>"
            rows.append(f"<tr>{cells}</tr>")
        return f'<h3>Explanations</h3><table class="nla-table">{head}{"".join(rows)}</table>'

    def _attention_html(self) -> str:
        if self.attention is None:
            return ""
        import circuitsvis as cv

        view = cv.attention.attention_heads(
            attention=self.attention, tokens=self.tokens,
            attention_head_names=[f"L{self.layer}H{h}" for h in self.heads])
        return f"<h3>Attention, layer {self.layer}</h3>{circuitsvis_html(view)}"


@torch.no_grad()
def _attention(adapter: SubjectAdapter, tokens: torch.Tensor, layer: int, heads: Sequence[int] | None
               ) -> tuple[torch.Tensor, list[int]]:
    """``[n_heads_shown, seq, seq]`` pattern of ``blocks.{layer}.attn.hook_pattern`` and the heads shown."""
    name = f"blocks.{layer}.attn.hook_pattern"
    hook = adapter.resolve_hook(name)  # HookNameError names close matches
    _, cache = adapter.model.run_with_cache(tokens.to(adapter.device), names_filter=hook.name,
                                            stop_at_layer=hook.stop_at_layer, return_cache_object=False)
    pattern = cache[hook.name][0].float().cpu()  # [n_heads, q, k]
    chosen = list(range(pattern.shape[0])) if heads is None else [int(h) for h in heads]
    if not chosen or any(not 0 <= h < pattern.shape[0] for h in chosen):
        raise InputError(f"heads must be indices in 0..{pattern.shape[0] - 1} (got {list(heads or [])}).")
    return pattern[chosen], chosen


def side_by_side(
    nla: Any,
    subject: Any,
    prompt: str,
    *,
    positions: Sequence[int] | None = None,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    sae: Any = None,
    sae_top_k: int = 5,
    feature_contexts: Mapping[int, Sequence[str]] | None = None,
    max_new_tokens: int = 48,
    **round_trip_kwargs: Any,
) -> SideBySide:
    """Explain a prompt's tokens with an NLA, beside its attention and its SAE features.

    The prompt is read once at the NLA's hook (``nla.hook_name``); those vectors go through the
    NLA round trip (explanation, reconstruction, ``mse``, ``cosine``) and, with ``sae``, through
    ``sae.encode`` for the top features. A prompt longer than the subject's context is cut to
    ``n_ctx`` tokens, with a warning and a visible notice in the view.

    Args:
        nla: An :class:`~nla_lens.models.nla.NLA`.
        subject: The subject model it explains (TransformerBridge/HookedTransformer, or nnsight
            without the attention view) or its adapter.
        prompt: The text to read.
        positions: Token positions to explain (default: all but the first).
        layer: Layer of the attention view (default: the NLA's layer).
        heads: Heads shown (default: all).
        sae: A SAELens ``SAE`` (or any object with the interface of :mod:`nla_lens.sae`) on the
            NLA's hook, or ``None``.
        sae_top_k: Features listed per token.
        feature_contexts: ``{feature id: [context, ...]}``, e.g. from
            :func:`~nla_lens.vis.sae.top_feature_contexts`; ``«token»`` is highlighted.
        max_new_tokens: Explanation length cap.
        **round_trip_kwargs: Passed to ``NLA.round_trip`` (``seed``, ``progress``, ...).

    Returns:
        A :class:`SideBySide` (displays itself; ``.frame`` holds the numbers).

    Raises:
        InputError: An SAE of another width or hook (the message names both), a subject of
            another width, positions out of range, an empty prompt.
    """
    hook_name = nla_hook_name(nla)
    if sae is not None:
        check_sae(sae, d_model=nla.d_model, hook_name=hook_name)
    if not isinstance(prompt, str) or not prompt:
        raise InputError("prompt must be a non-empty string.")
    adapter = as_subject(subject)
    if adapter.d_model != nla.d_model:
        raise InputError(f"The subject's d_model is {adapter.d_model}, this NLA explains {nla.d_model}.")
    hook = adapter.resolve_hook(hook_name)

    ids, notices = adapter.encode(prompt), []
    n_ctx = adapter.n_ctx
    if n_ctx and len(ids) > n_ctx:
        notices.append(f"The prompt has {len(ids)} tokens, more than the model context ({n_ctx}); only the first "
                       f"{n_ctx} tokens are shown and explained.")
        warnings.warn(notices[-1], stacklevel=2)
        ids = ids[:n_ctx]
    if not ids:
        raise InputError("The prompt encodes to no tokens.")
    tokens = [adapter.tokenizer.decode([t]) for t in ids]
    if positions is None:
        positions = list(range(1, len(ids))) or [0]
    positions = [int(p) for p in positions]
    if not positions or any(not 0 <= p < len(ids) for p in positions):
        raise InputError(f"positions must be a non-empty list of indices in 0..{len(ids) - 1} for this prompt.")

    token_ids = torch.tensor([ids])
    acts = adapter.activations(token_ids, hook)[0][positions]  # [n_positions, d_model]
    frame = nla.round_trip(acts, max_new_tokens=max_new_tokens, **round_trip_kwargs)
    rows = frame["vector"].to_numpy()
    frame.insert(0, "position", [positions[i] for i in rows])
    frame.insert(1, "token", [tokens[positions[i]] for i in rows])
    frame["sae_features"] = _top_features(sae, acts, sae_top_k)[rows].tolist() if sae is not None else [
        [] for _ in rows]
    frame = frame[list(FRAME_COLUMNS) + [c for c in frame.columns if c not in FRAME_COLUMNS]]
    frame.attrs.update(prompt=prompt, hook_name=hook.name, n_tokens=len(ids), truncated=bool(notices))

    attention, shown, attn_layer = None, [], None
    if adapter.backend == "transformer_lens":
        attn_layer = layer if layer is not None else (nla.layer if nla.layer is not None else hook.layer)
        attn_layer = attn_layer if attn_layer is not None else adapter.n_layers - 1
        attention, shown = _attention(adapter, token_ids, int(attn_layer), heads)
    else:
        notices.append(f"No attention view: it needs a TransformerLens subject (this one is {adapter.backend}).")
    return SideBySide(frame, tokens, hook_name=hook.name, attention=attention, layer=attn_layer, heads=shown,
                      feature_contexts=feature_contexts, notices=notices,
                      description=f"subject {adapter.name}")


@torch.no_grad()
def _top_features(sae: Any, acts: torch.Tensor, k: int) -> Any:
    """Object array ``[n]`` of ``[(feature id, activation), ...]`` (positive ones, strongest first)."""
    import numpy as np

    device, dtype = sae_device_dtype(sae)
    feats = sae.encode(acts.to(device=device, dtype=dtype)).float().cpu()  # [n, d_sae]
    values, indices = feats.topk(min(max(1, int(k)), feats.shape[-1]), dim=-1)
    out = np.empty(len(feats), dtype=object)
    for i, (vals, idx) in enumerate(zip(values.tolist(), indices.tolist())):
        out[i] = [(int(f), float(v)) for f, v in zip(idx, vals) if v > 0]
    return out
