"""Exports that clients other than nla_lens read right: the pre-fill in the AV's chat template, the
rotary and tokenizer fields transformers 4.57 reads, public file modes, and LoRA AR folders that no
reader can build as the whole base model.

The transformers 4.57 side is tests/published_stack (its own environment); here a client that only
applies the exported chat template and injects at the marker explains 16 real vectors of the
embedded subject with plain transformers.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
import yaml

import nla_lens
from nla_lens import NLA
from nla_lens.models import ActivationReconstructor, ActivationVerbalizer
from nla_lens.models.loading import load_base_lm, truncate_causal_lm
from nla_lens.testing.models import tiny_llama, tiny_nla
from nla_lens.testing.tokenizers import tiny_tokenizer
from nla_lens.training.lora import apply_lora

EXPLANATION = re.compile(r"<explanation>(.*?)</explanation>", re.DOTALL)


@pytest.fixture(scope="module")
def shipped() -> NLA:
    return NLA.from_pretrained("smollm2-135m-L20")


@pytest.fixture(scope="module")
def exported(shipped, tmp_path_factory):
    return shipped.save_pretrained(tmp_path_factory.mktemp("export") / "smollm2", merged=True)


def _client_prompt(folder) -> tuple[list[int], dict]:
    """The AV prompt built only from the exported folder: its sidecar's template, its chat template."""
    from transformers import AutoTokenizer

    meta = yaml.safe_load((folder / "nla_meta.yaml").read_text())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    content = meta["prompt_templates"]["av"].format(injection_char=meta["tokens"]["injection_char"])
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"], meta


@pytest.mark.embedded
def test_the_exported_chat_template_gives_nla_lens_av_prompt_and_reloads_without_a_second_prefill(shipped, exported):
    ids, meta = _client_prompt(exported / "av")
    assert ids == shipped.av.prompt_ids().tolist()
    assert meta["prompt_templates"]["av_prefill"] == "<explanation>"
    assert ActivationVerbalizer.from_pretrained(exported / "av").prompt_ids().tolist() == ids


@pytest.mark.embedded
def test_exported_configs_carry_the_fields_transformers_457_reads(exported):
    for half in ("av", "ar"):
        config = json.loads((exported / half / "config.json").read_text())
        assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 100000.0
        assert json.loads((exported / half / "tokenizer_config.json").read_text())["tokenizer_class"] == (
            "PreTrainedTokenizerFast"
        )
    suffix = yaml.safe_load((exported / "ar" / "nla_meta.yaml").read_text())["tokens"]["critic_suffix_ids"]
    assert len(suffix) >= 2 and ActivationReconstructor.from_pretrained(exported / "ar").cfg.tokens.critic_suffix_ids


@pytest.mark.embedded
def test_a_client_that_only_applies_the_template_gets_explanations_that_parse(exported, bridge, documents):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hook = "blocks.20.hook_resid_post"
    vectors = nla_lens.extract_activations(bridge, documents[:8], hook, positions_per_doc=2, progress=False).vectors
    assert vectors.shape == (16, 576)
    folder = exported / "av"
    ids, meta = _client_prompt(folder)
    tokens = meta["tokens"]
    neighbours = (
        tokens["injection_left_neighbor_id"],
        tokens["injection_token_id"],
        tokens["injection_right_neighbor_id"],
    )
    (marker,) = [p for p in range(1, len(ids) - 1) if tuple(ids[p - 1 : p + 2]) == neighbours]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = torch.tensor([ids] * len(vectors))
    with torch.no_grad():
        embeds = model.get_input_embeddings()(prompt)
        scale = float(meta["extraction"]["injection_scale"])
        embeds[:, marker] = vectors.float() * (scale / vectors.float().norm(dim=-1, keepdim=True))
        new = model.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=150,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    texts = [tokenizer.decode(ids + row.tolist(), skip_special_tokens=True) for row in new]
    parsed = [m.group(1).strip() for m in map(EXPLANATION.search, texts) if m]
    assert len(parsed) == 16 and all(parsed), [t[-200:] for t in texts]


def test_exports_are_readable_by_other_users(tmp_path):
    old = os.umask(0o022)
    try:
        out = tiny_nla(1, n_layers=2, seed=2).save_pretrained(tmp_path / "tiny", merged=True)
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    assert modes["."] == modes["av"] == modes["ar"] == 0o755
    files = {name: mode for name, mode in modes.items() if (out / name).is_file()}
    assert {"av/nla_meta.yaml", "ar/model.safetensors", "ar/value_head.safetensors"} <= set(files)
    assert set(files.values()) == {0o644}, files


@pytest.mark.embedded
def test_a_saved_lora_ar_folder_names_no_loadable_base_and_still_loads_in_nla_lens(shipped, tmp_path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    folder = shipped.ar.save_pretrained(tmp_path / "ar")
    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base.startswith("nla_lens AR adapters over a truncated base (its first 21 blocks")
    assert yaml.safe_load((folder / "nla_meta.yaml").read_text())["provenance"]["base_model"] == "smollm2-135m"
    for load in (AutoModelForCausalLM.from_pretrained, AutoPeftModelForCausalLM.from_pretrained):
        with pytest.raises((OSError, ValueError)):
            load(folder)
    texts = ["The text is a recipe.", "A Python function."]
    torch.testing.assert_close(
        ActivationReconstructor.from_pretrained(folder).reconstruct(texts), shipped.ar.reconstruct(texts)
    )


def test_a_lora_ar_records_the_base_its_adapter_config_named_before_sealing(tmp_path):
    tokenizer = tiny_tokenizer()
    tiny_llama(tokenizer, n_layers=3, seed=1).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    model, _ = load_base_lm(str(tmp_path / "base"))
    peft_model = apply_lora(truncate_causal_lm(model, 2), r=2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)  # adapters that change the output
    meta = tiny_nla(1, n_layers=3).ar.cfg
    meta.provenance.pop("base_model")
    ar = ActivationReconstructor(peft_model, tokenizer, meta)
    folder = ar.save_pretrained(tmp_path / "ar")
    assert yaml.safe_load((folder / "nla_meta.yaml").read_text())["provenance"]["base_model"] == str(tmp_path / "base")
    assert "nla_lens AR adapters" in json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    texts = ["the cat", "a dog in the park"]
    torch.testing.assert_close(
        ActivationReconstructor.from_pretrained(folder).reconstruct(texts), ar.reconstruct(texts)
    )
