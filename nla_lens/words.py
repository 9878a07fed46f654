"""The package's word helpers: one word pattern, one stopword list, and the few word-level views of a text.

The teachers (``context_words``, ``topic_words``), the grounding measure and the text analyses
(:mod:`nla_lens.analysis.text`) all split words with :data:`WORD_RE` and drop :data:`STOPWORDS`,
so "a content word" means the same thing everywhere.
"""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "WORD_RE", "context_words", "topic_words"]

WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")
"""A word: letters, with inner apostrophes and hyphens."""
STOPWORDS = frozenset(
    """a about above after again against all also although always among an and another any are
    around as at be because been before being below between both but by can cannot could did does
    doing down during each either else ever every few for from further had has have having he her
    here hers herself him himself his how however into itself just least less made make many might
    more most much must myself neither never nevertheless none nor not nothing now of off often on
    once one only onto other others otherwise ought our ours ourselves out over own perhaps rather
    same shall she should since some something sometimes somewhat still such than that the their
    theirs them themselves then there therefore these they thing things this those though through
    thus till to together too toward towards under unless until upon very was were what whatever
    when whenever where whereas wherever whether which while who whoever whom whose why will with
    within without would yet you your yours yourself yourselves""".split()
)
"""Function words left out of every content-word measure."""


def context_words(prefix: str, n: int) -> str:
    """The last ``n`` whitespace-separated words of ``prefix`` (verbatim, joined by one space),
    with a leading ``…`` when words were cut off."""
    words = prefix.split()
    tail = " ".join(words[-n:]) if n > 0 else ""
    return ("…" if len(words) > n else "") + tail


def topic_words(prefix: str, k: int = 3) -> list[str]:
    """The ``k`` longest distinct content words of ``prefix`` (ties: the most recent first).

    Content words are alphabetic words of at least four letters that are not stopwords; words
    are compared case-insensitively and returned as they last appear.
    """
    last: dict[str, tuple[int, str]] = {}
    for index, match in enumerate(WORD_RE.finditer(prefix)):
        word = match.group()
        if len(word) >= 4 and word.lower() not in STOPWORDS:
            last[word.lower()] = (index, word)
    ranked = sorted(last.values(), key=lambda item: (-len(item[1]), -item[0]))
    return [word for _, word in ranked[:k]]
