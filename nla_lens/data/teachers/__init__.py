"""Warm-start teachers: who writes the explanations the AV and AR are first fine-tuned on.

A teacher explains the text prefix ending at each activation's token: 2-3 short snippets about
what a model would use to predict what comes next, the last about the final token, as in the
published method's warm start (whose teacher, Claude, wrote about 80-100 words). A teacher is any
callable ``teacher(records: DataFrame) -> list[str]``; records need the columns ``prefix`` and
``token`` (``ActivationDataset.frame`` has them). Provided:

- ``ContextTeacher``: offline default, from the prefix itself and the subject's predictions.
- ``HFTeacher``: a local Hugging Face instruct model.
- ``APITeacher``: Anthropic or an OpenAI-compatible API, cached on disk (paper-faithful).

This package owns the teachers, the teacher prompt and ``label_dataset`` (a teacher labels a dataset's
rows with the explanations the warm starts train on); it trains nothing.
"""

from __future__ import annotations

import pandas as pd

from nla_lens.data.dataset import ActivationDataset
from nla_lens.data.teachers.api import APITeacher
from nla_lens.data.teachers.base import DEFAULT_TEACHER_PROMPT, Teacher, check_records
from nla_lens.data.teachers.context import ContextTeacher
from nla_lens.data.teachers.hf import HFTeacher, clean_explanation
from nla_lens.errors import InputError, TeacherError

__all__ = [
    "DEFAULT_TEACHER_PROMPT",
    "APITeacher",
    "ContextTeacher",
    "HFTeacher",
    "Teacher",
    "clean_explanation",
    "label_dataset",
]


def label_dataset(dataset: ActivationDataset, teacher: Teacher, split: str | None = None) -> pd.Series:
    """Label the rows of ``dataset.frame`` (optionally one split) with a teacher's explanations.

    The labels are the warm starts' training targets (the AV learns to write them, the AR to read
    them); explaining a vector with a trained NLA is ``NLA.explain``.

    Args:
        dataset: Activations with their ``prefix`` and ``token`` columns.
        teacher: Any teacher callable, e.g. ``ContextTeacher(bridge)``.
        split: Only this split (``"av_sft"``, ``"ar_sft"``, ...); all rows when ``None``.

    Returns:
        A string Series named ``"explanation"`` indexed like ``dataset.frame`` (the split's rows
        keep their index in the full frame).

    Raises:
        InputError: For an unknown split.
        TeacherError: If the teacher returns the wrong number of explanations or a non-string.
    """
    frame = dataset.frame
    if split is not None:
        if split not in dataset.splits:
            raise InputError(f"No split {split!r}; this dataset has {sorted(dataset.splits)}.")
        frame = frame[frame["split"] == split]
    check_records(frame)
    explanations = list(teacher(frame))
    if len(explanations) != len(frame):
        raise TeacherError(f"{type(teacher).__name__} returned {len(explanations)} explanations for {len(frame)} rows.")
    bad = [i for i, e in enumerate(explanations) if not isinstance(e, str)]
    if bad:
        kind = type(explanations[bad[0]]).__name__
        raise TeacherError(f"{type(teacher).__name__} returned a {kind}, not a string, for row {bad[0]}.")
    return pd.Series(explanations, index=frame.index, name="explanation", dtype=object)
