"""The content-position rule: attention sinks (position 0, norm outliers) are never content."""

from __future__ import annotations

import math

import pytest
import torch

from nla_lens.errors import InputError
from nla_lens.positions import CONTENT_RULE, ContentRule, content_mask, token_content_mask


def test_position_zero_and_a_later_norm_outlier_are_sinks():
    norms = torch.tensor([[20_000.0, 12_000.0, 240.0, 250.0, 230.0, 260.0]])
    assert content_mask(norms).tolist() == [[False, False, True, True, True, True]]


def test_ordinary_spread_of_norms_is_all_content():
    norms = torch.tensor([[20_000.0, 150.0, 240.0, 295.0, 180.0, 2.5 * 240.0]])
    assert content_mask(norms)[0, 1:].all()


def test_a_sink_in_a_two_token_text_cannot_raise_its_own_reference():
    # The lower median of (sink, word) is the word's norm, so the sink still stands out.
    norms = torch.tensor([[20_000.0, 11_000.0, 240.0]])
    assert content_mask(norms).tolist() == [[False, False, True]]


def test_padding_and_special_tokens_are_never_content_and_do_not_set_the_reference():
    norms = torch.tensor([[20_000.0, 240.0, 250.0, 0.0, 0.0], [20_000.0, 240.0, 1.0, 1.0, 1.0]])
    usable = torch.tensor([[True, True, True, False, False], [True, True, False, False, False]])
    mask = content_mask(norms, usable)
    assert mask.tolist() == [[False, True, True, False, False], [False, True, False, False, False]]


def test_the_norm_test_is_scale_free():
    norms = torch.tensor([[1.0, 3_500.0, 3_600.0, 40_000.0, 3_400.0]])
    assert content_mask(norms).tolist() == [[False, True, True, False, True]]
    assert content_mask(norms / 1000).tolist() == content_mask(norms).tolist()


def test_rule_switches_and_round_trip():
    norms = torch.tensor([[20_000.0, 12_000.0, 240.0, 250.0]])
    assert content_mask(norms, rule=ContentRule(max_norm_ratio=math.inf)).tolist() == [[False, True, True, True]]
    assert content_mask(norms, rule=ContentRule(min_position=3)).tolist() == [[False, False, False, True]]
    for rule in (CONTENT_RULE, ContentRule(2, math.inf)):
        assert ContentRule.from_dict(rule.to_dict()) == rule


@pytest.mark.parametrize("kwargs", [{"min_position": -1}, {"max_norm_ratio": 1.0}, {"max_norm_ratio": "4"}])
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(InputError):
        ContentRule(**kwargs)


def test_bad_shapes_are_refused():
    with pytest.raises(InputError, match="batch, positions"):
        content_mask(torch.ones(5))
    with pytest.raises(InputError, match="must match"):
        content_mask(torch.ones(2, 5), torch.ones(2, 4, dtype=torch.bool))


def test_token_content_mask_builds_the_usable_mask_from_ids_and_special_tokens():
    acts = torch.ones(2, 4, 3)
    acts[0, 1] *= 50  # a sink at position 1 of the first text
    mask = token_content_mask(acts, [[5, 6, 7, 8], [5, 9]], special={9})
    assert mask.tolist() == [[False, False, True, True], [False, False, False, False]]
