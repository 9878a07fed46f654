"""The snippets of an explanation: find them, write them back, read their headings.

An explanation is 2-3 short *snippets* (what the published method's AV writes inside
``<explanation>…</explanation>``): numbered lines (``1. ...``), bullet lines, plain lines, or
sentences. :func:`split_snippets` finds them and :func:`join_snippets` writes
them back in a given style, so an ablation or a reordering keeps the format the AR was trained
on. A snippet may open with a short *heading* (``Recent context: ...``).

Used by the analyses (ablation, paraphrase, grounding) and by :mod:`nla_lens.rewrites` (the
surface forms the AR trains on), so it sits below both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["HEADING_RE", "heading_of", "join_snippets", "snippet_style", "split_snippets"]

_NUMBERED_RE = re.compile(r"^\s*(?:\d+[.)]|\(\d+\))\s+", re.MULTILINE)
_BULLET_RE = re.compile(r"^\s*[-*•]\s+", re.MULTILINE)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'“(A-Z0-9])")
HEADING_RE = re.compile(r"^\s*([A-Za-z][A-Za-z '\-]{0,40}?)\s*:\s+")


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
    match = HEADING_RE.match(snippet)
    if match is None or len(match.group(1).split()) > 4:
        return ""
    return match.group(1).strip()
