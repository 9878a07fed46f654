"""NLA labels for SAE features: what the NLA says where a feature fires, and about its direction.

Owns :func:`nla_feature_labels` and its result :class:`FeatureLabels`. For each chosen feature:

* **label words**: the NLA's explanations of the positions where the feature fires hardest,
  condensed into the content words that recur there more often than over all explanations
  (``lift`` = share of the feature's explanations with the word minus its base rate);
* **direction explanation**: the NLA's explanation of the feature's decoder direction itself,
  added to a typical activation (the positions' mean) at the strength the feature fires with
  where it fires hardest (:func:`~nla_lens.analysis.direction.direction_vectors`, the one place
  that turns a direction into an activation, shared with
  :func:`~nla_lens.analysis.difference.explain_direction`);
* **grounding** of both in the feature's top-activating contexts
  (:func:`~nla_lens.analysis.text.grounding`), beside the same label read against a shuffled
  feature's contexts, so a label that fits any feature shows as such.

The words come from :func:`~nla_lens.analysis.text.content_words` (the stop words of every
grounding measure), so labels, grounding and per-position agreement count the same words.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from nla_lens.analysis.direction import direction_vectors
from nla_lens.analysis.sae_agreement import control_summary, feature_contexts_for, positions_for
from nla_lens.analysis.sae_features import FeatureContexts, dense_features, encode_features, feature_density
from nla_lens.analysis.text import content_words, grounding
from nla_lens.errors import InputError
from nla_lens.metrics import derangement
from nla_lens.sae import SAELike, check_sae
from nla_lens.vis.sae import FeatureLabel

if TYPE_CHECKING:
    from nla_lens.models.nla import NLA
    from nla_lens.subjects.adapters import SubjectModel

__all__ = ["FeatureLabels", "direction_vectors", "label_words", "nla_feature_labels"]


@dataclass
class FeatureLabels:
    """The result of :func:`nla_feature_labels`.

    Attributes:
        frame: One row per feature: ``feature``, ``n_active`` (positions where it fires),
            ``density`` (its firing density: over the contexts' corpus when they carry one, else
            over ``data``), ``dense`` (``density >= DENSE_FRACTION``: it fires on nearly every
            token), ``max_activation``, ``label`` (the label words joined), ``label_words``,
            ``direction_explanation``, ``label_grounding`` and ``label_grounding_shuffled``,
            ``direction_grounding`` and ``direction_grounding_shuffled`` (NaN without contexts
            or content words), ``top_contexts``, ``top_explanations`` and ``reference_label``
            (a human or auto-interp label when given, else ``None``), and ``grounded`` (label
            grounding above its shuffled control; a label that is not is shown as ungrounded).
        words: One row per (feature, word): ``feature``, ``word``, ``count`` (of the feature's
            top explanations with the word), ``rate``, ``base_rate``, ``lift``; label words first.
        positions: One row per (feature, top position): ``feature``, ``rank``, ``row`` (in the
            dataset), ``activation``, ``token``, ``explanation``.
        summary: ``n_features`` and the means of the four grounding columns with their lifts
            (own minus shuffled).
        direction_vectors: ``[n_features, d_model]`` the vectors whose explanation is
            ``direction_explanation``, in the order of ``frame``.
    """

    frame: pd.DataFrame
    words: pd.DataFrame
    positions: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    direction_vectors: torch.Tensor | None = None

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"FeatureLabels({s.get('n_features', 0)} features, label grounding "
            f"{s.get('label_grounding', math.nan):.3f} vs shuffled {s.get('label_grounding_shuffled', math.nan):.3f})"
        )

    def labels(self) -> dict[int, FeatureLabel]:
        """``{feature: FeatureLabel}`` (label with its grounding and shuffled control) for the
        side-by-side view; features without label words left out."""
        return {
            int(r.feature): FeatureLabel(r.label, float(r.label_grounding), float(r.label_grounding_shuffled))
            for r in self.frame.itertuples(index=False)
            if r.label
        }

    def of(self, feature: int) -> pd.DataFrame:
        """One feature's top positions with their explanations (a DataFrame to read beside its label)."""
        if int(feature) not in set(self.frame["feature"]):
            raise InputError(f"Feature {feature} was not labelled; labelled: {sorted(self.frame['feature'])}.")
        rows = self.positions[self.positions["feature"] == int(feature)]
        return rows.drop(columns="feature").reset_index(drop=True)

    def card(self, feature: int) -> Any:
        """The :class:`~nla_lens.vis.feature_card.FeatureCard` of one feature."""
        from nla_lens.vis.feature_card import FeatureCard

        self.of(feature)  # refuses an unlabelled feature
        row = self.frame[self.frame["feature"] == int(feature)].iloc[0]
        return FeatureCard([row.to_dict()])

    def _repr_html_(self) -> str:
        from nla_lens.vis.feature_card import FeatureCard

        return FeatureCard(self.frame.to_dict("records"), summary=self.summary)._repr_html_()


