"""``ContextTeacher``: the offline default warm-start teacher, built from the text and the subject.

It writes three numbered one-line snippets per activation: the recent context verbatim, the
subject model's own top-k next-token predictions at that position (or the prefix's longest topic
words when no subject is given), and the current token. No network, no sampling: the same rows
always give the same explanations.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from nla_lens.data.teachers.base import check_records
from nla_lens.errors import InputError
from nla_lens.words import context_words, topic_words

if TYPE_CHECKING:
    from nla_lens.subjects.adapters import SubjectModel

VARIANTS = ("context", "template")
TEMPLATE_LAST_WORDS = 6
"""Words of verbatim context the ``"template"`` variant keeps (as in the measurement quoted in
:class:`ContextTeacher`)."""


def _quote(text: str) -> str:
    """Double-quote ``text`` on one line (newlines and tabs escaped, Unicode kept)."""
    return json.dumps(text, ensure_ascii=False)


def _quote_list(items: list[str]) -> str:
    return ", ".join(_quote(item) for item in items) if items else "(none)"


class _NextTokenModel:
    """Tokenize a prefix and run a causal LM to logits, whatever the subject's backend."""

    def __init__(self, subject: SubjectModel):
        from nla_lens.subjects.adapters import SubjectAdapter, as_subject

        if isinstance(subject, tuple) and len(subject) == 2:
            model, tokenizer = subject
            if tokenizer is None:
                raise InputError("ContextTeacher(subject=(model, tokenizer)) needs a tokenizer.")
            self.model, self.tokenizer, self._device = model, tokenizer, next(model.parameters()).device
            self.encode = lambda text: tokenizer(text, add_special_tokens=True)["input_ids"]
            self.forward = lambda tokens: model(input_ids=tokens).logits
            self.n_ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
            return
        if not isinstance(subject, SubjectAdapter) and not (
            hasattr(subject, "run_with_cache") or hasattr(subject, "trace")
        ):
            raise InputError(
                f"ContextTeacher cannot use a {type(subject).__name__} as subject. Pass a "
                "TransformerBridge or HookedTransformer (nla_lens.load_subject), an nnsight model, "
                "or a (Hugging Face causal LM, tokenizer) pair."
            )
        adapter = as_subject(subject)
        self.tokenizer, self.encode, self.n_ctx = adapter.tokenizer, adapter.encode, adapter.n_ctx
        self.model = adapter.model
        self.forward = adapter.logits  # whatever the backend (SubjectAdapter.logits)
        self._device = adapter.device

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else 0


