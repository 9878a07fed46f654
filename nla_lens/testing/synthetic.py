"""A synthetic NLA task for tests and smoke runs: vectors near a few "concept" directions.

Each vector is one of ``len(words)`` random centroids plus noise, and its teacher explanation
names the concept ("the cat"). A tiny AV/AR pair learns it in seconds on a CPU, so training code
can be checked for direction (loss falls, reward rises) without a real model.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from nla_lens.data.dataset import ActivationDataset, norm_stats

WORDS = ("cat", "dog", "bird", "park")


def concept_dataset(
    n: int = 64,
    d_model: int = 64,
    *,
    words: Sequence[str] = WORDS,
    noise: float = 0.5,
    scale: float = 3.0,
    seed: int = 0,
    held_out: int = 0,
) -> tuple[ActivationDataset, list[str]]:
    """``n`` vectors ``[n, d_model]`` around ``len(words)`` centroids, and one explanation each.

    The rows are in the ``"rl"`` split, except the last ``held_out``, in ``"eval"``: the same
    concepts with fresh noise, for held-out evaluation (``dataset.split("eval")``).

    Returns:
        ``(dataset, explanations)``; vector ``i`` belongs to concept ``i % len(words)``.
    """
    generator = torch.Generator().manual_seed(seed)
    centroids = torch.randn(len(words), d_model, generator=generator) * scale
    labels = torch.arange(n) % len(words)
    vectors = centroids[labels] + noise * torch.randn(n, d_model, generator=generator)
    explanations = [f"the {words[i]}" for i in labels.tolist()]
    frame = pd.DataFrame(
        {
            "doc_id": range(n),
            "split": ["rl"] * (n - held_out) + ["eval"] * held_out,
            "position": 10,
            "token_id": labels.tolist(),
            "token": [words[i] for i in labels.tolist()],
            "prefix": explanations,
            "norm": vectors.norm(dim=-1).numpy(),
        }
    )
    meta = {"subject": "synthetic", "hook_name": "blocks.1.hook_resid_post", "norm_stats": norm_stats(vectors)}
    return ActivationDataset(vectors, frame, meta), explanations
