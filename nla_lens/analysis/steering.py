"""Steering from explanations: the AR turns words into a residual-stream direction to add.

The AR maps an explanation (or an edited one) to the vector it describes. It was trained on
L2-normalised targets, so its raw output norm is arbitrary: :func:`explanation_vector` rescales
it to the typical activation norm at the NLA's hook (the dataset's median norm, or the AV's
``injection_scale``, which the NLA sidecar sets to about that median). :func:`steered_generate`
adds ``coefficient * vector`` to the residual stream at that hook, at every position, while the
subject generates greedily: through TransformerLens hooks (``run_with_hooks``, one full pass per
new token, never the bridge's KV cache) for a ``TransformerBridge`` or ``HookedTransformer``, and through an nnsight trace for nnsight
models. :func:`steer` runs the whole experiment: the subject with no steering, with the
explanation's vector and with a random vector of the same norm, and measures how much each
raises the log-probability of the explanation's topic words along the continuation, beside the
fluency of each continuation (:mod:`nla_lens.analysis.fluency`): a vector strong enough raises
the topic words while turning the text into garbage. :func:`steering_sweep` runs it at several
strengths, one row per coefficient.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from nla_lens.analysis.fluency import (
    MAX_LOGPROB_DROP,
    MAX_REPETITION,
    REPETITION_N,
    continuation_logprob,
    is_fluent,
    perplexity,
    repetition_rate,
)
from nla_lens.analysis.text import content_words
from nla_lens.errors import FluencyWarning, InputError
from nla_lens.hooks import HookSite
from nla_lens.models.verbalizer import stop_token_ids
from nla_lens.subjects.adapters import ResidualEdit, SubjectAdapter, SubjectModel, as_subject
from nla_lens.subjects.hook_check import check_subject

if TYPE_CHECKING:
    from nla_lens.models.nla import NLA

__all__ = [
    "DEFAULT_COEFFICIENT",
    "SWEEP_COEFFICIENTS",
    "SteeringResult",
    "explanation_vector",
    "steer",
    "steered_generate",
    "steering_sweep",
    "subject_steerer",
    "topic_logprob",
    "topic_token_ids",
]

#: The default strength of :func:`steer`: the largest that stayed fluent on the embedded model with
#: the shipped NLA (``python scripts/steering_sweep.py --coefficients 0.3 1.0 2.0 --max-new-tokens 12``:
#: at 0.3 fluency lost 0.23 nats/token and a topic gain of 1.15 nats over no steering; at 1.0 and 2.0
#: 1.95 and 3.44 nats/token lost, "The, of, of, of").
DEFAULT_COEFFICIENT = 0.3
#: The strengths :func:`steering_sweep` tries by default.
SWEEP_COEFFICIENTS = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


# -- the vector --------------------------------------------------------------------------------
def typical_norm(nla: NLA, dataset: Any = None) -> float:
    """The activation norm a steering vector is scaled to: the dataset's median norm, else the AV's
    ``injection_scale`` (set to about that median when the NLA was built)."""
    if dataset is not None:
        median = (getattr(dataset, "meta", None) or {}).get("norm_stats", {}).get("median")
        if median:
            return float(median)
    scale = getattr(getattr(getattr(nla, "av", None), "cfg", None), "injection_scale", None)
    if not scale:
        raise InputError(
            "No typical activation norm known: pass norm=... or dataset= (an ActivationDataset from the NLA's hook)."
        )
    return float(scale)


def explanation_vector(nla: NLA, explanation: str, *, norm: float | None = None, dataset: Any = None) -> torch.Tensor:
    """The residual-stream vector ``[d_model]`` an explanation describes, at activation scale.

    Args:
        nla: The NLA whose AR reads the explanation.
        explanation: Any text, e.g. an NLA explanation or an edited one.
        norm: L2 norm of the result (default: :func:`typical_norm`).
        dataset: An ActivationDataset at the NLA's hook, for its median norm.

    Returns:
        ``[d_model]`` float32 CPU tensor of norm ``norm``.
    """
    if not isinstance(explanation, str) or not explanation.strip():
        raise InputError("explanation must be a non-empty string.")
    raw = nla.ar.reconstruct([explanation])[0].float()
    scale = float(norm) if norm is not None else typical_norm(nla, dataset)
    if not math.isfinite(scale) or scale <= 0:
        raise InputError(f"norm must be a positive number, got {norm!r}.")
    return raw / raw.norm() * scale


def random_like(vector: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random direction ``[d]`` with the same norm as ``vector`` (the steering control)."""
    noise = torch.randn(vector.shape[-1], generator=torch.Generator().manual_seed(seed))
    return noise / noise.norm() * vector.norm()


