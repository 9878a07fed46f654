"""nla_lens's exports read with plain transformers + safetensors, as a client at the published stack's pin would.

Nothing of nla_lens is imported: the folders are read with transformers, safetensors and the sidecar's
YAML, and compared with nla_lens's own outputs on the live NLAs (scripts/export_reference.py, main
environment). Meant for transformers 4.57.1 (locks/tf457.txt); the checks hold on 5.x as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

SHIPPED_AR = Path(__file__).resolve().parents[2] / "nla_lens" / "pretrained" / "smollm2-135m-L20" / "ar"
NAMES = ("smollm2", "gemma3")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 distance ``|a - b| / |b|`` (over all elements)."""
    return float((a.double() - b.double()).norm() / b.double().norm())


def _sidecar(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "nla_meta.yaml").read_text())


def _model(folder: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _reconstruct(folder: Path, explanations: list[str]) -> tuple[torch.Tensor, list[list[int]]]:
    """The AR read as published: the K+1-block model without its final norm, the last token's
    residual through ``value_head.safetensors``; returns ``([N, d], prompt ids)``."""
    template = _sidecar(folder)["prompt_templates"]["ar"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = _model(folder)
    model.model.norm = torch.nn.Identity()  # the residual after block K, not the normed output
    head = load_file(str(folder / "value_head.safetensors"))["weight"]
    rows, all_ids = [], []
    with torch.no_grad():
        for text in explanations:
            ids = tokenizer(template.format(explanation=text), add_special_tokens=True)["input_ids"]
            hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            rows.append(head.float() @ hidden)
            all_ids.append(list(ids))
    return torch.stack(rows), all_ids


def _av_prompt(folder: Path) -> list[int]:
    """The AV prompt a client builds with the chat template alone (``add_generation_prompt=True``)."""
    meta = _sidecar(folder)
    content = meta["prompt_templates"]["av"].format(injection_char=meta["tokens"]["injection_char"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return [int(i) for i in (ids["input_ids"] if hasattr(ids, "keys") else ids)]


def _numerics(folder: Path, fields: list[str]) -> dict[str, Any]:
    """The reference's numerics fields as this transformers reads the folder's config; the rotary
    settings from the fields 4.57 uses (``rope_theta``, ``rope_scaling``, ``rope_local_base_freq``)."""
    text = AutoConfig.from_pretrained(folder).get_text_config()
    out = {name: getattr(text, name, None) for name in fields if name != "rope"}
    scaling = dict(getattr(text, "rope_scaling", None) or {})
    if "rope_parameters" in scaling or "full_attention" in scaling:  # transformers 5 aliases rope_parameters
        scaling = {}
    rope_type = scaling.pop("rope_type", scaling.pop("type", "default"))
    theta = getattr(text, "rope_theta", None)
    if theta is None:  # transformers 5: read from rope_parameters instead
        params = dict(text.rope_parameters)
        full = params.get("full_attention", params)
        out["rope"] = {"full": {k: v for k, v in full.items() if k != "partial_rotary_factor"}}
        if "sliding_attention" in params:
            out["rope"]["sliding"] = params["sliding_attention"]
        return json.loads(json.dumps(out))
    out["rope"] = {"full": {"rope_theta": theta, "rope_type": rope_type, **scaling}}
    if getattr(text, "rope_local_base_freq", None) is not None:
        out["rope"]["sliding"] = {"rope_theta": text.rope_local_base_freq, "rope_type": "default"}
    return json.loads(json.dumps(out))


@pytest.fixture(scope="module")
def reference(reference_dir) -> dict[str, Any]:
    return json.loads((reference_dir / "reference.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_ar_reconstructions_and_tokenization_equal_nla_lens(reference_dir, reference, name):
    ref = reference[name]
    expected = load_file(str(reference_dir / name / "reference.safetensors"))["reconstructions"]
    got, ids = _reconstruct(reference_dir / name / "ar", ref["explanations"])
    assert ids == ref["ar_prompt_ids"]
    for row in range(len(expected)):  # each of the 8 explanations, not only on average
        assert _relative(got[row], expected[row]) < 1e-5, (name, row, _relative(got[row], expected[row]))


@pytest.mark.parametrize("name", NAMES)
def test_configs_agree_with_nla_lens_on_every_field_that_affects_numerics(reference_dir, reference, name):
    for half in ("av", "ar"):
        want = reference[name]["config"][half]
        assert _numerics(reference_dir / name / half, list(want)) == want, (name, half)


@pytest.mark.parametrize("name", NAMES)
def test_the_chat_template_alone_gives_nla_lens_av_prompt_and_the_injected_logits_agree(reference_dir, reference, name):
    folder = reference_dir / name / "av"
    ids = _av_prompt(folder)
    assert ids == reference[name]["av_prompt_ids"]  # token for token, pre-fill included
    tokens = _sidecar(folder)["tokens"]
    scale = float(_sidecar(folder)["extraction"]["injection_scale"])
    marker = [
        p
        for p in range(1, len(ids) - 1)
        if (ids[p - 1], ids[p], ids[p + 1])
        == (tokens["injection_left_neighbor_id"], tokens["injection_token_id"], tokens["injection_right_neighbor_id"])
    ]
    assert len(marker) == 1
    saved = load_file(str(reference_dir / name / "reference.safetensors"))
    model = _model(folder)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(torch.tensor([ids]))  # after any embedding scale (Gemma)
        embeds[0, marker[0]] = saved["vector"] * (scale / saved["vector"].norm())
        logits = model(inputs_embeds=embeds).logits[0, -1]
    assert _relative(logits, saved["av_logits"]) < 1e-4


@pytest.mark.parametrize("loader", ["AutoModelForCausalLM", "AutoPeftModelForCausalLM"])
def test_the_shipped_compact_ar_folder_does_not_load_as_a_model(loader):
    """The adapters cover 21 of the base's 30 blocks: no reader may silently build all 30."""
    assert (SHIPPED_AR / "adapter_config.json").is_file(), f"no compact AR folder at {SHIPPED_AR}"
    if loader == "AutoModelForCausalLM":
        load = AutoModelForCausalLM.from_pretrained
    else:
        from peft import AutoPeftModelForCausalLM

        load = AutoPeftModelForCausalLM.from_pretrained
    # transformers and peft follow the adapter config to its (sealed, unresolvable) base; transformers 5
    # may stop first at the folder's own 21-block config, which has no weights beside it.
    with pytest.raises((OSError, ValueError), match="nla_lens AR adapters over a truncated base|no file named"):
        load(SHIPPED_AR)
