"""A hand-made TopK SAE with the interface of :mod:`nla_lens.sae`, for tests on both TransformerLens lines.

SAELens installs only beside TransformerLens 3.9, so tests and smoke-mode notebooks on 4.x use this
instead. It is also the smallest example of what a user's own SAE class needs to offer.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

__all__ = ["TinySAE"]


class TinySAE(torch.nn.Module):
    """``encode(x) = TopK(ReLU((x - b_dec) @ W_enc + b_enc))``; ``decode(f) = f @ W_dec + b_dec``.

    Args:
        d_in: Input width.
        d_sae: Number of features.
        k: Active features per input.
        hook_name: The hook it reads (``cfg.hook_name``).
        W_dec: Optional decoder directions ``[d_sae, d_in]``; default random unit rows. ``W_enc``
            is their transpose (a tied initialisation), so feature ``i`` fires on direction ``i``.
        seed: Seed of the random directions.
    """

    def __init__(
        self, d_in: int, d_sae: int, k: int, hook_name: str, *, W_dec: torch.Tensor | None = None, seed: int = 0
    ):
        super().__init__()
        if W_dec is None:
            W_dec = torch.randn(d_sae, d_in, generator=torch.Generator().manual_seed(seed))
            W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = torch.nn.Parameter(W_dec.detach().float().clone(), requires_grad=False)
        self.W_enc = torch.nn.Parameter(self.W_dec.detach().T.clone(), requires_grad=False)
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae), requires_grad=False)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in), requires_grad=False)
        self.cfg = SimpleNamespace(d_in=int(d_in), d_sae=int(d_sae), k=int(k), hook_name=hook_name)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of ``x`` ``[..., d_in]`` (at most ``k`` non-zero)."""
        pre = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        values, indices = pre.topk(min(self.cfg.k, pre.shape[-1]), dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, values)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[..., d_in]`` of feature activations ``[..., d_sae]``."""
        return features @ self.W_dec + self.b_dec
