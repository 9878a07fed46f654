import json

import pandas as pd
import pytest
import torch

from nla_lens.data.dataset import META_NAME, PARQUET_NAME, ActivationDataset, norm_stats
from nla_lens.errors import DatasetError, InputError


def make_dataset(n=10, d=16):
    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(n, d, generator=gen) * 5
    frame = pd.DataFrame(
        {
            "doc_id": [i // 3 for i in range(n)],
            "split": ["eval" if i // 3 == 0 else "rl" for i in range(n)],
            "position": [10 + i for i in range(n)],
            "token_id": list(range(n)),
            "token": [f" t{i}" for i in range(n)],
            "prefix": [f"prefix {i}" for i in range(n)],
            "norm": vectors.norm(dim=-1).numpy(),
        }
    )
    return ActivationDataset(
        vectors, frame, {"hook_name": "blocks.1.hook_resid_post", "norm_stats": norm_stats(vectors)}
    )


def test_save_load_round_trip(tmp_path):
    ds = make_dataset()
    ds.save(tmp_path / "acts")
    back = ActivationDataset.load(tmp_path / "acts")
    assert torch.equal(back.vectors, ds.vectors)
    pd.testing.assert_frame_equal(back.frame, ds.frame)
    assert back.hook_name == ds.hook_name
    assert back.meta["d_model"] == 16


def test_save_overwrites_atomically(tmp_path):
    make_dataset(n=10).save(tmp_path / "acts")
    make_dataset(n=4).save(tmp_path / "acts")
    assert len(ActivationDataset.load(tmp_path / "acts")) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts"]


def test_split_selects_whole_documents():
    ds = make_dataset()
    ev = ds.split("eval")
    assert len(ev) == 3 and set(ev.frame["doc_id"]) == {0}
    assert torch.equal(ev.vectors, ds.vectors[:3])
    with pytest.raises(InputError, match="No split 'train'"):
        ds.split("train")


def test_missing_and_inconsistent_files_are_reported(tmp_path):
    ds = make_dataset()
    ds.save(tmp_path / "a")
    (tmp_path / "a" / META_NAME).unlink()
    with pytest.raises(DatasetError, match="dataset_meta.json is missing"):
        ActivationDataset.load(tmp_path / "a")
    ds.save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / META_NAME).read_text())
    meta["d_model"] = 32
    (tmp_path / "b" / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="inconsistent"):
        ActivationDataset.load(tmp_path / "b")
    ds.save(tmp_path / "c")
    (tmp_path / "c" / PARQUET_NAME).write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="Could not read"):
        ActivationDataset.load(tmp_path / "c")


def test_constructor_checks_shapes():
    ds = make_dataset()
    with pytest.raises(InputError):
        ActivationDataset(ds.vectors[:5], ds.frame)
    with pytest.raises(InputError):
        ActivationDataset(ds.vectors[0], ds.frame.head(1))


def test_repr_html_shows_summary():
    html = make_dataset()._repr_html_()
    assert "blocks.1.hook_resid_post" in html and "10 × 16" in html
