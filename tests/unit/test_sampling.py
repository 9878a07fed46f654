"""Per-row seeded sampling: seeds from stable ids, Gumbel-max draws from softmax(logits / T)."""

from __future__ import annotations

import pytest
import torch

from nla_lens.errors import InputError
from nla_lens.sampling import SeededGumbelSampler, sample_seeds


def test_seeds_depend_on_the_ids_not_on_their_order():
    seeds = sample_seeds((0, 5), [7, 3, 9], 2)
    assert len(seeds) == 6 and len(set(seeds)) == 6
    assert sample_seeds((0, 5), [9, 7], 2) == seeds[4:6] + seeds[0:2]
    assert sample_seeds((0, 6), [7], 2) != seeds[0:2]  # another step, other samples
    assert all(0 <= s < 2**63 for s in seeds)


def _draw(sampler: SeededGumbelSampler, logits: torch.Tensor) -> torch.Tensor:
    return sampler(torch.zeros(len(logits), 1, dtype=torch.long), logits.clone()).argmax(dim=-1)


def test_gumbel_draws_follow_the_softmax_at_the_temperature():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    n = 6000
    for temperature in (1.0, 0.5):
        draws = _draw(SeededGumbelSampler(range(n), temperature), logits.expand(n, -1))
        frequencies = torch.bincount(draws, minlength=4).float() / n
        expected = torch.softmax(logits / temperature, dim=0)
        assert torch.allclose(frequencies, expected, atol=0.02), (temperature, frequencies, expected)


def test_top_p_never_draws_outside_the_nucleus():
    logits = torch.tensor([3.0, 2.5, -2.0, -3.0])  # the top two hold > 97 % of the mass
    draws = _draw(SeededGumbelSampler(range(2000), 1.0, top_p=0.9), logits.expand(2000, -1))
    assert set(draws.tolist()) == {0, 1}


def test_a_row_draws_the_same_whatever_its_batch():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    together = _draw(SeededGumbelSampler([11, 22, 33]), logits)
    alone = torch.cat([_draw(SeededGumbelSampler([s]), logits[i : i + 1]) for i, s in enumerate([11, 22, 33])])
    reordered = _draw(SeededGumbelSampler([33, 11]), logits[[2, 0]])
    assert together.tolist() == alone.tolist() and reordered.tolist() == [together[2], together[0]]


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="temperature"):
        SeededGumbelSampler([1], temperature=0.0)
    with pytest.raises(InputError, match="2 seeds for a batch of 3"):
        SeededGumbelSampler([1, 2])(torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 5))
