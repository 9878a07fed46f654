"""SAE features over a corpus: the top features of vectors and the top-activating contexts of every feature.

Owns :func:`encode_features` and :func:`top_features` (one SAE pass, the positive top-k of each
vector; the side-by-side view, the agreement measures and the feature labels all read them),
:func:`top_feature_contexts` (for each feature, the corpus snippets around its strongest
activations, the max-activating token marked ``«like this»``) and :func:`dataset_feature_contexts`
(the same from an :class:`~nla_lens.data.dataset.ActivationDataset`'s prefixes, no model pass).
It takes any SAE with the interface of :mod:`nla_lens.sae` (SAELens's or another), on both
TransformerLens lines; training an SAE lives in :mod:`nla_lens.training.sae`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nla_lens.errors import InputError
from nla_lens.sae import check_sae, sae_device_dtype
from nla_lens.subjects.adapters import as_subject
from nla_lens.training.sae import activation_batches
from nla_lens.vis.sae import HIGHLIGHT
from nla_lens.words import context_words

__all__ = ["dataset_feature_contexts", "encode_features", "top_feature_contexts", "top_features"]


@torch.no_grad()
def encode_features(sae: Any, vectors: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
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


def top_features(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` strongest features of each row of ``features`` ``[n, d_sae]``.

    Returns:
        ``(ids, values)``, both ``[n, k']`` with ``k' = min(k, d_sae)``, strongest first; a slot
        whose activation is not positive has id ``-1`` and value ``0`` (a row may have fewer
        than ``k`` active features).
    """
    if k < 1:
        raise InputError(f"k must be at least 1 (got {k}).")
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
    sae: Any,
    subject: Any,
    texts: Sequence[str],
    hook_name: str,
    k: int = 3,
    *,
    left: int = 8,
    right: int = 3,
    max_length: int = 128,
    batch_size: int = 8,
    skip_first: bool = True,
) -> dict[int, list[str]]:
    """The top-``k`` corpus contexts of every SAE feature that fires on ``texts``.

    Each text contributes at most one context per feature (its max-activating token), so the
    ``k`` contexts of a feature come from ``k`` different texts, strongest first.

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
        skip_first: Leave out position 0 (an attention sink whose huge norm swamps features).

    Returns:
        ``{feature id: [snippet, ...]}`` for features with a positive activation somewhere, each
        snippet the tokens around the max-activating one, which is marked ``«token»``.

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
    for ids, acts, mask in activation_batches(
        adapter, texts, hook, max_length=max_length, batch_size=batch_size, skip_first=skip_first
    ):
        feats = sae.encode(acts.to(device=device, dtype=dtype)).float().cpu()  # [B, T, d_sae]
        feats = feats.masked_fill(~mask[..., None], float("-inf"))
        vals, pos = feats.max(dim=1)  # [B, d_sae]
        all_ids.extend(ids)
        best_vals.append(vals)
        best_pos.append(pos)
    if not all_ids:
        raise InputError("No usable tokens in texts (all empty, or one token each with skip_first=True).")
    vals, pos = torch.cat(best_vals), torch.cat(best_pos)  # [N, d_sae]
    top_vals, top_docs = vals.topk(min(k, len(all_ids)), dim=0)  # [k, d_sae]
    contexts: dict[int, list[str]] = {}
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
    sae: Any, dataset: Any, k: int = 5, *, words: int = 8, features: torch.Tensor | None = None
) -> dict[int, list[str]]:
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
        ``{feature id: [snippet, ...]}`` for features positive somewhere, strongest first.

    Raises:
        InputError: An SAE of another width or hook than the dataset's.
    """
    check_sae(sae, d_model=dataset.d_model, hook_name=dataset.meta.get("hook_name"), what="the dataset")
    acts = encode_features(sae, dataset.vectors) if features is None else features  # [n, d_sae]
    frame = dataset.frame
    docs = frame["doc_id"].to_numpy()
    contexts: dict[int, list[str]] = {}
    if len(frame) == 0:
        return contexts
    for feature in torch.nonzero((acts > 0).any(dim=0)).flatten().tolist():
        order = torch.argsort(acts[:, feature], descending=True, stable=True).tolist()
        snippets, seen = [], set()
        for row in order:
            if len(snippets) >= k or not acts[row, feature] > 0:
                break
            if docs[row] in seen:
                continue
            seen.add(docs[row])
            snippets.append(_prefix_snippet(str(frame["prefix"].iat[row]), str(frame["token"].iat[row]), words))
        contexts[int(feature)] = snippets
    return contexts
