"""The recipe's KL rule (kl_coef=0 ships only if readability holds and fve_nrm does not drop) and its card table."""

from __future__ import annotations

import pytest

from nla_lens.training.model_card import _kl_table, kl_decision


def _row(kl_coef: float, fve: float, perplexity: float, arm: str = "trained here") -> dict:
    return {
        "kl_coef": kl_coef,
        "steps": 50,
        "fve_nrm": fve,
        "fve_nrm_shuffled": -0.6,
        "failure_rate": 0.0,
        "missing_tag": 0.0,
        "truncated": 0.0,
        "non_english": 0.0,
        "perplexity": perplexity,
        "seconds_per_step": 20.0,
        "arm": arm,
    }


@pytest.mark.parametrize(
    ("fve", "perplexity", "ships"),
    [
        (0.39, 78.0, True),  # better and readable
        (0.36, 76.0, True),  # equal fve, equal readability
        (0.35, 70.0, False),  # lower fve
        (0.45, 84.0, False),  # 10.5 % less readable
    ],
)
def test_kl_zero_ships_only_when_it_reads_as_well_and_scores_no_lower(fve, perplexity, ships):
    assert kl_decision([_row(0.01, 0.36, 76.0), _row(0.0, fve, perplexity)])[0] is ships


def test_the_card_states_the_verdict_the_coefficient_used_and_a_reused_arm():
    text = _kl_table([_row(0.01, 0.36, 76.0, arm="runs/r/nla-rl50"), _row(0.0, 0.39, 78.0)], trained_with=0.01)
    assert "drop the KL" in text and "trained with kl_coef=0.01" in text
    assert "kl_coef=0.01 arm is this recipe's own run" in text
    assert "| 0 | 0.390 |" in text
    assert _kl_table(None, 0.01) == ""
