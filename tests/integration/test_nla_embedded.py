"""An untrained NLA built from the embedded SmolLM2-135M-Instruct, on real activations."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

import nla_lens
from nla_lens.models import NLA, ActivationReconstructor
from nla_lens.models.reconstructor import VALUE_HEAD_FILE

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def embedded_nla():
    return NLA.untrained("smollm2-135m", layer=20)


@pytest.fixture(scope="module")
def real_vectors(bridge, documents):
    ds = nla_lens.extract_activations(
        bridge, documents[:4], "blocks.20.hook_resid_post", positions_per_doc=1, max_length=96, progress=False
    )
    return ds.vectors


def test_untrained_nla_writes_readable_english(embedded_nla, real_vectors):
    frame = embedded_nla.round_trip(real_vectors, max_new_tokens=40, progress=False)
    assert embedded_nla.av.cfg.tokens.injection_char == "<empty_output>"  # SmolLM2 has no CJK marker
    assert not frame.non_english.any()
    for text in frame.explanation:
        words = re.findall(r"[A-Za-z]+", text)
        assert len(words) >= 5, text
        assert sum(w.lower() in {"the", "a", "of", "to", "is", "and", "in", "model", "token"} for w in words) >= 2, text
    assert frame.mse.between(0, 4).all() and frame.cosine.between(-1, 1).all()
    assert torch.isfinite(torch.tensor(frame.mse.to_numpy())).all()
    assert set(frame.attrs["report"]) >= {"fve_nrm", "fve_nrm_shuffled"}


def test_explain_from_text_through_the_subject(embedded_nla, bridge):
    frame = embedded_nla.explain(
        text="The cat sat on the mat because it was tired.",
        positions=[3, 8],
        subject=bridge,
        max_new_tokens=12,
        progress=False,
    )
    assert frame.position.tolist() == [3, 8]
    assert frame.token.tolist() == [" on", " was"]


def test_vector_changes_the_explanation(embedded_nla, real_vectors):
    av = embedded_nla.av
    responses = av.response_ids(["The text is about a cat."] * 2)
    logp, mask = av.logprobs(real_vectors[:2], responses)
    assert not torch.allclose(logp[0], logp[1])


def test_save_load_gives_identical_outputs(embedded_nla, real_vectors, tmp_path):
    before = embedded_nla.round_trip(real_vectors[:2], max_new_tokens=16, progress=False)
    embedded_nla.save_pretrained(tmp_path / "nla")
    loaded = NLA.from_pretrained(tmp_path / "nla")
    after = loaded.round_trip(real_vectors[:2], max_new_tokens=16, progress=False)
    assert before.explanation.tolist() == after.explanation.tolist()
    assert before.mse.tolist() == after.mse.tolist()
    config = json.loads((tmp_path / "nla/ar/config.json").read_text())
    assert config["num_hidden_layers"] == 21
    meta = yaml.safe_load((tmp_path / "nla/av/nla_meta.yaml").read_text())
    assert meta["kind"] == "nla_model" and meta["role"] == "av" and meta["d_model"] == 576
    assert (
        meta["extraction"]["injection_scale"] == 240.0
        and meta["extraction"]["hook_name"] == "blocks.20.hook_resid_post"
    )


def test_published_layout_ar_loads(embedded_nla, tmp_path):
    """An AR folder as the published code writes it: HF causal LM with K+1 blocks + value head."""
    from safetensors.torch import save_file

    model, tokenizer = nla_lens.load_embedded_hf()
    model.model.layers = model.model.layers[:21]
    model.config.num_hidden_layers = 21
    folder = tmp_path / "critic"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    head = torch.eye(576) + 0.01 * torch.randn(576, 576, generator=torch.Generator().manual_seed(0))
    save_file({"weight": head}, str(folder / VALUE_HEAD_FILE))
    meta = embedded_nla.ar.cfg.to_dict()
    meta["role"] = "critic"
    meta["prompt_templates"] = {"critic": meta["prompt_templates"]["ar"]}
    for key in ("provenance", "subject_model"):
        meta.pop(key, None)
    (folder / "nla_meta.yaml").write_text(yaml.safe_dump(meta))
    ar = ActivationReconstructor.from_pretrained(folder)
    texts = ["A story about a cat.", "Python code that opens a file."]
    captured = []  # block 20's raw output (HF's last hidden_states entry is after the final norm)
    handle = model.model.layers[20].register_forward_hook(
        lambda m, a, out: captured.append(out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        ids, mask = ar.encode(texts)
        model.model(input_ids=ids, attention_mask=mask)
    handle.remove()
    backbone = captured[0]
    expected = backbone[torch.arange(2), mask.sum(1) - 1] @ head.T
    assert torch.allclose(ar.reconstruct(texts), expected, atol=1e-3)
