"""Compute the side-by-side table: NLA explanations, attention and SAE features for one prompt.

Owns :func:`side_by_side`: it reads the prompt's activations once at the NLA's hook
(:func:`~nla_lens.subjects.activations.prompt_activations`), runs the NLA round trip on the chosen
tokens, the SAE on the same vectors and reads the attention pattern of one layer, then hands the
prepared table to :class:`~nla_lens.vis.side_by_side.SideBySide`, which only renders it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nla_lens.analysis.sae_features import dense_features, encode_features, top_features
from nla_lens.errors import InputError
from nla_lens.sae import SAELike, check_sae
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.adapters import SubjectAdapter, SubjectModel
from nla_lens.subjects.hook_check import check_subject
from nla_lens.vis.side_by_side import FRAME_COLUMNS, SideBySide

if TYPE_CHECKING:
    from nla_lens.models.nla import NLA

__all__ = ["side_by_side"]


def side_by_side(
    nla: NLA,
    subject: SubjectModel,
    prompt: str,
    *,
    positions: Sequence[int] | None = None,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    sae: SAELike | None = None,
    sae_top_k: int = 5,
    feature_contexts: Mapping[int, Sequence[str]] | None = None,
    feature_labels: Any = None,
    include_dense: bool = False,
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
        prompt: The text to read (not empty).
        positions: Token positions to explain (default: the content positions, no attention sink
            by :data:`~nla_lens.positions.CONTENT_RULE`; a notice names any sink left out).
        layer: Layer of the attention view (default: the NLA's layer).
        heads: Heads shown (default: all).
        sae: A SAELens ``SAE`` (or any object with the interface of :mod:`nla_lens.sae`) on the
            NLA's hook, or ``None``.
        sae_top_k: Features listed per token.
        feature_contexts: ``{feature id: [context, ...]}``, e.g. from
            :func:`~nla_lens.analysis.sae_features.top_feature_contexts`; ``«token»`` is highlighted.
            Its feature densities (a :class:`~nla_lens.analysis.sae_features.FeatureContexts`) say
            which features are dense; without them the prompt's own tokens do (16 or more).
        feature_labels: Each feature's label shown beside its id, always with its grounding: a
            :class:`~nla_lens.analysis.feature_labels.FeatureLabels` (the NLA's label words), or a
            ``{feature id: FeatureLabel or str}`` mapping (a bare string shows as ungrounded).
        include_dense: List dense features (firing on at least
            :data:`~nla_lens.analysis.sae_features.DENSE_FRACTION` of tokens) among the top
            features; by default they are left out, with a notice. Marked "dense" either way.
        max_new_tokens: Explanation length cap.
        **round_trip_kwargs: Passed to ``NLA.round_trip`` (``seed``, ``progress``, ...).

    Returns:
        A :class:`~nla_lens.vis.side_by_side.SideBySide` (displays itself; ``.frame`` holds the
        numbers: one row per explained token, ``position``, ``token``, ``explanation``, ``mse``,
        ``cosine``, ``sae_features``, then the verbalizer's columns; ``.attention`` is
        ``[n_heads_shown, seq, seq]``).

    Raises:
        InputError: An SAE of another width or hook (the message names both), a subject of
            another width, positions out of range, an empty prompt.
        HookNameError: The subject has no such hook.
    """
    if sae is not None:
        check_sae(sae, d_model=nla.d_model, hook_name=nla.hook_name)
    if not isinstance(prompt, str) or not prompt:
        raise InputError("prompt must be a non-empty string.")
    adapter, hook = check_subject(nla, subject)
    read = prompt_activations(adapter, prompt, hook, positions)  # warns (at our caller) when cut to n_ctx
    if not read.ids:
        raise InputError("The prompt encodes to no tokens.")
    if not read.positions:
        raise InputError(f"positions must be a non-empty list of indices in 0..{len(read.ids) - 1} for this prompt.")
    notices = list(read.notices)

    frame = nla.round_trip(read.vectors, max_new_tokens=max_new_tokens, **round_trip_kwargs)
    read.label(frame)
    rows = frame["vector"].to_numpy(copy=True)
    dense: dict[int, float] = {}
    if sae is not None:
        features = encode_features(sae, read.vectors)  # [n, d_sae]
        dense = dense_features(feature_contexts, features)
        frame["sae_features"] = _top_features(features, sae_top_k, {} if include_dense else dense)[rows].tolist()
        if dense and not include_dense:
            named = ", ".join(f"#{f} ({d:.0%})" for f, d in sorted(dense.items(), key=lambda x: -x[1])[:5])
            notices.append(
                f"{len(dense)} dense SAE feature(s) fire on nearly every token and are left out of the top "
                f"features: {named}. Pass include_dense=True to list them."
            )
    else:
        frame["sae_features"] = [[] for _ in rows]
    frame = frame[list(FRAME_COLUMNS) + [c for c in frame.columns if c not in FRAME_COLUMNS]]
    frame.attrs.update(prompt=prompt, hook_name=hook.name, n_tokens=len(read.ids), truncated=bool(notices))

    attention: torch.Tensor | None = None
    shown: list[int] = []
    attn_layer: int | None = None
    if adapter.backend == "transformer_lens":
        attn_layer = layer if layer is not None else (nla.layer if nla.layer is not None else hook.layer)
        attn_layer = attn_layer if attn_layer is not None else adapter.n_layers - 1
        attention, shown = _attention(adapter, torch.tensor([read.ids]), int(attn_layer), heads)
    else:
        notices.append(f"No attention view: it needs a TransformerLens subject (this one is {adapter.backend}).")
    return SideBySide(
        frame,
        read.tokens,
        hook_name=hook.name,
        attention=attention,
        layer=attn_layer,
        heads=shown,
        feature_contexts=feature_contexts,
        feature_labels=feature_labels.labels() if hasattr(feature_labels, "labels") else feature_labels,
        dense_features=dense,
        notices=notices,
        description=f"subject {adapter.name}",
    )


