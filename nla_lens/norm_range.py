"""The L2-norm range of the vectors an NLA was trained on, and the check that a vector is far outside it.

An AV rescales every vector to its ``injection_scale`` before reading it, so a vector of another
layer (or of another norm scale) is explained fluently and flagged ``ok`` although the NLA never
saw anything like it. Its norm gives it away: residual-stream norms grow with depth, and the
training vectors' norms sit in a narrow band. Training records that band in the sidecar
(``extraction.norm_range``: 1st percentile, median, 99th percentile, number of vectors), and
:meth:`NormRange.outside` marks vectors whose norm is below ``LOW * p1`` or above ``HIGH * p99``.
Released NLAs do not record a range, so nothing is checked for them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from nla_lens.errors import CheckpointError, NormRangeWarning

if TYPE_CHECKING:
    pass

__all__ = ["HIGH", "LOW", "NormRange", "warn_if_outside"]

#: A norm below ``LOW * p1`` or above ``HIGH * p99`` counts as far outside the training range.
#: Measured on the embedded model (``scripts/norm_range.py``: 800 corpus documents, <= 128 tokens,
#: every position >= 10, 93,774 vectors per hook): layer 20 has p1 204, median 237, p99 281
#: (min 182, max 345; positions 1-9 lie in 200-287), so the band is [163, 422] and no ordinary
#: layer-20 vector leaves it; layer 10 has p1 107, median 135, p99 183 (max 224), so a typical
#: layer-10 vector falls below it. The two layers' norms overlap at the edges: this catches the
#: usual mix-up, not every foreign vector.
LOW = 0.8
HIGH = 1.5


@dataclass(frozen=True)
class NormRange:
    """Percentiles of the training vectors' L2 norms (the sidecar's ``extraction.norm_range``).

    Attributes:
        p1: 1st percentile.
        median: Median.
        p99: 99th percentile.
        n_vectors: How many vectors they were measured on.
    """

    p1: float
    median: float
    p99: float
    n_vectors: int

    def __post_init__(self) -> None:
        values = (self.p1, self.median, self.p99)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
            raise CheckpointError(
                f"nla_meta extraction.norm_range: p1, median and p99 must be positive numbers, got {values}."
            )
        if not self.p1 <= self.median <= self.p99:
            raise CheckpointError(
                f"nla_meta extraction.norm_range: needs p1 <= median <= p99, got {values}. Re-measure it "
                "with NormRange.from_vectors(training_vectors)."
            )
        if isinstance(self.n_vectors, bool) or not isinstance(self.n_vectors, int) or self.n_vectors < 1:
            raise CheckpointError(f"nla_meta extraction.norm_range: n_vectors must be >= 1, got {self.n_vectors!r}.")

    @classmethod
    def from_norms(cls, norms: torch.Tensor) -> NormRange:
        """The range of ``norms`` ``[n]`` (L2 norms, n >= 1)."""
        norms = torch.as_tensor(norms).double().flatten()
        if len(norms) == 0:
            raise CheckpointError("A norm range needs at least one vector; the training set is empty.")
        p1, median, p99 = torch.quantile(norms, torch.tensor([0.01, 0.5, 0.99], dtype=norms.dtype)).tolist()
        return cls(round(p1, 3), round(median, 3), round(p99, 3), len(norms))

    @classmethod
    def from_vectors(cls, vectors: torch.Tensor) -> NormRange:
        """The range of the L2 norms of ``vectors`` ``[n, d_model]``."""
        return cls.from_norms(torch.as_tensor(vectors).float().norm(dim=-1))

    def to_dict(self) -> dict[str, Any]:
        return {"p1": self.p1, "median": self.median, "p99": self.p99, "n_vectors": self.n_vectors}

    @classmethod
    def from_dict(cls, data: Any) -> NormRange:
        """Parse the sidecar mapping ``{p1, median, p99, n_vectors}``.

        Raises:
            CheckpointError: Not a mapping, a key missing, or values that are not a range.
        """
        keys = ("p1", "median", "p99", "n_vectors")
        if not isinstance(data, dict) or any(k not in data for k in keys):
            raise CheckpointError(f"nla_meta extraction.norm_range must be a mapping with keys {keys}, got {data!r}.")
        try:
            values = float(data["p1"]), float(data["median"]), float(data["p99"]), int(data["n_vectors"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"nla_meta extraction.norm_range holds a non-number: {data!r}.") from err
        return cls(*values)

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``: norms outside this interval count as far outside the range."""
        return LOW * self.p1, HIGH * self.p99

    def outside(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[n]`` bool: which of ``vectors`` ``[n, d_model]`` have a norm far outside the range."""
        low, high = self.bounds
        norms = torch.as_tensor(vectors).float().norm(dim=-1)
        return (norms < low) | (norms > high)


def warn_if_outside(
    norm_range: NormRange | None, vectors: torch.Tensor, hook_name: str | None, stacklevel: int = 2
) -> int:
    """Warn (:class:`~nla_lens.errors.NormRangeWarning`) when vectors lie far outside the training range.

    Args:
        norm_range: The NLA's recorded range; ``None`` (a released NLA) checks nothing.
        vectors: ``[n, d_model]`` vectors about to be explained.
        hook_name: The NLA's hook, named in the message.
        stacklevel: Where the warning points (the caller's caller by default).

    Returns:
        How many vectors are far outside the range (0 when nothing is recorded).
    """
    if norm_range is None or len(vectors) == 0:
        return 0
    far = norm_range.outside(vectors)
    count = int(far.sum())
    if count:
        norms = torch.as_tensor(vectors).float().norm(dim=-1)[far]
        low, high = norm_range.bounds
        warnings.warn(
            f"{count} of {len(far)} vectors have an L2 norm far outside what this NLA was trained on "
            f"(norms {float(norms.min()):.4g}..{float(norms.max()):.4g}; its training vectors at {hook_name} "
            f"span p1 {norm_range.p1:.4g} .. p99 {norm_range.p99:.4g}, flagged below {low:.4g} or above "
            f"{high:.4g}). They probably come from another layer, hook or model, and the explanation "
            "will read fluently but mean little. Extract vectors at the NLA's own hook.",
            NormRangeWarning,
            stacklevel=stacklevel + 1,
        )
    return count
