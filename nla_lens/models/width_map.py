"""The learned linear map between two widths in a cross-architecture NLA (subject <-> the NLA's LM)."""

from __future__ import annotations

import torch


def width_map(d_in: int, d_out: int) -> torch.nn.Linear:
    """``Linear(d_in, d_out, bias=False)`` with (semi-)orthogonal weights, from a fixed seed.

    Orthogonal, so at the start the map keeps the vectors' norms and angles where ``d_out >= d_in``
    (an isometry) and projects onto a random subspace where ``d_out < d_in``. Used for a
    cross-architecture AV's input map (subject width -> AV width) and AR head (AR width -> subject width).
    """
    layer = torch.nn.Linear(d_in, d_out, bias=False)
    weight = torch.empty(d_out, d_in)
    torch.nn.init.orthogonal_(weight, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer
