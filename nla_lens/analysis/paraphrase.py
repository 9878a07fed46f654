"""Meaning-preserving rewrites of explanations, for the paraphrase-robustness check.

A *paraphraser* is any callable ``list[str] -> list[str]`` returning one rewrite per explanation,
in order (an LLM behind an API, a local instruct model, or the offline default here).
:class:`RuleParaphraser` is the offline default: deterministic rewrites that keep every content
word and change only the surface form (snippet order, heading wording, quoting, list format,
a few function-word synonyms). The published faithfulness check asks whether reconstruction
survives such rewording: an AR that reads meaning keeps its fve_nrm, one that keys on the
exact surface form loses it.

Written here rather than taken from a library: offline paraphrase libraries need model
weights; a rule-based rewrite is transparent, needs nothing, and by construction cannot change
the content words, which is exactly the property the check relies on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from nla_lens.analysis.text import heading_of, join_snippets, snippet_style, split_snippets
from nla_lens.errors import InputError

__all__ = ["OPS", "Paraphraser", "RuleParaphraser", "check_paraphrases"]

Paraphraser = Callable[[list[str]], list[str]]

OPS = ("reorder", "headings", "quotes", "format", "synonyms")
"""The rewrites :class:`RuleParaphraser` knows, applied in this order."""

#: Heading rewrites (lower-cased heading -> new heading); unknown headings stay as they are.
HEADINGS = {
    "recent context": "Text just before",
    "likely next": "Probable continuations",
    "current token": "Token being read",
    "topic words": "Main themes",
    "last words": "Final words",
    "topic": "Subject",
    "genre": "Kind of text",
}

#: Function-word and phrasing synonyms (whole words, case kept for the first letter).
SYNONYMS = {
    "about": "concerning",
    "likely": "probably",
    "because": "since",
    "shows": "displays",
    "describes": "depicts",
    "mentions": "refers to",
    "begins": "starts",
    "ends": "finishes",
    "next": "following",
    "word": "term",
}

_QUOTED_RE = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")


def _swap_case(template: str, original: str) -> str:
    return template[:1].upper() + template[1:] if original[:1].isupper() else template


class RuleParaphraser:
    """Offline, deterministic paraphraser (a callable ``list[str] -> list[str]``).

    Args:
        ops: Which rewrites to apply, a subset of :data:`OPS`:
            ``"reorder"`` moves the last snippet to the front (and renumbers);
            ``"headings"`` rewords snippet headings (``Recent context:`` -> ``Text just before:``);
            ``"quotes"`` turns ``"double"`` quotes into ``'single'`` ones and ``…`` into ``...``;
            ``"format"`` turns a numbered list into a bullet list (and sentences into lines);
            ``"synonyms"`` swaps a few function words (``about`` -> ``concerning``).
            Content words are never changed.

    Example:
        >>> RuleParaphraser()(['1. Topic: "cats"\\n2. Current token: " sat"'])
        ["- Token being read: ' sat'\\n- Subject: 'cats'"]
    """

    def __init__(self, ops: Sequence[str] = OPS):
        if isinstance(ops, str):
            ops = (ops,)
        unknown = sorted(set(ops) - set(OPS))
        if unknown or not ops:
            raise InputError(f"Unknown paraphrase ops {unknown or list(ops)}; choose from {OPS}.")
        self.ops = tuple(op for op in OPS if op in ops)

    def __repr__(self) -> str:
        return f"RuleParaphraser(ops={self.ops})"

    def __call__(self, explanations: list[str]) -> list[str]:
        if isinstance(explanations, str):
            raise InputError("A paraphraser takes a list of explanations; wrap a single one in a list.")
        return [self.rewrite(text) for text in explanations]

    def rewrite(self, text: str) -> str:
        """Rewrite one explanation."""
        style = snippet_style(text)
        snippets = split_snippets(text)
        if not snippets:
            return text
        if "reorder" in self.ops and len(snippets) > 1:
            snippets = snippets[-1:] + snippets[:-1]
        if "headings" in self.ops:
            snippets = [self._heading(s) for s in snippets]
        if "quotes" in self.ops:
            snippets = [
                _QUOTED_RE.sub(lambda m: "'" + m.group(1).replace('\\"', '"') + "'", s).replace("…", "...")
                for s in snippets
            ]
        if "synonyms" in self.ops:
            snippets = [self._synonyms(s) for s in snippets]
        if "format" in self.ops:
            style = {"numbered": "bullets", "bullets": "numbered", "lines": "bullets", "sentences": "lines"}[style]
        return join_snippets(snippets, style)

    @staticmethod
    def _heading(snippet: str) -> str:
        heading = heading_of(snippet)
        new = HEADINGS.get(heading.lower())
        if not heading or new is None:
            return snippet
        return snippet.replace(heading, new, 1)

    @staticmethod
    def _synonyms(snippet: str) -> str:
        # Only outside quotes: quoted text is the source's own words and stays verbatim.
        parts = re.split(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", snippet)
        for i in range(0, len(parts), 2):
            parts[i] = re.sub(
                r"\b[A-Za-z]+\b",
                lambda m: (
                    _swap_case(SYNONYMS[m.group(0).lower()], m.group(0))
                    if m.group(0).lower() in SYNONYMS
                    else m.group(0)
                ),
                parts[i],
            )
        return "".join(parts)


def check_paraphrases(explanations: Sequence[str], paraphrases: object) -> list[str]:
    """Validate a paraphraser's output: a list of strings, one per explanation, each non-empty where its
    explanation is (an empty explanation has nothing to rewrite; the AR reads both as ``"(empty)"``)."""
    if not isinstance(paraphrases, (list, tuple)) or len(paraphrases) != len(explanations):
        got = len(paraphrases) if isinstance(paraphrases, (list, tuple)) else type(paraphrases).__name__
        raise InputError(
            f"The paraphraser must return a list of {len(explanations)} strings (one per "
            f"explanation, in order); it returned {got}."
        )
    bad = [
        i
        for i, (e, p) in enumerate(zip(explanations, paraphrases))
        if not isinstance(p, str) or (not p.strip() and isinstance(e, str) and e.strip())
    ]
    if bad:
        raise InputError(f"The paraphraser returned empty or non-string rewrites at rows {bad[:5]}.")
    return list(paraphrases)
