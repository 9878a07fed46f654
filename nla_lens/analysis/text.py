"""Pure text helpers of the analyses: snippets of an explanation, content words, grounding.

An explanation is 2-3 short *snippets* (DESIGN §1): numbered lines (``1. ...``), bullet lines,
plain lines, or sentences. :func:`split_snippets` finds them and :func:`join_snippets` writes
them back in the same style, so an ablation or a reordering keeps the format the AR was trained
on. A snippet may open with a short *heading* (``Recent context: ...``); headings are format,
not content, and are left out of the content words that grounding and topic words use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from nla_lens.words import STOPWORDS, WORD_RE

__all__ = ["content_words", "grounding", "heading_of", "join_snippets", "snippet_style", "split_snippets"]

_NUMBERED_RE = re.compile(r"^\s*(?:\d+[.)]|\(\d+\))\s+", re.MULTILINE)
_BULLET_RE = re.compile(r"^\s*[-*•]\s+", re.MULTILINE)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'“(A-Z0-9])")
_HEADING_RE = re.compile(r"^\s*([A-Za-z][A-Za-z '\-]{0,40}?)\s*:\s+")


def snippet_style(text: str) -> str:
    """How ``text`` separates its snippets: ``"numbered"``, ``"bullets"``, ``"lines"`` or ``"sentences"``."""
    if len(_NUMBERED_RE.findall(text)) >= 2:
        return "numbered"
    if len(_BULLET_RE.findall(text)) >= 2:
        return "bullets"
    if len([line for line in text.splitlines() if line.strip()]) >= 2:
        return "lines"
    return "sentences"


def split_snippets(text: str) -> list[str]:
    """The snippets of an explanation, without their numbers or bullets.

    Args:
        text: One explanation.

    Returns:
        The non-empty snippets in order (one item for a one-sentence explanation, none for "").
    """
    style = snippet_style(text)
    if style in ("numbered", "bullets"):
        pattern = _NUMBERED_RE if style == "numbered" else _BULLET_RE
        parts = pattern.split(text)
        # Text before the first number (rare) stays as a snippet of its own.
        return [p.strip() for p in parts if p.strip()]
    if style == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [s.strip() for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


def join_snippets(snippets: Sequence[str], style: str = "numbered") -> str:
    """Write snippets back as one explanation (renumbered from 1 when ``style="numbered"``)."""
    if style == "numbered":
        return "\n".join(f"{i}. {s}" for i, s in enumerate(snippets, start=1))
    if style == "bullets":
        return "\n".join(f"- {s}" for s in snippets)
    if style == "lines":
        return "\n".join(snippets)
    return " ".join(snippets)


def heading_of(snippet: str) -> str:
    """The short heading a snippet opens with (``"Recent context"``), or ``""``."""
    match = _HEADING_RE.match(snippet)
    if match is None or len(match.group(1).split()) > 4:
        return ""
    return match.group(1).strip()


def content_words(text: str, *, drop_headings: bool = True, min_length: int = 3) -> list[str]:
    """Lower-cased content words of ``text`` (no stopwords, at least ``min_length`` letters), in order.

    Args:
        text: An explanation or any text.
        drop_headings: Leave out the heading words of each snippet (format, not content).
        min_length: Shortest word kept.
    """
    pieces = split_snippets(text) if drop_headings else [text]
    words: list[str] = []
    for piece in pieces:
        body = _HEADING_RE.sub("", piece, count=1) if drop_headings and heading_of(piece) else piece
        words += [w.lower() for w in WORD_RE.findall(body) if len(w) >= min_length and w.lower() not in STOPWORDS]
    return words


def grounding(explanation: str, source: str) -> float:
    """Share of the explanation's content words that occur in the source text.

    A grounded explanation talks about what is actually in the text the vector was read from
    (its prefix); one invented from nothing scores near the rate at which random prose shares
    words with the prefix (see the shuffled control in the faithfulness report).

    Args:
        explanation: One explanation.
        source: The source text (e.g. the dataset row's ``prefix``).

    Returns:
        A value in ``[0, 1]``, or NaN when the explanation has no content word.
    """
    words = content_words(explanation)
    if not words:
        return math.nan
    present = {w.lower() for w in WORD_RE.findall(source)}
    return sum(w in present for w in words) / len(words)
