"""``nla-lens explain``'s lines: each token coloured by its gain over the mean direction, not its cosine."""

from __future__ import annotations

import math
from types import SimpleNamespace

from nla_lens.cli import _GREEN, _RED, _YELLOW, format_row, gain_colour


def _row(gain: float, cosine: float = 0.95) -> SimpleNamespace:
    return SimpleNamespace(
        position=3,
        token=" mat",
        gain=gain,
        cosine=cosine,
        mse=2 * (1 - cosine),
        explanation="1. Recent context: the mat\n2. Current token: mat",
    )


def test_a_high_cosine_token_no_better_than_the_mean_direction_is_red_not_green():
    line = format_row(_row(gain=0.0, cosine=0.95), 80, colour=True)
    assert _RED in line and _GREEN not in line and "cos 0.950" in line and "gain  0.000" in line
    assert _GREEN in format_row(_row(gain=0.9), 80, colour=True)
    assert gain_colour(-0.4) == _RED and gain_colour(0.3) == _YELLOW and gain_colour(0.5) == _GREEN
    assert gain_colour(math.nan) == ""


def test_without_colour_the_line_has_no_escape_codes_and_one_line_of_explanation():
    line = format_row(_row(gain=0.2), 30, colour=False)
    assert (
        "\033[" not in line and "\n" not in line and line.endswith("  1. Recent context: the mat / 2")
    )  # 30 characters
