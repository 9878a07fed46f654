"""The faithfulness report: does an NLA's text really carry its vectors, and which part does?

:func:`faithfulness_report` runs, on one held-out set, every check an NLA result should come
with (DESIGN §1):

* **fve_nrm** of the round trip, next to its **controls**: predict-the-mean (0 on the training
  mean), the **shuffled** pairing (explanations matched to the wrong vectors, at or below 0) and
  the **explanation of a random vector** (what the AR makes of an explanation of nothing);
* **paraphrase robustness**: fve_nrm when the AR reads meaning-preserving rewrites of each
  explanation (a pluggable paraphraser; offline default :class:`RuleParaphraser`), and the share
  of fve_nrm retained;
* **ablation by snippet**: the loss increase when each snippet is dropped;
* **grounding**: how much of each explanation's content is in the source text prefix, next to
  the same score against a wrong prefix;
* the **language/gibberish rate** (:func:`~nla_lens.models.verbalizer.looks_non_english`) and
  the AV's failure flags;
* the **context oracle** (:func:`context_oracle`): the AR fed the source text itself instead of
  an explanation, a reference for how much a text can carry.

All scores come from :mod:`nla_lens.metrics`, so they agree with training and evaluation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from nla_lens.analysis.ablation import snippet_ablation
from nla_lens.analysis.paraphrase import Paraphraser, RuleParaphraser, check_paraphrases
from nla_lens.analysis.text import grounding
from nla_lens.data.dataset import ActivationDataset
from nla_lens.words import context_words
from nla_lens.errors import InputError, ShapeError
from nla_lens.metrics import (cosine, current_token_control, derangement, fve_nrm, normalized_mse, predict_mean_control,
                              shuffled_control)
from nla_lens.models.verbalizer import looks_non_english

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
            raise InputError(f"The dataset holds vectors of {data.hook_name!r} but the NLA was trained on "
                             f"{hook_name!r}; extract a held-out set at the NLA's hook.")
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
            raise ShapeError(f"data must be an ActivationDataset or vectors [n, d_model], got shape {tuple(vectors.shape)}.")
        frame = pd.DataFrame(index=range(len(vectors)))
        if prefixes is not None:
            prefixes = list(prefixes)
            if len(prefixes) != len(vectors):
                raise InputError(f"{len(prefixes)} prefixes for {len(vectors)} vectors; pass one source text per vector.")
            frame["prefix"] = prefixes
    if vectors.shape[-1] != d_model:
        raise ShapeError(f"The vectors are {vectors.shape[-1]}-wide but the NLA explains {d_model}-wide vectors; "
                         "extract them at the NLA's hook of its subject model.")
    if len(vectors) < 2:
        raise InputError(f"A faithfulness report needs at least 2 held-out vectors (fve_nrm measures their variance), "
                         f"got {len(vectors)}.")
    return _Held(vectors, frame, train, chosen, train_ids)


def _fve_or_nan(pred: torch.Tensor, target: torch.Tensor) -> float:
    return fve_nrm(pred, target) if len(target) >= 2 else math.nan


# -- the context oracle ------------------------------------------------------------------------
def context_oracle(nla: Any, data: Any, *, n_words: int | None = 15, prefixes: Any = None, split: str | None = None,
                   batch_size: int = 16) -> pd.DataFrame:
    """The reconstructor fed the source text itself instead of an explanation.

    A reference point: how much of each vector a text *can* carry through this AR. The AR was
    trained on explanations, not raw text, so this is a lower bound on what the text holds (an
    AR trained on raw context reaches fve_nrm ~0.7 on the embedded model, FACTS.md).

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
        raise InputError("The context oracle needs the source text of each vector: pass an ActivationDataset "
                         "or prefixes=[...].")
    texts = [context_words(p, n_words) if n_words else p for p in held.frame["prefix"]]
    pred = ar.reconstruct(texts, batch_size=batch_size)
    frame = pd.DataFrame({"text": texts, "mse": normalized_mse(pred, held.vectors).numpy(),
                          "cosine": cosine(pred, held.vectors).numpy()})
    frame.attrs["report"] = {"fve_nrm": fve_nrm(pred, held.vectors),
                             "fve_nrm_shuffled": shuffled_control(pred, held.vectors, 0), "n": len(frame)}
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
            from the shuffled control), ``ablation_mse_increase`` (and
            ``ablation_by_heading``), ``grounding``, ``grounding_shuffled``,
            ``non_english_rate``, ``failure_rate``, ``context_oracle_fve_nrm``, ``n``, ...
        vectors: ``[n, d_model]`` the evaluated vectors, in the order of ``frame``.
    """

    frame: pd.DataFrame
    ablations: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    vectors: torch.Tensor | None = None

    def __repr__(self) -> str:
        keys = ("fve_nrm", "fve_nrm_shuffled", "predict_mean", "current_token_control", "random_vector_fve_nrm",
                "paraphrase_retention", "grounding", "context_oracle_fve_nrm")
        shown = ", ".join(f"{k}={_fmt(self.summary.get(k))}" for k in keys)
        return f"FaithfulnessReport(n={self.summary.get('n')}, {shown})"

    def to_json(self, path: str | Path | None = None) -> str:
        """The summary as JSON (NaN written as ``null``); also written to ``path`` when given."""
        text = json.dumps(_json_safe(self.summary), indent=2)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text + "\n")
        return text

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(_fmt(v))}</td></tr>"
                       for k, v in self.summary.items() if not isinstance(v, (list, dict)))
        head = self.frame.head(8)[[c for c in ("token", "explanation", "mse", "mse_paraphrase", "grounding")
                                   if c in self.frame.columns]].to_html(index=False)
        return f"<b>Faithfulness report</b><table>{rows}</table>{head}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def faithfulness_report(
    nla: Any,
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
        paraphraser: Any callable ``list[str] -> list[str]`` (default :class:`RuleParaphraser`).
        n_random: Random vectors explained for the random-vector control (0 to skip).
        oracle_words: Words of source text the context oracle reads (``None``: the whole prefix).
        max_new_tokens: Explanation length cap when explanations are generated.
        batch_size: Batch size of the AV and AR.
        seed: Seeds the sample, the shuffled pairing and the random vectors.
        progress: Show progress bars.

    Returns:
        A :class:`FaithfulnessReport` (``.summary``, ``.frame``, ``.ablations``, ``.to_json``).

    Raises:
        InputError: Fewer than two vectors, explanations or prefixes of the wrong length, a
            paraphraser returning the wrong number of rewrites.
        ShapeError: Vectors of another width than the NLA's.
    """
    ar = nla.ar
    held = _resolve(data, prefixes, split, ar.d_model, getattr(nla, "hook_name", None))
    vectors, frame = held.vectors, held.frame
    if explanations is not None:
        if isinstance(explanations, str) or len(explanations) != len(vectors):
            raise InputError(f"explanations must be a list with one explanation per vector ({len(vectors)}), got "
                             f"{'a string' if isinstance(explanations, str) else len(explanations)}.")
    rng = np.random.default_rng(seed)
    if n is not None and len(vectors) > n:
        keep = np.sort(rng.choice(len(vectors), size=max(2, int(n)), replace=False))
        vectors, frame = vectors[torch.from_numpy(keep)], frame.iloc[keep].reset_index(drop=True)
        explanations = [explanations[i] for i in keep] if explanations is not None else None
    out = frame.copy()
    summary: dict[str, Any] = {"n": len(vectors), "split": held.split}
    stages = tqdm(total=7, desc="faithfulness", unit="check", disable=not progress)

    # 1. explanations and the round trip
    stages.set_postfix_str("explain")
    marker = getattr(getattr(getattr(getattr(nla, "av", None), "cfg", None), "tokens", None), "injection_char", None)
    if explanations is None:
        generated = nla.av.verbalize(vectors, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                     progress=progress, warn=False)
        explanations = generated["explanation"].tolist()
        out["ok"] = generated["ok"].to_numpy()
        summary["failure_rate"] = float((~generated["ok"]).mean())
        summary["mean_tokens"] = float(generated["n_tokens"].mean())
    explanations = list(explanations)
    out["explanation"] = explanations
    pred = ar.reconstruct(explanations, batch_size=batch_size)
    mse = normalized_mse(pred, vectors)
    out["mse"], out["cosine"] = mse.numpy(), cosine(pred, vectors).numpy()
    perm = derangement(len(vectors), seed)
    out["mse_shuffled"] = normalized_mse(pred[perm], vectors).numpy()
    summary.update(fve_nrm=fve_nrm(pred, vectors), fve_nrm_shuffled=shuffled_control(pred, vectors, seed),
                   mse=float(mse.mean()), cosine=float(out["cosine"].mean()))
    train = train_vectors if train_vectors is not None else held.train_vectors
    summary["predict_mean"] = predict_mean_control(train if train is not None else vectors, vectors)
    summary["predict_mean_in_sample"] = train is None
    summary["current_token_control"] = math.nan
    if token_embeddings is not None:
        ids = train_token_ids if train_vectors is not None else held.train_token_ids
        if train is None or ids is None or "token_id" not in out.columns:
            raise InputError("The current-token baseline needs training vectors with their token ids and a "
                             "'token_id' column: pass an ActivationDataset with other splits, or train_vectors= "
                             "with train_token_ids=.")
        summary["current_token_control"] = current_token_control(train, ids, vectors, out["token_id"].tolist(),
                                                                 token_embeddings)
    stages.update()

    # 2. the random-vector control
    stages.set_postfix_str("random vectors")
    summary["random_vector_fve_nrm"] = math.nan
    if n_random and hasattr(nla, "av"):
        k = min(int(n_random), len(vectors))
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(k, vectors.shape[1], generator=generator)
        noise = noise / noise.norm(dim=-1, keepdim=True) * vectors.norm(dim=-1).median()
        random_text = nla.av.verbalize(noise, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                       progress=progress, warn=False)["explanation"].tolist()
        summary["random_vector_fve_nrm"] = _fve_or_nan(ar.reconstruct(random_text, batch_size=batch_size),
                                                       vectors[:k])
        summary["random_vector_examples"] = random_text[:3]
    stages.update()

    # 3. paraphrase robustness
    stages.set_postfix_str("paraphrase")
    paraphraser = paraphraser if paraphraser is not None else RuleParaphraser()
    rewrites = check_paraphrases(explanations, paraphraser(list(explanations)))
    pred_p = ar.reconstruct(rewrites, batch_size=batch_size)
    out["paraphrase"], out["mse_paraphrase"] = rewrites, normalized_mse(pred_p, vectors).numpy()
    summary["paraphrase_fve_nrm"] = fve_nrm(pred_p, vectors)
    summary["paraphrase_drop"] = summary["fve_nrm"] - summary["paraphrase_fve_nrm"]
    # Retention is a share of something positive; below the mean baseline there is nothing to retain.
    summary["paraphrase_retention"] = (summary["paraphrase_fve_nrm"] / summary["fve_nrm"]
                                       if summary["fve_nrm"] > 0 else math.nan)
    # The same share measured from the shuffled control instead of 0: the part of the above-chance
    # signal that survives (1 = all of it, 0 = back to chance); stable when fve_nrm is near 0.
    above = summary["fve_nrm"] - summary["fve_nrm_shuffled"]
    summary["paraphrase_retention_vs_shuffled"] = ((summary["paraphrase_fve_nrm"] - summary["fve_nrm_shuffled"]) / above
                                                   if above > 1e-6 else math.nan)
    summary["paraphraser"] = repr(paraphraser)
    stages.update()

    # 4. ablation by snippet
    stages.set_postfix_str("ablation")
    ablations = snippet_ablation(ar, explanations, vectors, batch_size=batch_size, full_mse=mse)
    by_vector = ablations.groupby("vector")["mse_increase"].max() if len(ablations) else pd.Series(dtype=float)
    out["ablation_max_increase"] = [float(by_vector.get(i, math.nan)) for i in range(len(out))]
    summary["ablation_mse_increase"] = float(ablations["mse_increase"].mean()) if len(ablations) else math.nan
    summary["ablation_by_heading"] = ({str(k): float(v) for k, v in
                                       ablations.groupby("heading", sort=False)["mse_increase"].mean().items()}
                                      if len(ablations) else {})
    stages.update()

    # 5. grounding in the source text
    stages.set_postfix_str("grounding")
    if "prefix" in out.columns:
        prefixes_ = out["prefix"].tolist()
        out["grounding"] = [grounding(e, p) for e, p in zip(explanations, prefixes_)]
        out["grounding_shuffled"] = [grounding(e, prefixes_[j]) for e, j in zip(explanations, perm.tolist())]
        summary["grounding"] = float(np.nanmean(out["grounding"])) if out["grounding"].notna().any() else math.nan
        summary["grounding_shuffled"] = (float(np.nanmean(out["grounding_shuffled"]))
                                         if out["grounding_shuffled"].notna().any() else math.nan)
    else:
        summary["grounding"] = summary["grounding_shuffled"] = math.nan
    stages.update()

    # 6. language / gibberish
    stages.set_postfix_str("language")
    out["non_english"] = [looks_non_english(e, marker) for e in explanations]
    summary["non_english_rate"] = float(out["non_english"].mean())
    summary.setdefault("failure_rate", math.nan)
    stages.update()

    # 7. the context oracle
    stages.set_postfix_str("context oracle")
    summary["context_oracle_fve_nrm"] = math.nan
    if "prefix" in out.columns:
        oracle_texts = [context_words(p, oracle_words) if oracle_words else p for p in out["prefix"]]
        pred_o = ar.reconstruct(oracle_texts, batch_size=batch_size)
        out["mse_context_oracle"] = normalized_mse(pred_o, vectors).numpy()
        summary["context_oracle_fve_nrm"] = fve_nrm(pred_o, vectors)
        summary["context_oracle_words"] = oracle_words
    stages.update()
    stages.close()
    summary["examples"] = explanations[:3]
    return FaithfulnessReport(out, ablations, summary, vectors)
