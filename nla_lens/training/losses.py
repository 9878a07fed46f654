"""Pure training maths on tensors: rewards, group advantages, the PPO-clipped surrogate, KL.

No models here, so every piece is unit-tested on hand-made tensors. Shapes: ``G`` vectors, ``S``
samples per vector (the GRPO group), ``L`` response tokens.
"""

from __future__ import annotations

import torch

from nla_lens.metrics import normalized_mse

WORST_MSE = 2.0
"""Reward floor (mse of an orthogonal guess) for failed samples: missing tag, truncated, empty."""


def rewards_from_mse(mse: torch.Tensor, failed: torch.Tensor) -> torch.Tensor:
    """Reward ``-mse`` per sample; failed samples get the worst reward ``-WORST_MSE``.

    Args:
        mse: ``[N]`` normalised MSE of each sample's reconstruction (any value where failed).
        failed: ``[N]`` bool.
    """
    return torch.where(failed, torch.full_like(mse, -WORST_MSE), -mse)


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO advantages: rewards standardised within each group.

    Args:
        rewards: ``[G, S]``.
        eps: Added to the standard deviation (a group of equal rewards gets advantage 0).

    Returns:
        ``[G, S]`` advantages, zero mean within each group.
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float = 0.2
) -> torch.Tensor:
    """PPO-clipped policy loss, averaged over real tokens of each sequence, then sequences.

    Args:
        logp: ``[N, L]`` current log-probs of the sampled tokens (differentiable).
        old_logp: ``[N, L]`` log-probs when sampled (detached).
        advantages: ``[N]`` one advantage per sequence.
        mask: ``[N, L]`` 1 for response tokens, 0 for padding.
        clip: PPO clip range (0.2 in the published method).

    Returns:
        Scalar loss to minimise.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    per_token = -torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    return _masked_mean(per_token, mask)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate to the reference policy (the non-negative "k3" estimator).

    ``exp(ref - logp) - (ref - logp) - 1`` is unbiased for KL(policy || reference) on samples
    from the policy and never negative. Returns the masked mean, a scalar.
    """
    delta = ref_logp - logp
    return _masked_mean(torch.exp(delta) - delta - 1, mask)


def reconstruction_loss(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The AR's training loss: mean normalised MSE (= mean 2(1 - cos)), differentiable."""
    return normalized_mse(predicted, targets).mean()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    per_sequence = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
    return per_sequence.mean()
