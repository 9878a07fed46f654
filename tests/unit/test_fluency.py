"""Unit tests for nla_lens.analysis.fluency (no model): the measures beside every steering gain."""

from __future__ import annotations

import math

import pytest
import torch

from nla_lens.analysis.fluency import (
    MAX_LOGPROB_DROP,
    MAX_REPETITION,
    continuation_logprob,
    is_fluent,
    perplexity,
    repetition_rate,
)
from nla_lens.errors import InputError


def test_continuation_logprob_reads_the_next_token_of_each_row():
    # Row t predicts ids[t + 1]; only the continuation (from `start`) counts.
    ids = torch.tensor([0, 1, 2, 3])
    logits = torch.full((4, 4), -1e4)
    logits[0, 1] = logits[1, 2] = 0.0  # prompt token 1 and continuation token 2: certain
    logits[2, :] = 0.0  # continuation token 3: uniform over 4 -> log(1/4)
    assert continuation_logprob(logits, ids, start=2) == pytest.approx((0.0 + math.log(0.25)) / 2)
    assert continuation_logprob(logits, ids, start=3) == pytest.approx(math.log(0.25))
    # A continuation the logits rule out scores far lower.
    assert continuation_logprob(logits, torch.tensor([0, 1, 0, 3]), start=2) < -1000


def test_continuation_logprob_refuses_bad_shapes_and_starts():
    logits = torch.zeros(4, 5)
    with pytest.raises(InputError, match="start"):
        continuation_logprob(logits, torch.arange(4), start=0)
    with pytest.raises(InputError, match="start"):
        continuation_logprob(logits, torch.arange(4), start=4)
    with pytest.raises(InputError, match=r"\[T, vocab\]"):
        continuation_logprob(logits, torch.arange(3), start=1)


def test_perplexity_is_exp_of_minus_the_mean_logprob():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(0.25)) == pytest.approx(4.0)
    assert math.isfinite(perplexity(-1e6)) and math.isnan(perplexity(math.nan))


def test_repetition_rate_counts_trigrams_seen_before():
    assert repetition_rate(torch.arange(10)) == 0.0
    loop = torch.tensor([5, 6] * 8)  # ", of, of, of, ..."
    assert repetition_rate(loop) == pytest.approx(12 / 14)  # 14 trigrams, only the first 2 are new
    assert repetition_rate(torch.tensor([1, 2, 3, 1, 2, 3]), n=3) == pytest.approx(1 / 4)
    assert repetition_rate(torch.tensor([1, 1, 1]), n=1) == pytest.approx(2 / 3)
    assert repetition_rate(torch.tensor([1, 2])) == 0.0  # too short to repeat a trigram
    with pytest.raises(InputError):
        repetition_rate(torch.arange(5), n=0)


def test_is_fluent_applies_both_thresholds():
    assert is_fluent(-2.0, -1.5, 0.1)
    assert not is_fluent(-1.5 - MAX_LOGPROB_DROP - 0.1, -1.5, 0.0)  # far less likely than the unsteered text
    assert not is_fluent(-1.5, -1.5, MAX_REPETITION + 0.1)  # likely but looping
    assert is_fluent(-5.0, -1.0, 0.0, max_logprob_drop=5.0)
