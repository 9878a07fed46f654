"""GPU-size loading on tiny models: ``dtype`` and ``device_map`` reach transformers, and an AR over a
base named in its sidecar builds only its K+1 blocks (the rest of the base is never loaded)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from nla_lens.errors import CheckpointError
from nla_lens.models import ActivationReconstructor, ActivationVerbalizer
from nla_lens.models.loading import load_lm_folder
from nla_lens.schema import NLAMeta
from nla_lens.testing.models import tiny_llama, tiny_nla
from nla_lens.testing.tokenizers import tiny_tokenizer
from nla_lens.training.lora import apply_lora


def test_lora_ar_over_a_named_base_builds_only_k_plus_1_blocks_in_the_dtype_asked(tmp_path):
    tok = tiny_tokenizer()
    tiny_llama(tok, n_layers=4, seed=5).save_pretrained(tmp_path / "base")  # a 4-block base "on the hub"
    tok.save_pretrained(tmp_path / "base")
    meta = NLAMeta.for_tokenizer(
        tok, role="ar", d_model=32, injection_scale=None, layer=1, provenance={"base_model": str(tmp_path / "base")}
    )
    ar = ActivationReconstructor.from_base(tiny_llama(tok, n_layers=4, seed=5), tok, meta)
    ar.backbone = apply_lora(ar.backbone, 4)
    with torch.no_grad():  # adapters that change the output, so loading them is checked too
        for name, param in ar.backbone.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    ar.save_pretrained(tmp_path / "ar")

    loaded = ActivationReconstructor.from_pretrained(tmp_path / "ar", dtype=torch.bfloat16, device_map="auto")
    assert len(loaded._inner.layers) == 2 and loaded.backbone.config.num_hidden_layers == 2
    # peft keeps LoRA weights in float32 on a bfloat16 base (its autocast_adapter_dtype default)
    assert {p.dtype for n, p in loaded.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    texts = ["the cat sat on the mat", "a dog ran in the park"]
    want, got = ar.reconstruct(texts), loaded.reconstruct(texts)
    assert torch.nn.functional.cosine_similarity(want, got).min() > 0.99
    assert float(loaded.cfg.layer) == 1

    # The adapter folder records its truncated base (config.json, 2 blocks): a tool that would
    # build it on the whole 4-block base fails loudly, and nla_lens refuses to load it whole.
    assert json.loads((tmp_path / "ar" / "config.json").read_text())["num_hidden_layers"] == 2
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "ar")
    with pytest.raises(CheckpointError, match="truncated to 2 blocks.*cannot load as a full model"):
        load_lm_folder(tmp_path / "ar", meta.provenance)


def test_av_loads_in_bfloat16_with_device_map_and_explains(tmp_path):
    nla = tiny_nla(1, n_layers=2, seed=2)
    nla.save_pretrained(tmp_path / "nla")
    av = ActivationVerbalizer.from_pretrained(tmp_path / "nla" / "av", dtype=torch.bfloat16, device_map="auto")
    assert {p.dtype for p in av.model.parameters()} == {torch.bfloat16}
    assert next(av.model.parameters()).device.type == "cpu"  # "auto" with no GPU: all on the CPU
    frame = av.verbalize(torch.randn(2, 32) * 5, max_new_tokens=4, progress=False, warn=False)
    assert len(frame) == 2
    kept = ActivationVerbalizer.from_pretrained(tmp_path / "nla" / "av")  # default: the saved dtype
    assert {p.dtype for p in kept.model.parameters()} == {torch.float32}


@pytest.mark.parametrize("backend", ["bridge", "nnsight"])
def test_load_subject_by_path_with_dtype_and_device_map(backend, tmp_path):
    import nla_lens

    tok = tiny_tokenizer()
    tiny_llama(tok, n_layers=2, seed=7).save_pretrained(tmp_path / "subject")
    tok.save_pretrained(tmp_path / "subject")
    subject = nla_lens.load_subject(str(tmp_path / "subject"), backend=backend, dtype=torch.bfloat16, device_map="auto")
    acts = nla_lens.as_subject(subject).activations(
        torch.tensor([[5, 6, 7, 8]]), nla_lens.as_subject(subject).resolve_hook(layer=1)
    )
    assert acts.shape == (1, 4, 32) and torch.isfinite(acts).all()
    module = subject if backend == "bridge" else subject._module
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
