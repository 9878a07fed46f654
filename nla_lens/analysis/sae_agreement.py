"""Per-position agreement between an NLA and an SAE: do the two lenses point at the same things?

Owns :func:`sae_agreement` and its result :class:`SAEAgreement`. For each held-out position it
takes the NLA's explanation and reconstruction and the SAE's top-k features, and measures two
kinds of agreement, each beside a shuffled pairing (position ``i``'s explanation or error against
position ``π(i)``'s features, ``π`` a derangement), so chance agreement is visible:

* ``word_overlap``: :func:`~nla_lens.analysis.text.grounding` of the explanation in the top
  contexts of the position's features, the share of its content words (the same words and stop
  words as every grounding measure) that occur there;
* ``error_in_features``: the share of the NLA's residual error, ``unit(x) - unit(x̂)`` (the part
  of the direction the explanation did not carry), that lies in the span of the position's top
  features' decoder directions. It needs no shared words: high means what the words left out is
  made of features the SAE sees firing at this position.

The feature contexts must come from other documents than the positions scored (a position's own
text among its features' contexts would inflate ``word_overlap`` over the shuffled pairing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from nla_lens.analysis.sae_features import (
    FeatureContexts,
    dataset_feature_contexts,
    dense_features,
    encode_features,
    top_feature_contexts,
    top_features,
)
from nla_lens.analysis.text import grounding
from nla_lens.data.dataset import COLUMNS, ActivationDataset
from nla_lens.errors import InputError
from nla_lens.metrics import derangement, nanmean, score_round_trip
from nla_lens.sae import SAELike, check_sae

if TYPE_CHECKING:
    from nla_lens.models.nla import NLA
    from nla_lens.subjects.adapters import SubjectModel

__all__ = [
    "SAEAgreement",
    "control_summary",
    "feature_contexts_for",
    "positions_for",
    "sae_agreement",
    "subspace_share",
]

#: The columns of :attr:`SAEAgreement.frame` after the dataset's metadata.
AGREEMENT_COLUMNS = (
    "explanation",
    "mse",
    "features",
    "feature_values",
    "word_overlap",
    "word_overlap_shuffled",
    "error_in_features",
    "error_in_features_shuffled",
)


@dataclass
class SAEAgreement:
    """The result of :func:`sae_agreement`.

    Attributes:
        frame: One row per position: the dataset's metadata (``doc_id``, ``position``, ``token``,
            ``prefix``), ``explanation``, ``mse`` (normalised round-trip error), ``features``
            (the top feature ids, strongest first, active ones only), ``feature_values``, and
            the two measures with their shuffled controls: ``word_overlap``,
            ``word_overlap_shuffled``, ``error_in_features``, ``error_in_features_shuffled``
            (NaN where a position has no active feature or no content word).
        summary: ``n``, ``top_k``, the means of the four measure columns, ``word_overlap_lift``
            and ``error_in_features_lift`` (own minus shuffled), ``fve_nrm`` of the round trip
            and ``feature_context_coverage`` (share of the positions' features that have contexts).
        vectors: ``[n, d_model]`` the scored activations, in the order of ``frame``.
        reconstructions: ``[n, d_model]`` the NLA's reconstructions of them from the explanations.
    """

    frame: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    vectors: torch.Tensor | None = None
    reconstructions: torch.Tensor | None = None

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"SAEAgreement(n={s.get('n', 0)}, top_k={s.get('top_k')}, "
            f"word_overlap={s.get('word_overlap', math.nan):.3f} vs shuffled {s.get('word_overlap_shuffled', math.nan):.3f}, "
            f"error_in_features={s.get('error_in_features', math.nan):.3f} vs shuffled "
            f"{s.get('error_in_features_shuffled', math.nan):.3f})"
        )

    def table(self) -> pd.DataFrame:
        """The headline figures as a DataFrame: one row per measure, ``own``, ``shuffled``, ``lift``."""
        rows = []
        for measure in ("word_overlap", "error_in_features"):
            own, other = self.summary.get(measure, math.nan), self.summary.get(f"{measure}_shuffled", math.nan)
            rows.append({"measure": measure, "own": own, "shuffled": other, "lift": own - other})
        return pd.DataFrame(rows).set_index("measure")

    def _repr_html_(self) -> str:
        return f"<p><code>{self!r}</code></p>" + self.table().to_html(float_format=lambda v: f"{v:.3f}")


def positions_for(
    nla: NLA, data: Any, *, subject: SubjectModel | None = None, positions_per_doc: int = 2, seed: int = 0
) -> ActivationDataset:
    """The held-out positions to score: ``data`` itself, or activations read from texts.

    Args:
        nla: The NLA (its hook is where texts are read).
        data: An :class:`~nla_lens.data.dataset.ActivationDataset`, or a text / list of texts.
        subject: The subject model, needed for texts.
        positions_per_doc: Positions drawn per text.
        seed: Seed of the drawn positions.

    Raises:
        InputError: Texts without a subject, a dataset of another width or hook than the NLA.
    """
    if isinstance(data, ActivationDataset):
        hook = data.hook_name
        if data.d_model != nla.d_model:
            raise InputError(f"The dataset holds d_model={data.d_model} vectors but the NLA reads {nla.d_model}.")
        if hook is not None and hook != nla.hook_name:
            raise InputError(f"The dataset was read at {hook!r} but the NLA reads {nla.hook_name!r}.")
        return data
    texts = [data] if isinstance(data, str) else list(data)
    if not texts:  # nothing to score: an empty result, not an error
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        return ActivationDataset(torch.zeros(0, nla.d_model), frame, {"hook_name": nla.hook_name})
    if subject is None:
        raise InputError("Texts need subject= (e.g. nla_lens.load_subject()) to read their activations.")
    from nla_lens.data.extraction import extract_activations

    return extract_activations(
        subject,
        texts,
        nla.hook_name,
        positions_per_doc=positions_per_doc,
        splits={"eval": 1.0},
        seed=seed,
        progress=False,
    )


def feature_contexts_for(
    sae: SAELike, contexts: Any, *, subject: SubjectModel | None = None, hook_name: str | None = None, k: int = 5
) -> dict[int, list[str]]:
    """``{feature: [context, ...]}`` from a ready mapping, an activation dataset, or texts.

    Args:
        sae: The SAE.
        contexts: A mapping (e.g. from :func:`top_feature_contexts`), an
            :class:`~nla_lens.data.dataset.ActivationDataset` (:func:`dataset_feature_contexts`)
            or a list of texts (:func:`top_feature_contexts`, needs ``subject``).
        subject: The subject model, for texts.
        hook_name: The hook, for texts.
        k: Contexts per feature when computed here.
    """
    if isinstance(contexts, FeatureContexts):
        return contexts  # keeps its feature densities
    if isinstance(contexts, Mapping):
        return {int(f): list(c) for f, c in contexts.items()}
    if isinstance(contexts, ActivationDataset):
        return dataset_feature_contexts(sae, contexts, k)
    if subject is None:
        raise InputError("feature_contexts as texts needs subject= to find the top contexts.")
    if hook_name is None:
        raise InputError(
            "feature_contexts as texts needs hook_name= (the hook the SAE reads) to find the top contexts."
        )
    return top_feature_contexts(sae, subject, list(contexts), hook_name, k)


def subspace_share(vectors: torch.Tensor, directions: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Share of each vector's squared norm in the span of its chosen directions.

    Args:
        vectors: ``[n, d]``.
        directions: ``[d_sae, d]`` (an SAE's ``W_dec``).
        ids: ``[n, k]`` direction ids per vector; ``-1`` marks an empty slot.

    Returns:
        ``[n]`` values in ``[0, 1]``; NaN where a row has no direction or a zero vector.
    """
    out = torch.full((len(vectors),), math.nan)
    for i, (vector, row) in enumerate(zip(vectors, ids)):
        chosen = row[row >= 0]
        energy = vector.pow(2).sum()
        if len(chosen) == 0 or energy == 0:
            continue
        basis, _ = torch.linalg.qr(directions[chosen].T)  # [d, k] orthonormal columns
        out[i] = (basis.T @ vector).pow(2).sum() / energy
    return out.clamp(0, 1)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def control_summary(frame: pd.DataFrame, measures: Sequence[str]) -> dict[str, float]:
    """Each measure's mean beside its ``_shuffled`` column's and their difference (``_lift``), NaNs left out.

    The one summary of a measure against its shuffled control, for the agreement measures and
    the feature labels' groundings; a mean over no value is NaN.
    """
    summary: dict[str, float] = {}
    for measure in measures:
        summary[measure] = nanmean(frame[measure])
        summary[f"{measure}_shuffled"] = nanmean(frame[f"{measure}_shuffled"])
        summary[f"{measure}_lift"] = summary[measure] - summary[f"{measure}_shuffled"]
    return summary


def sae_agreement(
    nla: NLA,
    sae: SAELike,
    data: Any,
    *,
    feature_contexts: Any,
    subject: SubjectModel | None = None,
    explanations: Sequence[str] | None = None,
    top_k: int = 5,
    include_dense: bool = False,
    positions_per_doc: int = 2,
    max_new_tokens: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> SAEAgreement:
    """Per-position agreement between an NLA's explanations and an SAE's features, with controls.

    Args:
        nla: An :class:`~nla_lens.models.nla.NLA`.
        sae: A SAELens ``SAE`` or any object with the interface of :mod:`nla_lens.sae`, on the
            NLA's hook and width.
        data: Held-out positions: an :class:`~nla_lens.data.dataset.ActivationDataset` or
            text(s) (read with ``subject``, ``positions_per_doc`` each; no texts: an empty result).
        feature_contexts: The features' top contexts, from other documents than ``data``: a
            ``{feature: [context, ...]}`` mapping, an ``ActivationDataset`` or a list of texts.
        subject: The subject model (for texts).
        explanations: The NLA's explanations of ``data``'s vectors, one each, when already made
            (e.g. a saved round trip); default: generated here (greedy).
        top_k: Features per position.
        include_dense: Count dense features (firing on nearly every token, by the contexts'
            densities or ``data``'s) among a position's top features; left out by default, as in
            every view (their ids are in ``summary["dense_features"]``).
        positions_per_doc: Positions per text when ``data`` is text.
        max_new_tokens: Explanation length cap.
        seed: Seed of the shuffled pairing (and of drawn positions).
        progress: Show a progress bar while explaining.

    Returns:
        An :class:`SAEAgreement`; empty (``n = 0``, NaN figures) for an empty dataset.

    Raises:
        InputError: An SAE of another width or hook than the NLA (the message names both),
            ``explanations`` of another length than the positions, ``top_k < 1``.
        SAEInterfaceError: ``sae`` lacks the interface of :mod:`nla_lens.sae`.
    """
    check_sae(sae, d_model=nla.d_model, hook_name=nla.hook_name)
    if int(top_k) < 1:
        raise InputError(f"top_k must be at least 1 (got {top_k}).")
    dataset = positions_for(nla, data, subject=subject, positions_per_doc=positions_per_doc, seed=seed)
    n = len(dataset)
    if explanations is not None and len(explanations) != n:
        raise InputError(f"{len(explanations)} explanations for {n} positions; pass one per position.")
    contexts = feature_contexts_for(sae, feature_contexts, subject=subject, hook_name=nla.hook_name)
    frame = dataset.frame.copy()
    if n == 0:
        for column in AGREEMENT_COLUMNS:
            frame[column] = pd.Series(
                dtype=object if column in ("explanation", "features", "feature_values") else float
            )
        empty = dataset.vectors[:0]
        return SAEAgreement(frame, _summary(frame, int(top_k), math.nan, math.nan), empty, empty.clone())

    vectors = dataset.vectors  # [n, d_model]
    if explanations is None:
        made = nla.av.verbalize(vectors, max_new_tokens=max_new_tokens, progress=progress, warn=False)
        explanations = made.sort_values("vector")["explanation"].tolist()
    explanations = [str(e) for e in explanations]
    scores = score_round_trip(nla.ar, explanations, vectors)
    features = encode_features(sae, vectors)  # [n, d_sae]
    dense = dense_features(contexts, features)
    ids, values = top_features(features, int(top_k), exclude=None if include_dense else dense)  # [n, k]
    perm = derangement(n, seed) if n > 1 else None

    error = _unit(vectors.float()) - _unit(scores.predicted.float())  # [n, d_model]
    directions = sae.W_dec.detach().float().cpu()  # [d_sae, d_model]
    word_sources = [" ".join(" ".join(contexts.get(int(f), [])) for f in row if f >= 0) for row in ids.tolist()]

    frame["explanation"] = explanations
    frame["mse"] = scores.mse.numpy()
    frame["features"] = [[f for f in row if f >= 0] for row in ids.tolist()]
    frame["feature_values"] = [[v for f, v in zip(r, vs) if f >= 0] for r, vs in zip(ids.tolist(), values.tolist())]
    frame["word_overlap"] = [grounding(e, s) if s else math.nan for e, s in zip(explanations, word_sources)]
    frame["error_in_features"] = subspace_share(error, directions, ids).numpy()
    if perm is not None:
        other = perm.tolist()
        frame["word_overlap_shuffled"] = [
            grounding(e, word_sources[j]) if word_sources[j] else math.nan for e, j in zip(explanations, other)
        ]
        frame["error_in_features_shuffled"] = subspace_share(error, directions, ids[perm]).numpy()
    else:
        frame["word_overlap_shuffled"] = math.nan
        frame["error_in_features_shuffled"] = math.nan
    used = [f for row in frame["features"] for f in row]
    coverage = sum(f in contexts for f in used) / len(used) if used else math.nan
    report = scores.summary(generator=seed) if n > 2 else {"fve_nrm": math.nan}
    summary = _summary(frame, int(top_k), float(report["fve_nrm"]), coverage)
    summary["dense_features"] = sorted(dense)
    return SAEAgreement(frame, summary, vectors, scores.predicted.float())


def _summary(frame: pd.DataFrame, top_k: int, fve_nrm: float, coverage: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"n": len(frame), "top_k": top_k, "fve_nrm": fve_nrm}
    summary.update(control_summary(frame, ("word_overlap", "error_in_features")))
    summary["feature_context_coverage"] = coverage
    return summary