class ContextTeacher:
    """Offline warm-start teacher: recent context verbatim, the subject's predictions, the token.

    Each explanation is exactly three numbered snippets, one per line, e.g.::

        1. Recent context: "…pulled at his forelock some hours after a Saracen"
        2. Likely next: "scimitar", "sword", "army"
        3. Current token: " Saracen"

    Without a subject, snippet 2 lists the prefix's three longest distinct content words
    (``2. Topic words: ...``) instead of predictions.

    Why verbatim context is the default: on the embedded SmolLM2 at ``blocks.20.hook_resid_post``,
    an AR trained on the last ~15 words of the prefix verbatim reached held-out fve_nrm 0.69 in
    15 CPU-minutes, while a templated description (topic words, current word, last 6 words, top-3
    predictions) reached 0.42 in the same time (measured while nla_lens was built: about 2,900
    training and 256 held-out vectors from Devil's Dictionary documents, split 80/20 by document, the
    21-block AR fully fine-tuned at lr 5e-5, batch 16; the shuffled control stayed at -0.6 to -0.8).
    ``variant="template"`` writes that templated description, so the two can be compared.

    Args:
        subject: Optional subject model for the predictions: a ``TransformerBridge`` or
            ``HookedTransformer`` (``nla_lens.load_subject``), an nnsight model (its local HF
            module is run), a ``SubjectAdapter``, or a ``(HF causal LM, tokenizer)`` pair.
        n_context_words: Words of verbatim context (``variant="context"``).
        top_k: Number of next-token predictions listed.
        batch_size: Sequences per subject forward pass.
        variant: ``"context"`` (default) or ``"template"``.
        progress: Show a ``tqdm`` bar while the subject runs.
    """

    def __init__(
        self,
        subject: SubjectModel | None = None,
        *,
        n_context_words: int = 15,
        top_k: int = 3,
        batch_size: int = 8,
        variant: str = "context",
        progress: bool = True,
    ):
        for name, value in (("n_context_words", n_context_words), ("top_k", top_k), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an int >= 1, got {value!r}.")
        if variant not in VARIANTS:
            raise InputError(f"variant must be one of {VARIANTS}, got {variant!r}.")
        self.n_context_words, self.top_k, self.batch_size = n_context_words, top_k, batch_size
        self.variant, self.progress = variant, progress
        self._runner = _NextTokenModel(subject) if subject is not None else None

    def __repr__(self) -> str:
        subject = "None" if self._runner is None else type(self._runner.model).__name__
        return (
            f"ContextTeacher(subject={subject}, variant={self.variant!r}, "
            f"n_context_words={self.n_context_words}, top_k={self.top_k})"
        )

    # -- the subject's predictions -----------------------------------------------------------
    @torch.no_grad()
    def top_next_tokens(self, records: pd.DataFrame) -> list[list[int]]:
        """The subject's ``top_k`` next-token ids after each row's prefix, most likely first.

        Each prefix is re-tokenized with the subject's tokenizer (as extraction tokenizes
        documents) and read at its last position; for a causal model that equals the document's
        logits at the row's ``position``. Rows of one document (``doc_id``) whose token ids are
        a prefix of the document's longest prefix share one forward pass.

        Returns:
            One list of ``top_k`` token ids per row (empty for an empty prefix).

        Raises:
            InputError: If the teacher has no subject, or for malformed records.
        """
        if self._runner is None:
            raise InputError("This ContextTeacher has no subject model; pass subject=... to get predictions.")
        records = check_records(records)
        runner = self._runner
        encoded: dict[str, list[int]] = {}
        for prefix in records["prefix"]:
            if prefix not in encoded:
                ids = list(runner.encode(prefix))
                encoded[prefix] = ids[-runner.n_ctx :] if runner.n_ctx and len(ids) > runner.n_ctx else ids
        groups = records["doc_id"] if "doc_id" in records.columns else records["prefix"]

        sequences: dict[tuple[int, ...], int] = {}  # token ids of one forward pass -> job index
        where: list[tuple[int, int] | None] = []  # per row: (job, position) to read
        longest: dict[Any, str] = {}
        for prefix, key in zip(records["prefix"], groups):
            if key not in longest or len(encoded[prefix]) > len(encoded[longest[key]]):
                longest[key] = prefix
        for prefix, key in zip(records["prefix"], groups):
            ids, full = encoded[prefix], encoded[longest[key]]
            if not ids:
                where.append(None)
                continue
            run = tuple(full) if full[: len(ids)] == ids else tuple(ids)
            where.append((sequences.setdefault(run, len(sequences)), len(ids) - 1))

        wanted: dict[int, list[int]] = {}
        for job_pos in where:
            if job_pos is not None:
                wanted.setdefault(job_pos[0], []).append(job_pos[1])
        jobs = sorted(sequences, key=len)  # length-sorted: little padding
        top: dict[tuple[int, int], list[int]] = {}
        bar = tqdm(total=len(jobs), desc="subject predictions", unit="seq", disable=not self.progress)
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            width = max(len(seq) for seq in batch)
            tokens = torch.full((len(batch), width), runner.pad_id, dtype=torch.long)
            for row, seq in enumerate(batch):
                tokens[row, : len(seq)] = torch.tensor(seq)
            logits = runner.forward(tokens.to(runner.device))  # right padding: causal outputs exact
            for row, seq in enumerate(batch):
                job = sequences[seq]
                positions = sorted(set(wanted[job]))
                ids = logits[row, positions].float().topk(self.top_k, dim=-1).indices.tolist()
                top.update({(job, p): i for p, i in zip(positions, ids)})
            bar.update(len(batch))
        bar.close()
        return [top[job_pos] if job_pos is not None else [] for job_pos in where]

    # -- explanations ------------------------------------------------------------------------
    def explain(self, prefix: str, token: str, predictions: list[str] | None = None) -> str:
        """The explanation of one prefix ending at ``token``.

        Args:
            prefix: Document text up to and including the token.
            token: The token's text (leading space included).
            predictions: Decoded next-token predictions, most likely first, or ``None``.

        Returns:
            Three numbered snippets separated by newlines.
        """
        topics = _quote_list(topic_words(prefix))
        current = f"3. Current token: {_quote(token)}"
        if self.variant == "context":
            first = f"1. Recent context: {_quote(context_words(prefix, self.n_context_words))}"
            if predictions is None:
                second = f"2. Topic words: {topics}"
            else:
                second = f"2. Likely next: {_quote_list(predictions)}"
            return "\n".join((first, second, current))
        last = _quote(context_words(prefix, TEMPLATE_LAST_WORDS))
        if predictions is None:
            return "\n".join((f"1. Topic words: {topics}", f"2. Last words: {last}", current))
        return "\n".join(
            (f"1. Topic words: {topics}; last words: {last}", f"2. Likely next: {_quote_list(predictions)}", current)
        )

    def __call__(self, records: pd.DataFrame) -> list[str]:
        """One explanation per row of ``records`` (columns ``prefix``, ``token``; ``doc_id``
        optional, used to share forward passes), in row order."""
        records = check_records(records)
        if self._runner is None:
            predictions: list[list[str] | None] = [None] * len(records)
        else:
            decode = self._runner.tokenizer.decode
            predictions = [[decode([i]).strip() or decode([i]) for i in ids] for ids in self.top_next_tokens(records)]
        return [self.explain(p, t, q) for p, t, q in zip(records["prefix"], records["token"], predictions)]