# -- steering through the subject adapter -------------------------------------------------------
class _Steerer:
    """One subject with ``delta`` added at one hook: the adapter's logits and greedy generation with a
    :class:`~nla_lens.subjects.adapters.ResidualEdit` (the adapter owns the backend: TransformerLens
    adds at the hook, nnsight edits the decoder layer's output)."""

    def __init__(self, adapter: SubjectAdapter, hook: HookSite):
        self.adapter, self.hook = adapter, hook

    def _edit(self, delta: torch.Tensor | None) -> ResidualEdit | None:
        return None if delta is None else ResidualEdit(self.hook.name, delta)

    def logits(self, ids: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
        """``[T, vocab]`` logits of ``ids`` ``[T]``."""
        return self.adapter.logits(ids[None], edit=self._edit(delta))[0]

    def generate(self, ids: torch.Tensor, delta: torch.Tensor | None, max_new_tokens: int) -> torch.Tensor:
        """``[L]`` greedily generated tokens after ``ids`` ``[T]`` (exactly ``max_new_tokens``)."""
        return self.adapter.generate(ids, max_new_tokens, edit=self._edit(delta))


def subject_steerer(adapter: SubjectAdapter, hook: HookSite) -> _Steerer:
    """Steering at ``hook``: ``.logits(ids [T], delta [d] | None) -> [T, vocab]`` and
    ``.generate(ids [T], delta, max_new_tokens) -> [max_new_tokens]`` (greedy), adding ``delta`` at every
    position, through :meth:`SubjectAdapter.logits <nla_lens.subjects.adapters.SubjectAdapter.logits>`
    and ``generate``."""
    return _Steerer(adapter, hook)


def _cut_at_stop(tokens: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    stops = set(stop_token_ids(tokenizer))
    for index, token in enumerate(tokens.tolist()):
        if token in stops:
            return tokens[:index]
    return tokens


# -- public verbs --------------------------------------------------------------------------------
def steered_generate(
    subject: SubjectModel,
    prompt: str,
    vector: torch.Tensor | None,
    *,
    hook_name: str | None = None,
    layer: int | None = None,
    coefficient: float = 1.0,
    max_new_tokens: int = 24,
) -> str:
    """Greedy continuation of ``prompt`` with ``coefficient * vector`` added at ``hook_name``.

    Args:
        subject: A TransformerBridge/HookedTransformer, an nnsight model, or an adapter.
        prompt: The text to continue.
        vector: ``[d_model]`` steering vector, or ``None`` for no steering.
        hook_name: Where to add it (every position, prompt and generated tokens).
        layer: Instead of ``hook_name``: block index K, meaning ``blocks.K.hook_resid_post``.
        coefficient: Multiplier of ``vector``.
        max_new_tokens: Tokens generated (the text is cut at the first stop token).

    Returns:
        The continuation text (without the prompt).
    """
    adapter = as_subject(subject)
    hook = adapter.resolve_hook(hook_name, layer=layer)
    ids = _encode(adapter, prompt)
    delta = None if vector is None else _delta(vector, coefficient, adapter.d_model)
    new = _cut_at_stop(subject_steerer(adapter, hook).generate(ids, delta, max_new_tokens), adapter.tokenizer)
    return adapter.tokenizer.decode(new.tolist(), skip_special_tokens=True)


def topic_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """First token ids of each word as it appears mid-text (``" word"``, ``" Word"``), deduplicated.

    A form whose first token is only a fragment (a bare space or one or two letters, as when a
    small vocabulary splits ``" Cat"`` into ``" " + "C" + "at"``) is skipped: its probability
    says nothing about the word.
    """
    ids: list[int] = []
    for word in words:
        word = word.strip()
        for form in (f" {word}", f" {word.capitalize()}"):
            encoded = tokenizer(form, add_special_tokens=False)["input_ids"]
            if not encoded:
                continue
            piece = tokenizer.decode([encoded[0]]).strip()
            if len(piece) >= min(3, len(word)) and word.lower().startswith(piece.lower()) and encoded[0] not in ids:
                ids.append(int(encoded[0]))
    return ids


def topic_logprob(
    subject: SubjectModel,
    text_ids: torch.Tensor,
    start: int,
    topic_ids: Sequence[int],
    *,
    vector: torch.Tensor | None = None,
    hook_name: str | None = None,
    layer: int | None = None,
    coefficient: float = 1.0,
) -> float:
    """Mean log-probability that the next token is a topic word, along positions ``start..T-1``.

    At each position ``t`` of the continuation the (steered) model's next-token distribution,
    read one position earlier, gives ``log sum_{w in topic} p(w)``; the result is the mean over
    the continuation.

    Args:
        subject: The subject model or adapter.
        text_ids: ``[T]`` prompt + continuation tokens.
        start: Index of the first continuation token (the prompt length, >= 1).
        topic_ids: Token ids of the topic words.
        vector: ``[d_model]`` steering vector, or ``None``.
        hook_name: Where the vector is added.
        layer: Instead of ``hook_name``: block index K, meaning ``blocks.K.hook_resid_post``.
        coefficient: Multiplier of ``vector``.
    """
    adapter = as_subject(subject)
    if not topic_ids:
        raise InputError("No topic tokens: pass topic words that the tokenizer can encode.")
    if not 1 <= start < len(text_ids):
        raise InputError(f"start must lie in 1..{len(text_ids) - 1} (a non-empty prompt and continuation).")
    delta = None if vector is None else _delta(vector, coefficient, adapter.d_model)
    steerer = subject_steerer(adapter, adapter.resolve_hook(hook_name, layer=layer))
    text_ids = torch.as_tensor(text_ids).long()
    return _topic_logprob(steerer.logits(text_ids, delta), start, list(topic_ids))


def _delta(vector: torch.Tensor, coefficient: float, d_model: int) -> torch.Tensor:
    vector = torch.as_tensor(vector).float().reshape(-1)
    if vector.shape[0] != d_model:
        raise InputError(
            f"The steering vector has {vector.shape[0]} dimensions; the subject's residual stream has {d_model}."
        )
    return coefficient * vector


def _encode(adapter: SubjectAdapter, prompt: str) -> torch.Tensor:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("A steering prompt must be a non-empty string.")
    return torch.tensor(adapter.encode(prompt, adapter.n_ctx), dtype=torch.long)


@dataclass
class SteeringResult:
    """The result of :func:`steer`.

    Attributes:
        frame: One row per (prompt, condition): ``prompt``, ``condition`` (``"none"``,
            ``"explanation"``, ``"random"``), ``coefficient``, ``continuation``,
            ``topic_logprob`` (on the condition's own continuation), ``topic_logprob_fixed``
            (on the unsteered continuation: the pure shift of the next-token distribution), and
            its fluency: ``logprob`` (mean per-token log-likelihood of the continuation under the
            *unsteered* subject, nats), ``perplexity`` (``exp(-logprob)``), ``logprob_drop``
            (the unsteered continuation's ``logprob`` minus this one), ``repetition`` (fraction
            of repeated token trigrams) and ``fluent`` (both within the thresholds of
            :mod:`nla_lens.analysis.fluency`).
        summary: Means per condition (``topic_logprob_*``, ``logprob_*``, ``perplexity_*``,
            ``repetition_*``), the gains of the explanation's vector over no steering
            (``gain_vs_none``) and over the random vector (``gain_vs_random``) for both topic
            measures, ``logprob_drop`` / ``logprob_drop_random`` and ``fluent`` /
            ``fluent_random`` (the condition's means within the thresholds).
        vector: The ``[d_model]`` steering vector (before ``coefficient``).
        topic_words: The words whose log-probability is measured.
    """

    frame: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    vector: torch.Tensor | None = None
    topic_words: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"SteeringResult(topic_words={self.topic_words[:6]}, coefficient={s.get('coefficient', math.nan):g}, "
            f"gain_vs_none={s.get('gain_vs_none', math.nan):.3f}, "
            f"gain_vs_random={s.get('gain_vs_random', math.nan):.3f}, "
            f"logprob_drop={s.get('logprob_drop', math.nan):.2f} nats/token, "
            f"repetition={s.get('repetition_explanation', math.nan):.2f}, fluent={s.get('fluent')})"
        )

    def _repr_html_(self) -> str:
        warning = "" if self.summary.get("fluent", True) else "<p><b>Not fluent:</b> lower the coefficient.</p>"
        return f"<b>{html.escape(repr(self))}</b>{warning}" + self.frame.to_html(index=False)


def steer(
    nla: NLA,
    subject: SubjectModel,
    prompts: str | Sequence[str],
    explanation: str,
    *,
    topic_words: Sequence[str] | None = None,
    coefficient: float = DEFAULT_COEFFICIENT,
    max_new_tokens: int = 24,
    vector: torch.Tensor | None = None,
    norm: float | None = None,
    dataset: Any = None,
    hook_name: str | None = None,
    layer: int | None = None,
    seed: int = 0,
    progress: bool = True,
    warn: bool = True,
) -> SteeringResult:
    """Steer the subject with the AR vector of an explanation and measure the pull toward its topic.

    Each prompt is continued greedily three times: without steering, with
    ``coefficient * explanation_vector`` added at the NLA's hook, and with a random vector of the
    same norm (the control). The topic words' log-probability is measured on each condition's
    own continuation and on the unsteered one. Beside every gain sits the fluency of the steered
    text (see :class:`SteeringResult`): a vector strong enough raises the topic words while
    turning the text into ", of, of, of", so a gain counts only where ``fluent`` holds.

    Not fluent means: the unsteered subject finds the continuation more than
    ``MAX_LOGPROB_DROP`` = 1.5 nats/token less likely than its own unsteered continuation, or more
    than ``MAX_REPETITION`` = 0.5 of its token trigrams repeat (:mod:`nla_lens.analysis.fluency`).

    The default ``coefficient`` (0.3 of the typical activation norm) keeps the steered text of the
    embedded SmolLM2-135M with the shipped NLA within those thresholds while still raising the
    topic words over no steering and over the random vector; at 2.0 the text breaks and the
    result is flagged (both checked by ``tests/integration/test_analysis_embedded.py``). For
    another model, choose the strength with :func:`steering_sweep`;
    ``python scripts/steering_sweep.py`` prints the sweep for the embedded model.

    Args:
        nla: The NLA (its AR makes the vector; its hook is where it is added).
        subject: The subject model it was trained on (TransformerLens or nnsight) or its adapter.
        prompts: One prompt or several (figures are averaged over them).
        explanation: The explanation (or an edited one) to steer toward.
        topic_words: Words whose probability should rise (default: the explanation's content words).
        coefficient: Multiplier of the vector (1.0 adds one typical activation norm). Use
            :func:`steering_sweep` to choose it for another model.
        max_new_tokens: Continuation length.
        vector: Use this ``[d_model]`` vector instead of the AR's (e.g. an edited direction).
        norm: Norm of the AR vector (default: the typical activation norm, see :func:`typical_norm`).
        dataset: ActivationDataset at the NLA's hook, for the typical norm.
        hook_name: Must be the NLA's hook when given (a mismatch is refused).
        layer: Instead of ``hook_name``: block index K; ``blocks.K.hook_resid_post`` must be the NLA's hook.
        seed: Seed of the random control vector.
        progress: Show a progress bar.
        warn: Issue a :class:`~nla_lens.errors.FluencyWarning` when the steered text is not fluent.

    Returns:
        A :class:`SteeringResult`.

    Raises:
        InputError: A hook other than the NLA's, an empty prompt, no usable topic word.
        HookNameError: The subject has no such hook, or ``hook_name`` is an int (pass ``layer=``).
    """
    run = _SteeringRun.build(
        nla, subject, prompts, explanation, topic_words, vector, norm, dataset, hook_name, layer, seed, max_new_tokens
    )
    _check_coefficient(coefficient)
    bar = tqdm(total=len(run.prompts) * 3, desc="steer", unit="run", disable=not progress)
    frame = pd.DataFrame(run.unsteered(bar) + run.steered(float(coefficient), bar))
    bar.close()
    summary = {**_summarize(frame, coefficient), "norm": float(run.vector.norm()), "n_prompts": len(run.prompts)}
    summary["hook_name"] = run.hook.name
    if warn and not summary["fluent"]:
        warnings.warn(
            f"Steering at coefficient {coefficient:g} is not fluent: the steered text is "
            f"{summary['logprob_drop']:.2f} nats/token less likely than the unsteered text (threshold "
            f"{MAX_LOGPROB_DROP}) and repeats {summary['repetition_explanation']:.0%} of its trigrams (threshold "
            f"{MAX_REPETITION:.0%}); its topic gains say little. Lower the coefficient (steering_sweep shows "
            "where the text breaks).",
            FluencyWarning,
            stacklevel=2,
        )
    return SteeringResult(frame, summary, run.vector, run.words)


def steering_sweep(
    nla: NLA,
    subject: SubjectModel,
    prompts: str | Sequence[str],
    explanation: str,
    *,
    coefficients: Sequence[float] = SWEEP_COEFFICIENTS,
    topic_words: Sequence[str] | None = None,
    max_new_tokens: int = 24,
    vector: torch.Tensor | None = None,
    norm: float | None = None,
    dataset: Any = None,
    hook_name: str | None = None,
    layer: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`steer` at several strengths: how the topic gain and the fluency trade off.

    The unsteered continuations are generated once and shared by every coefficient. No warning is
    issued (breaking the text at large coefficients is what a sweep is for); the ``fluent``
    column flags each row against the thresholds stated in :func:`steer`. Every argument but
    ``coefficients`` means what it means in :func:`steer`.

    Args:
        coefficients: The strengths to try (1.0 adds one typical activation norm).

    Returns:
        A DataFrame, one row per coefficient: ``coefficient``, ``gain_vs_none``,
        ``gain_vs_random``, ``gain_vs_none_fixed``, ``gain_vs_random_fixed`` (as in
        :class:`SteeringResult`), the fluency of the steered text (``logprob_drop``,
        ``perplexity``, ``repetition``), the same for the random control (``logprob_drop_random``,
        ``repetition_random``), the unsteered text's ``perplexity_none`` and ``repetition_none``,
        ``fluent`` and ``example`` (the first prompt's steered continuation).
    """
    coefficients = [float(c) for c in coefficients]
    if not coefficients:
        raise InputError("Pass at least one coefficient.")
    for c in coefficients:
        _check_coefficient(c)
    run = _SteeringRun.build(
        nla, subject, prompts, explanation, topic_words, vector, norm, dataset, hook_name, layer, seed, max_new_tokens
    )
    bar = tqdm(total=len(run.prompts) * (1 + 2 * len(coefficients)), desc="sweep", unit="run", disable=not progress)
    unsteered = run.unsteered(bar)
    rows = []
    for c in coefficients:
        steered = run.steered(c, bar)
        s = _summarize(pd.DataFrame(unsteered + steered), c)
        rows.append(
            {"coefficient": c, **{key: s[key] for key in _SWEEP_COLUMNS}, "example": steered[0]["continuation"]}
        )
    bar.close()
    return pd.DataFrame(rows)


_SWEEP_COLUMNS = (
    "gain_vs_none",
    "gain_vs_random",
    "gain_vs_none_fixed",
    "gain_vs_random_fixed",
    "logprob_drop",
    "perplexity_explanation",
    "repetition_explanation",
    "logprob_drop_random",
    "repetition_random",
    "perplexity_none",
    "repetition_none",
    "fluent",
)


def _check_coefficient(coefficient: float) -> None:
    if isinstance(coefficient, bool) or not isinstance(coefficient, int | float) or not math.isfinite(coefficient):
        raise InputError(f"coefficient must be a finite number, got {coefficient!r}.")


@dataclass
class _SteeringRun:
    """What :func:`steer` and :func:`steering_sweep` share: the prompts, the vectors and the
    unsteered continuations every condition's fluency is measured against."""

    adapter: SubjectAdapter
    hook: HookSite
    steerer: _Steerer
    prompts: list[str]
    vector: torch.Tensor
    control: torch.Tensor
    words: list[str]
    topic_ids: list[int]
    max_new_tokens: int
    _none: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        nla: NLA,
        subject: SubjectModel,
        prompts: str | Sequence[str],
        explanation: str,
        topic_words: Sequence[str] | None,
        vector: torch.Tensor | None,
        norm: float | None,
        dataset: Any,
        hook_name: str | None,
        layer: int | None,
        seed: int,
        max_new_tokens: int,
    ) -> _SteeringRun:
        adapter, hook = check_subject(nla, subject, hook_name, layer=layer)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise InputError("Pass at least one prompt.")
        steer_vector = (
            explanation_vector(nla, explanation, norm=norm, dataset=dataset)
            if vector is None
            else _delta(vector, 1.0, adapter.d_model)
        )
        words = list(dict.fromkeys(topic_words if topic_words is not None else content_words(explanation)))
        topic_ids = topic_token_ids(adapter.tokenizer, words)
        if not topic_ids:
            raise InputError("No topic words: the explanation has no content word; pass topic_words=[...].")
        control = random_like(steer_vector, seed)
        steerer = subject_steerer(adapter, hook)
        return cls(adapter, hook, steerer, prompts, steer_vector, control, words, topic_ids, max_new_tokens)

    def unsteered(self, bar: Any) -> list[dict[str, Any]]:
        """Rows of the ``"none"`` condition (and the continuations the steered rows are scored on)."""
        rows = []
        for prompt in self.prompts:
            ids = _encode(self.adapter, prompt)
            new = self.steerer.generate(ids, None, self.max_new_tokens)
            bar.update()
            full = torch.cat([ids, new])
            logits = self.steerer.logits(full, None)
            self._none[prompt] = (ids, full)
            topic = _topic_logprob(logits, len(ids), self.topic_ids)
            rows.append(self._row(prompt, "none", 0.0, ids, new, logits, topic, topic))
        return rows

    def steered(self, coefficient: float, bar: Any) -> list[dict[str, Any]]:
        """Rows of the ``"explanation"`` and ``"random"`` conditions at ``coefficient``."""
        rows = []
        for prompt in self.prompts:
            ids, fixed = self._none[prompt]
            for name, vec in (("explanation", self.vector), ("random", self.control)):
                delta = coefficient * vec
                new = self.steerer.generate(ids, delta, self.max_new_tokens)
                bar.update()
                own = torch.cat([ids, new])
                topic = _topic_logprob(self.steerer.logits(own, delta), len(ids), self.topic_ids)
                topic_fixed = _topic_logprob(self.steerer.logits(fixed, delta), len(ids), self.topic_ids)
                judge = self.steerer.logits(own, None)  # the unsteered subject judges the fluency
                rows.append(self._row(prompt, name, coefficient, ids, new, judge, topic, topic_fixed))
        return rows

    def _row(
        self,
        prompt: str,
        name: str,
        coefficient: float,
        ids: torch.Tensor,
        new: torch.Tensor,
        judge_logits: torch.Tensor,
        topic: float,
        topic_fixed: float,
    ) -> dict[str, Any]:
        """One frame row; ``ids`` ``[T]`` the prompt, ``new`` ``[L]`` the continuation, ``judge_logits``
        ``[T + L, vocab]`` the unsteered subject's logits of both."""
        # Fluency is read up to and including the first stop token: what follows it is never shown.
        text = _cut_at_stop(new, self.adapter.tokenizer)
        scored = new[: len(text) + 1] if len(text) < len(new) else new
        logprob = continuation_logprob(judge_logits[: len(ids) + len(scored)], torch.cat([ids, scored]), len(ids))
        return {
            "prompt": prompt,
            "condition": name,
            "coefficient": float(coefficient),
            "continuation": self.adapter.tokenizer.decode(text.tolist(), skip_special_tokens=True),
            "topic_logprob": topic,
            "topic_logprob_fixed": topic_fixed,
            "logprob": logprob,
            "perplexity": perplexity(logprob),
            "repetition": repetition_rate(scored, REPETITION_N),
        }


def _summarize(frame: pd.DataFrame, coefficient: float) -> dict[str, Any]:
    """Add per-row ``logprob_drop`` / ``fluent`` to ``frame`` (in place) and return the summary."""
    reference = frame[frame["condition"] == "none"].groupby("prompt")["logprob"].first()
    frame["logprob_drop"] = frame["prompt"].map(reference) - frame["logprob"]
    frame["fluent"] = (frame["logprob_drop"] <= MAX_LOGPROB_DROP) & (frame["repetition"] <= MAX_REPETITION)
    measures = ["topic_logprob", "topic_logprob_fixed", "logprob", "repetition"]
    means = frame.groupby("condition")[measures].mean()
    summary: dict[str, Any] = {"coefficient": float(coefficient)}
    for name in ("none", "explanation", "random"):
        for measure in measures:
            summary[f"{measure}_{name}"] = float(means.loc[name, measure])
        summary[f"perplexity_{name}"] = perplexity(summary[f"logprob_{name}"])
    for measure, suffix in (("topic_logprob", ""), ("topic_logprob_fixed", "_fixed")):
        summary[f"gain_vs_none{suffix}"] = summary[f"{measure}_explanation"] - summary[f"{measure}_none"]
        summary[f"gain_vs_random{suffix}"] = summary[f"{measure}_explanation"] - summary[f"{measure}_random"]
    for name, suffix in (("explanation", ""), ("random", "_random")):
        summary[f"logprob_drop{suffix}"] = summary["logprob_none"] - summary[f"logprob_{name}"]
        summary[f"fluent{suffix}"] = is_fluent(
            summary[f"logprob_{name}"], summary["logprob_none"], summary[f"repetition_{name}"]
        )
    return summary


def _topic_logprob(logits: torch.Tensor, start: int, topic_ids: list[int]) -> float:
    logp = logits[start - 1 : -1].log_softmax(dim=-1)
    return float(logp[:, topic_ids].logsumexp(dim=-1).mean())