def label_words(
    top: Sequence[str], base: Sequence[str], n_words: int = 6, *, min_count: int = 2
) -> tuple[list[str], pd.DataFrame]:
    """The content words that recur in ``top`` explanations more often than in ``base`` ones.

    Args:
        top: Explanations of the positions where a feature fires hardest.
        base: Explanations of positions drawn at random (the base rate).
        n_words: Label words kept.
        min_count: A word must appear in at least this many of ``top`` (capped at ``len(top)``).

    Returns:
        ``(words, table)``: the label words (highest lift first) and one row per word of ``top``:
        ``word``, ``count``, ``rate``, ``base_rate``, ``lift``.
    """
    columns = ["word", "count", "rate", "base_rate", "lift"]
    if not top:
        return [], pd.DataFrame(columns=columns)
    counts = Counter(w for text in top for w in set(content_words(text)))
    base_counts = Counter(w for text in base for w in set(content_words(text)))
    table = pd.DataFrame(
        [
            {
                "word": w,
                "count": c,
                "rate": c / len(top),
                "base_rate": base_counts[w] / len(base) if base else 0.0,
            }
            for w, c in counts.items()
        ],
        columns=columns[:4],
    )
    if table.empty:
        return [], pd.DataFrame(columns=columns)
    table["lift"] = table["rate"] - table["base_rate"]
    table = table.sort_values(["lift", "count", "word"], ascending=[False, False, True]).reset_index(drop=True)
    keep = table[(table["count"] >= min(min_count, len(top))) & (table["lift"] > 0)]
    return keep["word"].head(n_words).tolist(), table


def _shuffled_partner(features: list[int], pool: list[int], seed: int) -> list[int | None]:
    """For each feature, another feature with contexts to read its label against (seeded)."""
    if len(features) > 1:
        perm = derangement(len(features), seed).tolist()
        return [features[j] for j in perm]
    others = [f for f in pool if f not in features]
    if not others:
        return [None] * len(features)
    rng = np.random.default_rng(seed)
    return [int(rng.choice(others)) for _ in features]


def _grounded(text: str, contexts: Sequence[str] | None) -> float:
    return grounding(text, " ".join(contexts)) if contexts and text else math.nan


