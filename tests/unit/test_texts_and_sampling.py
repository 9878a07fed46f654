import numpy as np
import pandas as pd
import pytest

from nla_lens.data.extraction import DEFAULT_SPLITS, assign_splits, default_layer, sample_positions
from nla_lens.data.texts import as_texts
from nla_lens.errors import InputError


def test_as_texts_accepts_lists_generators_series_and_datasets():
    assert as_texts(["a", "b"]) == ["a", "b"]
    assert as_texts(t for t in ("x", "y")) == ["x", "y"]
    assert as_texts(pd.Series(["p", "q"])) == ["p", "q"]
    datasets = pytest.importorskip("datasets", reason="the `datasets` package (installed with sae-lens)")
    ds = datasets.Dataset.from_dict({"text": ["one", "two"], "label": [0, 1]})
    assert as_texts(ds) == ["one", "two"]
    with pytest.raises(InputError, match="No column 'body'"):
        as_texts(ds, text_column="body")


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ([], "empty"),
        ("just one string", "not a single string"),
        (["fine", 3, "fine"], r"texts\[1\] is a int"),
        (["fine", None], r"texts\[1\] is a NoneType"),
        (42, "iterable"),
    ],
)
def test_as_texts_rejects_bad_input(bad, pattern):
    with pytest.raises(InputError, match=pattern):
        as_texts(bad)


def test_sample_positions_respects_minimum_and_specials():
    ids = list(range(100, 140))
    special = {ids[15], ids[20]}
    for seed in range(20):
        pos = sample_positions(ids, 6, 10, special, np.random.default_rng(seed))
        assert len(pos) == 6 and len(set(pos.tolist())) == 6
        assert pos.min() >= 10 and 15 not in pos and 20 not in pos
        assert list(pos) == sorted(pos)
    assert len(sample_positions(ids[:8], 6, 10, set(), np.random.default_rng(0))) == 0
    # short documents give every eligible position
    assert sample_positions(ids[:13], 6, 10, set(), np.random.default_rng(0)).tolist() == [10, 11, 12]


def test_positions_depend_on_seed():
    ids = list(range(200))
    a = sample_positions(ids, 6, 10, set(), np.random.default_rng([0, 5]))
    b = sample_positions(ids, 6, 10, set(), np.random.default_rng([1, 5]))
    assert not np.array_equal(a, b)


def test_splits_partition_documents_in_proportion():
    docs = np.arange(1000)
    split_of = assign_splits(docs, DEFAULT_SPLITS, seed=3)
    assert sorted(split_of) == docs.tolist()
    counts = pd.Series(split_of).value_counts()
    for name, fraction in DEFAULT_SPLITS.items():
        assert abs(counts[name] - 1000 * fraction) <= 1
    assert assign_splits(docs, DEFAULT_SPLITS, seed=3) == split_of
    assert assign_splits(docs, DEFAULT_SPLITS, seed=4) != split_of


@pytest.mark.parametrize("bad", [{}, {"a": -1.0, "b": 2.0}, {"a": 0.0}])
def test_bad_splits(bad):
    with pytest.raises(InputError):
        assign_splits(np.arange(10), bad, 0)


def test_default_layer_is_two_thirds():
    assert default_layer(30) == 20
    assert default_layer(12) == 8
    assert default_layer(1) == 0
