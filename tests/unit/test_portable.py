"""The rewrites that make exports read the same on transformers 4.57 and 5.x (no model)."""

from __future__ import annotations

import json

import jinja2
import pytest

from nla_lens.errors import CheckpointError
from nla_lens.models.portable import (
    chat_template_with_prefill,
    legacy_rope_fields,
    write_legacy_config,
    write_legacy_tokenizer_config,
)

LLAMA3 = {
    "rope_theta": 500000.0,
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def test_plain_rope_becomes_rope_theta_without_scaling():
    assert legacy_rope_fields({"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}) == {
        "rope_theta": 100000.0
    }
    assert legacy_rope_fields({"rope_theta": 10000.0}) == {}  # written by transformers 4.x: nothing to add


def test_llama3_scaling_travels_as_rope_scaling():
    fields = legacy_rope_fields({"rope_parameters": LLAMA3})
    assert fields["rope_theta"] == 500000.0
    assert fields["rope_scaling"] == {k: v for k, v in LLAMA3.items() if k != "rope_theta"}


def test_gemma3_per_layer_type_rope_maps_to_its_three_legacy_fields():
    params = {
        "full_attention": {"rope_theta": 1000000.0, "rope_type": "linear", "factor": 8.0},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    }
    assert legacy_rope_fields({"rope_parameters": params}) == {
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 10000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    }
    params["sliding_attention"] = {"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0}
    with pytest.raises(CheckpointError, match="sliding-attention layers use a scaled rope"):
        legacy_rope_fields({"rope_parameters": params}, "text_config")


def test_write_legacy_config_fills_a_wrapper_text_config_and_keeps_rope_parameters(tmp_path):
    text = {
        "model_type": "gemma3_text",
        "rope_parameters": {"full_attention": {"rope_theta": 1e6, "rope_type": "default"}},
    }
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": text}))
    write_legacy_config(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())["text_config"]
    assert written["rope_theta"] == 1e6 and written["rope_parameters"] == text["rope_parameters"]


def test_tokenizer_config_names_a_class_and_special_tokens_457_reads(tmp_path):
    config = {"tokenizer_class": "TokenizersBackend", "extra_special_tokens": ["<a>", "<b>"], "bos_token": "<s>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    write_legacy_tokenizer_config(tmp_path)  # no tokenizer.json: the class has nothing to be built from
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == config
    (tmp_path / "tokenizer.json").write_text("{}")
    write_legacy_tokenizer_config(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "additional_special_tokens": ["<a>", "<b>"],
        "bos_token": "<s>",
    }


def test_the_prefill_follows_the_generation_prompt_only_and_once():
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}"
    patched = chat_template_with_prefill(chat_template_with_prefill(template, '<explanation "x">'), '<explanation "x">')
    render = jinja2.Template(patched).render
    messages = [{"role": "user", "content": "hi"}]
    assert render(messages=messages, add_generation_prompt=True) == '<user>hi<bot><explanation "x">'
    assert render(messages=messages, add_generation_prompt=False) == "<user>hi"
    assert chat_template_with_prefill(template, "") == template