def nla_feature_labels(
    nla: NLA,
    sae: SAELike,
    data: Any,
    features: Sequence[int],
    *,
    feature_contexts: Any,
    subject: SubjectModel | None = None,
    explanations: Sequence[str] | None = None,
    top_n: int = 8,
    n_words: int = 6,
    base_n: int = 64,
    reference_labels: Mapping[int, str] | None = None,
    positions_per_doc: int = 2,
    max_new_tokens: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> FeatureLabels:
    """Label SAE features with the NLA: recurring words where they fire, and their direction explained.

    Args:
        nla: An :class:`~nla_lens.models.nla.NLA`.
        sae: An SAE with the interface of :mod:`nla_lens.sae`, on the NLA's hook and width.
        data: Positions to search for each feature's strongest activations: an
            :class:`~nla_lens.data.dataset.ActivationDataset` or text(s) (with ``subject``).
        features: Feature ids to label.
        feature_contexts: Each feature's top contexts, to ground labels in: a mapping, an
            ``ActivationDataset`` or texts (see :func:`~nla_lens.analysis.sae_agreement.sae_agreement`).
        subject: The subject model (for texts).
        explanations: The NLA's explanations of every position of ``data`` when already made;
            default: only the positions needed are explained (each feature's ``top_n`` and
            ``base_n`` random ones for the base rate).
        top_n: Strongest positions per feature whose explanations are condensed.
        n_words: Label words per feature.
        base_n: Random positions whose explanations set each word's base rate.
        reference_labels: ``{feature: label}`` from a human or auto-interp, shown beside.
        positions_per_doc: Positions per text when ``data`` is text.
        max_new_tokens: Explanation length cap.
        seed: Seed of the base sample and the shuffled features.
        progress: Show a progress bar while explaining.

    Returns:
        A :class:`FeatureLabels` (renders as feature cards).

    Raises:
        InputError: An SAE of another width or hook, a feature id out of ``0..d_sae-1``, no
            features, ``explanations`` of another length than the positions.
        SAEInterfaceError: ``sae`` lacks the interface of :mod:`nla_lens.sae`.
    """
    check_sae(sae, d_model=nla.d_model, hook_name=nla.hook_name)
    d_sae = int(sae.W_dec.shape[0])
    features = list(dict.fromkeys(int(f) for f in features))  # each feature once, in the order given
    if not features:
        raise InputError("features is empty; pass the SAE feature ids to label.")
    bad = [f for f in features if not 0 <= f < d_sae]
    if bad:
        raise InputError(f"Feature ids {bad} are out of range: this SAE has features 0..{d_sae - 1}.")
    dataset = positions_for(nla, data, subject=subject, positions_per_doc=positions_per_doc, seed=seed)
    n = len(dataset)
    if explanations is not None and len(explanations) != n:
        raise InputError(f"{len(explanations)} explanations for {n} positions; pass one per position.")
    contexts = feature_contexts_for(sae, feature_contexts, subject=subject, hook_name=nla.hook_name)
    acts = encode_features(sae, dataset.vectors)  # [n, d_sae]
    if isinstance(contexts, FeatureContexts) and contexts.density is not None:
        density = contexts.density
    else:
        density = feature_density(acts)
    dense = dense_features(contexts, acts)

    tops: dict[int, list[int]] = {}
    for f in features:
        order = torch.argsort(acts[:, f], descending=True, stable=True)[:top_n].tolist() if n else []
        tops[f] = [r for r in order if acts[r, f] > 0]
    rng = np.random.default_rng(seed)
    base_rows = list(range(n)) if explanations is not None else sorted(rng.permutation(n)[:base_n].tolist())
    texts: dict[int, str] = {}
    if explanations is not None:
        texts = {i: str(e) for i, e in enumerate(explanations)}
    decoder = sae.W_dec.detach().float().cpu()[features]  # [m, d_model]
    strengths = torch.tensor([float(acts[tops[f], f].mean()) if tops[f] else 0.0 for f in features])  # [m]
    directions = direction_vectors(dataset.vectors, decoder, strengths) if n else decoder
    needed = sorted(({r for rows in tops.values() for r in rows} | set(base_rows)) - set(texts))
    batch = torch.cat([dataset.vectors[needed], directions]) if needed else directions
    made = nla.av.verbalize(batch, max_new_tokens=max_new_tokens, progress=progress, warn=False)
    made = made.sort_values("vector")["explanation"].tolist()
    texts.update(dict(zip(needed, made[: len(needed)])))
    direction_texts = made[len(needed) :]

    partners = _shuffled_partner(features, sorted(contexts), seed)
    rows, word_tables, position_rows = [], [], []
    base = [texts[r] for r in base_rows]
    tokens = dataset.frame["token"].tolist()
    for f, partner, direction_text in zip(features, partners, direction_texts):
        top_texts = [texts[r] for r in tops[f]]
        words, table = label_words(top_texts, base, n_words)
        word_tables.append(table.assign(feature=f))
        label = ", ".join(words)
        own, other = contexts.get(f), contexts.get(partner) if partner is not None else None
        rows.append(
            {
                "feature": f,
                "n_active": int((acts[:, f] > 0).sum()) if n else 0,
                "density": float(density[f]),
                "dense": f in dense,
                "max_activation": float(acts[:, f].max()) if n else math.nan,
                "label": label,
                "label_words": words,
                "direction_explanation": direction_text,
                "label_grounding": _grounded(label, own),
                "label_grounding_shuffled": _grounded(label, other),
                "direction_grounding": _grounded(direction_text, own),
                "direction_grounding_shuffled": _grounded(direction_text, other),
                "top_contexts": list(own or []),
                "top_explanations": top_texts,
                "reference_label": (reference_labels or {}).get(f),
            }
        )
        rows[-1]["grounded"] = FeatureLabel(
            label, rows[-1]["label_grounding"], rows[-1]["label_grounding_shuffled"]
        ).grounded
        position_rows += [
            {
                "feature": f,
                "rank": rank,
                "row": r,
                "activation": float(acts[r, f]),
                "token": tokens[r],
                "explanation": texts[r],
            }
            for rank, r in enumerate(tops[f])
        ]
    frame = pd.DataFrame(rows)
    words = pd.concat(word_tables, ignore_index=True)[["feature", "word", "count", "rate", "base_rate", "lift"]]
    positions = pd.DataFrame(position_rows, columns=["feature", "rank", "row", "activation", "token", "explanation"])
    summary: dict[str, Any] = {"n_features": len(frame)}
    summary.update(control_summary(frame, ("label_grounding", "direction_grounding")))
    return FeatureLabels(frame, words, positions, summary, directions)
