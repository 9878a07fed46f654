"""One loading verb: ``NLA.from_pretrained`` by registry name, hub id (offline, from a local hub
cache), local folder, or ``av=`` / ``ar=`` separately; and its refusals.

Tiny random llamas written in the published layout (separate AV and AR folders with their
sidecars) stand in for the released pairs; the hub cache is built on disk in the layout
``huggingface_hub`` reads (``models--org--name/snapshots/<commit>/`` and ``refs/main``), and
``HF_HUB_OFFLINE=1`` holds for the whole test session.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import nla_lens
from nla_lens import NLA
from nla_lens.errors import CheckpointError
from nla_lens.models import registry
from nla_lens.testing.hub import add_to_hub_cache
from nla_lens.testing.models import tiny_nla
from nla_lens.testing.released import tiny_released_pair

KW = dict(max_new_tokens=4, progress=False, warn=False)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny NLA saved as two published-layout folders and as three cached hub repos."""
    root = tmp_path_factory.mktemp("published")
    nla = tiny_nla(1, n_layers=2, seed=2)
    nla.save_pretrained(root / "pair")
    cache = root / "hub"
    add_to_hub_cache(root / "pair" / "av", cache, "tiny-org/nla-tiny-L1-av")
    add_to_hub_cache(root / "pair" / "ar", cache, "tiny-org/nla-tiny-L1-ar")
    add_to_hub_cache(root / "pair", cache, "tiny-org/nla-tiny-L1")
    return nla, root / "pair", cache


def _same(a: NLA, b: NLA) -> None:
    vectors = torch.randn(3, a.d_model, generator=torch.Generator().manual_seed(0)) * 5
    one, two = a.round_trip(vectors, **KW), b.round_trip(vectors, **KW)
    assert one["explanation"].tolist() == two["explanation"].tolist()
    assert torch.allclose(torch.tensor(one["mse"].to_numpy()), torch.tensor(two["mse"].to_numpy()), atol=1e-6)


def test_hub_ids_registry_names_and_paths_load_the_same_nla(published):
    original, folder, cache = published
    by_path = NLA.from_pretrained(folder)
    _same(original, by_path)
    _same(by_path, NLA.from_pretrained(av="tiny-org/nla-tiny-L1-av", ar="tiny-org/nla-tiny-L1-ar", cache_dir=cache))
    _same(by_path, NLA.from_pretrained("tiny-org/nla-tiny-L1", cache_dir=cache))
    nla_lens.register_pretrained(
        "test-tiny-L1",
        av="tiny-org/nla-tiny-L1-av",
        ar="tiny-org/nla-tiny-L1-ar",
        layer=1,
        d_model=32,
        notes="test entry",
    )
    by_name = NLA.from_pretrained("test-tiny-L1", cache_dir=cache)
    _same(by_path, by_name)
    assert by_name.hook_name == "blocks.1.hook_resid_post" and by_name.layer == 1
    assert "test-tiny-L1" in nla_lens.list_pretrained().index


def test_the_registry_lists_the_shipped_nla_and_the_released_pairs():
    table = nla_lens.list_pretrained()
    assert isinstance(table, pd.DataFrame)
    released = {"qwen2.5-7b-L20": 3584, "gemma3-12b-L32": 3840, "gemma3-27b-L41": 5376, "llama3.3-70b-L53": 8192}
    for name, width in released.items():
        assert table.loc[name, "d_model"] == width and table.loc[name, "av"].endswith("-av")
        assert table.loc[name, "hook_name"] == f"blocks.{table.loc[name, 'layer']}.hook_resid_post"
    assert registry.resolve_source(table.loc["smollm2-135m-L20", "av"]).joinpath("nla_meta.yaml").is_file()


def test_unknown_names_and_uncached_repos_are_refused_clearly(published, tmp_path):
    _, folder, cache = published
    with pytest.raises(CheckpointError) as info:
        NLA.from_pretrained("qwen-7b-typo")
    assert "qwen2.5-7b-L20" in str(info.value) and "smollm2-135m-L20" in str(info.value)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        NLA.from_pretrained("tiny-org/never-downloaded", cache_dir=cache)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        NLA.from_pretrained("qwen2.5-7b-L20", cache_dir=tmp_path)  # a released pair, offline, not cached
    with pytest.raises(CheckpointError, match=r"one half of an NLA \(av\).*av=\.\.\., ar=\.\.\."):
        NLA.from_pretrained(folder / "av")  # one half given as if it were the pair
    with pytest.raises(nla_lens.errors.InputError, match="both av= and ar="):
        NLA.from_pretrained(av=folder / "av")


def test_halves_that_do_not_pair_are_refused(published, tmp_path):
    _, folder, _ = published
    tiny_nla(2, n_layers=2, seed=4).save_pretrained(tmp_path / "L2")
    with pytest.raises(CheckpointError, match="layer 1 but the AR at layer 2"):
        NLA.from_pretrained(av=folder / "av", ar=tmp_path / "L2" / "ar")
    tiny_released_pair("llama", layer=1, d_model=48).save_pretrained(tmp_path / "wide")
    with pytest.raises(CheckpointError, match="d_model=32 vectors but the AR predicts d_model=48"):
        NLA.from_pretrained(av=folder / "av", ar=tmp_path / "wide" / "ar")


def test_a_gated_repo_gives_one_clear_message(monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(repo_id, **kwargs):  # what the hub answers for a gated repo without an accepted licence
        response = httpx2.Response(403, request=httpx2.Request("GET", f"https://hub.invalid/{repo_id}"))
        raise GatedRepoError(f"403 Client Error. Cannot access gated repo {repo_id}.", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(CheckpointError, match="is gated: accept its licence") as info:
        NLA.from_pretrained("gemma3-12b-L32")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no hub traceback behind it
