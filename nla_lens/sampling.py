"""Sampling seeded per vector: a row's samples depend on its seed, not on its batch or process.

Under data-parallel training the same vector can land in another process or at another batch
position; with one shared random stream (HF ``generate(do_sample=True)``) it would then get other
samples, and a 2-process run could not repeat a 1-process run. So every sampled row carries its
own seed, derived from (run seed, step, vector id, sample number) by :func:`sample_seeds`:

- the HF engine samples with the Gumbel-max trick, ``argmax(logits / T + g)`` with ``g`` drawn
  from the row's own ``torch.Generator`` (:class:`SeededGumbelSampler`, a transformers
  ``LogitsProcessor`` run under greedy decoding) — exactly a draw from ``softmax(logits / T)``;
- the vLLM engine passes the same seeds as ``SamplingParams(seed=...)``.

The two engines draw different (equally distributed) samples from the same seed; each is
reproducible on its own. transformers has no per-row generator in ``generate``, hence this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import cast

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

from nla_lens.errors import InputError

__all__ = ["SeededGumbelSampler", "sample_seeds"]


def sample_seeds(base: object, vector_ids: Sequence[int], num_samples: int = 1) -> list[int]:
    """One 63-bit seed per (vector, sample), in ``vector_ids`` order, samples of a vector adjacent.

    Args:
        base: What else the seed depends on, e.g. ``(run_seed, step)`` or a user's ``seed``.
        vector_ids: Stable ids of the vectors (dataset rows, input positions), not batch positions.
        num_samples: Samples per vector.

    Returns:
        ``len(vector_ids) * num_samples`` ints.
    """
    seeds = []
    for vector in vector_ids:
        for sample in range(num_samples):
            digest = hashlib.blake2b(f"{base!r}|{int(vector)}|{sample}".encode(), digest_size=8).digest()
            seeds.append(int.from_bytes(digest, "little") >> 1)
    return seeds


class SeededGumbelSampler(LogitsProcessor):
    """Turns greedy decoding into sampling with one random stream per row.

    Adds Gumbel noise from row ``i``'s generator (seeded with ``seeds[i]``) to the temperature-scaled,
    top-p-filtered scores; greedy decoding then picks ``argmax(logits / T + g)``, a sample of
    ``softmax(logits / T)`` restricted to the top-p set.

    Args:
        seeds: One seed per batch row.
        temperature: Sampling temperature (> 0).
        top_p: Nucleus threshold (1.0: off).
    """

    def __init__(self, seeds: Sequence[int], temperature: float = 1.0, top_p: float = 1.0):
        if temperature <= 0:
            raise InputError(f"temperature must be > 0 for sampling, got {temperature}; use greedy decoding instead.")
        self.seeds = [int(s) for s in seeds]
        self.warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """``scores [B, V]`` -> scores plus Gumbel noise ``[B, V]``."""
        if len(scores) != len(self.seeds):
            raise InputError(f"{len(self.seeds)} seeds for a batch of {len(scores)} rows.")
        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        logits = scores.float()
        tiny = torch.finfo(torch.float32).tiny
        noise = torch.stack(
            [torch.rand(logits.shape[1], generator=g, device=logits.device).clamp_(tiny, 1.0) for g in self.generators]
        )
        # transformers types a processor's scores as torch.FloatTensor (by name a float32 CPU tensor); any
        # float tensor is meant, as everywhere in its generation loop.
        return cast(torch.FloatTensor, logits - torch.log(-torch.log(noise)))
