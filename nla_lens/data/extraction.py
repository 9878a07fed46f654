"""Activation extraction: documents -> ``ActivationDataset`` at one hook point.

Per document we tokenize (truncating to ``max_length``), draw ``positions_per_doc`` token
positions with a per-document RNG seeded by ``(seed, doc_id)`` (so adding documents never changes
the positions already drawn for others), skipping special tokens and positions below
``min_position`` (so every vector has some context to explain), and keep only the drawn positions
that count as content by :class:`~nla_lens.positions.ContentRule` (no attention sink: position 0,
whose norm is ~80× the rest, or a later norm outlier; a sink drawn is dropped and counted in
``meta["sink_positions_dropped"]``). Documents are
assigned to named splits by a seeded permutation, so no document straddles two splits. The model
runs in length-sorted, right-padded batches and stops at the hook's block.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from nla_lens.data.dataset import ActivationDataset, norm_stats
from nla_lens.data.texts import as_texts
from nla_lens.errors import InputError
from nla_lens.positions import CONTENT_RULE, token_content_mask
from nla_lens.subjects.adapters import SubjectAdapter, as_subject

DEFAULT_SPLITS: dict[str, float] = {"av_sft": 0.25, "ar_sft": 0.25, "rl": 0.4, "eval": 0.1}
"""Split by document, as in the published method (~25% AV warm start, 25% AR warm start, the rest RL),
with 10% of the documents held out for evaluation (so RL gets 40%)."""


def sample_positions(
    token_ids: list[int], n: int, min_position: int, special_ids: set[int], rng: np.random.Generator
) -> np.ndarray:
    """Draw up to ``n`` distinct positions ``>= min_position`` that are not special tokens.

    Returns:
        Sorted int array, empty when the document has no eligible position.
    """
    eligible = np.array(
        [p for p in range(min_position, len(token_ids)) if token_ids[p] not in special_ids], dtype=np.int64
    )
    if len(eligible) <= n:
        return eligible
    return np.sort(rng.choice(eligible, size=n, replace=False))


def assign_splits(doc_ids: np.ndarray, splits: Mapping[str, float], seed: int) -> dict[int, str]:
    """Assign whole documents to splits by a seeded permutation, in proportion to ``splits``."""
    total = float(sum(splits.values()))
    if not splits or total <= 0 or any(v < 0 for v in splits.values()):
        raise InputError(f"splits must map names to non-negative fractions with a positive sum, got {dict(splits)}.")
    order = np.random.default_rng([seed, 0x5EED]).permutation(doc_ids)
    bounds = np.cumsum([v / total for v in splits.values()]) * len(order)
    starts = np.concatenate([[0], np.round(bounds[:-1])]).astype(int)
    ends = np.concatenate([np.round(bounds[:-1]), [len(order)]]).astype(int)
    return {int(doc): name for name, a, b in zip(splits, starts, ends) for doc in order[a:b]}


def extract_activations(
    model: Any,
    texts: Any,
    hook_name: str | None = None,
    *,
    layer: int | None = None,
    positions_per_doc: int = 6,
    min_position: int = 10,
    max_length: int = 256,
    batch_size: int = 8,
    splits: Mapping[str, float] | None = None,
    only_splits: Collection[str] | None = None,
    seed: int = 0,
    text_column: str = "text",
    tokenizer: Any = None,
    remote: bool = False,
    progress: bool = True,
) -> ActivationDataset:
    """Extract raw residual-stream activations at sampled token positions.

    Args:
        model: A ``TransformerBridge``, ``HookedTransformer``, nnsight model (see
            ``nla_lens.load_subject``) or a ``SubjectAdapter``.
        texts: Documents: an iterable of strings, a pandas Series or an HF ``Dataset``.
        hook_name: TransformerLens hook name, e.g. ``"blocks.20.hook_resid_post"``. With neither
            it nor ``layer``: the residual stream about two thirds of the way through
            (``blocks.20.hook_resid_post`` for the embedded model).
        layer: Instead of ``hook_name``: block index K (negative counts from the end), meaning
            ``blocks.K.hook_resid_post``.
        positions_per_doc: Positions drawn per document (fewer if the document is short).
        min_position: Smallest token position drawn (context before every vector; attention sinks
            are kept out by :data:`~nla_lens.positions.CONTENT_RULE` whatever its value).
        max_length: Documents are truncated to this many tokens.
        batch_size: Documents per forward pass.
        splits: Split names -> fractions of documents (default ``DEFAULT_SPLITS``).
        only_splits: Run only the documents assigned to these splits through the model. The
            assignment is still made over all documents, so the rows equal those of a full
            extraction filtered to these splits (same documents, positions and split names).
        seed: Seeds positions (per document) and the split assignment.
        text_column: Column to read from an HF ``Dataset``.
        tokenizer: Overrides the model's tokenizer.
        remote: nnsight only: run on NDIF.
        progress: Show a ``tqdm`` progress bar.

    Returns:
        An ``ActivationDataset`` with ``vectors`` ``[n, d_model]`` (fp32, raw) and one metadata row
        per vector. Documents without an eligible position are skipped and counted in
        ``meta["skipped_documents"]`` (with a warning).

    Raises:
        HookNameError: The model has no such hook (close matches named), a layer out of range, or
            an int as ``hook_name`` (pass ``layer=``).
        InputError: No documents, a non-string document, or settings out of range.
    """
    subject: SubjectAdapter = as_subject(model, tokenizer, remote=remote)
    documents = as_texts(texts, text_column)
    if hook_name is None and layer is None:
        layer = default_layer(subject.n_layers)
    hook = subject.resolve_hook(hook_name, layer=layer)
    for arg, value, low in (
        ("positions_per_doc", positions_per_doc, 1),
        ("batch_size", batch_size, 1),
        ("min_position", min_position, 0),
        ("max_length", max_length, 2),
    ):
        if not isinstance(value, int) or value < low:
            raise InputError(f"{arg} must be an int >= {low}, got {value!r}.")
    if subject.n_ctx and max_length > subject.n_ctx:
        max_length = subject.n_ctx
    if min_position >= max_length:
        raise InputError(f"min_position ({min_position}) must be below max_length ({max_length}).")

    special = subject.special_token_ids()
    encoded: dict[int, list[int]] = {}
    chosen: dict[int, np.ndarray] = {}
    skipped: list[int] = []
    for doc_id, text in enumerate(documents):
        ids = subject.encode(text, max_length)
        positions = sample_positions(
            ids, positions_per_doc, min_position, special, np.random.default_rng([seed, doc_id])
        )
        if len(positions) == 0:
            skipped.append(doc_id)
            continue
        encoded[doc_id], chosen[doc_id] = ids, positions
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} of {len(documents)} documents with no token position >= "
            f"min_position={min_position} (too short); see meta['skipped_documents'].",
            stacklevel=2,
        )
    if not encoded:
        raise InputError(
            f"All {len(documents)} documents are shorter than min_position={min_position} tokens: "
            "pass longer documents or lower min_position."
        )
    splits = dict(splits or DEFAULT_SPLITS)
    split_of = assign_splits(np.array(sorted(encoded)), splits, seed)
    if only_splits is not None:
        only_splits = [only_splits] if isinstance(only_splits, str) else list(only_splits)
        unknown = set(only_splits) - set(splits)
        if unknown or not only_splits:
            raise InputError(f"only_splits must name splits of {sorted(splits)}, got {sorted(only_splits)}.")
        encoded = {d: ids for d, ids in encoded.items() if split_of[d] in only_splits}
        if not encoded:
            raise InputError(f"No document falls in the splits {sorted(only_splits)}; pass more documents.")

    # Length-sorted batches waste little on padding; right padding keeps causal outputs exact.
    order = sorted(encoded, key=lambda d: len(encoded[d]))
    pad_id = subject.tokenizer.pad_token_id if subject.tokenizer.pad_token_id is not None else 0
    rows: list[dict[str, Any]] = []
    vectors: list[torch.Tensor] = []
    sinks_dropped = 0
    bar = tqdm(total=len(order), desc=f"extract {hook.name}", unit="doc", disable=not progress)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(encoded[d]) for d in batch)
        tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for row, doc_id in enumerate(batch):
            tokens[row, : len(encoded[doc_id])] = torch.tensor(encoded[doc_id])
        acts = subject.activations(tokens, hook)
        content = token_content_mask(acts, [encoded[d] for d in batch], special)  # [B, T]: no sink
        for row, doc_id in enumerate(batch):
            ids = encoded[doc_id]
            for position in chosen[doc_id].tolist():
                if not content[row, position]:
                    sinks_dropped += 1
                    continue
                vectors.append(acts[row, position])
                rows.append(
                    {
                        "doc_id": doc_id,
                        "split": split_of[doc_id],
                        "position": position,
                        "token_id": ids[position],
                        "token": subject.tokenizer.decode([ids[position]]),
                        "prefix": subject.tokenizer.decode(ids[: position + 1], skip_special_tokens=True),
                    }
                )
        bar.update(len(batch))
    bar.close()
    if not vectors:
        raise InputError("Every drawn position was an attention sink (a norm outlier); pass other documents.")

    stacked = torch.stack(vectors).float()
    frame = pd.DataFrame(rows).sort_values(["doc_id", "position"], kind="stable")
    stacked = stacked[torch.as_tensor(frame.index.to_numpy(copy=True))]
    frame["norm"] = stacked.norm(dim=-1).numpy()
    meta = {
        "subject": subject.name,
        "backend": subject.backend,
        "hook_name": hook.name,
        "layer": hook.layer,
        "d_model": subject.d_model,
        "n_layers": subject.n_layers,
        "norm_stats": norm_stats(stacked),
        "documents": len(documents),
        "skipped_documents": len(skipped),
        "sink_positions_dropped": sinks_dropped,
        "settings": {
            "positions_per_doc": positions_per_doc,
            "min_position": min_position,
            "max_length": max_length,
            "seed": seed,
            "splits": splits,
            "only_splits": sorted(only_splits) if only_splits is not None else None,
            "prepend_bos": subject.prepend_bos,
            "content_rule": CONTENT_RULE.to_dict(),
        },
    }
    return ActivationDataset(stacked, frame, meta)


def default_layer(n_layers: int) -> int:
    """The layer about two thirds of the way through the model (20 of SmolLM2's 30 blocks)."""
    return max(0, min(n_layers - 1, math.floor(2 * n_layers / 3)))
