"""Pure text helpers of the analyses: content words and grounding of explanations.

The snippet helpers (:func:`split_snippets`, :func:`join_snippets`, :func:`heading_of`,
:func:`snippet_style`) live in :mod:`nla_lens.snippets` and are re-exported here. Headings are
format, not content, and are left out of the content words that grounding and topic words use.
"""

from __future__ import annotations

import math

from nla_lens.snippets import HEADING_RE, heading_of, join_snippets, snippet_style, split_snippets
from nla_lens.words import STOPWORDS, WORD_RE

__all__ = ["content_words", "grounding", "heading_of", "join_snippets", "snippet_style", "split_snippets"]


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
        body = HEADING_RE.sub("", piece, count=1) if drop_headings and heading_of(piece) else piece
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
