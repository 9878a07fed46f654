"""The embedded English prose corpus (no network needed).

This module owns reading ``nla_lens/data/corpus/corpus.jsonl``: about 1 MB of permissively
licensed prose from four sources (``devil``: The Devil's Dictionary, ``pydoc``: the Python 3.11
tutorial, HOWTOs and FAQ, ``fortunes``: the classic FreeBSD fortunes, ``wordnet``: WordNet gloss
examples). Every document has at least 80 words, so token positions of 50 and more exist for a
~50k-vocabulary BPE tokenizer. Licences are in ``corpus/NOTICE.md``; the file is rebuilt by
``scripts/build_corpus.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from nla_lens.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

SOURCES: tuple[str, ...] = ("devil", "pydoc", "fortunes", "wordnet")
"""The source names a record can carry, in file order."""


@lru_cache(maxsize=1)
def _records() -> tuple[dict[str, str], ...]:
    """Parse the packaged JSONL file once; records are ``{"id", "source", "text"}``."""
    path = resources.files("nla_lens.data") / "corpus" / "corpus.jsonl"
    with path.open("r", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def load_corpus(sources: Sequence[str] | None = None, *, max_documents: int | None = None) -> list[str]:
    """Return the texts of the embedded corpus, in file order.

    Args:
        sources: Keep only documents from these sources (see ``SOURCES``); ``None`` keeps all.
            A single string is treated as one source name.
        max_documents: Return at most this many documents (the first ones after filtering).

    Returns:
        The document texts.

    Raises:
        InputError: If a source name is unknown or ``max_documents`` is negative.
    """
    if isinstance(sources, str):
        sources = [sources]
    if sources is not None:
        unknown = sorted(set(sources) - set(SOURCES))
        if unknown:
            raise InputError(f"unknown corpus source(s) {unknown}; valid sources are {list(SOURCES)}")
    if max_documents is not None and max_documents < 0:
        raise InputError(f"max_documents must be >= 0 or None, got {max_documents}")
    wanted = set(SOURCES if sources is None else sources)
    texts = [r["text"] for r in _records() if r["source"] in wanted]
    return texts if max_documents is None else texts[:max_documents]


def corpus_records() -> pd.DataFrame:
    """Return the whole corpus as a table.

    Returns:
        A DataFrame with columns ``id``, ``source``, ``text`` and ``n_words`` (whitespace-
        separated word count), one row per document, in file order.
    """
    import pandas as pd

    frame = pd.DataFrame(list(_records()), columns=["id", "source", "text"])
    frame["n_words"] = frame["text"].str.split().str.len().astype("int64")
    return frame
