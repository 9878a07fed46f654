"""Directions as activations: a direction added to a typical activation, at a typical norm.

The one place that turns a direction (an SAE decoder row, a steering vector, a probe direction, the
difference of two activations) into vectors an NLA can explain:

* :func:`typical_activation`: the mean of some activations, rescaled to their median norm;
* :func:`direction_vectors`: that mean plus each direction at a strength, rescaled to the median
  norm (what :func:`~nla_lens.analysis.feature_labels.nla_feature_labels` explains for a feature's
  decoder direction, and :func:`~nla_lens.analysis.difference.explain_direction` for any direction);
* :func:`default_strengths`: the strength used when none is given (the typical spread of the
  activations around their mean, over the direction's norm);
* :func:`random_directions`: seeded random directions with the same norms, the control of both.
"""

from __future__ import annotations

import torch

__all__ = ["default_strengths", "direction_vectors", "random_directions", "typical_activation"]


def typical_activation(vectors: torch.Tensor) -> torch.Tensor:
    """The mean of ``vectors`` ``[n, d]``, rescaled to their median norm: ``[d]``."""
    mean = vectors.mean(dim=0)  # [d]
    return mean * (vectors.norm(dim=-1).median() / mean.norm().clamp_min(1e-12))


def default_strengths(vectors: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``[m]``: the median distance of ``vectors`` ``[n, d]`` from their mean, over each direction's
    norm (``directions`` ``[m, d]``), so each direction is added at the activations' typical spread.
    Zero for a single vector (it has no spread)."""
    mean = vectors.mean(dim=0)  # [d]
    return (vectors - mean).norm(dim=-1).median() / directions.norm(dim=-1).clamp_min(1e-12)


def direction_vectors(
    vectors: torch.Tensor, directions: torch.Tensor, strengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Each direction added to a typical activation at a strength, rescaled to a typical norm.

    Args:
        vectors: ``[n, d]`` activations: the typical activation is their mean, and the result is
            rescaled to their median norm.
        directions: ``[m, d]`` directions (decoder rows ``W_dec[features]``, steering vectors, ...).
        strengths: ``[m]`` how much of each direction to add (e.g. a feature's activation where it
            fires hard); a missing or non-positive one becomes :func:`default_strengths`.

    Returns:
        ``[m, d]``: ``mean + strength * direction``, each row rescaled to the median norm.
    """
    mean = vectors.mean(dim=0)  # [d]
    fallback = default_strengths(vectors, directions)  # [m]
    strengths = fallback if strengths is None else torch.where(strengths > 0, strengths, fallback)
    out = mean + strengths[:, None] * directions
    return out * (vectors.norm(dim=-1).median() / out.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def random_directions(directions: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Seeded random directions with the norms of ``directions`` ``[m, d]`` (Gaussian, so uniform on
    the sphere): ``[m, d]``, the control of a direction (a zero row stays zero)."""
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(directions.shape, generator=g, dtype=torch.float64).to(directions.dtype)
    norms = directions.norm(dim=-1, keepdim=True)
    return noise / noise.norm(dim=-1, keepdim=True) * norms
