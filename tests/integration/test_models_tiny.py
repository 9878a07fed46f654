"""AV, AR and the NLA pair on tiny random llamas: injection, truncation, batching, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import save_file

from nla_lens.errors import CheckpointError, InputError, MarkerError, ShapeError
from nla_lens.frames import TextFrame
from nla_lens.metrics import normalize
from nla_lens.models import NLA, ActivationReconstructor, ActivationVerbalizer
from nla_lens.testing.models import tiny_llama


def test_injection_equals_feeding_the_embedding_directly(tiny_nla):
    av = tiny_nla.av
    v = torch.randn(2, 32) * 3
    prompt = av.prompt_ids()
    ids = prompt[None].repeat(2, 1)
    with torch.no_grad(), av.injecting(v):
        injected = av.model(input_ids=ids).logits
        embeds = av.model.get_input_embeddings()(ids)
    marker = (prompt == av.cfg.tokens.injection_token_id).nonzero().item()
    embeds[:, marker] = normalize(v, av.cfg.injection_scale)
    with torch.no_grad():
        direct = av.model(inputs_embeds=embeds).logits
        plain = av.model(input_ids=ids).logits
    assert torch.equal(injected, direct)
    assert not torch.allclose(injected, plain)  # the vector really changed the output


def test_identity_head_leaves_truncated_backbone_output_unchanged(tiny_nla):
    ar = tiny_nla.ar
    reference = tiny_llama(ar.tokenizer, seed=1)  # the same weights, all 3 blocks
    ids, mask = ar.encode(["the cat sat on the mat", "a dog"])
    with torch.no_grad():
        predicted = ar(ids, mask)
        hidden = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
    last = mask.sum(1) - 1
    assert torch.allclose(predicted, hidden[torch.arange(2), last], atol=1e-6)
    assert ar.backbone.config.num_hidden_layers == 2
    assert torch.equal(ar.value_head.weight, torch.eye(32))


def test_right_padding_and_batching_do_not_change_results(tiny_nla):
    texts = ["short", "a much longer explanation about the cat that sat on the mat", "mid length text"]
    batched = tiny_nla.ar.reconstruct(texts)
    single = torch.cat([tiny_nla.ar.reconstruct([t]) for t in texts])
    assert torch.allclose(batched, single, atol=1e-5)
    v = torch.randn(3, 32)
    together = tiny_nla.av.verbalize(v, max_new_tokens=6, progress=False)
    alone = [tiny_nla.av.verbalize(v[i : i + 1], max_new_tokens=6, progress=False).explanation[0] for i in range(3)]
    assert together.explanation.tolist() == alone


def test_logprobs_depend_on_the_vector_and_mask_padding(tiny_nla):
    av = tiny_nla.av
    responses = av.response_ids(["the cat", "a much longer response here"])
    v = torch.randn(2, 32)
    logp, mask = av.logprobs(v, responses)
    other, _ = av.logprobs(-v, responses)
    assert mask.sum(1).tolist() == [len(r) for r in responses]
    assert torch.all(logp[mask == 0] == 0) and torch.all(logp[mask == 1] < 0)
    assert not torch.allclose(logp, other)
    logp.sum().backward()  # differentiable for training
    assert av.model.get_input_embeddings().weight.grad is not None


def test_verbalize_result_frame_and_seeded_sampling(tiny_nla):
    v = torch.randn(2, 32)
    kwargs = dict(max_new_tokens=5, num_samples=3, do_sample=True, progress=False)
    frame = tiny_nla.av.verbalize(v, seed=0, **kwargs)
    assert frame[["vector", "sample"]].values.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert {"explanation", "n_tokens", "missing_tag", "truncated", "non_english", "ok"} <= set(frame.columns)
    assert "raw" not in frame.columns  # the explanation is shown whole; no second copy of it
    assert isinstance(frame, TextFrame)
    assert frame.n_tokens.max() <= 5 and frame.truncated.all() == (frame.n_tokens == 5).all()
    assert tiny_nla.av.verbalize(v, seed=0, **kwargs).explanation.tolist() == frame.explanation.tolist()
    assert frame.explanation.nunique() > 1  # sampling gives different explanations of one vector


@pytest.mark.parametrize(
    "bad, error",
    [
        (torch.randn(2, 31), ShapeError),
        (torch.full((1, 32), float("nan")), InputError),
        (torch.tensor([[float("inf")] * 32]), InputError),
        (torch.zeros(1, 32), InputError),
    ],
)
def test_bad_vectors_are_refused(tiny_nla, bad, error):
    with pytest.raises(error):
        tiny_nla.av.verbalize(bad, progress=False)


def test_bad_explanations(tiny_nla):
    # The empty-explanation rule lives in reconstruct: an empty one is read as "(empty)", the same
    # way everywhere; the tokenizer-level encode still refuses it (training data must not be empty).
    got = tiny_nla.ar.reconstruct(["fine", "  ", None])
    want = tiny_nla.ar.reconstruct(["fine", "(empty)", "(empty)"])
    assert torch.equal(got, want) and not torch.allclose(got[0], got[1])
    with pytest.raises(InputError, match="empty"):
        tiny_nla.ar.encode(["fine", "  "])
    with pytest.raises(InputError, match="list of strings"):
        tiny_nla.ar.reconstruct("a bare string")
    tiny_nla.ar.max_length = 24
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = tiny_nla.ar.encode(["word " * 200, "short"])
    assert ids.shape[1] <= 24
    suffix = tiny_nla.ar.tokenizer("</text> <summary>", add_special_tokens=False)["input_ids"]
    assert ids[0, -len(suffix) :].tolist() == suffix  # the template's end survives


def test_save_load_round_trip_is_identical(tiny_nla, tmp_path):
    v = torch.randn(3, 32)
    before = tiny_nla.round_trip(v, max_new_tokens=6, progress=False)
    tiny_nla.save_pretrained(tmp_path / "nla")
    loaded = NLA.from_pretrained(tmp_path / "nla")
    after = loaded.round_trip(v, max_new_tokens=6, progress=False)
    assert before.explanation.tolist() == after.explanation.tolist()
    assert before.mse.tolist() == after.mse.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nla"]
    assert (tmp_path / "nla/ar/value_head.safetensors").is_file()
    assert json.loads((tmp_path / "nla/ar/config.json").read_text())["num_hidden_layers"] == 2


def test_published_layout_loads(tiny_nla, tmp_path):
    """Folders written the way the published training code writes them (role actor/critic)."""
    av_dir, ar_dir = tmp_path / "actor", tmp_path / "critic"
    tiny_nla.av.model.save_pretrained(av_dir)
    tiny_nla.av.tokenizer.save_pretrained(av_dir)
    tok = tiny_nla.av.cfg.tokens
    tokens = {
        "injection_char": tok.injection_char,
        "injection_token_id": tok.injection_token_id,
        "injection_left_neighbor_id": tok.injection_left_neighbor_id,
        "injection_right_neighbor_id": tok.injection_right_neighbor_id,
    }
    (av_dir / "nla_meta.yaml").write_text(
        yaml.safe_dump(
            {
                "kind": "nla_model",
                "schema_version": 2,
                "role": "actor",
                "d_model": 32,
                "extraction": {"injection_scale": 5.0, "mse_scale": "sqrt_d_model"},
                "tokens": tokens,
                "prompt_templates": {"actor": tiny_nla.av.cfg.av_template},
                "extraction_layer_index": 1,
            }
        )
    )
    full = tiny_llama(tiny_nla.ar.tokenizer, seed=1)
    full.model.layers = full.model.layers[:2]
    full.config.num_hidden_layers = 2
    full.save_pretrained(ar_dir)  # HF's own writer: norm and (tied) head included
    tiny_nla.ar.tokenizer.save_pretrained(ar_dir)
    save_file({"weight": torch.eye(32)}, str(ar_dir / "value_head.safetensors"))
    (ar_dir / "nla_meta.yaml").write_text(
        yaml.safe_dump(
            {
                "kind": "nla_model",
                "role": "critic",
                "d_model": 32,
                "extraction": {"injection_scale": None, "mse_scale": "sqrt_d_model"},
                "tokens": tokens,
                "prompt_templates": {"critic": "Summary of the following text: <text>{explanation}</text> <summary>"},
                "critic": {"extraction_layer_index": 1},
            }
        )
    )
    av = ActivationVerbalizer.from_pretrained(av_dir)
    ar = ActivationReconstructor.from_pretrained(ar_dir)
    v = torch.randn(2, 32)
    # The published sidecar has no av_prefill: the prompt ends with the chat template, before the
    # "<explanation>" nla_lens pre-fills; the same weights under that prompt give the same output.
    assert av.cfg.av_prefill is None and tiny_nla.av.cfg.av_prefill == "<explanation>"
    ours = tiny_nla.av.prompt_ids().tolist()
    assert ours[: len(av.prompt_ids())] == av.prompt_ids().tolist() and len(ours) > len(av.prompt_ids())
    unprefilled = ActivationVerbalizer(
        tiny_nla.av.model, tiny_nla.av.tokenizer, dataclasses.replace(tiny_nla.av.cfg, av_prefill=None)
    )
    assert (
        av.verbalize(v, max_new_tokens=4, progress=False).explanation.tolist()
        == unprefilled.verbalize(v, max_new_tokens=4, progress=False).explanation.tolist()
    )
    texts = ["the cat", "a dog in the park"]
    assert torch.allclose(ar.reconstruct(texts), tiny_nla.ar.reconstruct(texts), atol=1e-6)


def _saved(tiny_nla, tmp_path):
    tiny_nla.save_pretrained(tmp_path / "nla")
    return tmp_path / "nla"


def test_sidecar_that_disagrees_with_tokenizer_is_refused(tiny_nla, tmp_path):
    path = _saved(tiny_nla, tmp_path)
    meta = yaml.safe_load((path / "av/nla_meta.yaml").read_text())
    meta["tokens"]["injection_right_neighbor_id"] += 1
    (path / "av/nla_meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(CheckpointError, match="neighbour"):
        ActivationVerbalizer.from_pretrained(path / "av")
    meta = yaml.safe_load((path / "ar/nla_meta.yaml").read_text())
    meta["d_model"] = 64
    (path / "ar/nla_meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(CheckpointError, match="d_model"):
        ActivationReconstructor.from_pretrained(path / "ar")


def test_missing_sidecar_and_missing_parts(tiny_nla, tmp_path):
    path = _saved(tiny_nla, tmp_path)
    (path / "av/nla_meta.yaml").unlink()
    with pytest.raises(CheckpointError, match="no nla_meta.yaml"):
        NLA.from_pretrained(path)
    (path / "ar/value_head.safetensors").unlink()
    with pytest.raises(CheckpointError, match="value_head"):
        ActivationReconstructor.from_pretrained(path / "ar")
    shutil.rmtree(path / "av")
    with pytest.raises(CheckpointError, match="av/ is missing"):
        NLA.from_pretrained(path)


def test_pickle_only_checkpoint_is_refused(tiny_nla, tmp_path):
    path = _saved(tiny_nla, tmp_path)
    (path / "av/model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, path / "av/pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled"):
        ActivationVerbalizer.from_pretrained(path / "av")


def test_ar_whose_kept_blocks_disagree_with_config(tiny_nla, tmp_path):
    path = _saved(tiny_nla, tmp_path)
    config = json.loads((path / "ar/config.json").read_text())
    config["num_hidden_layers"] = 3
    (path / "ar/config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="num_hidden_layers = 3"):
        ActivationReconstructor.from_pretrained(path / "ar")


def test_failed_save_leaves_no_partial_folder(tiny_nla, tmp_path, monkeypatch):
    tiny_nla.save_pretrained(tmp_path / "nla")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tiny_nla.ar, "save_pretrained", broken)
    with pytest.raises(OSError):
        tiny_nla.save_pretrained(tmp_path / "nla")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_marker_count_mismatch_in_a_pass(tiny_nla):
    av = tiny_nla.av
    ids = av.prompt_ids()[None].repeat(2, 1)
    with pytest.raises(MarkerError, match="2 valid marker"):
        with av.injecting(torch.randn(3, 32)):
            av.model(input_ids=ids)


def test_lora_adapters_save_and_load(tiny_nla, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    tiny_nla.av.model = get_peft_model(tiny_nla.av.model, lora)
    tiny_nla.ar.backbone = get_peft_model(tiny_nla.ar.backbone, lora)
    v, texts = torch.randn(2, 32), ["the cat", "a dog"]
    expected_text = tiny_nla.av.verbalize(v, max_new_tokens=5, progress=False).explanation.tolist()
    expected_vec = tiny_nla.ar.reconstruct(texts)
    tiny_nla.save_pretrained(tmp_path / "nla")
    assert (tmp_path / "nla/av/adapter_config.json").is_file()
    assert not (tmp_path / "nla/av/model.safetensors").exists()
    # Adapter folders name their base model; resolve the tiny bases by name for this test.
    import nla_lens.models.loading as loading

    bases = {
        "tiny-av": (tiny_llama(tiny_nla.av.tokenizer), tiny_nla.av.tokenizer),
        "tiny-ar": (tiny_llama(tiny_nla.ar.tokenizer, seed=1), tiny_nla.ar.tokenizer),
    }
    for role in ("av", "ar"):
        meta = yaml.safe_load((tmp_path / f"nla/{role}/nla_meta.yaml").read_text())
        meta["provenance"]["base_model"] = f"tiny-{role}"
        (tmp_path / f"nla/{role}/nla_meta.yaml").write_text(yaml.safe_dump(meta))
    loading_calls = []

    def tiny_base(name, **kwargs):
        loading_calls.append(name)
        return bases[name]

    monkeypatch.setattr(loading, "load_base_lm", tiny_base)
    loaded = NLA.from_pretrained(tmp_path / "nla")
    assert loading_calls == ["tiny-av", "tiny-ar"]
    assert loaded.av.verbalize(v, max_new_tokens=5, progress=False).explanation.tolist() == expected_text
    assert torch.allclose(loaded.ar.reconstruct(texts), expected_vec, atol=1e-6)
    # Shipped adapter folders leave the tokenizer out and use the base model's.
    for role in ("av", "ar"):
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            (tmp_path / f"nla/{role}/{name}").unlink(missing_ok=True)
    slim = NLA.from_pretrained(tmp_path / "nla")
    assert slim.av.verbalize(v, max_new_tokens=5, progress=False).explanation.tolist() == expected_text


def test_logprobs_equal_a_full_vocabulary_log_softmax(tiny_nla):
    av = tiny_nla.av
    responses = av.response_ids(["the cat sat", "a dog"])
    v = torch.randn(2, 32)
    logp, mask = av.logprobs(v, responses)
    prompt = av.prompt_ids()
    for row, response in enumerate(responses):
        ids = torch.cat([prompt, torch.tensor(response)])[None]
        with torch.no_grad(), av.injecting(v[row : row + 1]):
            full = torch.log_softmax(av.model(input_ids=ids).logits[0].float(), dim=-1)
        expected = full[len(prompt) - 1 : -1].gather(-1, torch.tensor(response)[:, None]).squeeze(-1)
        assert torch.allclose(logp[row, : len(response)].detach(), expected, atol=1e-5)
