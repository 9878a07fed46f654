"""A prompt's activations at one hook: the one reader every per-token view and analysis uses.

``prompt_activations(subject, prompt, hook)`` (or ``layer=K``) tokenizes the prompt as the subject does (BOS when
the model expects it), cuts it to the model's context with a warning and a notice, checks the
chosen positions and runs the subject once, up to the hook. The result carries the vectors of the
chosen positions with the prompt's tokens, so a table of per-vector rows can be labelled with the
position and token each row explains (:meth:`PromptActivations.label`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import pandas as pd
import torch

from nla_lens.errors import InputError
from nla_lens.hooks import HookSite
from nla_lens.positions import CONTENT_RULE, token_content_mask
from nla_lens.subjects.adapters import SubjectAdapter, SubjectModel, as_subject

__all__ = ["PromptActivations", "prompt_activations"]


@dataclasses.dataclass
class PromptActivations:
    """The activations of a prompt's chosen tokens at one hook.

    Attributes:
        vectors: ``[n_positions, d_model]`` float tensor on the CPU, one row per chosen position.
        positions: The chosen token positions, in the order of ``vectors``' rows.
        tokens: Every token of the (possibly cut) prompt, decoded one by one.
        ids: ``[seq]`` token ids of the prompt as the subject read it.
        hook: The hook site read.
        notices: What the reader changed (a prompt cut to the context), for a view to show.
    """

    vectors: torch.Tensor
    positions: list[int]
    tokens: list[str]
    ids: list[int]
    hook: HookSite
    notices: list[str]

    def label(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (one row per vector, its ``vector`` column indexing ``self.vectors``) with
        ``position`` and ``token`` inserted as its first two columns (in place; also returned)."""
        rows = frame["vector"].to_numpy(copy=True)
        frame.insert(0, "position", [self.positions[i] for i in rows])
        frame.insert(1, "token", [self.tokens[self.positions[i]] for i in rows])
        return frame


def prompt_activations(
    subject: SubjectModel,
    prompt: str,
    hook: str | HookSite | None = None,
    positions: Sequence[int] | None = None,
    *,
    layer: int | None = None,
    warn: bool = True,
    stacklevel: int = 2,
) -> PromptActivations:
    """Read ``prompt`` at one hook of the subject model.

    Args:
        subject: A TransformerBridge / HookedTransformer / nnsight model or its adapter.
        prompt: The text; an empty prompt gives no positions and ``[0, d_model]`` vectors.
        hook: A hook name or a hook site from the adapter's ``resolve_hook``.
        positions: Token positions to keep (default: the content positions by
            :data:`~nla_lens.positions.CONTENT_RULE`, i.e. no attention sink: not position 0, not a
            norm outlier, with a notice naming any later sink left out; the only token of a
            one-token prompt).
        layer: Instead of ``hook``: block index K, meaning ``blocks.K.hook_resid_post``.
        warn: Warn when the prompt is cut to the context (the notice is kept either way).
        stacklevel: Where the warning about a prompt cut to the context points (the caller's
            caller by default).

    Returns:
        A :class:`PromptActivations`.

    Raises:
        InputError: ``prompt`` is not a string, or positions out of range.
        HookNameError: The subject has no such hook (close matches named), or ``hook`` is an int
            (pass ``layer=``).
    """
    adapter: SubjectAdapter = as_subject(subject)
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a string, got {type(prompt).__name__}.")
    if isinstance(hook, HookSite) and layer is None:
        site = hook
    else:
        site = adapter.resolve_hook(hook.name if isinstance(hook, HookSite) else hook, layer=layer)
    ids = adapter.encode(prompt) if prompt else []
    notices: list[str] = []
    if adapter.n_ctx and len(ids) > adapter.n_ctx:
        notices.append(
            f"The prompt has {len(ids)} tokens, more than the model context ({adapter.n_ctx}); only the "
            f"first {adapter.n_ctx} are read."
        )
        if warn:
            warnings.warn(notices[-1], stacklevel=stacklevel + 1)
        ids = ids[: adapter.n_ctx]
    tokens = [adapter.tokenizer.decode([t]) for t in ids]
    chosen = None if positions is None else [int(p) for p in positions]
    if chosen is not None and any(not 0 <= p < len(ids) for p in chosen):
        raise InputError(
            f"positions must be token indices in 0..{len(ids) - 1} for this prompt ({len(ids)} tokens), got {chosen}."
        )
    if not ids or chosen == []:
        return PromptActivations(torch.zeros(0, adapter.d_model), [], tokens, list(ids), site, notices)
    acts = adapter.activations(torch.tensor([ids]), site)[0].float()  # [seq, d_model]
    if chosen is None:
        chosen = _content_positions(acts, ids, tokens, adapter.special_token_ids(), notices)
    return PromptActivations(acts[chosen], chosen, tokens, list(ids), site, notices)


def _content_positions(
    acts: torch.Tensor, ids: list[int], tokens: list[str], special: set[int], notices: list[str]
) -> list[int]:
    """The content positions of one prompt (``acts`` ``[seq, d_model]``); a notice names later sinks."""
    norms = acts.norm(dim=-1)
    content = token_content_mask(acts[None], [ids], special)[0]
    chosen = torch.nonzero(content).flatten().tolist()
    if not chosen:  # a one-token prompt (or nothing but sinks): its last token, rather than nothing
        return [len(ids) - 1]
    reference = float(norms[chosen].median())
    sinks = [p for p in range(CONTENT_RULE.min_position, len(ids)) if ids[p] not in special and not content[p]]
    if sinks:
        named = ", ".join(f"{p} {tokens[p]!r} (norm {float(norms[p]) / reference:.0f}× the median)" for p in sinks)
        notices.append(f"Not explained: attention-sink position(s) {named}; pass positions= to include them.")
    return chosen
