"""``ActivationDataset``: residual-stream vectors with their provenance, saved as parquet.

One row per activation: the raw fp32 vector (never normalised here) plus ``doc_id``, ``split``,
``position``, ``token_id``, ``token``, ``prefix`` (the document's text up to and including that
token) and ``norm``. A small ``dataset_meta.json`` next to the parquet file records the subject,
hook, ``d_model``, norm statistics and extraction settings. Both are written into a temporary
folder and renamed into place, so an interrupted save never leaves a half-written dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nla_lens.atomic import atomic_folder
from nla_lens.errors import DatasetError, InputError

PARQUET_NAME = "activations.parquet"
META_NAME = "dataset_meta.json"
COLUMNS = ("doc_id", "split", "position", "token_id", "token", "prefix", "norm")
FORMAT_VERSION = 1


def norm_stats(vectors: torch.Tensor) -> dict[str, float]:
    """Summary of L2 norms of ``vectors`` ``[n, d]``: mean, median, min, max, std."""
    if len(vectors) == 0:
        return {}
    norms = vectors.float().norm(dim=-1)
    return {
        "mean": float(norms.mean()),
        "median": float(norms.median()),
        "min": float(norms.min()),
        "max": float(norms.max()),
        "std": float(norms.std()) if len(norms) > 1 else 0.0,
    }


@dataclass
class ActivationDataset:
    """Activations at one hook point of one subject model.

    Attributes:
        vectors: ``[n, d_model]`` float32, raw (as the subject produced them).
        frame: One row per vector with the columns in ``COLUMNS``.
        meta: Subject, ``hook_name``, ``d_model``, ``norm_stats``, extraction settings.
    """

    vectors: torch.Tensor
    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2:
            raise InputError(f"vectors must be [n, d_model], got shape {tuple(self.vectors.shape)}.")
        if len(self.frame) != len(self.vectors):
            raise InputError(f"{len(self.frame)} metadata rows for {len(self.vectors)} vectors.")
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise InputError(f"The metadata frame lacks columns {missing}.")
        self.vectors = self.vectors.detach().to(torch.float32).cpu()
        self.frame = self.frame.reset_index(drop=True)

    # -- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def d_model(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def hook_name(self) -> str | None:
        """The hook the vectors were read at (``meta["hook_name"]``, which extraction always
        records); ``None`` only for a dataset built by hand without one."""
        return self.meta.get("hook_name")

    @property
    def splits(self) -> dict[str, int]:
        """Number of vectors in each split."""
        return {str(k): int(v) for k, v in self.frame["split"].value_counts(sort=False).items()}

    def split(self, name: str) -> ActivationDataset:
        """The vectors of one split (``"av_sft"``, ``"ar_sft"``, ``"rl"``, ``"eval"``)."""
        if name not in self.splits:
            raise InputError(f"No split {name!r}; this dataset has {sorted(self.splits)}.")
        mask = (self.frame["split"] == name).to_numpy()
        return ActivationDataset(self.vectors[torch.tensor(mask)], self.frame[mask], dict(self.meta))

    def to_pandas(self, with_vectors: bool = False) -> pd.DataFrame:
        """The metadata as a DataFrame; ``with_vectors`` adds a ``vector`` column of arrays."""
        frame = self.frame.copy()
        if with_vectors:
            frame["vector"] = list(self.vectors.numpy())
        return frame

    def _repr_html_(self) -> str:
        stats = self.meta.get("norm_stats", {})
        rows = "".join(
            f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
            for k, v in {
                "subject": self.meta.get("subject"),
                "hook_name": self.hook_name,
                "vectors": f"{len(self)} × {self.d_model}",
                "splits": self.splits,
                "documents": self.frame["doc_id"].nunique(),
                "norm (median / max)": f"{stats.get('median', float('nan')):.1f} / {stats.get('max', float('nan')):.1f}",
                "skipped documents": self.meta.get("skipped_documents", 0),
            }.items()
        )
        head = self.frame.head(5)[["doc_id", "split", "position", "token", "norm"]].to_html(index=False)
        return f"<b>ActivationDataset</b><table>{rows}</table>{head}"

    def __repr__(self) -> str:
        return (
            f"ActivationDataset(n={len(self)}, d_model={self.d_model}, hook_name={self.hook_name!r}, "
            f"splits={self.splits})"
        )

    # -- parquet IO --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``activations.parquet`` + ``dataset_meta.json`` into folder ``path`` atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        with atomic_folder(path) as tmp:
            table = pa.Table.from_pandas(self.frame[list(COLUMNS)], preserve_index=False)
            flat = pa.array(self.vectors.numpy().reshape(-1), type=pa.float32())
            table = table.append_column("vector", pa.FixedSizeListArray.from_arrays(flat, self.d_model))
            pq.write_table(table, tmp / PARQUET_NAME)
            meta = {**self.meta, "format_version": FORMAT_VERSION, "n": len(self), "d_model": self.d_model}
            (tmp / META_NAME).write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActivationDataset:
        """Read a folder written by ``save``, checking that its files agree."""
        import pyarrow.parquet as pq

        path = Path(path)
        for name in (PARQUET_NAME, META_NAME):
            if not (path / name).is_file():
                raise DatasetError(
                    f"{path} is not an activation dataset: {name} is missing. "
                    "Create one with nla_lens.extract_activations(...).save(path)."
                )
        try:
            meta = json.loads((path / META_NAME).read_text())
            table = pq.read_table(path / PARQUET_NAME)
        except Exception as exc:
            raise DatasetError(f"Could not read the activation dataset at {path}: {exc}") from exc
        if "vector" not in table.column_names:
            raise DatasetError(f"{path / PARQUET_NAME} has no 'vector' column.")
        column = table.column("vector").combine_chunks()
        width = column.type.list_size
        if width != meta.get("d_model") or table.num_rows != meta.get("n"):
            raise DatasetError(
                f"{path} is inconsistent: the parquet holds {table.num_rows} vectors of width {width}, "
                f"the metadata says {meta.get('n')} of width {meta.get('d_model')}. Re-extract it."
            )
        vectors = torch.from_numpy(np.asarray(column.values.to_numpy(zero_copy_only=False)).reshape(-1, width).copy())
        frame = table.drop(["vector"]).to_pandas()
        return cls(vectors, frame, meta)
