"""The teacher contract shared by every warm-start teacher, and the default teacher prompt.

A teacher is any callable ``teacher(records) -> list[str]`` that takes a pandas DataFrame with at
least the columns ``prefix`` (the document text up to and including the token) and ``token`` and
returns one explanation per row, in row order.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from nla_lens.errors import InputError

REQUIRED_COLUMNS = ("prefix", "token")

DEFAULT_TEACHER_PROMPT = """\
A language model is reading the text below. The text stops at its final token, "{token}".

<text>
{prefix}
</text>

Write 2-3 short numbered snippets (about 80-100 words in total) describing the features of this \
text that a model would use to predict what comes next: for example the genre, topic and \
register, the entities and their roles, the grammatical situation, and the words or ideas likely \
to follow. Be concrete and specific to this text. The last snippet must be about the final \
token, "{token}", and what it sets up. Reply with the numbered snippets only."""
"""Teacher prompt (paper style) with the fields ``{prefix}`` and ``{token}``."""


@runtime_checkable
class Teacher(Protocol):
    """Anything that writes one explanation per record."""

    def __call__(self, records: pd.DataFrame) -> list[str]:
        """Explain each row (columns ``prefix`` and ``token`` at least), in row order."""
        ...


def check_records(records: pd.DataFrame) -> pd.DataFrame:
    """Validate the teacher input and return it with a fresh ``RangeIndex``.

    Raises:
        InputError: If ``records`` is not a DataFrame, lacks a required column, or holds a
            non-string prefix or token.
    """
    if not isinstance(records, pd.DataFrame):
        raise InputError(f"A teacher takes a pandas DataFrame, got {type(records).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise InputError(
            f"Teacher records lack columns {missing}; they need 'prefix' (text up to and including "
            "the token) and 'token' (e.g. ActivationDataset.frame)."
        )
    for column in REQUIRED_COLUMNS:
        bad = [i for i, v in enumerate(records[column]) if not isinstance(v, str)]
        if bad:
            value = records[column].iloc[bad[0]]
            raise InputError(f"Column {column!r} must hold strings; row {bad[0]} holds {value!r}.")
    return records.reset_index(drop=True)


def format_prompt(prompt: str, prefix: str, token: str) -> str:
    """Fill a teacher prompt's ``{prefix}`` and ``{token}`` fields.

    Raises:
        InputError: If the prompt has other fields or unbalanced braces.
    """
    try:
        return prompt.format(prefix=prefix, token=token)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"The teacher prompt must be a format string with only {{prefix}} and {{token}} fields "
            f"(write literal braces as '{{{{' and '}}}}'): {exc!r}."
        ) from exc
