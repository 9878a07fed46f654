"""The faithfulness report: does an NLA's text really carry its vectors, and which part does?

:func:`faithfulness_report` runs, on one held-out set, every check an NLA result should come
with (a score is only readable beside its controls, and the published method tested faithfulness
by rewording explanations: reconstruction should survive paraphrase):

* **fve_nrm** of the round trip, next to its **controls**: predict-the-mean (0 on the training
  mean), the **shuffled** pairing (explanations matched to the wrong vectors, at or below 0) and
  the **explanation of a random vector** (what the AR makes of an explanation of nothing);
* **paraphrase robustness**: fve_nrm when the AR reads meaning-preserving rewrites of each
  explanation (a pluggable paraphraser; offline default :class:`RuleParaphraser`), and the share
  of fve_nrm retained; then the same **per surface style**
  (:attr:`FaithfulnessReport.paraphrase_table`): by default every held-out style of
  :mod:`nla_lens.rewrites` (a reordering, other headings, curly quotes, two plain-prose
  wordings; none of them seen in training) and the rule paraphraser, each one AR pass;
* **ablation by snippet**: the loss increase when each snippet is dropped;
* **grounding**: how much of each explanation's content is in the source text prefix, next to
  the same score against a wrong prefix;
* the **language/gibberish rate** (:func:`~nla_lens.models.verbalizer.looks_non_english`) and
  the AV's failure flags;
* the **context oracle** (:func:`context_oracle`): the AR fed the source text itself instead of
  an explanation, a reference for how much a text can carry.

Each check is one function returning a :class:`_Stage` (its columns of the per-vector frame and
its summary entries); :func:`faithfulness_report` only resolves the inputs and runs them in order.
All scores come from :mod:`nla_lens.metrics` (every round trip through
:func:`~nla_lens.metrics.score_round_trip`), so they agree with training and evaluation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from nla_lens.analysis.ablation import snippet_ablation
from nla_lens.analysis.paraphrase import (
    Paraphraser,
    ProseParaphraser,
    RuleParaphraser,
    StyleParaphraser,
    check_paraphrases,
    paraphraser_labels,
    resolve_paraphrasers,
)
from nla_lens.analysis.text import grounding
from nla_lens.data.dataset import ActivationDataset
from nla_lens.errors import InputError, ShapeError
from nla_lens.jsonable import json_safe
from nla_lens.metrics import (
    RoundTrip,
    current_token_control,
    derangement,
    fve_nrm,
    nanmean,
    normalized_mse,
    predict_mean_control,
    score_round_trip,
)
from nla_lens.models.verbalizer import looks_non_english
from nla_lens.words import context_words

if TYPE_CHECKING:
    from nla_lens.models.nla import NLA

__all__ = ["FaithfulnessReport", "context_oracle", "faithfulness_report"]


# -- inputs ------------------------------------------------------------------------------------
@dataclass
class _Held:
    """The held-out set, resolved: vectors ``[n, d]``, their metadata rows, the training vectors."""

    vectors: torch.Tensor
    frame: pd.DataFrame
    train_vectors: torch.Tensor | None
    split: str | None
    train_token_ids: list[int] | None = None


def _resolve(data: Any, prefixes: Any, split: str | None, d_model: int, hook_name: str | None = None) -> _Held:
    train, train_ids = None, None
    if isinstance(data, ActivationDataset):
        if data.hook_name and hook_name and data.hook_name != hook_name:
            raise InputError(
                f"The dataset holds vectors of {data.hook_name!r} but the NLA was trained on "
                f"{hook_name!r}; extract a held-out set at the NLA's hook."
            )
        chosen = split if split is not None else ("eval" if "eval" in data.splits else None)
        if chosen is not None:
            held = data.split(chosen)
            rest = (data.frame["split"] != chosen).to_numpy()
            train = data.vectors[torch.from_numpy(rest.copy())] if rest.any() else None
            if train is not None and "token_id" in data.frame.columns:
                train_ids = data.frame["token_id"].to_numpy()[rest].tolist()
        else:
            held = data
        vectors, frame = held.vectors, held.frame.reset_index(drop=True)
        if prefixes is not None:
            raise InputError("prefixes= is only for raw vectors; an ActivationDataset brings its own 'prefix' column.")
    else:
        chosen = None
        vectors = torch.as_tensor(data).float() if not isinstance(data, torch.Tensor) else data.detach().float().cpu()
        if vectors.ndim != 2:
            raise ShapeError(
                f"data must be an ActivationDataset or vectors [n, d_model], got shape {tuple(vectors.shape)}."
            )
        frame = pd.DataFrame(index=range(len(vectors)))
        if prefixes is not None:
            prefixes = list(prefixes)
            if len(prefixes) != len(vectors):
                raise InputError(
                    f"{len(prefixes)} prefixes for {len(vectors)} vectors; pass one source text per vector."
                )
            frame["prefix"] = prefixes
    if vectors.shape[-1] != d_model:
        raise ShapeError(
            f"The vectors are {vectors.shape[-1]}-wide but the NLA explains {d_model}-wide vectors; "
            "extract them at the NLA's hook of its subject model."
        )
    if len(vectors) < 2:
        raise InputError(
            f"A faithfulness report needs at least 2 held-out vectors (fve_nrm measures their variance), "
            f"got {len(vectors)}."
        )
    return _Held(vectors, frame, train, chosen, train_ids)


def _fve_or_nan(pred: torch.Tensor, target: torch.Tensor) -> float:
    """fve_nrm of ``pred`` against ``target`` (both ``[k, d]``); NaN when ``k < 2`` leaves no variance."""
    return fve_nrm(pred, target) if len(target) >= 2 else math.nan


def _sample(
    held: _Held, explanations: list[str] | None, n: int | None, seed: int
) -> tuple[torch.Tensor, pd.DataFrame, list[str] | None]:
    """Check the given explanations against the held-out set, then draw the seeded sample.

    Returns:
        The sampled vectors ``[n, d]``, their metadata rows (index reset) and their explanations
        (``None`` when they are to be generated).
    """
    vectors, frame = held.vectors, held.frame
    if explanations is not None:
        if isinstance(explanations, str) or len(explanations) != len(vectors):
            raise InputError(
                f"explanations must be a list with one explanation per vector ({len(vectors)}), got "
                f"{'a string' if isinstance(explanations, str) else len(explanations)}."
            )
    rng = np.random.default_rng(seed)
    if n is not None and len(vectors) > n:
        keep = np.sort(rng.choice(len(vectors), size=max(2, int(n)), replace=False))
        vectors, frame = vectors[torch.from_numpy(keep)], frame.iloc[keep].reset_index(drop=True)
        explanations = [explanations[i] for i in keep] if explanations is not None else None
    return vectors, frame, explanations


def _oracle_texts(prefixes: Any, n_words: int | None) -> list[str]:
    """The last ``n_words`` words of each source text (the whole text when ``n_words`` is falsy)."""
    return [context_words(p, n_words) if n_words else p for p in prefixes]


# -- the context oracle ------------------------------------------------------------------------
def context_oracle(
    nla: NLA,
    data: Any,
    *,
    n_words: int | None = 15,
    prefixes: Any = None,
    split: str | None = None,
    batch_size: int = 16,
) -> pd.DataFrame:
    """The reconstructor fed the source text itself instead of an explanation.

    A reference point: how much of each vector a text *can* carry through this AR. The AR was
    trained on explanations, not raw text, so this is a lower bound on what the text holds (an
    AR trained on the last ~15 words of raw context reached held-out fve_nrm 0.69 on the embedded
    model; see :class:`~nla_lens.data.teachers.ContextTeacher`).

    Args:
        nla: The NLA (its ``ar`` is used) or a reconstructor itself.
        data: An :class:`~nla_lens.data.dataset.ActivationDataset` (its ``prefix`` column is the
            source text) or vectors ``[n, d]`` with ``prefixes=``.
        n_words: Feed the last ``n_words`` words of each prefix (``None``: the whole prefix).
        prefixes: Source texts for raw vectors.
        split: Dataset split to use (default ``"eval"`` when there is one, else all rows).

    Returns:
        One row per vector: ``text`` (what the AR read), ``mse``, ``cosine``; ``attrs["report"]``
        holds fve_nrm and the shuffled control.
    """
    ar = getattr(nla, "ar", nla)
    held = _resolve(data, prefixes, split, ar.d_model, getattr(nla, "hook_name", None))
    if "prefix" not in held.frame.columns:
        raise InputError(
            "The context oracle needs the source text of each vector: pass an ActivationDataset or prefixes=[...]."
        )
    texts = _oracle_texts(held.frame["prefix"], n_words)
    scored = score_round_trip(ar, texts, held.vectors, batch_size=batch_size)
    frame = pd.DataFrame({"text": texts, "mse": scored.mse.numpy(), "cosine": scored.cosine.numpy()})
    scores = scored.summary(0)
    frame.attrs["report"] = {
        "fve_nrm": scores["fve_nrm"],
        "fve_nrm_shuffled": scores["fve_nrm_shuffled"],
        "n": len(frame),
    }
    return frame


# -- the report --------------------------------------------------------------------------------
@dataclass
class FaithfulnessReport:
    """The result of :func:`faithfulness_report`.

    Attributes:
        frame: One row per held-out vector: metadata (``doc_id``, ``position``, ``token``,
            ``prefix`` when known), ``explanation``, ``mse``, ``cosine``, ``mse_shuffled``,
            ``paraphrase``, ``mse_paraphrase``, ``ablation_max_increase``, ``grounding``,
            ``grounding_shuffled``, ``non_english``, ``ok`` and ``mse_context_oracle``.
        ablations: One row per (vector, snippet), see :func:`snippet_ablation`.
        summary: The headline figures (JSON-safe): ``fve_nrm``, the controls
            ``fve_nrm_shuffled``, ``predict_mean``, ``current_token_control`` (NaN without
            ``token_embeddings``) and ``random_vector_fve_nrm``,
            ``paraphrase_fve_nrm``, ``paraphrase_retention`` (paraphrase fve_nrm / fve_nrm, NaN
            when fve_nrm <= 0), ``paraphrase_retention_vs_shuffled`` (the same share measured
            from the shuffled control), ``reorder_retention`` and ``prose_retention`` (the
            worst held-out prose style, ``prose_retention_style``) from the per-style table,
            ``paraphrase_retention_by_style`` (style -> retention) and ``paraphrase_by_style``
            (the table's rows), ``ablation_mse_increase`` (and ``ablation_by_heading``),
            ``grounding``, ``grounding_shuffled``, ``non_english_rate``, ``failure_rate``,
            ``context_oracle_fve_nrm``, ``n``, ...
        vectors: ``[n, d_model]`` the evaluated vectors, in the order of ``frame``.
        paraphrase_table: One row per paraphrase style: ``style``, ``split`` (``"train"``: the
            AR trains on this surface form; ``"held_out"``: it never sees it; ``"custom"``),
            ``kind`` (``"template"``, ``"prose"``, ``"rules"`` or ``"custom"``), ``description``,
            ``fve_nrm``, ``retention`` (its fve_nrm / the explanations' fve_nrm, NaN when that is
            <= 0), ``retention_vs_shuffled`` (the same share measured from the shuffled control),
            ``paraphraser`` (its ``repr``) and ``example`` (the rewrite of the first explanation).
    """

    frame: pd.DataFrame
    ablations: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    vectors: torch.Tensor | None = None
    paraphrase_table: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __repr__(self) -> str:
        keys = (
            "fve_nrm",
            "fve_nrm_shuffled",
            "predict_mean",
            "current_token_control",
            "random_vector_fve_nrm",
            "paraphrase_retention",
            "reorder_retention",
            "prose_retention",
            "grounding",
            "context_oracle_fve_nrm",
        )
        shown = ", ".join(f"{k}={_fmt(self.summary.get(k))}" for k in keys)
        return f"FaithfulnessReport(n={self.summary.get('n')}, {shown})"

    def to_json(self, path: str | Path | None = None) -> str:
        """The summary as JSON (NaN written as ``null``); also written to ``path`` when given."""
        text = json.dumps(json_safe(self.summary), indent=2)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")
        return text

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(str(k))}</td><td>{escape(_fmt(v))}</td></tr>"
            for k, v in self.summary.items()
            if not isinstance(v, (list, dict))
        )
        head = self.frame.head(8)[
            [c for c in ("token", "explanation", "mse", "mse_paraphrase", "grounding") if c in self.frame.columns]
        ].to_html(index=False)
        styles = ""
        if len(self.paraphrase_table):
            shown = [c for c in PARAPHRASE_TABLE_COLUMNS if c not in ("paraphraser", "example")]
            table = self.paraphrase_table[shown].to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="nan")
            styles = f"<b>Paraphrase retention by style</b>{table}"
        return f"<b>Faithfulness report</b><table>{rows}</table>{styles}{head}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


# -- the checks, one function each ---------------------------------------------------------------
@dataclass
class _Stage:
    """What one check adds to the report: per-vector ``columns`` (each ``[n]``) and ``summary`` entries."""

    columns: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _explanations(
    nla: NLA,
    vectors: torch.Tensor,
    explanations: list[str] | None,
    *,
    max_new_tokens: int,
    batch_size: int,
    progress: bool,
) -> tuple[list[str], _Stage]:
    """Stage 1a: the explanations of ``vectors`` ``[n, d]``, generated by ``nla.av`` unless given.

    Returns:
        The ``n`` explanations, and columns ``ok`` (AV failure flags, generated only) and
        ``explanation``; summary ``failure_rate`` and ``mean_tokens`` (generated only).
    """
    stage = _Stage()
    if explanations is None:
        generated = nla.av.verbalize(
            vectors, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, warn=False
        )
        explanations = generated["explanation"].tolist()
        stage.columns["ok"] = generated["ok"].to_numpy()
        stage.summary.update(
            failure_rate=float((~generated["ok"]).mean()), mean_tokens=float(generated["n_tokens"].mean())
        )
    explanations = list(explanations)
    stage.columns["explanation"] = explanations
    return explanations, stage


def _round_trip(
    ar: Any, explanations: list[str], vectors: torch.Tensor, *, seed: int, batch_size: int
) -> tuple[RoundTrip, _Stage]:
    """Stage 1b: the AR's reconstruction of ``n`` explanations scored against ``vectors`` ``[n, d]``.

    Returns:
        The :class:`~nla_lens.metrics.RoundTrip`, and columns ``mse``, ``cosine`` and
        ``mse_shuffled`` (each row's reconstruction against the vector of the seeded derangement);
        summary ``fve_nrm``, ``fve_nrm_shuffled``, ``mse``, ``cosine``.
    """
    scored = score_round_trip(ar, explanations, vectors, batch_size=batch_size)
    scores = scored.summary(seed)  # its shuffled control pairs rows by derangement(n, seed), as mse_shuffled does
    perm = derangement(len(vectors), seed)
    cosines = scored.cosine.numpy()
    return scored, _Stage(
        {
            "mse": scored.mse.numpy(),
            "cosine": cosines,
            "mse_shuffled": normalized_mse(scored.predicted[perm], vectors).numpy(),
        },
        # The mean cosine of the column (numpy's float32 sum), as the report has always given it;
        # the summary's torch mean can differ in the last float32 digit.
        {
            "fve_nrm": scores["fve_nrm"],
            "fve_nrm_shuffled": scores["fve_nrm_shuffled"],
            "mse": scores["mse"],
            "cosine": float(cosines.mean()),
        },
    )


def _mean_and_token_controls(
    vectors: torch.Tensor,
    token_ids: list[int] | None,
    train: torch.Tensor | None,
    train_token_ids: Any,
    token_embeddings: Any,
) -> _Stage:
    """Stage 1c: the baselines a round trip must beat, for held-out ``vectors`` ``[n, d]``.

    Args:
        vectors: ``[n, d]`` the held-out vectors.
        token_ids: The current-token id of each held-out vector (``None`` without a ``token_id`` column).
        train: ``[M, d]`` training vectors (``None``: predict-the-mean is fitted in-sample).
        train_token_ids: ``M`` current-token ids of ``train`` (for the current-token baseline).
        token_embeddings: ``[d_vocab, d_e]`` the subject's input embeddings, or ``None``.

    Returns:
        Summary ``predict_mean``, ``predict_mean_in_sample`` and ``current_token_control`` (NaN
        without ``token_embeddings``).
    """
    summary = {
        "predict_mean": predict_mean_control(train if train is not None else vectors, vectors),
        "predict_mean_in_sample": train is None,
        "current_token_control": math.nan,
    }
    if token_embeddings is not None:
        if train is None or train_token_ids is None or token_ids is None:
            raise InputError(
                "The current-token baseline needs training vectors with their token ids and a "
                "'token_id' column: pass an ActivationDataset with other splits, or train_vectors= "
                "with train_token_ids=."
            )
        summary["current_token_control"] = current_token_control(
            train, train_token_ids, vectors, token_ids, token_embeddings
        )
    return _Stage(summary=summary)


def _random_vector_control(
    nla: NLA, vectors: torch.Tensor, *, n_random: int, seed: int, max_new_tokens: int, batch_size: int, progress: bool
) -> _Stage:
    """Stage 2: explain ``k = min(n_random, n)`` random vectors ``[k, d]`` (at the median norm of
    ``vectors`` ``[n, d]``) and score their reconstructions against the first ``k`` held-out vectors.

    Returns:
        Summary ``random_vector_fve_nrm`` (NaN when skipped or ``k < 2``) and, when run,
        ``random_vector_examples`` (the first three explanations of noise).
    """
    if not (n_random and hasattr(nla, "av")):
        return _Stage(summary={"random_vector_fve_nrm": math.nan})
    k = min(int(n_random), len(vectors))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(k, vectors.shape[1], generator=generator)
    noise = noise / noise.norm(dim=-1, keepdim=True) * vectors.norm(dim=-1).median()
    random_text = nla.av.verbalize(
        noise, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, warn=False
    )["explanation"].tolist()
    scored = score_round_trip(nla.ar, random_text, vectors[:k], batch_size=batch_size)
    return _Stage(
        summary={
            "random_vector_fve_nrm": _fve_or_nan(scored.predicted, vectors[:k]),
            "random_vector_examples": random_text[:3],
        }
    )


def _paraphrase_check(
    ar: Any,
    explanations: list[str],
    vectors: torch.Tensor,
    paraphraser: Paraphraser,
    *,
    fve: float,
    fve_shuffled: float,
    batch_size: int,
) -> tuple[_Stage, _Rewritten]:
    """Stage 3a: round trip of a rewrite of each of ``n`` explanations against ``vectors`` ``[n, d]``.

    Args:
        fve: The round trip's fve_nrm.
        fve_shuffled: Its shuffled control.

    Returns:
        Columns ``paraphrase`` and ``mse_paraphrase``; summary ``paraphrase_fve_nrm``,
        ``paraphrase_drop``, ``paraphrase_retention``, ``paraphrase_retention_vs_shuffled`` and
        ``paraphraser`` (its ``repr``); and the scored rewrite, for the per-style table to reuse.
    """
    rewrites, paraphrased = _rewrite_fve(ar, explanations, vectors, paraphraser, batch_size=batch_size)
    retention, vs_shuffled = _retention(paraphrased.fve, fve, fve_shuffled)
    return _Stage(
        {"paraphrase": rewrites, "mse_paraphrase": paraphrased.mse},
        {
            "paraphrase_fve_nrm": paraphrased.fve,
            "paraphrase_drop": fve - paraphrased.fve,
            "paraphrase_retention": retention,
            "paraphrase_retention_vs_shuffled": vs_shuffled,
            "paraphraser": repr(paraphraser),
        },
    ), paraphrased


@dataclass
class _Rewritten:
    """One paraphraser's rewrites scored: normalised MSE ``[n]``, fve_nrm, the first rewrite (an example)."""

    mse: np.ndarray
    fve: float
    example: str


#: Offline paraphrasers whose ``repr`` fixes their output, so a rewrite scored once can be reused.
_DETERMINISTIC = (RuleParaphraser, StyleParaphraser, ProseParaphraser)


def _reusable(paraphraser: Paraphraser, scored: _Rewritten) -> dict[str, _Rewritten]:
    """``{repr: scored}`` for an offline paraphraser whose repr fixes its output, else ``{}``."""
    return {repr(paraphraser): scored} if type(paraphraser) in _DETERMINISTIC else {}


def _rewrite_fve(
    ar: Any, explanations: list[str], vectors: torch.Tensor, paraphraser: Paraphraser, *, batch_size: int
) -> tuple[list[str], _Rewritten]:
    """The (checked) rewrites of ``n`` explanations and their round trip against ``vectors`` ``[n, d]``."""
    rewrites = check_paraphrases(explanations, paraphraser(list(explanations)))
    scored = score_round_trip(ar, rewrites, vectors, batch_size=batch_size)
    return rewrites, _Rewritten(scored.mse.numpy(), fve_nrm(scored.predicted, vectors), rewrites[0])


def _retention(paraphrased: float, fve: float, fve_shuffled: float) -> tuple[float, float]:
    """The share of fve_nrm a rewrite keeps, from 0 and from the shuffled control.

    Returns:
        ``paraphrased / fve`` (NaN when ``fve <= 0``: retention is a share of something positive;
        below the mean baseline there is nothing to retain) and ``(paraphrased - fve_shuffled) /
        (fve - fve_shuffled)``: the part of the above-chance signal that survives (1 = all of it,
        0 = back to chance), stable when fve_nrm is near 0 (NaN when there is no signal above chance).
    """
    above = fve - fve_shuffled
    return (
        paraphrased / fve if fve > 0 else math.nan,
        (paraphrased - fve_shuffled) / above if above > 1e-6 else math.nan,
    )


PARAPHRASE_TABLE_COLUMNS = (
    *("style", "split", "kind", "description", "fve_nrm", "retention", "retention_vs_shuffled"),
    *("paraphraser", "example"),
)
"""The columns of :attr:`FaithfulnessReport.paraphrase_table`, in order."""


def _paraphrase_styles_check(
    ar: Any,
    explanations: list[str],
    vectors: torch.Tensor,
    paraphrasers: Mapping[str, Paraphraser],
    *,
    fve: float,
    fve_shuffled: float,
    batch_size: int,
    done: Mapping[str, _Rewritten],
) -> tuple[pd.DataFrame, _Stage]:
    """Stage 3b: :func:`_paraphrase_check` once per surface style, one AR pass each.

    Args:
        paraphrasers: Row name -> paraphraser (:func:`~nla_lens.analysis.paraphrase.resolve_paraphrasers`).
        fve: The round trip's fve_nrm.
        fve_shuffled: Its shuffled control.
        done: Rewrites already scored, by the ``repr`` of a deterministic offline paraphraser
            (the report's ``paraphraser`` when it is the same rule set), so none is scored twice.

    Returns:
        The table (:data:`PARAPHRASE_TABLE_COLUMNS`, one row per style), and summary
        ``reorder_retention`` (the ``reorder_rule`` row, NaN without one), ``prose_retention``
        (the lowest retention over held-out prose styles: the acceptance bar is on the worst),
        ``prose_retention_style`` (which one), ``paraphrase_retention_by_style`` and
        ``paraphrase_by_style`` (the table's rows, for JSON).
    """
    rows = []
    for name, paraphraser in paraphrasers.items():
        key = repr(paraphraser)
        rewritten = done.get(key) if type(paraphraser) in _DETERMINISTIC else None
        if rewritten is None:
            rewritten = _rewrite_fve(ar, explanations, vectors, paraphraser, batch_size=batch_size)[1]
        retention, vs_shuffled = _retention(rewritten.fve, fve, fve_shuffled)
        label = paraphraser_labels(paraphraser)
        rows.append(
            (name, label["split"], label["kind"], label["description"])
            + (rewritten.fve, retention, vs_shuffled, key, rewritten.example)
        )
    table = pd.DataFrame(rows, columns=list(PARAPHRASE_TABLE_COLUMNS))
    # float columns even when empty (paraphrase_styles=()), so the summary below stays uniform
    table = table.astype({"fve_nrm": float, "retention": float, "retention_vs_shuffled": float})
    reorder = table.loc[table["style"] == "reorder_rule", "retention"]
    prose = table[(table["split"] == "held_out") & (table["kind"] == "prose")].dropna(subset=["retention"])
    worst = prose.loc[prose["retention"].idxmin()] if len(prose) else None
    return table, _Stage(
        summary={
            "reorder_retention": float(reorder.iloc[0]) if len(reorder) else math.nan,
            "prose_retention": float(worst["retention"]) if worst is not None else math.nan,
            "prose_retention_style": str(worst["style"]) if worst is not None else None,
            "paraphrase_retention_by_style": {k: float(v) for k, v in zip(table["style"], table["retention"])},
            "paraphrase_by_style": table.to_dict("records"),
        }
    )


def _ablation_check(
    ar: Any, explanations: list[str], vectors: torch.Tensor, full_mse: torch.Tensor, *, batch_size: int
) -> tuple[pd.DataFrame, _Stage]:
    """Stage 4: :func:`snippet_ablation` of ``n`` explanations of ``vectors`` ``[n, d]``.

    Args:
        full_mse: ``[n]`` the normalised MSE of the full explanations.

    Returns:
        The ablation table (one row per vector and snippet), and column ``ablation_max_increase``
        (the largest increase over a vector's snippets, NaN with fewer than two snippets);
        summary ``ablation_mse_increase`` and ``ablation_by_heading`` (mean increase per heading).
    """
    ablations = snippet_ablation(ar, explanations, vectors, batch_size=batch_size, full_mse=full_mse)
    if not len(ablations):
        return ablations, _Stage(
            {"ablation_max_increase": [math.nan] * len(explanations)},
            {"ablation_mse_increase": math.nan, "ablation_by_heading": {}},
        )
    by_vector = ablations.groupby("vector")["mse_increase"].max()
    by_heading = ablations.groupby("heading", sort=False)["mse_increase"].mean()
    return ablations, _Stage(
        {"ablation_max_increase": [float(by_vector.get(i, math.nan)) for i in range(len(explanations))]},
        {
            "ablation_mse_increase": float(ablations["mse_increase"].mean()),
            "ablation_by_heading": {str(k): float(v) for k, v in by_heading.items()},
        },
    )


def _grounding_check(explanations: list[str], prefixes: list[str] | None, *, seed: int) -> _Stage:
    """Stage 5: the share of each explanation's content found in its own source text, and in
    the source text of another vector (the seeded derangement of :func:`_round_trip`).

    Returns:
        Columns ``grounding`` and ``grounding_shuffled`` (with prefixes only); summary
        ``grounding`` and ``grounding_shuffled`` (their means, NaN without prefixes).
    """
    if prefixes is None:
        return _Stage(summary={"grounding": math.nan, "grounding_shuffled": math.nan})
    perm = derangement(len(explanations), seed).tolist()
    own = [grounding(e, p) for e, p in zip(explanations, prefixes)]
    other = [grounding(e, prefixes[j]) for e, j in zip(explanations, perm)]
    return _Stage(
        {"grounding": own, "grounding_shuffled": other},
        {"grounding": nanmean(own), "grounding_shuffled": nanmean(other)},
    )


def _language_check(nla: NLA, explanations: list[str]) -> _Stage:
    """Stage 6: which of the ``n`` explanations are not English (gibberish, another script).

    Returns:
        Column ``non_english`` (bools); summary ``non_english_rate``.
    """
    # The injection marker is the AV's own placeholder, not a foreign character.
    marker = getattr(getattr(getattr(getattr(nla, "av", None), "cfg", None), "tokens", None), "injection_char", None)
    flags = [looks_non_english(e, marker) for e in explanations]
    return _Stage({"non_english": flags}, {"non_english_rate": float(np.mean(flags))})


def _context_oracle_check(
    ar: Any, prefixes: list[str] | None, vectors: torch.Tensor, *, oracle_words: int | None, batch_size: int
) -> _Stage:
    """Stage 7: the AR fed the source text of each of ``vectors`` ``[n, d]`` (see :func:`context_oracle`).

    Returns:
        Column ``mse_context_oracle`` (with prefixes only); summary ``context_oracle_fve_nrm``
        (NaN without prefixes) and ``context_oracle_words``.
    """
    if prefixes is None:
        return _Stage(summary={"context_oracle_fve_nrm": math.nan})
    scored = score_round_trip(ar, _oracle_texts(prefixes, oracle_words), vectors, batch_size=batch_size)
    return _Stage(
        {"mse_context_oracle": scored.mse.numpy()},
        {"context_oracle_fve_nrm": fve_nrm(scored.predicted, vectors), "context_oracle_words": oracle_words},
    )


def _add(out: pd.DataFrame, summary: dict[str, Any], stage: _Stage) -> None:
    """Append a stage's columns to ``out`` and its entries to ``summary``, in the stage's order."""
    for name, values in stage.columns.items():
        out[name] = values
    summary.update(stage.summary)


def faithfulness_report(
    nla: NLA,
    data: Any,
    *,
    explanations: list[str] | None = None,
    prefixes: Any = None,
    split: str | None = None,
    n: int | None = 64,
    train_vectors: Any = None,
    token_embeddings: Any = None,
    train_token_ids: Any = None,
    paraphraser: Paraphraser | None = None,
    paraphrase_styles: Sequence[str] | Mapping[str, str | Paraphraser] | None = None,
    n_random: int = 16,
    oracle_words: int | None = 15,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> FaithfulnessReport:
    """Every faithfulness check of an NLA on a held-out set, in one call.

    Args:
        nla: The :class:`~nla_lens.models.nla.NLA` (``nla.av`` explains, ``nla.ar`` reconstructs).
        data: An :class:`~nla_lens.data.dataset.ActivationDataset` (its ``"eval"`` split by
            default, the other splits serving as training vectors for predict-the-mean) or
            vectors ``[N, d_model]``.
        explanations: Explanations to score instead of generating them (one per vector of the
            chosen split, in order), e.g. a teacher's, or edited ones.
        prefixes: Source text of each vector, for raw vectors (grounding and the context oracle).
        split: Dataset split to evaluate (default ``"eval"`` when present, else all rows).
        n: Evaluate a seeded random sample of at most ``n`` vectors (``None``: all).
        train_vectors: ``[M, d]`` training vectors whose mean direction is the predict-the-mean
            control (default: the dataset's other splits; else the held-out set itself, in-sample,
            which scores exactly 0).
        token_embeddings: The subject's input embedding matrix ``[d_vocab, d_e]`` (``model.W_E``);
            adds the current-token baseline (:func:`~nla_lens.metrics.current_token_control`,
            fitted on the training vectors), which needs a ``token_id`` column in ``data``.
        train_token_ids: The current-token id of each of ``train_vectors`` (with ``token_embeddings``).
        paraphraser: Any callable ``list[str] -> list[str]`` (default :class:`RuleParaphraser`);
            gives the ``paraphrase`` column and the ``paraphrase_*`` summary entries.
        paraphrase_styles: The rows of :attr:`FaithfulnessReport.paraphrase_table`, one AR pass
            each: ``None`` for every held-out style of :mod:`nla_lens.rewrites` and the all-ops
            :class:`RuleParaphraser` (:data:`~nla_lens.analysis.paraphrase.DEFAULT_PARAPHRASE_STYLES`);
            a list of style names (keys of :data:`nla_lens.rewrites.STYLES`, training styles too,
            or ``"rules"``); or a mapping from row name to a style name or any paraphraser
            (``{"llm": my_paraphraser, "reorder": RuleParaphraser(ops=("reorder",))}``). ``()``
            skips the table.
        n_random: Random vectors explained for the random-vector control (0 to skip).
        oracle_words: Words of source text the context oracle reads (``None``: the whole prefix).
        max_new_tokens: Explanation length cap when explanations are generated.
        batch_size: Batch size of the AV and AR.
        seed: Seeds the sample, the shuffled pairing and the random vectors.
        progress: Show progress bars.

    Returns:
        A :class:`FaithfulnessReport` (``.summary``, ``.frame``, ``.ablations``,
        ``.paraphrase_table``, ``.to_json``).

    Raises:
        InputError: Fewer than two vectors, explanations or prefixes of the wrong length, a
            paraphraser returning the wrong number of rewrites, an unknown paraphrase style.
        ShapeError: Vectors of another width than the NLA's.
    """
    ar = nla.ar
    paraphrasers = resolve_paraphrasers(paraphrase_styles)  # before any work: a typo fails at once
    held = _resolve(data, prefixes, split, ar.d_model, getattr(nla, "hook_name", None))
    vectors, frame, explanations = _sample(held, explanations, n, seed)
    out = frame.copy()
    source = out["prefix"].tolist() if "prefix" in out.columns else None
    summary: dict[str, Any] = {"n": len(vectors), "split": held.split}
    train = train_vectors if train_vectors is not None else held.train_vectors
    train_ids = train_token_ids if train_vectors is not None else held.train_token_ids
    with tqdm(total=8, desc="faithfulness", unit="check", disable=not progress) as stages:
        stages.set_postfix_str("explain")
        explanations, stage = _explanations(
            nla, vectors, explanations, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
        )
        _add(out, summary, stage)
        scored, stage = _round_trip(ar, explanations, vectors, seed=seed, batch_size=batch_size)
        _add(out, summary, stage)
        token_ids = out["token_id"].tolist() if "token_id" in out.columns else None
        _add(out, summary, _mean_and_token_controls(vectors, token_ids, train, train_ids, token_embeddings))
        stages.update()

        stages.set_postfix_str("random vectors")
        _add(
            out,
            summary,
            _random_vector_control(
                nla,
                vectors,
                n_random=n_random,
                seed=seed,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                progress=progress,
            ),
        )
        stages.update()

        stages.set_postfix_str("paraphrase")
        paraphraser = paraphraser if paraphraser is not None else RuleParaphraser()
        controls = dict(fve=summary["fve_nrm"], fve_shuffled=summary["fve_nrm_shuffled"], batch_size=batch_size)
        stage, paraphrased = _paraphrase_check(ar, explanations, vectors, paraphraser, **controls)
        _add(out, summary, stage)
        stages.update()

        stages.set_postfix_str("paraphrase styles")
        paraphrase_table, stage = _paraphrase_styles_check(
            ar, explanations, vectors, paraphrasers, done=_reusable(paraphraser, paraphrased), **controls
        )
        _add(out, summary, stage)
        stages.update()

        stages.set_postfix_str("ablation")
        ablations, stage = _ablation_check(ar, explanations, vectors, scored.mse, batch_size=batch_size)
        _add(out, summary, stage)
        stages.update()

        stages.set_postfix_str("grounding")
        _add(out, summary, _grounding_check(explanations, source, seed=seed))
        stages.update()

        stages.set_postfix_str("language")
        _add(out, summary, _language_check(nla, explanations))
        summary.setdefault("failure_rate", math.nan)  # given explanations carry no AV failure flags
        stages.update()

        stages.set_postfix_str("context oracle")
        _add(out, summary, _context_oracle_check(ar, source, vectors, oracle_words=oracle_words, batch_size=batch_size))
        stages.update()
    summary["examples"] = explanations[:3]
    return FaithfulnessReport(out, ablations, summary, vectors, paraphrase_table)
