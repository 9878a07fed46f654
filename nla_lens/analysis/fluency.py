"""Fluency of a generated continuation: the measures that sit beside every steering gain.

A steering vector strong enough can raise the topic words' log-probability while turning the
text into garbage (", of, of, of", "-c-c-c-"). These pure functions say how far a continuation
has left ordinary text: its mean per-token log-likelihood under the *unsteered* subject (and the
perplexity that goes with it), and how much of it repeats itself. :func:`is_fluent` applies the
thresholds :func:`nla_lens.analysis.steer` states and warns with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from nla_lens.errors import InputError

__all__ = [
    "MAX_LOGPROB_DROP",
    "MAX_REPETITION",
    "REPETITION_N",
    "continuation_logprob",
    "is_fluent",
    "perplexity",
    "repetition_rate",
    "text_logprobs",
]

#: A continuation is "not fluent" when the unsteered subject finds it more than this many
#: nats/token less likely than the unsteered continuation of the same prompt ...
MAX_LOGPROB_DROP = 1.5
#: ... or when more than this fraction of its token trigrams repeat an earlier trigram.
MAX_REPETITION = 0.5
#: The n of the repeated n-grams counted by :func:`repetition_rate` in steering results.
REPETITION_N = 3


def continuation_logprob(logits: torch.Tensor, ids: torch.Tensor, start: int) -> float:
    """Mean log-likelihood per token of the continuation ``ids[start:]`` under ``logits``.

    Args:
        logits: ``[T, vocab]`` next-token logits of ``ids`` (row ``t`` predicts ``ids[t + 1]``),
            from the model that judges the text (for steering: the unsteered subject).
        ids: ``[T]`` prompt + continuation token ids.
        start: Index of the first continuation token (the prompt length, ``1 <= start < T``).

    Returns:
        The mean of ``log p(ids[t] | ids[:t])`` over ``t = start..T-1``, in nats (<= 0).
    """
    ids = torch.as_tensor(ids).long().reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != ids.shape[0]:
        raise InputError(f"logits must be [T, vocab] with T = len(ids) = {ids.shape[0]}; got {tuple(logits.shape)}.")
    if not 1 <= start < ids.shape[0]:
        raise InputError(f"start must lie in 1..{ids.shape[0] - 1} (a non-empty prompt and continuation).")
    logp = logits[start - 1 : -1].float().log_softmax(dim=-1)
    return float(logp.gather(-1, ids[start:, None]).mean())


@torch.no_grad()
def text_logprobs(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16) -> list[float]:
    """Mean log-likelihood per token of each text under an HF causal LM: how readable a judge model
    finds it (an NLA's explanations under the base model; :func:`perplexity` turns it into one).

    Each text is read on its own from its first token (the first token is the context, the rest are
    scored); a text of fewer than two tokens gives NaN.

    Args:
        model: An HF causal LM (the judge).
        tokenizer: Its tokenizer.
        texts: ``N`` texts.

    Returns:
        ``N`` mean log-likelihoods in nats (<= 0).
    """
    out: list[float] = []
    device = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        encoded = [tokenizer.encode(t, add_special_tokens=False) for t in texts[start : start + batch_size]]
        width = max(2, *(len(ids) for ids in encoded))
        ids = torch.zeros(len(encoded), width, dtype=torch.long)
        mask = torch.zeros(len(encoded), width, dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.cpu()
        for row, tokens in enumerate(encoded):
            n = len(tokens)
            out.append(continuation_logprob(logits[row, :n], ids[row, :n], 1) if n >= 2 else math.nan)
    return out


def perplexity(mean_logprob: float) -> float:
    """Perplexity ``exp(-mean_logprob)`` of a mean per-token log-likelihood (nats)."""
    if math.isnan(mean_logprob):
        return math.nan
    return math.exp(min(-float(mean_logprob), 700.0))  # exp overflows past ~709


def repetition_rate(tokens: torch.Tensor, n: int = REPETITION_N) -> float:
    """Fraction of the token ``n``-grams of ``tokens`` that already occurred earlier in it.

    ``0.0`` for text that never repeats itself (and for fewer than ``n + 1`` tokens); close to
    ``1.0`` for a loop such as ", of, of, of, ...".

    Args:
        tokens: ``[L]`` token ids of the continuation alone (no prompt).
        n: Length of the n-grams compared.
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}.")
    items = torch.as_tensor(tokens).reshape(-1).tolist()
    grams = [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]
    if len(grams) < 2:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def is_fluent(
    logprob: float,
    reference_logprob: float,
    repetition: float,
    *,
    max_logprob_drop: float = MAX_LOGPROB_DROP,
    max_repetition: float = MAX_REPETITION,
) -> bool:
    """Whether a continuation still reads as text: its log-likelihood is at most ``max_logprob_drop``
    nats/token below the reference's (the unsteered continuation), and its repetition rate is at
    most ``max_repetition``."""
    return (reference_logprob - logprob) <= max_logprob_drop and repetition <= max_repetition
