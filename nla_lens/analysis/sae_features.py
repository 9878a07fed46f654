"""SAE features over a corpus: the top features of vectors and the top-activating contexts of every feature.

Owns :func:`encode_features` and :func:`top_features` (one SAE pass, the positive top-k of each
vector; the side-by-side view, the agreement measures and the feature labels all read them),
:func:`top_feature_contexts` (for each feature, the corpus snippets around its strongest
activations, the max-activating token marked ``«like this»``), :func:`dataset_feature_contexts`
(the same from an :class:`~nla_lens.data.dataset.ActivationDataset`'s prefixes, no model pass), and
*dense features*: :class:`FeatureContexts` carries each feature's firing density over the tokens it
read, :func:`dense_features` names the features that fire on at least :data:`DENSE_FRACTION` of
them. A feature that fires on nearly every token says nothing about any one of them (it is usually
a bias direction or a sink's echo), so the views mark it and leave it out of "top features" unless
asked (``include_dense=True``). Only content positions are read
(:class:`~nla_lens.positions.ContentRule`: no attention sink).
It takes any SAE with the interface of :mod:`nla_lens.sae` (SAELens's or another), on both
TransformerLens lines; training an SAE lives in :mod:`nla_lens.training.sae`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nla_lens.errors import InputError
from nla_lens.positions import ContentRule
from nla_lens.sae import SAELike, check_sae, sae_device_dtype
from nla_lens.subjects.adapters import SubjectModel, as_subject
from nla_lens.training.sae import activation_batches
from nla_lens.vis.sae import HIGHLIGHT
from nla_lens.words import context_words

__all__ = [
    "DENSE_FRACTION",
    "FeatureContexts",
    "dataset_feature_contexts",
    "dense_features",
    "encode_features",
    "feature_density",
    "top_feature_contexts",
    "top_features",
]

#: A feature active on at least this share of the content tokens read is *dense* (marked in every
#: view, left out of top features by default). The embedded SAE's features fire on 1.6 % of tokens on
#: average (TopK 32 of 2,048); measured by ``python scripts/embedded_sae.py``.
DENSE_FRACTION = 0.5

#: Fewest tokens a density is measured on before a feature may be called dense (a short prompt alone
#: cannot tell a dense feature from a topic feature).
DENSE_MIN_TOKENS = 16


class FeatureContexts(dict):
    """``{feature id: [snippet, ...]}`` plus each feature's firing density over the tokens read.

    A plain dict of contexts (every mapping of that shape is accepted where contexts are), with:

    Attributes:
        density: ``[d_sae]`` share of the content tokens read on which each feature fires (> 0),
            or ``None`` when unknown.
        n_tokens: How many content tokens the density was measured on.
    """

    def __init__(self, contexts: Any = (), *, density: torch.Tensor | None = None, n_tokens: int = 0):
        super().__init__(contexts)
        self.density = density
        self.n_tokens = int(n_tokens)

    def dense(self, threshold: float = DENSE_FRACTION) -> dict[int, float]:
        """``{feature: density}`` of the dense features (empty when the density is unknown)."""
        if self.density is None or self.n_tokens < DENSE_MIN_TOKENS:
            return {}
        return {int(f): float(self.density[f]) for f in torch.nonzero(self.density >= threshold).flatten().tolist()}


def feature_density(features: torch.Tensor) -> torch.Tensor:
    """Share of rows on which each feature fires: ``[n, d_sae]`` activations -> ``[d_sae]`` in [0, 1]."""
    if len(features) == 0:
        return torch.zeros(features.shape[-1])
    return (features > 0).float().mean(dim=0)


def dense_features(
    contexts: Any = None, features: torch.Tensor | None = None, *, threshold: float = DENSE_FRACTION
) -> dict[int, float]:
    """``{feature: density}`` of the features firing on at least ``threshold`` of the tokens.

    The density comes from ``contexts`` when it carries one (a :class:`FeatureContexts`, measured
    over a corpus), else from ``features`` ``[n, d_sae]`` (the activations at hand) when there are at
    least :data:`DENSE_MIN_TOKENS` rows; otherwise nothing is called dense.
    """
    if isinstance(contexts, FeatureContexts) and contexts.density is not None:
        return contexts.dense(threshold)
    if features is None or len(features) < DENSE_MIN_TOKENS:
        return {}
    return FeatureContexts(density=feature_density(features), n_tokens=len(features)).dense(threshold)


@torch.no_grad()
def encode_features(sae: SAELike, vectors: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Feature activations ``[n, d_sae]`` (fp32, CPU) of ``vectors`` ``[n, d_in]``, in batches."""
    device, dtype = sae_device_dtype(sae)
    vectors = torch.as_tensor(vectors)
    if len(vectors) == 0:
        return torch.zeros(0, int(sae.W_dec.shape[0]))
    return torch.cat(
        [
            sae.encode(vectors[i : i + batch_size].to(device=device, dtype=dtype)).float().cpu()
            for i in range(0, len(vectors), batch_size)
        ]
    )


