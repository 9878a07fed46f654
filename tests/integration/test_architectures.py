"""Per-architecture parity with the published recipe, on tiny random models of each released NLA's
architecture (Llama, Qwen2, Gemma-3's language model and its multimodal wrapper).

For each: the AV's chat prompt holds the BOS exactly once and the marker between its recorded
neighbours; the input its decoder reads is the embedding output (after Gemma's sqrt(d) scale) with
the marker row replaced by the vector rescaled to ``injection_scale``, as the published recipe
builds it; the AR reads its raw-string template with one BOS. The pair is then written in the
published layout, placed in a local hub cache and loaded by hub id, registry name and path.
"""

from __future__ import annotations

import pytest
import torch

import nla_lens
from nla_lens import NLA
from nla_lens.testing.hub import add_to_hub_cache
from nla_lens.testing.models import RELEASED_ARCHITECTURES
from nla_lens.testing.released import tiny_released_pair

LAYER, SCALE = 1, 7.0


def _decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The language model's block list (``layers``), not the vision tower's."""
    for name, module in model.named_modules():
        if name.endswith("layers") and "vision" not in name and isinstance(module, torch.nn.ModuleList):
            return module
    raise AssertionError(f"no decoder layers in {type(model).__name__}")


def _pair(architecture: str) -> NLA:
    return tiny_released_pair(architecture, layer=LAYER, injection_scale=SCALE, seed=1)


@pytest.mark.parametrize("architecture", RELEASED_ARCHITECTURES)
def test_injected_input_equals_the_published_construction(architecture):
    nla = _pair(architecture)
    av, tokens = nla.av, nla.av.cfg.tokens
    prompt = av.prompt_ids()
    bos = av.tokenizer.bos_token_id
    assert prompt[0] == bos and int((prompt == bos).sum()) == 1  # the chat template's BOS, once
    where = torch.nonzero(prompt == tokens.injection_token_id).flatten().tolist()
    assert len(where) == 1 and prompt[where[0] - 1] == tokens.injection_left_neighbor_id
    assert prompt[where[0] + 1] == tokens.injection_right_neighbor_id

    vector = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 40
    with torch.no_grad():  # the published recipe: embed (Gemma scales inside), then replace the row
        expected = av.model.get_input_embeddings()(prompt[None]).clone()
        expected[0, where[0]] = vector / vector.norm() * SCALE
    seen = []
    handle = _decoder_layers(av.model)[0].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone()),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            av.logprobs(vector[None], av.response_ids(["the cat"]), share_prefix=False)
    finally:
        handle.remove()
    got = seen[0][:, : len(prompt)]
    assert torch.allclose(got, expected, atol=1e-6)
    assert got[0, where[0]].norm() == pytest.approx(SCALE, rel=1e-5)  # not scaled again after injection

    ar_ids, _ = nla.ar.encode(["the cat sat"])
    assert (
        ar_ids[0, 0] == nla.ar.tokenizer.bos_token_id and int((ar_ids[0] == nla.ar.tokenizer.bos_token_id).sum()) == 1
    )


@pytest.mark.parametrize("architecture", RELEASED_ARCHITECTURES)
def test_published_layout_loads_by_hub_id_registry_name_and_path(architecture, tmp_path):
    nla = _pair(architecture)
    nla.save_pretrained(tmp_path / "pair")
    cache = tmp_path / "hub"
    add_to_hub_cache(tmp_path / "pair" / "av", cache, f"tiny-org/nla-{architecture}-L1-av")
    add_to_hub_cache(tmp_path / "pair" / "ar", cache, f"tiny-org/nla-{architecture}-L1-ar")
    nla_lens.register_pretrained(
        f"tiny-{architecture}-L1",
        av=f"tiny-org/nla-{architecture}-L1-av",
        ar=f"tiny-org/nla-{architecture}-L1-ar",
        layer=LAYER,
        d_model=32,
    )
    vectors = torch.randn(3, 32, generator=torch.Generator().manual_seed(4)) * 40
    want = nla.round_trip(vectors, max_new_tokens=4, progress=False, warn=False)
    for loaded in (
        NLA.from_pretrained(tmp_path / "pair"),
        NLA.from_pretrained(
            av=f"tiny-org/nla-{architecture}-L1-av", ar=f"tiny-org/nla-{architecture}-L1-ar", cache_dir=cache
        ),
        NLA.from_pretrained(f"tiny-{architecture}-L1", cache_dir=cache),
    ):
        assert type(loaded.av.model).__name__ == type(nla.av.model).__name__
        # The published sidecar records only K; the hook name is resolved from it on load.
        assert not loaded.av.cfg.hook_name_recorded and loaded.hook_name == "blocks.1.hook_resid_post"
        got = loaded.round_trip(vectors, max_new_tokens=4, progress=False, warn=False)
        assert got["explanation"].tolist() == want["explanation"].tolist()
        assert torch.allclose(torch.tensor(got["mse"].to_numpy()), torch.tensor(want["mse"].to_numpy()), atol=1e-5)
