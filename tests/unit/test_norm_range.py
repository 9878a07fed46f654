"""Unit tests for nla_lens.norm_range (the training norm range and the far-outside check) and
nla_lens.frames (explanations shown whole)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch
import yaml

from nla_lens.errors import CheckpointError, NLALensWarning, NormRangeWarning
from nla_lens.frames import TextFrame
from nla_lens.norm_range import HIGH, LOW, NormRange, warn_if_outside
from nla_lens.schema import NLAMeta
from nla_lens.testing.tokenizers import tiny_tokenizer


def _with_norms(norms: list[float], d: int = 8) -> torch.Tensor:
    """``[len(norms), d]`` random directions with the given L2 norms."""
    directions = torch.randn(len(norms), d, generator=torch.Generator().manual_seed(0))
    return directions / directions.norm(dim=-1, keepdim=True) * torch.tensor(norms)[:, None]


def test_range_is_the_percentiles_of_the_norms() -> None:
    norms = torch.arange(1, 101, dtype=torch.float)  # 1..100
    got = NormRange.from_vectors(_with_norms(norms.tolist()))
    assert got.n_vectors == 100
    assert got.median == pytest.approx(50.5, abs=1e-3)
    assert got.p1 == pytest.approx(float(torch.quantile(norms, 0.01)), abs=1e-3)
    assert got.p99 == pytest.approx(float(torch.quantile(norms, 0.99)), abs=1e-3)


def test_outside_flags_norms_below_low_p1_or_above_high_p99_only() -> None:
    rng = NormRange(p1=100.0, median=200.0, p99=300.0, n_vectors=50)
    low, high = rng.bounds
    assert (low, high) == (LOW * 100.0, HIGH * 300.0) and low < 100.0 and high > 300.0
    vectors = _with_norms([low * 0.9, low * 1.1, 100.0, 200.0, 300.0, high * 0.9, high * 1.1])
    assert rng.outside(vectors).tolist() == [True, False, False, False, False, False, True]


def test_warning_names_the_count_and_range_and_is_silent_without_a_range() -> None:
    rng = NormRange(p1=100.0, median=200.0, p99=300.0, n_vectors=50)
    with pytest.warns(NormRangeWarning, match=r"2 of 3 vectors.*blocks\.20\.hook_resid_post.*p1 100 \.\. p99 300"):
        assert warn_if_outside(rng, _with_norms([10.0, 200.0, 5000.0]), "blocks.20.hook_resid_post") == 2
    assert issubclass(NormRangeWarning, NLALensWarning) and issubclass(NormRangeWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_outside(rng, _with_norms([150.0, 250.0]), "h") == 0
        assert warn_if_outside(None, _with_norms([1e-3, 1e6]), "h") == 0  # released NLAs record none


@pytest.mark.parametrize(
    "data, match",
    [
        ({"p1": 300.0, "median": 200.0, "p99": 100.0, "n_vectors": 3}, "p1 <= median <= p99"),
        ({"p1": -1.0, "median": 200.0, "p99": 300.0, "n_vectors": 3}, "positive numbers"),
        ({"p1": 1.0, "median": 2.0, "p99": 3.0, "n_vectors": 0}, "n_vectors must be >= 1"),
        ({"p1": 1.0, "median": 2.0}, "keys"),
        ({"p1": "x", "median": 2.0, "p99": 3.0, "n_vectors": 3}, "non-number"),
        ([1, 2, 3], "mapping"),
    ],
)
def test_malformed_ranges_are_refused(data, match) -> None:
    with pytest.raises(CheckpointError, match=match):
        NormRange.from_dict(data)


def test_sidecar_round_trip_keeps_the_range_and_old_sidecars_have_none(tmp_path) -> None:
    tok = tiny_tokenizer()
    meta = NLAMeta.for_tokenizer(tok, role="av", d_model=64, injection_scale=250.0, layer=20)
    assert meta.norm_range is None and "norm_range" not in meta.to_dict()["extraction"]
    meta = meta.with_norm_range(_with_norms([100.0, 200.0, 300.0]))
    first = meta.norm_range
    assert first is not None and first.n_vectors == 3
    meta = meta.with_norm_range(_with_norms([1.0, 2.0]))  # a later stage keeps the first range
    assert meta.norm_range == first
    meta.save(tmp_path)
    raw = yaml.safe_load((tmp_path / "nla_meta.yaml").read_text(encoding="utf-8"))
    assert raw["extraction"]["norm_range"] == first.to_dict()
    assert NLAMeta.load(tmp_path) == meta


def test_text_frame_shows_long_explanations_whole_without_touching_global_options() -> None:
    text = "1. Recent context: " + "word " * 40 + "\n2. Likely next: 'the'"
    plain = pd.DataFrame({"explanation": [text, "<b>x</b>"], "ok": [True, False]})
    assert text not in plain._repr_html_()  # pandas cuts cells at display.max_colwidth (50)
    frame = TextFrame(plain)
    html = frame._repr_html_()
    assert text in html and "pre-wrap" in html  # whole, the line break kept (not a literal "\\n")
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # still escaped HTML
    assert text in frame[["explanation"]]._repr_html_()  # slices stay TextFrames
    assert isinstance(frame.copy(), TextFrame) and isinstance(frame, pd.DataFrame)
    assert pd.get_option("display.max_colwidth") == 50