def top_features(features: torch.Tensor, k: int, *, exclude: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` strongest features of each row of ``features`` ``[n, d_sae]``.

    Args:
        features: ``[n, d_sae]`` activations.
        k: Features per row.
        exclude: Feature ids never listed (e.g. the keys of :func:`dense_features`).

    Returns:
        ``(ids, values)``, both ``[n, k']`` with ``k' = min(k, d_sae)``, strongest first; a slot
        whose activation is not positive has id ``-1`` and value ``0`` (a row may have fewer
        than ``k`` active features).
    """
    if k < 1:
        raise InputError(f"k must be at least 1 (got {k}).")
    left_out = [int(f) for f in (exclude or ())]
    if left_out:
        features = features.clone()
        features[..., left_out] = 0.0
    values, ids = features.topk(min(int(k), features.shape[-1]), dim=-1)
    active = values > 0
    return ids.where(active, torch.full_like(ids, -1)), values.where(active, torch.zeros_like(values))


def _snippet(tokenizer: Any, ids: list[int], pos: int, left: int, right: int) -> str:
    lo, hi = max(0, pos - left), min(len(ids), pos + 1 + right)
    text = (
        ("…" if lo > 0 else "")
        + tokenizer.decode(ids[lo:pos])
        + HIGHLIGHT[0]
        + tokenizer.decode([ids[pos]])
        + HIGHLIGHT[1]
        + tokenizer.decode(ids[pos + 1 : hi])
        + ("…" if hi < len(ids) else "")
    )
    return text.replace("\n", "↵")


@torch.no_grad()
def top_feature_contexts(
    sae: SAELike,
    subject: SubjectModel,
    texts: Sequence[str],
    hook_name: str,
    k: int = 3,
    *,
    left: int = 8,
    right: int = 3,
    max_length: int = 128,
    batch_size: int = 8,
    rule: ContentRule | None = None,
) -> FeatureContexts:
    """The top-``k`` corpus contexts of every SAE feature that fires on ``texts``, and its density.

    Each text contributes at most one context per feature (its max-activating token), so the
    ``k`` contexts of a feature come from ``k`` different texts, strongest first. Only content
    positions are read (``rule``, default :data:`~nla_lens.positions.CONTENT_RULE`: no attention
    sink, no special token), and each feature's firing density over them is kept, so the views can
    mark dense features.

    Args:
        sae: A SAELens ``SAE``, or any object with the interface of :mod:`nla_lens.sae`, reading ``hook_name``.
        subject: The subject model (TransformerBridge/HookedTransformer/nnsight or an adapter).
        texts: The corpus, a list of strings.
        hook_name: Hook to read, e.g. ``nla.hook_name``; must match the SAE.
        k: Contexts per feature.
        left: Tokens of context before the max-activating token.
        right: Tokens of context after it.
        max_length: Tokens read per text (and at most the model's ``n_ctx``).
        batch_size: Texts per forward pass.
        rule: Which positions count as content (default :data:`~nla_lens.positions.CONTENT_RULE`).

    Returns:
        A :class:`FeatureContexts`: ``{feature id: [snippet, ...]}`` for features with a positive
        activation somewhere, each snippet the tokens around the max-activating one, which is
        marked ``«token»``; ``.density`` ``[d_sae]`` over the content tokens read.

    Raises:
        InputError: An SAE of another width or hook, or no usable token in ``texts``.
        SAEInterfaceError: ``sae`` lacks the interface of :mod:`nla_lens.sae`.
    """
    adapter = as_subject(subject)
    hook = adapter.resolve_hook(hook_name)
    check_sae(sae, d_model=adapter.d_model, hook_name=hook.name, what="the subject hook")
    texts = list(texts)
    device, dtype = sae_device_dtype(sae)
    all_ids: list[list[int]] = []
    best_vals, best_pos = [], []
    fired, n_tokens = None, 0
    for ids, acts, mask in activation_batches(
        adapter, texts, hook, max_length=max_length, batch_size=batch_size, rule=rule
    ):
        feats = sae.encode(acts.to(device=device, dtype=dtype)).float().cpu()  # [B, T, d_sae]
        counts = (feats[mask] > 0).sum(dim=0)  # [d_sae]
        fired = counts if fired is None else fired + counts
        n_tokens += int(mask.sum())
        feats = feats.masked_fill(~mask[..., None], float("-inf"))
        vals, pos = feats.max(dim=1)  # [B, d_sae]
        all_ids.extend(ids)
        best_vals.append(vals)
        best_pos.append(pos)
    if fired is None or not all_ids or not n_tokens:
        raise InputError("No content tokens in texts (all empty, or too short: position 0 is an attention sink).")
    vals, pos = torch.cat(best_vals), torch.cat(best_pos)  # [N, d_sae]
    top_vals, top_docs = vals.topk(min(k, len(all_ids)), dim=0)  # [k, d_sae]
    contexts = FeatureContexts(density=fired.float() / n_tokens, n_tokens=n_tokens)
    for feature in torch.nonzero(top_vals[0] > 0).flatten().tolist():
        snippets = []
        for rank in range(top_vals.shape[0]):
            if not top_vals[rank, feature] > 0:
                break
            doc = int(top_docs[rank, feature])
            snippets.append(_snippet(adapter.tokenizer, all_ids[doc], int(pos[doc, feature]), left, right))
        contexts[int(feature)] = snippets
    return contexts


def _prefix_snippet(prefix: str, token: str, words: int) -> str:
    """The last ``words`` words of ``prefix`` with its final ``token`` marked ``«token»``."""
    body = prefix[: len(prefix) - len(token)] if token and prefix.endswith(token) else prefix
    cut = context_words(body, words)  # the last words, "…" when some were cut off
    gap = " " if body[-1:].isspace() and words > 0 and body.split() else ""
    return (cut + gap + HIGHLIGHT[0] + token + HIGHLIGHT[1]).replace("\n", "↵")


def dataset_feature_contexts(
    sae: SAELike, dataset: Any, k: int = 5, *, words: int = 8, features: torch.Tensor | None = None
) -> FeatureContexts:
    """The top-``k`` contexts of every SAE feature among an activation dataset's positions.

    The same ``{feature: [snippet, ...]}`` as :func:`top_feature_contexts`, read from the
    dataset's ``prefix`` and ``token`` columns instead of a corpus pass through the subject (so it
    works for any dataset, including one extracted elsewhere). Each document contributes at
    most one context per feature.

    Args:
        sae: An SAE with the interface of :mod:`nla_lens.sae` on the dataset's hook.
        dataset: An :class:`~nla_lens.data.dataset.ActivationDataset`.
        k: Contexts per feature.
        words: Words of the prefix kept before the marked token.
        features: Precomputed ``encode_features(sae, dataset.vectors)`` ``[n, d_sae]`` (optional).

    Returns:
        A :class:`FeatureContexts`, ``{feature id: [snippet, ...]}`` for features positive
        somewhere, strongest first, with each feature's density over the dataset's positions.

    Raises:
        InputError: An SAE of another width or hook than the dataset's.
    """
    check_sae(sae, d_model=dataset.d_model, hook_name=dataset.meta.get("hook_name"), what="the dataset")
    acts = encode_features(sae, dataset.vectors) if features is None else features  # [n, d_sae]
    frame = dataset.frame
    docs = frame["doc_id"].to_numpy()
    contexts = FeatureContexts(density=feature_density(acts), n_tokens=len(frame))
    if len(frame) == 0:
        return contexts
    for feature in torch.nonzero((acts > 0).any(dim=0)).flatten().tolist():
        order = torch.argsort(acts[:, feature], descending=True, stable=True).tolist()
        snippets: list[str] = []
        seen: set[Any] = set()
        for row in order:
            if len(snippets) >= k or not acts[row, feature] > 0:
                break
            if docs[row] in seen:
                continue
            seen.add(docs[row])
            snippets.append(_prefix_snippet(str(frame["prefix"].iat[row]), str(frame["token"].iat[row]), words))
        contexts[int(feature)] = snippets
    return contexts
