"""Unit tests for nla_lens.metrics (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nla_lens.errors import InputError, ShapeError
from nla_lens.metrics import (
    RoundTrip,
    cosine,
    current_token_control,
    derangement,
    fve_nrm,
    fve_nrm_interval,
    gain_over_mean,
    mean_direction,
    normalize,
    normalized_mse,
    predict_mean_control,
    reconstruction_report,
    shuffled_control,
)


def _structured(n: int = 64, d: int = 16, seed: int = 0) -> torch.Tensor:
    """Targets with a shared direction plus strong per-item structure (like real residuals)."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(d, generator=g)
    return common + 2.0 * torch.randn(n, d, generator=g)


def test_normalize_sets_norm_and_keeps_direction() -> None:
    v = torch.randn(5, 7) * 13.0
    out = normalize(v)
    assert torch.allclose(out.norm(dim=-1), torch.full((5,), math.sqrt(7)), atol=1e-5)
    assert torch.allclose(normalize(v, 3.0).norm(dim=-1), torch.full((5,), 3.0), atol=1e-5)
    assert torch.allclose(cosine(out, v), torch.ones(5), atol=1e-6)


def test_normalize_keeps_half_precision_dtype() -> None:
    v = torch.randn(3, 8).to(torch.bfloat16)
    assert normalize(v, 2.0).dtype == torch.bfloat16


def test_normalized_mse_equals_two_one_minus_cos() -> None:
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(32, 24, generator=g), torch.randn(32, 24, generator=g) * 50
    mse = normalized_mse(pred, target)
    assert mse.shape == (32,)
    assert torch.allclose(mse, 2 * (1 - cosine(pred, target)), atol=1e-5)


def test_normalized_mse_extremes_and_scale_invariance() -> None:
    v = torch.randn(4, 10)
    assert torch.allclose(normalized_mse(v * 7, v), torch.zeros(4), atol=1e-6)
    assert torch.allclose(normalized_mse(-v, v), torch.full((4,), 4.0), atol=1e-5)


def test_normalized_mse_is_differentiable() -> None:
    pred = torch.randn(3, 6, requires_grad=True)
    normalized_mse(pred, torch.randn(3, 6)).mean().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


def test_fve_is_one_for_perfect_reconstruction_at_any_norm() -> None:
    target = _structured()
    assert fve_nrm(target * 3.5, target) == pytest.approx(1.0, abs=1e-6)


def test_fve_matches_numpy_hand_computation() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(6, 4))
    pred = target + rng.normal(scale=0.5, size=(6, 4))
    u = target / np.linalg.norm(target, axis=1, keepdims=True)
    u_hat = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    err = np.mean(np.sum((u - u_hat) ** 2, axis=1))
    var = np.mean(np.sum((u - u.mean(axis=0)) ** 2, axis=1))
    expected = 1 - err / var
    got = fve_nrm(torch.from_numpy(pred), torch.from_numpy(target))
    assert got == pytest.approx(expected, abs=1e-10)
    assert fve_nrm(pred, target) == pytest.approx(expected, abs=1e-10)  # numpy input accepted


def test_predict_mean_control_is_zero_on_train_and_near_zero_held_out() -> None:
    data = _structured(n=4000, d=16, seed=3)
    train, held_out = data[:2000], data[2000:]
    assert predict_mean_control(train, train) == pytest.approx(0.0, abs=1e-6)
    assert abs(predict_mean_control(train, held_out)) < 0.02
    # A unit-length mean direction is a worse constant prediction than the mean itself.
    mean_dir = normalize(train).mean(0, keepdim=True).expand_as(held_out)
    assert fve_nrm(mean_dir, held_out) < predict_mean_control(train, held_out)


