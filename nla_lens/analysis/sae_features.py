"""SAE features over a corpus: the top-activating contexts of every feature.

Owns :func:`top_feature_contexts` (for each feature, the corpus snippets around its strongest
activations, the max-activating token marked ``«like this»``), the table the side-by-side view
shows under each feature. It takes any SAE with the interface of :mod:`nla_lens.sae` (SAELens's
or another), on both TransformerLens lines; training an SAE lives in :mod:`nla_lens.training.sae`.
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

__all__ = ["top_feature_contexts"]


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
