"""Explain a whole prompt: every token (or a selection) explained, reconstructed and scored.

:func:`explain_prompt` reads the prompt once at the NLA's hook, runs ``NLA.round_trip`` on the
chosen positions and adds an ``fve`` column (each token's share of the fraction of variance
explained, so the column's mean is the prompt's fve_nrm). The result, :class:`PromptExplanation`,
exports to CSV, parquet and a standalone HTML page; its view is the token strip and table of
:class:`~nla_lens.vis.side_by_side.SideBySide` (reused, without attention or SAE columns).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from nla_lens.errors import ShapeError
from nla_lens.metrics import normalize
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.hook_check import check_subject
from nla_lens.vis.html import HTMLView

if TYPE_CHECKING:
    from nla_lens.models.nla import NLA
    from nla_lens.subjects.adapters import SubjectModel

__all__ = ["PROMPT_COLUMNS", "PromptExplanation", "explain_prompt", "token_fve"]

#: The leading columns of ``PromptExplanation.frame`` (the verbalizer's flags follow them).
PROMPT_COLUMNS: tuple[str, ...] = ("position", "token", "explanation", "mse", "cosine", "gain", "fve")


def token_fve(mse: torch.Tensor, targets: torch.Tensor, reference: Any = None) -> torch.Tensor:
    """Per-token fve: ``1 - ||u_i - û_i||² / mean_j ||u_j - ū||²`` on unit vectors.

    Args:
        mse: ``[n]`` normalised MSE of each token (``||u_i - û_i||²`` for unit vectors).
        targets: ``[n, d]`` the tokens' activations.
        reference: Vectors ``[m, d]`` (or an ActivationDataset) whose spread is the denominator;
            default the ``targets`` themselves, so the mean of the result is their fve_nrm.

    Returns:
        ``[n]`` float tensor (NaN when the reference has fewer than two vectors).
    """
    ref = getattr(reference, "vectors", reference)
    ref = targets if ref is None else torch.as_tensor(ref).float()
    if ref.ndim != 2 or ref.shape[-1] != targets.shape[-1]:
        raise ShapeError(f"reference must be vectors [m, {targets.shape[-1]}], got {tuple(ref.shape)}.")
    if len(ref) < 2:
        return torch.full_like(mse, float("nan"))
    units = normalize(ref.float(), 1.0)
    spread = ((units - units.mean(dim=0, keepdim=True)) ** 2).sum(dim=-1).mean()
    return 1.0 - mse / spread


class PromptExplanation(HTMLView):
    """A prompt's tokens, each with its explanation and reconstruction scores.

    Attributes:
        frame: One row per explained token with :data:`PROMPT_COLUMNS` first, then the
            verbalizer's columns (``ok``, ``truncated``, ``non_english``, ...). Empty (with the
            columns) for an empty prompt.
        tokens: Every token of the prompt, decoded one by one.
        hook_name: The hook the NLA read.
        prompt: The prompt.
    """

    title = "nla_lens prompt explanation"

    def __init__(
        self,
        frame: pd.DataFrame,
        tokens: Sequence[str],
        *,
        hook_name: str,
        prompt: str,
        notices: Sequence[str] = (),
        description: str = "",
    ):
        super().__init__()
        self.frame, self.tokens, self.hook_name, self.prompt = frame, list(tokens), hook_name, prompt
        self.notices, self.description = list(notices), description

    def __repr__(self) -> str:
        return f"PromptExplanation({len(self.tokens)} tokens, {len(self.frame)} explained, hook={self.hook_name!r})"

    def __len__(self) -> int:
        return len(self.frame)

    def render(self) -> str:
        from nla_lens.vis.side_by_side import SideBySide  # the same strip + table, no attention/SAE

        view = self.frame.copy()
        view["sae_features"] = [[] for _ in range(len(view))]
        return SideBySide(
            view, self.tokens, hook_name=self.hook_name, notices=self.notices, description=self.description
        ).render()

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(path, index=False)
        return path

    def to_parquet(self, path: str | Path) -> Path:
        """Write the table as parquet; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_parquet(path, index=False)
        return path

    def to_html(self, path: str | Path) -> Path:
        """Write a standalone HTML page (no external reference); same as :meth:`save`."""
        return self.save(path)


def explain_prompt(
    nla: NLA,
    subject: SubjectModel,
    prompt: str,
    *,
    positions: Sequence[int] | None = None,
    reference: Any = None,
    hook_name: str | None = None,
    layer: int | None = None,
    max_new_tokens: int = 64,
    **round_trip_kwargs: Any,
) -> PromptExplanation:
    """Explain every token of a prompt (or the chosen ones) with an NLA and score each round trip.

    Args:
        nla: An :class:`~nla_lens.models.nla.NLA`.
        subject: The subject model it was trained on (TransformerLens or nnsight) or its adapter.
        prompt: The text; an empty prompt gives an empty table.
        positions: Token positions (default: all but the first, an attention sink).
        reference: Vectors or an ActivationDataset at the NLA's hook whose spread is the ``fve``
            denominator and whose mean direction is the baseline of ``gain`` (default: the
            prompt's own explained tokens).
        hook_name: Must be the NLA's hook when given (a mismatch is refused).
        layer: Instead of ``hook_name``: block index K; ``blocks.K.hook_resid_post`` must be the NLA's hook.
        max_new_tokens: Explanation length cap.
        **round_trip_kwargs: Passed to ``NLA.round_trip`` (``seed``, ``progress``, ``batch_size``...).

    Returns:
        A :class:`PromptExplanation` (``.frame``; ``.to_csv``, ``.to_parquet``, ``.to_html``).

    Raises:
        InputError: A hook other than the NLA's, a subject of another width, positions out of range.
        HookNameError: The subject has no such hook, or ``hook_name`` is an int (pass ``layer=``).
    """
    adapter, hook = check_subject(nla, subject, hook_name, layer=layer)
    read = prompt_activations(adapter, prompt, hook, positions)  # warns (at our caller) when cut to n_ctx
    if positions is None and read.positions == [0]:
        # A one-token prompt: its only token is the attention sink, never explained by default.
        read = dataclasses.replace(read, vectors=read.vectors[:0], positions=[])
    description = f"subject {adapter.name}"
    if not read.positions:
        empty = pd.DataFrame(
            {c: pd.Series(dtype=float if c in ("mse", "cosine", "gain", "fve") else object) for c in PROMPT_COLUMNS}
        )
        return PromptExplanation(
            empty, read.tokens, hook_name=hook.name, prompt=prompt, notices=read.notices, description=description
        )
    round_trip_kwargs.setdefault("warn", False)
    frame = nla.round_trip(read.vectors, max_new_tokens=max_new_tokens, reference=reference, **round_trip_kwargs)
    read.label(frame)
    rows = torch.as_tensor(frame["vector"].to_numpy(copy=True))
    frame["fve"] = token_fve(torch.as_tensor(frame["mse"].to_numpy(copy=True)), read.vectors[rows], reference).numpy()
    frame = frame[list(PROMPT_COLUMNS) + [c for c in frame.columns if c not in PROMPT_COLUMNS]]
    frame.attrs.update(prompt=prompt, hook_name=hook.name, n_tokens=len(read.ids))
    return PromptExplanation(
        frame, read.tokens, hook_name=hook.name, prompt=prompt, notices=read.notices, description=description
    )