def _token_data(n: int, vocab: int, d: int, seed: int, dependent: bool) -> tuple:
    """Vectors on random tokens: a linear map of the token's embedding (plus noise), or not."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab, 12, generator=g)
    ids = torch.randint(0, vocab, (n,), generator=g)
    mix = torch.randn(12, d, generator=g)
    signal = table[ids] @ mix if dependent else torch.randn(n, d, generator=g) * 3
    return table, ids, signal + torch.randn(d, generator=g) + 0.3 * torch.randn(n, d, generator=g)


def test_current_token_control_finds_token_dependence_and_only_that() -> None:
    table, ids, vectors = _token_data(3000, vocab=400, d=24, seed=11, dependent=True)
    train, held = slice(0, 2500), slice(2500, None)
    high = current_token_control(vectors[train], ids[train], vectors[held], ids[held], table)
    assert high > 0.8  # tokens unseen in training are covered too: the map runs through the embedding
    table, ids, vectors = _token_data(3000, vocab=400, d=24, seed=12, dependent=False)
    assert current_token_control(vectors[train], ids[train], vectors[held], ids[held], table) < 0.05
    # the same vectors with their tokens re-drawn lose what the tokens told
    table, ids, vectors = _token_data(3000, vocab=400, d=24, seed=11, dependent=True)
    wrong = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))]
    assert current_token_control(vectors[train], wrong[train], vectors[held], wrong[held], table) < high - 0.5


def test_current_token_control_rejects_bad_input() -> None:
    table, ids, vectors = _token_data(100, vocab=50, d=8, seed=1, dependent=True)
    with pytest.raises(ShapeError, match="one token id each"):
        current_token_control(vectors, ids[:-1], vectors, ids, table)
    with pytest.raises(ShapeError, match="vocabulary"):
        current_token_control(vectors, ids + 50, vectors, ids, table)
    with pytest.raises(ShapeError, match="same hook"):
        current_token_control(vectors, ids, vectors[:, :4], ids, table)
    with pytest.raises(InputError, match="ridge"):
        current_token_control(vectors, ids, vectors, ids, table, ridge=0.0)
    bad = vectors.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(InputError):
        current_token_control(bad, ids, vectors, ids, table)


def test_shuffled_control_is_low_on_structured_data_and_reproducible() -> None:
    target = _structured(n=200, seed=4)
    pred = target + 0.3 * torch.randn(200, 16, generator=torch.Generator().manual_seed(5))
    assert fve_nrm(pred, target) > 0.8
    shuffled = shuffled_control(pred, target, generator=7)
    assert shuffled < 0.1
    assert shuffled == shuffled_control(pred, target, generator=7)
    assert shuffled == shuffled_control(pred, target, torch.Generator().manual_seed(7))


def test_derangement_has_no_fixed_points() -> None:
    for n in (2, 3, 10, 101):
        perm = derangement(n, generator=n)
        assert sorted(perm.tolist()) == list(range(n))
        assert not bool((perm == torch.arange(n)).any())
    with pytest.raises(ShapeError):
        derangement(1)


def test_reconstruction_report_keys_and_consistency() -> None:
    target = _structured(n=50, seed=8)
    pred = target + torch.randn(50, 16, generator=torch.Generator().manual_seed(9))
    report = reconstruction_report(pred, target, generator=0)
    assert set(report) == {"fve_nrm", "fve_nrm_shuffled", "mse", "cosine", "n"}
    assert report["n"] == 50
    assert report["mse"] == pytest.approx(2 * (1 - report["cosine"]), abs=1e-5)
    assert report["fve_nrm"] == pytest.approx(fve_nrm(pred, target))
    assert report["fve_nrm"] > report["fve_nrm_shuffled"]


def test_shape_errors() -> None:
    with pytest.raises(ShapeError, match="shape"):
        normalized_mse(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ShapeError):
        fve_nrm(torch.randn(4), torch.randn(4))
    with pytest.raises(ShapeError):
        fve_nrm(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ShapeError):
        predict_mean_control(torch.randn(3, 4), torch.randn(3, 5))


def test_nan_zero_and_bad_scale_errors() -> None:
    bad = torch.randn(3, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        cosine(bad, torch.randn(3, 4))
    with pytest.raises(InputError, match="NaN"):
        fve_nrm(torch.randn(3, 4), bad)
    with pytest.raises(InputError, match="zero vector"):
        normalized_mse(torch.zeros(2, 4), torch.randn(2, 4))
    with pytest.raises(InputError):
        normalize(torch.randn(2, 4), scale=-1.0)
    with pytest.raises(InputError, match="variance"):
        fve_nrm(torch.randn(3, 4), torch.ones(3, 4))


# -- gain over the mean direction ------------------------------------------------------------------
def test_gain_is_zero_for_the_mean_direction_one_for_a_perfect_reconstruction_and_negative_when_worse():
    g = torch.Generator().manual_seed(3)
    targets = 4.0 * torch.randn(1, 32, generator=g) + torch.randn(12, 32, generator=g)  # a strong shared direction
    mean = mean_direction(targets)
    at_mean = mean.expand(12, -1)
    assert float(cosine(at_mean, targets).mean()) > 0.7  # the raw cosine flatters the mean direction
    assert gain_over_mean(at_mean, targets, mean).tolist() == pytest.approx([0.0] * 12, abs=1e-5)
    assert gain_over_mean(targets * 3.0, targets, mean).tolist() == pytest.approx([1.0] * 12, abs=1e-5)
    assert bool((gain_over_mean(-targets, targets, mean) < 0).all())
    assert torch.isnan(gain_over_mean(mean[None], mean[None], mean)).all()  # nothing to gain over itself


def test_mean_direction_is_the_unit_mean_of_directions_and_refuses_cancelling_ones():
    v = torch.tensor([[1.0, 0.0], [0.0, 10.0]])
    assert mean_direction(v).tolist() == pytest.approx([2**-0.5, 2**-0.5])
    assert mean_direction(torch.tensor([0.0, 3.0])).tolist() == pytest.approx([0.0, 1.0])
    with pytest.raises(InputError, match="cancel"):
        mean_direction(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    with pytest.raises(ShapeError):
        gain_over_mean(v, v, torch.ones(3))


def test_round_trip_gain_defaults_to_the_targets_mean_direction_and_is_nan_for_one_target():
    targets = torch.randn(5, 8) + 2.0
    scores = RoundTrip(targets.clone(), targets, torch.zeros(5), torch.ones(5))
    assert scores.gain().tolist() == pytest.approx([1.0] * 5, abs=1e-5)
    one = RoundTrip(targets[:1].expand(3, -1), targets[:1].expand(3, -1), torch.zeros(3), torch.ones(3))
    assert torch.isnan(one.gain()).all()
    assert one.gain(targets).tolist() == pytest.approx([1.0] * 3, abs=1e-5)


def test_the_bootstrap_interval_brackets_the_estimate_and_matches_explicit_resampling() -> None:
    target = _structured(64, 16)
    pred = target + 1.5 * torch.randn(64, 16, generator=torch.Generator().manual_seed(3))
    low, high = fve_nrm_interval(pred, target, n_boot=400, seed=5)
    assert low < fve_nrm(pred, target) < high
    # The same resamples drawn one by one, through fve_nrm itself.
    rows = torch.randint(0, 64, (400, 64), generator=torch.Generator().manual_seed(5))
    explicit = torch.tensor([fve_nrm(pred[r], target[r]) for r in rows], dtype=torch.float64)
    expected = torch.quantile(explicit, torch.tensor([0.05, 0.95], dtype=torch.float64))
    assert (low, high) == pytest.approx(expected.tolist(), abs=1e-6)  # fve_nrm runs in float32


def test_the_bootstrap_interval_narrows_with_more_vectors() -> None:
    def width(n: int) -> float:
        target = _structured(n, 16, seed=n)
        pred = target + 1.5 * torch.randn(n, 16, generator=torch.Generator().manual_seed(n))
        low, high = fve_nrm_interval(pred, target, n_boot=500)
        return high - low

    assert width(1024) < 0.5 * width(32)


@pytest.mark.parametrize("kwargs", [dict(level=1.0), dict(level=0.0), dict(n_boot=0)])
def test_the_bootstrap_interval_refuses_bad_settings(kwargs) -> None:
    target = _structured(8, 4)
    with pytest.raises(InputError, match="level must be"):
        fve_nrm_interval(target, target, **kwargs)
