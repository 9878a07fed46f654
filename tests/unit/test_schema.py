"""Unit tests for nla_lens.schema: the nla_meta.yaml contract (tiny offline tokenizers)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from nla_lens.errors import CheckpointError
from nla_lens.injection import choose_marker, marker_neighbors
from nla_lens.schema import DEFAULT_AR_TEMPLATE, DEFAULT_AV_TEMPLATE, SIDECAR_NAME, VERBOSE_AV_TEMPLATE, NLAMeta
from nla_lens.testing.tokenizers import tiny_tokenizer, tiny_tokenizer_with_cjk_marker


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def cjk_tok():
    return tiny_tokenizer_with_cjk_marker()


def _meta(tok, role: str = "av", **fields) -> NLAMeta:
    fields.setdefault("layer", 20)
    return NLAMeta.for_tokenizer(tok, role=role, d_model=64, injection_scale=250.0 if role == "av" else None, **fields)


def _published(tok, role: str) -> dict:
    """A sidecar as the published training code writes it (actor/critic spellings, v1 layer key)."""
    marker = choose_marker(tok)
    template = "Here is the vector:\n\n<concept>{injection_char}</concept>\n"
    left, right = marker_neighbors(tok, template, marker.char, marker.token_id)
    data = {
        "kind": "nla_model",
        "schema_version": 2,
        "role": role,
        "stage": "rl",
        "base_checkpoint": "Qwen/Qwen2.5-7B-Instruct",
        "d_model": 64,
        "extraction": {"injection_scale": 150.0 if role == "actor" else None, "mse_scale": "sqrt_d_model"},
        "tokens": {
            "injection_char": marker.char,
            "injection_token_id": marker.token_id,
            "injection_left_neighbor_id": left,
            "injection_right_neighbor_id": right,
            "critic_suffix_ids": None,
        },
        "prompt_templates": {"actor": template, "critic": DEFAULT_AR_TEMPLATE},
        "trained_on": ["data.parquet"],
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    if role == "critic":
        data["critic"] = {"num_hidden_layers": 20}
    return data


# ------------------------------------------------------------------ round trip and IO
def test_round_trip_through_dict_and_yaml(tok, tmp_path) -> None:
    meta = _meta(
        tok, subject_model="smollm2-135m", hook_name="blocks.20.hook_resid_post", provenance={"steps": 12, "git": "abc"}
    )
    meta.extra["future_field"] = {"x": [1, 2]}
    assert NLAMeta.from_dict(meta.to_dict()) == meta
    written = meta.save(tmp_path / "ckpt")
    assert written == tmp_path / "ckpt" / SIDECAR_NAME
    loaded = NLAMeta.load(tmp_path / "ckpt")
    assert loaded == meta
    assert loaded.extra["future_field"] == {"x": [1, 2]}
    assert loaded.provenance == {"steps": 12, "git": "abc"}
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [SIDECAR_NAME]  # no temp files left


def test_written_yaml_uses_published_field_names(tok, tmp_path) -> None:
    path = _meta(tok, role="ar").save(tmp_path / "ar.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert raw["kind"] == "nla_model" and raw["role"] == "ar" and raw["d_model"] == 64
    assert set(raw["tokens"]) >= {
        "injection_char",
        "injection_token_id",
        "injection_left_neighbor_id",
        "injection_right_neighbor_id",
    }
    assert raw["extraction"]["mse_scale"] == pytest.approx(8.0)
    assert raw["prompt_templates"]["ar"] == DEFAULT_AR_TEMPLATE
    assert raw["extraction_layer_index"] == 20
    assert raw["critic"]["extraction_layer_index"] == 20


def test_default_templates_have_their_placeholders() -> None:
    assert "<concept>{injection_char}</concept>" in DEFAULT_AV_TEMPLATE
    assert "<concept>{injection_char}</concept>" in VERBOSE_AV_TEMPLATE
    assert DEFAULT_AR_TEMPLATE == "Summary of the following text: <text>{explanation}</text> <summary>"


def test_load_missing_sidecar_says_what_to_do(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no nla_meta.yaml"):
        NLAMeta.load(tmp_path)


# ------------------------------------------------------------------ published format
@pytest.mark.parametrize("role,expected", [("actor", "av"), ("critic", "ar")])
def test_published_sidecar_loads_and_validates(tok, tmp_path, role, expected) -> None:
    path = tmp_path / SIDECAR_NAME
    path.write_text(yaml.safe_dump(_published(tok, role), allow_unicode=True), encoding="utf-8")
    meta = NLAMeta.load(tmp_path)
    assert meta.role == expected
    assert meta.mse_scale == pytest.approx(math.sqrt(64))
    assert meta.av_template.startswith("Here is the vector")
    assert meta.ar_template == DEFAULT_AR_TEMPLATE
    assert meta.extra["stage"] == "rl" and meta.extra["trained_on"] == ["data.parquet"]
    if expected == "ar":
        assert meta.injection_scale is None and meta.n_kept_blocks == 21
        meta.validate(tok, d_model=64, n_hidden_layers=21)
    else:
        assert meta.injection_scale == 150.0
        meta.validate(tok, d_model=64)
    again = NLAMeta.from_dict(meta.to_dict())
    assert again == meta


def test_released_layout_with_top_level_layer_and_cjk_marker(cjk_tok) -> None:
    data = _published(cjk_tok, "critic")
    del data["critic"]
    data["role"] = "ar"
    data["extraction_layer_index"] = 20
    meta = NLAMeta.from_dict(data)
    assert meta.tokens.injection_char == "\u320e" and meta.layer == 20
    meta.validate(cjk_tok, d_model=64, n_hidden_layers=21)


def test_conflicting_layers_and_unknown_kind_or_role_are_refused(tok) -> None:
    data = _published(tok, "critic")
    data["extraction_layer_index"] = 19
    with pytest.raises(CheckpointError, match="conflicting"):
        NLAMeta.from_dict(data)
    with pytest.raises(CheckpointError, match="kind"):
        NLAMeta.from_dict({**_published(tok, "actor"), "kind": "something"})
    with pytest.raises(CheckpointError, match="role"):
        NLAMeta.from_dict({**_published(tok, "actor"), "role": "judge"})
    with pytest.raises(CheckpointError, match="injection_scale"):
        NLAMeta.from_dict({**_published(tok, "actor"), "extraction": {}})


# ------------------------------------------------------------------ validation failures
def test_validate_passes_for_a_fresh_sidecar(tok, cjk_tok) -> None:
    _meta(tok).validate(tok, d_model=64)
    _meta(cjk_tok).validate(cjk_tok, d_model=64)
    _meta(tok, role="ar").validate(tok, d_model=64, n_hidden_layers=21)


def test_validate_wrong_token_id(tok) -> None:
    meta = _meta(tok)
    meta.tokens.injection_token_id += 1
    with pytest.raises(CheckpointError, match=r"encodes to \[\d+\].*tokens.injection_token_id"):
        meta.validate(tok)


def test_validate_marker_from_another_tokenizer(tok, cjk_tok) -> None:
    with pytest.raises(CheckpointError, match="Load the tokenizer from the checkpoint"):
        _meta(cjk_tok).validate(tok)


def test_validate_wrong_neighbours(tok) -> None:
    meta = _meta(tok)
    meta.tokens.injection_right_neighbor_id = meta.tokens.injection_left_neighbor_id
    with pytest.raises(CheckpointError, match="neighbours"):
        meta.validate(tok)
    meta = _meta(tok)
    meta = dataclasses.replace(meta, av_template="Look: {injection_char} here")  # template drift changes the neighbours
    with pytest.raises(CheckpointError, match="neighbours"):
        meta.validate(tok)


def test_validate_wrong_d_model_and_kept_blocks(tok) -> None:
    with pytest.raises(CheckpointError, match="hidden size 576"):
        _meta(tok).validate(tok, d_model=576)
    with pytest.raises(CheckpointError, match="num_hidden_layers = 30"):
        _meta(tok, role="ar").validate(tok, n_hidden_layers=30)
    with pytest.raises(CheckpointError, match="no extraction layer"):
        _meta(tok, role="ar", layer=None).validate(tok, n_hidden_layers=21)


def test_validate_templates(tok) -> None:
    meta = _meta(tok)
    meta = dataclasses.replace(meta, ar_template="Summary: <text>{text}</text>")
    with pytest.raises(CheckpointError, match=r"\{explanation\}"):
        meta.validate(tok)
    meta = _meta(tok)
    meta = dataclasses.replace(meta, av_template="no marker here")
    with pytest.raises(CheckpointError, match=r"\{injection_char\}"):
        meta.validate(tok)
    meta = _meta(tok, role="ar")
    meta = dataclasses.replace(meta, ar_template=None)
    with pytest.raises(CheckpointError, match="prompt_templates.ar is missing"):
        meta.validate(tok)


def test_validate_reports_all_problems_at_once(tok) -> None:
    meta = _meta(tok, role="ar")
    with pytest.raises(CheckpointError) as info:
        meta.validate(tok, d_model=32, n_hidden_layers=5)
    assert "d_model" in str(info.value) and "num_hidden_layers = 5" in str(info.value)


def test_hook_name_sets_and_checks_layer(tok) -> None:
    meta = _meta(tok, layer=None, hook_name="blocks.7.hook_resid_post")
    assert meta.layer == 7 and meta.n_kept_blocks == 8
    with pytest.raises(CheckpointError, match="not at layer"):
        _meta(tok, layer=3, hook_name="blocks.7.hook_resid_post")


def test_a_layer_only_sidecar_resolves_its_hook_name_and_saves_as_read(tok, tmp_path) -> None:
    meta = NLAMeta.from_dict(_published(tok, "critic"))  # the published layout: only the layer
    assert meta.layer == 20 and meta.hook_name == "blocks.20.hook_resid_post" and not meta.hook_name_recorded
    written = meta.to_dict()
    assert "hook_name" not in written["extraction"] and written["extraction_layer_index"] == 20
    again = NLAMeta.load(meta.save(tmp_path))
    assert again == meta and again.to_dict() == written
    recorded = _meta(tok, hook_name="blocks.20.hook_resid_post")  # nla_lens's own layout: both recorded
    assert recorded.hook_name_recorded and recorded.to_dict()["extraction"]["hook_name"] == "blocks.20.hook_resid_post"
    other = dataclasses.replace(meta, hook_name="blocks.20.attn.hook_z")  # not the layer's resid_post: written
    assert other.to_dict()["extraction"]["hook_name"] == "blocks.20.attn.hook_z"
    assert _meta(tok, role="ar", layer=None).hook_name is None  # neither recorded


def test_meta_is_frozen_and_replace_checks_again(tok) -> None:
    meta = _meta(tok)
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.layer = 3
    assert dataclasses.replace(meta, layer=5, hook_name=None).hook_name == "blocks.5.hook_resid_post"
    with pytest.raises(CheckpointError, match="not at layer"):
        dataclasses.replace(meta, layer=5)  # the hook resolved from layer 20 stays: pass hook_name=None
    assert dataclasses.replace(meta, role="critic").role == "ar"