@torch.no_grad()
def _attention(
    adapter: SubjectAdapter, tokens: torch.Tensor, layer: int, heads: Sequence[int] | None
) -> tuple[torch.Tensor, list[int]]:
    """``[n_heads_shown, seq, seq]`` pattern of ``blocks.{layer}.attn.hook_pattern`` and the heads shown."""
    name = f"blocks.{layer}.attn.hook_pattern"
    hook = adapter.resolve_hook(name)  # HookNameError names close matches
    _, cache = adapter.model.run_with_cache(
        tokens.to(adapter.device), names_filter=hook.name, stop_at_layer=hook.stop_at_layer, return_cache_object=False
    )
    pattern = cache[hook.name][0].float().cpu()  # [n_heads, q, k]
    chosen = list(range(pattern.shape[0])) if heads is None else [int(h) for h in heads]
    if not chosen or any(not 0 <= h < pattern.shape[0] for h in chosen):
        raise InputError(f"heads must be indices in 0..{pattern.shape[0] - 1} (got {list(heads or [])}).")
    return pattern[chosen], chosen


def _top_features(features: torch.Tensor, k: int, exclude: Mapping[int, float]) -> np.ndarray:
    """Object array ``[n]`` of ``[(feature id, activation), ...]`` (positive ones, strongest first) of
    ``features`` ``[n, d_sae]``, leaving out ``exclude``'s ids."""
    ids, values = top_features(features, max(1, int(k)), exclude=exclude)  # [n, k]
    out = np.empty(len(ids), dtype=object)
    for i, (row_ids, row_values) in enumerate(zip(ids.tolist(), values.tolist())):
        out[i] = [(f, v) for f, v in zip(row_ids, row_values) if f >= 0]
    return out
