"""Two traps on the embedded model: the bridge's hook aliases, and vectors of another layer given to an NLA."""

from __future__ import annotations

import warnings

import pytest
import torch

import nla_lens
from nla_lens.errors import NormRangeWarning
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.adapters import as_subject

pytestmark = pytest.mark.embedded

PROMPT = "The cat sat on the mat because it was tired, and the dog slept by the door all afternoon."


def test_bridge_hook_names_are_aliases_and_nla_lens_keys_by_the_asked_name(bridge, embedded_hf):
    seen: list[str] = []
    bridge.run_with_hooks(
        PROMPT, fwd_hooks=[("blocks.20.hook_resid_post", lambda x, hook: seen.append(hook.name))], stop_at_layer=21
    )
    assert seen == ["blocks.20.hook_out"]  # what README and tutorial 1 warn about

    model, tok = embedded_hf
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    adapter = as_subject(bridge)
    for name, index in (("blocks.20.hook_resid_post", 21), ("blocks.10.hook_resid_pre", 10), ("hook_embed", 0)):
        acts = adapter.activations(torch.tensor([ids]), adapter.resolve_hook(name))  # [1, seq, d_model]
        assert torch.allclose(acts, hidden[index].float(), atol=1e-4), name
    dataset = nla_lens.extract_activations(bridge, [PROMPT], "blocks.20.hook_resid_post", progress=False)
    assert dataset.meta["hook_name"] == "blocks.20.hook_resid_post"


@pytest.fixture(scope="module")
def shipped_nla():
    return nla_lens.NLA.from_pretrained()


def test_a_layer_10_vector_given_to_the_layer_20_nla_warns_and_layer_20_vectors_do_not(bridge, shipped_nla):
    norm_range = shipped_nla.av.cfg.norm_range
    assert norm_range is not None and shipped_nla.ar.cfg.norm_range == norm_range
    docs = [doc[:600] for doc in nla_lens.load_corpus(max_documents=30)]
    layer20 = torch.cat([prompt_activations(bridge, doc, layer=20).vectors for doc in docs])  # [n, 576], positions >= 1
    assert len(layer20) > 500 and not norm_range.outside(layer20).any()  # ordinary vectors never trip it
    layer10 = torch.cat([prompt_activations(bridge, doc, layer=10).vectors for doc in docs])  # [n, 576]
    assert norm_range.outside(layer10).float().mean() > 0.8  # most do; the layers overlap at the edges

    median10 = layer10[layer10.norm(dim=-1).argsort()[len(layer10) // 2]]  # [576], a typical layer-10 vector
    with pytest.warns(NormRangeWarning, match=r"1 of 1 vectors.*blocks\.20\.hook_resid_post"):
        frame = shipped_nla.explain(median10, max_new_tokens=4, progress=False)
    assert len(frame) == 1  # still explained: the warning says what the flags cannot
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shipped_nla.explain(layer20[:1], max_new_tokens=4, progress=False)
    assert not [w for w in caught if issubclass(w.category, NormRangeWarning)]
