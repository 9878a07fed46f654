"""Reconstruction metrics: the only definitions of normalised MSE, cosine, fve_nrm and controls.

Everything that scores an AR prediction against a target vector goes through this module, so
training losses, rewards, evaluation and widgets agree to the last digit.

Conventions (as in the published NLA method):

- Both vectors are L2-normalised before comparison. :func:`normalized_mse` rescales them to
  ``sqrt(d)``, so its mean over dimensions equals ``||u - û||² = 2(1 - cos)`` for the unit
  vectors ``u``, ``û``: 0 is perfect, 2 is orthogonal, 4 is antipodal.
- :func:`fve_nrm` is the fraction of variance explained on unit vectors,
  ``1 - mean||u - û||² / mean||u - mean(u)||²``. Predicting the mean scores 0 by construction;
  always report it next to :func:`shuffled_control`, which pairs predictions with the wrong
  targets and lands at or below 0.

Inputs are torch tensors (numpy arrays are accepted and converted). Half-precision inputs are
computed in float32, float64 stays float64. Shapes and NaNs are checked loudly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nla_lens.errors import InputError, ShapeError
from nla_lens.modes import evaluating

__all__ = [
    "RoundTrip",
    "check_vectors",
    "cosine",
    "current_token_control",
    "derangement",
    "fve_nrm",
    "fve_nrm_interval",
    "gain_over_mean",
    "held_out_metrics",
    "mean_direction",
    "nanmean",
    "normalize",
    "normalized_mse",
    "predict_mean_control",
    "reconstruction_report",
    "score_round_trip",
    "shuffled_control",
]


def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a floating tensor (float32 at least), keeping autograd and device."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise InputError(f"{name} must be a tensor or array of numbers, got {type(x)!r}.") from err
    if not x.is_floating_point():
        x = x.to(torch.float32)
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.to(torch.float32)
    return x


def _check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values. Check the activations or the "
            "model output that produced them (a NaN usually means an overflow in half precision)."
        )


def _check_width_and_finite(x: torch.Tensor, name: str) -> None:
    """``x`` is ``[..., d]`` with ``d > 0`` and finite (the rank-free check of the metrics' inputs)."""
    if x.ndim == 0:
        raise ShapeError(f"{name} must have a last dimension d (shape [..., d]), got a scalar.")
    if x.shape[-1] == 0:
        raise ShapeError(f"{name} has an empty last dimension (shape {tuple(x.shape)}).")
    _check_finite(x, name)


def check_vectors(vectors: Any, d_model: int | None = None, *, name: str = "vectors", source: str = "") -> torch.Tensor:
    """Validate a batch of vectors: the one check every entry point (the AV, injection) runs.

    Args:
        vectors: ``[N, d]`` numbers (a tensor or an array).
        d_model: The width expected, if any.
        name: What to call them in errors.
        source: Appended to a width error: where vectors of the right width come from.

    Returns:
        ``vectors`` as a floating tensor ``[N, d]`` (half precision as float32, float64 kept).

    Raises:
        ShapeError: Not ``[N, d]``, or a width other than ``d_model``.
        InputError: No vectors, NaN/inf entries, or a zero vector (it has no direction to rescale).
    """
    x = _as_float_tensor(vectors, name)
    if x.ndim != 2:
        raise ShapeError(f"{name} must be a tensor of shape [N, d], got shape {tuple(x.shape)}.")
    if d_model is not None and x.shape[1] != d_model:
        raise ShapeError(f"{name} have width {x.shape[1]} but width {d_model} is expected. {source}".rstrip())
    if len(x) == 0:
        raise InputError(f"No {name} given.")
    _check_finite(x, name)
    n_zero = int((x.norm(dim=-1) == 0).sum())
    if n_zero:
        raise InputError(
            f"{name} contain {n_zero} zero vector(s), which have no direction to rescale. Drop them "
            "(position 0 / padding rows are common culprits)."
        )
    return x


def _check_pair(pred: Any, target: Any, *, matrix: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert, validate and return ``(pred, target)`` with a common dtype and device."""
    pred_t = _as_float_tensor(pred, "pred")
    target_t = _as_float_tensor(target, "target")
    _check_width_and_finite(pred_t, "pred")
    _check_width_and_finite(target_t, "target")
    if pred_t.shape != target_t.shape:
        raise ShapeError(
            f"pred has shape {tuple(pred_t.shape)} but target has shape {tuple(target_t.shape)}; "
            "they must match (one prediction per target vector, same width d)."
        )
    if matrix and pred_t.ndim != 2:
        raise ShapeError(
            f"expected a batch of vectors with shape [N, d], got {tuple(pred_t.shape)}. "
            "Stack the vectors into one 2-D tensor."
        )
    dtype = torch.promote_types(pred_t.dtype, target_t.dtype)
    return pred_t.to(dtype), target_t.to(device=pred_t.device, dtype=dtype)


def nanmean(values: Any) -> float:
    """The mean of the values that are not NaN (NaN when all are, or when there are none)."""
    array = np.asarray(values, dtype=float)
    return float(np.nanmean(array)) if (~np.isnan(array)).any() else math.nan


def _unit(x: torch.Tensor, name: str) -> torch.Tensor:
    norms = x.norm(dim=-1, keepdim=True)
    if bool((norms == 0).any()):
        n_zero = int((norms == 0).sum())
        raise InputError(
            f"{name} contains {n_zero} zero vector(s); a zero vector has no direction and cannot "
            "be L2-normalised. Drop those rows (or check why the model produced them)."
        )
    return x / norms


def normalize(v: Any, scale: float | None = None) -> torch.Tensor:
    """Rescale vectors to a fixed L2 norm.

    Args:
        v: Vectors, shape ``[..., d]``.
        scale: Target L2 norm of every vector; ``None`` means ``sqrt(d)`` (the paper's
            ``mse_scale``).

    Returns:
        Tensor of shape ``[..., d]`` with ``||v_i|| == scale``, in ``v``'s dtype (the norm is
        computed in at least float32).

    Raises:
        ShapeError: ``v`` has no last dimension.
        InputError: NaN/inf entries, a zero vector, or a non-positive ``scale``.
    """
    orig_dtype = v.dtype if isinstance(v, torch.Tensor) and v.is_floating_point() else None
    x = _as_float_tensor(v, "v")
    _check_width_and_finite(x, "v")
    if scale is None:
        scale = math.sqrt(x.shape[-1])
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a positive finite number, got {scale!r}.")
    out = _unit(x, "v") * float(scale)
    return out.to(orig_dtype) if orig_dtype is not None else out


def normalized_mse(pred: Any, target: Any, scale: float | None = None) -> torch.Tensor:
    """Per-item MSE after L2-normalising both vectors (the AR loss and the RL reward's ``-mse``).

    With the default ``scale = sqrt(d)`` this equals ``||û - u||² = 2(1 - cos(pred, target))``
    on unit vectors, independent of ``d``.

    Args:
        pred: Predicted vectors, shape ``[..., d]``.
        target: Target vectors, same shape.
        scale: L2 norm both are rescaled to before the MSE; ``None`` means ``sqrt(d)``.

    Returns:
        Tensor of shape ``[...]``: the mean over the last dimension of the squared difference.
        Differentiable with respect to ``pred``.

    Raises:
        ShapeError: Shapes differ.
        InputError: NaN/inf entries or zero vectors.
    """
    p, t = _check_pair(pred, target)
    if scale is None:
        scale = math.sqrt(p.shape[-1])
    return ((normalize(p, scale) - normalize(t, scale)) ** 2).mean(dim=-1)


def cosine(pred: Any, target: Any) -> torch.Tensor:
    """Per-item cosine similarity.

    Args:
        pred: Predicted vectors, shape ``[..., d]``.
        target: Target vectors, same shape.

    Returns:
        Tensor of shape ``[...]`` with values in ``[-1, 1]``.

    Raises:
        ShapeError: Shapes differ.
        InputError: NaN/inf entries or zero vectors.
    """
    p, t = _check_pair(pred, target)
    return (_unit(p, "pred") * _unit(t, "target")).sum(dim=-1)


def _fve_units(pred_units: torch.Tensor, target_units: torch.Tensor) -> float:
    """``1 - mean||u - û||² / mean||u - mean(u)||²`` for already prepared vectors ``[N, d]``."""
    if target_units.shape[0] < 2:
        raise ShapeError(
            f"fve_nrm needs at least 2 target vectors to measure their variance, got {target_units.shape[0]}."
        )
    err = ((target_units - pred_units) ** 2).sum(dim=-1).mean()
    var = ((target_units - target_units.mean(dim=0, keepdim=True)) ** 2).sum(dim=-1).mean()
    if float(var) <= 1e-12:
        raise InputError(
            "all target vectors point in the same direction (zero variance), so the fraction "
            "of variance explained is undefined. Evaluate on a more varied held-out set."
        )
    return float(1.0 - err / var)


def fve_nrm(pred: Any, target: Any) -> float:
    """Fraction of variance explained on unit vectors (the paper's headline metric).

    ``fve_nrm = 1 - mean_i ||u_i - û_i||² / mean_i ||u_i - ū||²`` where ``u_i`` are the
    L2-normalised targets, ``û_i`` the L2-normalised predictions and ``ū`` the mean of the
    ``u_i``. 1 is perfect; predicting ``ū`` scores 0; report it with :func:`shuffled_control`.

    Args:
        pred: Predicted vectors, shape ``[N, d]``, ``N >= 2``.
        target: Target vectors, shape ``[N, d]``.

    Returns:
        The fve_nrm as a Python float (at most 1, unbounded below).

    Raises:
        ShapeError: Shapes differ, are not 2-D, or ``N < 2``.
        InputError: NaN/inf entries, zero vectors, or targets without variance.
    """
    p, t = _check_pair(pred, target, matrix=True)
    with torch.no_grad():
        return _fve_units(_unit(p, "pred"), _unit(t, "target"))


def fve_nrm_interval(
    pred: Any, target: Any, *, n_boot: int = 2000, level: float = 0.9, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval of :func:`fve_nrm` over the rows (vectors).

    Resamples the ``N`` (prediction, target) pairs with replacement ``n_boot`` times and
    recomputes fve_nrm on each resample (its variance term included): the spread that comes from
    which vectors were evaluated, not from training. Use it where a second training seed does not fit.

    Args:
        pred: Predicted vectors, shape ``[N, d]``, ``N >= 2``.
        target: Target vectors, shape ``[N, d]``.
        n_boot: Number of resamples.
        level: Coverage of the interval, in (0, 1).
        seed: Seed of the resampling.

    Returns:
        ``(low, high)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles.

    Raises:
        ShapeError: as :func:`fve_nrm`.
        InputError: NaN/inf entries or zero vectors, ``level`` outside (0, 1), ``n_boot < 1``.
    """
    if not 0 < level < 1 or n_boot < 1:
        raise InputError(f"level must be in (0, 1) and n_boot >= 1, got level={level}, n_boot={n_boot}.")
    p, t = _check_pair(pred, target, matrix=True)
    if p.shape[0] < 2:
        raise ShapeError(f"fve_nrm needs at least 2 vectors, got {p.shape[0]}.")
    n = p.shape[0]
    with torch.no_grad():
        pu, tu = _unit(p, "pred").double(), _unit(t, "target").double()
        rows = torch.randint(0, n, (n_boot, n), generator=torch.Generator().manual_seed(seed))
        counts = torch.zeros(n_boot, n, dtype=torch.float64).scatter_add_(
            1, rows, torch.ones(n_boot, n, dtype=torch.float64)
        )
        err = counts @ ((tu - pu) ** 2).sum(dim=-1) / n  # [n_boot]: mean ||u - û||² of each resample
        var = 1.0 - ((counts @ tu / n) ** 2).sum(dim=-1)  # mean ||u - ū||² = 1 - ||ū||² on unit vectors
        # A resample that drew one vector N times has no variance: it says nothing, leave it out.
        scores = (1.0 - err / var)[var > 1e-12]
        bounds = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
        low, high = torch.quantile(scores, bounds)
    return float(low), float(high)


def _train_eval_pair(train_targets: Any, eval_targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out targets of a control: finite, non-zero ``[N, d]`` of one width."""
    train = _as_float_tensor(train_targets, "train_targets")
    evals = _as_float_tensor(eval_targets, "eval_targets")
    for x, name in ((train, "train_targets"), (evals, "eval_targets")):
        _check_width_and_finite(x, name)
        if x.ndim != 2:
            raise ShapeError(f"{name} must have shape [N, d], got {tuple(x.shape)}.")
    if train.shape[-1] != evals.shape[-1]:
        raise ShapeError(
            f"train_targets have width {train.shape[-1]} but eval_targets have width "
            f"{evals.shape[-1]}; both must come from the same hook."
        )
    return train, evals


def predict_mean_control(train_targets: Any, eval_targets: Any) -> float:
    """fve_nrm of always predicting the mean training direction (a baseline near 0).

    The prediction is the mean of the unit training targets, *not* renormalised (a unit-length
    mean direction scores below 0: on its own set the mean is the constant with the least squared
    error, so any other constant scores lower). On the training set itself the result is
    exactly 0; on a held-out set from the same distribution it is slightly below 0.

    Args:
        train_targets: Training target vectors, shape ``[M, d]``.
        eval_targets: Held-out target vectors, shape ``[N, d]``, ``N >= 2``.

    Returns:
        The baseline fve_nrm as a Python float.

    Raises:
        ShapeError: Not 2-D or widths differ.
        InputError: NaN/inf entries or zero vectors.
    """
    train, evals = _train_eval_pair(train_targets, eval_targets)
    with torch.no_grad():
        dtype = torch.promote_types(train.dtype, evals.dtype)
        mean_dir = _unit(train.to(dtype), "train_targets").mean(dim=0, keepdim=True)
        u = _unit(evals.to(dtype), "eval_targets")
        return _fve_units(mean_dir.to(u.device).expand_as(u), u)


def current_token_control(
    train_targets: Any,
    train_token_ids: Any,
    eval_targets: Any,
    eval_token_ids: Any,
    token_embeddings: Any,
    *,
    ridge: float = 100.0,
) -> float:
    """fve_nrm of a ridge regression from the current token's input embedding alone.

    A token-identity baseline, as in probing work: how much of each vector is predictable from
    *which token* it sits on, with no context at all. An explanation that only names the current
    token can score about this much, so an NLA earns credit for context only above it. The
    embedding (rather than a per-token mean) lets the baseline generalise to tokens unseen in
    training. Features are standardised on the training rows, with a bias; targets are unit
    vectors; ``ridge`` is the L2 penalty on the standardised weights.

    Args:
        train_targets: Training vectors, shape ``[M, d]``.
        train_token_ids: Current-token id of each training vector, shape ``[M]``.
        eval_targets: Held-out vectors, shape ``[N, d]``, ``N >= 2``.
        eval_token_ids: Current-token id of each held-out vector, shape ``[N]``.
        token_embeddings: The subject's input embedding matrix ``[d_vocab, d_e]`` (``W_E``).
        ridge: L2 penalty, > 0.

    Returns:
        The baseline's held-out fve_nrm as a Python float.

    Raises:
        ShapeError: Mismatched lengths or widths, or token ids outside the vocabulary.
        InputError: NaN/inf entries, zero vectors or a non-positive ``ridge``.
    """
    train, evals = _train_eval_pair(train_targets, eval_targets)
    table = _as_float_tensor(token_embeddings, "token_embeddings")
    if table.ndim != 2:
        raise ShapeError(f"token_embeddings must have shape [d_vocab, d_e], got {tuple(table.shape)}.")
    _check_finite(table, "token_embeddings")
    if not ridge > 0:
        raise InputError(f"ridge must be > 0, got {ridge!r}.")
    ids = []
    for x, tokens, name in ((train, train_token_ids, "train"), (evals, eval_token_ids, "eval")):
        tokens = torch.as_tensor(tokens, dtype=torch.long).flatten()
        if len(tokens) != len(x):
            raise ShapeError(f"{name}_targets need one token id each; got {len(x)} vectors and {len(tokens)} ids.")
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= len(table)):
            raise ShapeError(
                f"{name}_token_ids must lie in [0, {len(table)}) (the embedding's vocabulary); "
                "pass the subject's W_E and the dataset's token_id column."
            )
        ids.append(tokens)
    with torch.no_grad():
        feats = [table[i].double() for i in ids]
        mean, std = feats[0].mean(0), feats[0].std(0).clamp_min(1e-6)
        x_train, x_eval = (torch.cat([(f - mean) / std, torch.ones(len(f), 1, dtype=f.dtype)], 1) for f in feats)
        gram = x_train.T @ x_train + ridge * torch.eye(x_train.shape[1], dtype=x_train.dtype)
        weights = torch.linalg.solve(gram, x_train.T @ _unit(train.double(), "train_targets"))
        return fve_nrm(x_eval @ weights, evals.double())


def derangement(n: int, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """A random permutation of ``range(n)`` with no fixed points (seeded, reproducible).

    Built as one random cycle: shuffle the indices, then send each to the next in the shuffled
    order, so no index maps to itself.

    Args:
        n: Number of items, at least 2.
        generator: A ``torch.Generator``, an integer seed, or ``None`` (seed 0).

    Returns:
        Long tensor of shape ``[n]`` with ``perm[i] != i`` for every ``i``.
    """
    if n < 2:
        raise ShapeError(f"a derangement needs at least 2 items, got {n}.")
    if not isinstance(generator, torch.Generator):
        generator = torch.Generator().manual_seed(0 if generator is None else int(generator))
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def shuffled_control(pred: Any, target: Any, generator: torch.Generator | int | None = None) -> float:
    """fve_nrm of the predictions paired with the wrong targets (a derangement).

    A reconstruction that carries information about its own vector scores well above this
    control; the control itself lands at or below 0 when targets vary.

    Args:
        pred: Predicted vectors, shape ``[N, d]``, ``N >= 2``.
        target: Target vectors, shape ``[N, d]``.
        generator: A ``torch.Generator``, an integer seed, or ``None`` (seed 0).

    Returns:
        The shuffled fve_nrm as a Python float.
    """
    p, t = _check_pair(pred, target, matrix=True)
    perm = derangement(p.shape[0], generator).to(p.device)
    with torch.no_grad():
        return _fve_units(_unit(p, "pred")[perm], _unit(t, "target"))


def reconstruction_report(pred: Any, target: Any, generator: torch.Generator | int | None = None) -> dict[str, float]:
    """Summary of how well ``pred`` reconstructs ``target``.

    Args:
        pred: Predicted vectors, shape ``[N, d]``, ``N >= 2``.
        target: Target vectors, shape ``[N, d]``.
        generator: Seed or generator for the shuffled control.

    Returns:
        A dict with ``fve_nrm``, its shuffled control ``fve_nrm_shuffled``, ``mse`` (the mean
        :func:`normalized_mse`, ``= 2(1 - cos)``), the mean ``cosine`` and ``n``, the number of
        vectors.
    """
    p, t = _check_pair(pred, target, matrix=True)
    with torch.no_grad():
        return {
            "fve_nrm": fve_nrm(p, t),
            "fve_nrm_shuffled": shuffled_control(p, t, generator),
            "mse": float(normalized_mse(p, t).mean()),
            "cosine": float(cosine(p, t).mean()),
            "n": int(p.shape[0]),
        }


def mean_direction(reference: Any) -> torch.Tensor:
    """The unit mean direction ``[d]`` of a set of vectors: the prediction that knows nothing about the token.

    Args:
        reference: Vectors ``[m, d]`` (each L2-normalised before averaging, as the metrics compare
            directions), an object with ``.vectors`` (an ``ActivationDataset``), or one vector
            ``[d]`` taken as the mean direction itself.

    Returns:
        ``[d]`` float tensor of unit norm.

    Raises:
        ShapeError: Not ``[d]`` or ``[m, d]``.
        InputError: No vectors, NaN/inf, zero vectors, or directions that cancel out.
    """
    x = _as_float_tensor(getattr(reference, "vectors", reference), "reference")
    if x.ndim == 1:
        x = x[None]
    x = check_vectors(x, name="reference vectors")
    mean = _unit(x, "reference").mean(dim=0)
    if float(mean.norm()) < 1e-6:
        raise InputError("The reference vectors' directions cancel out: they have no mean direction.")
    return mean / mean.norm()


def gain_over_mean(pred: Any, target: Any, mean: Any) -> torch.Tensor:
    """Per-row skill of a reconstruction over predicting the mean direction (a centred score).

    ``gain_i = 1 - ||û_i - u_i||² / ||m̂ - u_i||²`` on unit vectors, where ``m̂`` is the unit mean
    direction (:func:`mean_direction`). 1 is perfect, 0 is no better than the mean direction (which
    alone often has a cosine of 0.7-0.8 with real activations, so a raw cosine flatters every row),
    below 0 is worse than it. The per-row counterpart of :func:`fve_nrm`'s "predict the mean scores 0".

    Args:
        pred: Reconstructions ``[N, d]``.
        target: Targets ``[N, d]``.
        mean: The mean direction ``[d]`` (any norm).

    Returns:
        ``[N]`` float tensor; NaN for a target that is the mean direction itself (no room to gain).
    """
    p, t = _check_pair(pred, target, matrix=True)
    m = _as_float_tensor(mean, "mean").to(device=p.device, dtype=p.dtype)
    if m.ndim != 1 or m.shape[0] != p.shape[1]:
        raise ShapeError(f"mean must be one vector [{p.shape[1]}], got shape {tuple(m.shape)}.")
    with torch.no_grad():
        u, u_hat, m_hat = _unit(t, "target"), _unit(p, "pred"), _unit(m[None], "mean")
        err = ((u_hat - u) ** 2).sum(dim=-1)
        base = ((m_hat - u) ** 2).sum(dim=-1)
        return torch.where(base > 1e-12, 1.0 - err / base.clamp_min(1e-12), torch.full_like(err, float("nan")))


@dataclasses.dataclass
class RoundTrip:
    """A round trip's reconstructions and their per-row scores.

    Attributes:
        predicted: ``[N, d]`` the AR's reconstructions (float32, CPU).
        targets: ``[N, d]`` the vectors they rebuild.
        mse: ``[N]`` :func:`normalized_mse` of each row (``2(1 - cos)``).
        cosine: ``[N]`` :func:`cosine` of each row.
    """

    predicted: torch.Tensor
    targets: torch.Tensor
    mse: torch.Tensor
    cosine: torch.Tensor

    def gain(self, reference: Any = None) -> torch.Tensor:
        """``[N]`` :func:`gain_over_mean` of each row, against the mean direction of ``reference``
        (vectors ``[m, d]``, an ``ActivationDataset`` or a mean vector ``[d]``; default the targets
        themselves). NaN where there is no mean direction to beat (a single target)."""
        if reference is None and len(torch.unique(self.targets, dim=0)) < 2:
            return torch.full((len(self.targets),), float("nan"))
        return gain_over_mean(
            self.predicted, self.targets, mean_direction(self.targets if reference is None else reference)
        )

    def summary(self, generator: torch.Generator | int | None = 0) -> dict[str, float]:
        """:func:`reconstruction_report` of the batch (fve_nrm, its shuffled control, means, n)."""
        return reconstruction_report(self.predicted, self.targets, generator)


def score_round_trip(ar: Any, explanations: Sequence[str], targets: Any, *, batch_size: int = 16) -> RoundTrip:
    """Reconstruct ``explanations`` with ``ar`` (in eval mode) and score each against its target.

    The one scorer of a round trip: ``NLA.round_trip``, the warm starts' and GRPO's held-out
    metrics, the explorer and the analyses all call it.

    Args:
        ar: An :class:`~nla_lens.models.reconstructor.ActivationReconstructor` (its mode is
            restored afterwards).
        explanations: ``N`` explanations (an empty one is read as ``"(empty)"``).
        targets: ``[N, d]`` the vectors the explanations describe (or ``[d]``, scored against
            every explanation).
        batch_size: AR batch size.

    Returns:
        A :class:`RoundTrip`.
    """
    with evaluating(ar):
        predicted = ar.reconstruct(list(explanations), batch_size=batch_size)
    target = _as_float_tensor(targets, "targets").detach().cpu()
    if target.ndim == 1:
        target = target.expand(len(predicted), -1)
    target = target.to(predicted.dtype)
    with torch.no_grad():
        return RoundTrip(predicted, target, normalized_mse(predicted, target), cosine(predicted, target))


def held_out_metrics(frame: Any, targets: torch.Tensor, ar: Any) -> dict[str, float]:
    """The held-out scores every trainer reports: fve_nrm, its shuffled control, failure rate, length.

    Args:
        frame: Greedy explanations of ``targets`` (``ActivationVerbalizer.verbalize``'s DataFrame:
            ``explanation``, ``ok``, ``n_tokens`` per row).
        targets: ``[N, d]`` the vectors explained.
        ar: The :class:`~nla_lens.models.reconstructor.ActivationReconstructor` that reads them.
    """
    summary = score_round_trip(ar, frame["explanation"], targets).summary()
    return {
        "fve_nrm": summary["fve_nrm"],
        "fve_nrm_shuffled": summary["fve_nrm_shuffled"],
        "failure_rate": float((~frame["ok"]).mean()),
        "response_length": float(frame["n_tokens"].mean()),
    }
