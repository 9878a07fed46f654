"""Turning what users pass as "texts" into a checked list of strings.

Accepted: a list/tuple/any iterable of strings, a pandas Series, or a Hugging Face ``datasets``
``Dataset`` (its ``text_column``). A single string is refused rather than read as characters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nla_lens.errors import InputError


def as_texts(texts: Any, text_column: str = "text") -> list[str]:
    """Validate and materialise documents.

    Args:
        texts: An iterable of strings, a pandas Series, or an HF ``Dataset``.
        text_column: The column to read from a ``Dataset`` (or a DataFrame).

    Returns:
        The documents as a list of strings.

    Raises:
        InputError: For a bare string, an empty collection or a non-string item (named by index).
    """
    if isinstance(texts, (str, bytes)):
        raise InputError("texts must be a collection of documents, not a single string: wrap it in a list.")
    if hasattr(texts, "column_names") or hasattr(texts, "columns"):  # HF Dataset / DataFrame
        columns = list(getattr(texts, "column_names", None) or getattr(texts, "columns", []))
        if text_column not in columns:
            raise InputError(f"No column {text_column!r} in the dataset; columns are {columns}. Pass text_column=.")
        texts = texts[text_column]
    if not isinstance(texts, Iterable):
        raise InputError(f"texts must be an iterable of strings, got {type(texts).__name__}.")
    documents = list(texts)
    if not documents:
        raise InputError("texts is empty: pass at least one document (e.g. nla_lens.load_corpus()).")
    for index, item in enumerate(documents):
        if not isinstance(item, str):
            raise InputError(
                f"texts[{index}] is a {type(item).__name__} ({item!r:.60}), not a string. Pass documents as strings."
            )
    return documents
