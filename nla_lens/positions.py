"""Which token positions count as content: the one rule that keeps attention sinks out.

Real language models park a huge residual norm on a few tokens that carry no content, the
*attention sinks*: position 0 always, and sometimes a later one. In the embedded SmolLM2 at
``blocks.20.hook_resid_post`` position 0 has a norm of about 18,000-22,000 against a median of
about 240, and position 1 of the corpus's dictionary-style entries (``PHILISTINE``, ``ACADEME``, ...)
is a second sink at 9,600-14,700. A vector at a sink says nothing about the text, and an SAE trained
on sinks spends features on them that then fire everywhere.

:class:`ContentRule` is the single definition of a content position, used by NLA extraction
(:func:`nla_lens.data.extraction.extract_activations`), SAE training and feature contexts
(:mod:`nla_lens.training.sae`, :mod:`nla_lens.analysis.sae_features`), the side-by-side view and,
through them, the agreement measures and feature labels. A position is content when

* it is not a special token and lies at or after ``min_position`` (1: position 0 is always a sink), and
* its L2 norm is at most ``max_norm_ratio`` times the *reference norm* of its text: the median norm
  of the text's other eligible positions (the lower median for an even count, so one sink in a
  two-token text cannot raise its own reference).

``max_norm_ratio = 4`` is measured on the embedded corpus (``python scripts/content_positions.py``):
ordinary tokens stay below 2× their text's median at layers 10 and 20, sinks lie 35-60× above
it. The ratio compares a text with itself, so it assumes nothing about a model's norm scale (Gemma-3's
residual norms are 50× SmolLM2's). Pure tensor code: no model, no heavy import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from nla_lens.errors import InputError

__all__ = ["CONTENT_RULE", "ContentRule", "content_mask", "token_content_mask"]


@dataclass(frozen=True)
class ContentRule:
    """Which positions of a text count as content (see the module docstring for the criterion).

    Attributes:
        min_position: First position that may be content (position 0 is an attention sink).
        max_norm_ratio: A position whose norm exceeds this multiple of its text's median norm is
            a sink; ``math.inf`` turns the norm test off.
    """

    min_position: int = 1
    max_norm_ratio: float = 4.0

    def __post_init__(self) -> None:
        if not isinstance(self.min_position, int) or self.min_position < 0:
            raise InputError(f"min_position must be an int >= 0, got {self.min_position!r}.")
        if not (isinstance(self.max_norm_ratio, (int, float)) and self.max_norm_ratio > 1):
            raise InputError(
                f"max_norm_ratio must be a number above 1 (math.inf: no norm test), got {self.max_norm_ratio!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{"min_position": ..., "max_norm_ratio": ...}`` (``inf`` written as ``None``)."""
        out = asdict(self)
        if math.isinf(out["max_norm_ratio"]):
            out["max_norm_ratio"] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContentRule:
        ratio = data.get("max_norm_ratio", cls.max_norm_ratio)
        return cls(int(data.get("min_position", cls.min_position)), math.inf if ratio is None else float(ratio))

    def mask(self, norms: torch.Tensor, usable: torch.Tensor | None = None) -> torch.Tensor:
        """The content positions of a batch of texts.

        Args:
            norms: ``[B, T]`` L2 norms of the activations at one hook.
            usable: ``[B, T]`` bool, the real (not padding, not special) tokens; default all.

        Returns:
            ``[B, T]`` bool: ``usable``, at or after ``min_position``, and not a norm outlier.
        """
        norms = torch.as_tensor(norms, dtype=torch.float32)
        if norms.ndim != 2:
            raise InputError(f"norms must be [batch, positions], got shape {tuple(norms.shape)}.")
        usable = (
            torch.ones_like(norms, dtype=torch.bool) if usable is None else torch.as_tensor(usable, dtype=torch.bool)
        )
        if usable.shape != norms.shape:
            raise InputError(f"usable has shape {tuple(usable.shape)}, norms {tuple(norms.shape)}: they must match.")
        eligible = usable.clone()
        eligible[:, : self.min_position] = False
        if math.isinf(self.max_norm_ratio):
            return eligible
        keep = eligible.clone()
        for row in range(norms.shape[0]):
            values = norms[row][eligible[row]]
            if values.numel() == 0:
                continue
            reference = values.median()  # the lower median for an even count
            keep[row] &= norms[row] <= self.max_norm_ratio * reference
        return keep


#: The rule every part of nla_lens uses unless a caller passes another.
CONTENT_RULE = ContentRule()


def content_mask(
    norms: torch.Tensor, usable: torch.Tensor | None = None, rule: ContentRule | None = None
) -> torch.Tensor:
    """``(rule or CONTENT_RULE).mask(norms, usable)``: ``[B, T]`` bool of the content positions."""
    return (rule or CONTENT_RULE).mask(norms, usable)


def token_content_mask(
    acts: torch.Tensor, ids: list[list[int]], special: set[int] | frozenset[int], rule: ContentRule | None = None
) -> torch.Tensor:
    """The content positions of right-padded texts from their activations and token ids.

    Args:
        acts: ``[B, T, d_model]`` activations at one hook (row ``i`` holds ``len(ids[i])`` real tokens).
        ids: The token ids of each text, unpadded.
        special: Token ids that are never content (BOS, chat markers, padding).
        rule: Default :data:`CONTENT_RULE`.

    Returns:
        ``[B, T]`` bool: real, non-special tokens that ``rule`` counts as content.
    """
    usable = torch.zeros(acts.shape[:2], dtype=torch.bool)
    for row, x in enumerate(ids):
        usable[row, : len(x)] = torch.tensor([t not in special for t in x], dtype=torch.bool)
    return content_mask(acts.float().norm(dim=-1).cpu(), usable, rule)
