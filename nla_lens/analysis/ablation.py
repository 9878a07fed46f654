"""Ablation by snippet: which part of an explanation does the reconstructor use?

Each snippet of each explanation is dropped in turn (the rest is renumbered in the same style,
so the AR still reads its familiar format) and the increase of the normalised reconstruction
MSE is recorded: a snippet whose removal costs nothing carried nothing the AR used.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from nla_lens.analysis.text import heading_of, join_snippets, snippet_style, split_snippets
from nla_lens.metrics import score_round_trip

__all__ = ["snippet_ablation"]


def snippet_ablation(
    ar: Any,
    explanations: list[str],
    targets: torch.Tensor,
    *,
    batch_size: int = 16,
    full_mse: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Drop each snippet of each explanation in turn and measure the reconstruction loss increase.

    Args:
        ar: The reconstructor.
        explanations: ``n`` explanations.
        targets: ``[n, d]`` the vectors they explain.
        batch_size: AR batch size.
        full_mse: ``[n]`` normalised MSE of the full explanations, if already computed.

    Returns:
        One row per (vector, snippet) for explanations with at least two snippets: ``vector``,
        ``snippet`` (index), ``heading`` (the snippet's heading or ``"#k"``), ``text``,
        ``mse_full``, ``mse_ablated`` and ``mse_increase`` (positive: the snippet carried
        information the AR used).
    """
    if full_mse is None:
        full_mse = score_round_trip(ar, explanations, targets, batch_size=batch_size).mse
    rows, ablated = [], []
    for index, text in enumerate(explanations):
        snippets = split_snippets(text or "")
        if len(snippets) < 2:
            continue
        style = snippet_style(text)
        for k, snippet in enumerate(snippets):
            ablated.append(join_snippets(snippets[:k] + snippets[k + 1 :], style))
            rows.append(
                {
                    "vector": index,
                    "snippet": k,
                    "heading": heading_of(snippet) or f"#{k + 1}",
                    "text": snippet,
                    "mse_full": float(full_mse[index]),
                }
            )
    columns = ["vector", "snippet", "heading", "text", "mse_full", "mse_ablated", "mse_increase"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    rows_targets = torch.as_tensor(targets)[torch.as_tensor(frame["vector"].to_numpy(copy=True))]
    frame["mse_ablated"] = score_round_trip(ar, ablated, rows_targets, batch_size=batch_size).mse.numpy()
    frame["mse_increase"] = frame["mse_ablated"] - frame["mse_full"]
    return frame[columns]
