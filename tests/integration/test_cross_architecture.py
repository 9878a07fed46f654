"""NLAs across architectures on tiny random models: a Llama subject of width 32 and 4 blocks, an
AV on Qwen2 of width 48 and an AR on Gemma-3 of width 48 and 6 blocks.

The AV maps each vector into its width with a learned input map and the AR maps back with its
head; the AR keeps the blocks at the subject layer's relative depth; the sidecars record both
widths; save and load give identical outputs; the trainers train the map; a folder without the map,
a width without a map, and an export to the published layout each fail with a clear error.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from nla_lens.errors import CheckpointError, InputError, ShapeError
from nla_lens.injection import normalize
from nla_lens.models import NLA
from nla_lens.models.verbalizer import INPUT_MAP_FILE, ActivationVerbalizer
from nla_lens.testing.models import tiny_causal_lm, tiny_llama
from nla_lens.testing.tokenizers import tiny_tokenizer

LAYER, D_SUBJECT, D_NLA = 1, 32, 48


@pytest.fixture(scope="module")
def subject_dir(tmp_path_factory):
    """The subject as a local model folder (its width and depth are read from its config)."""
    folder = tmp_path_factory.mktemp("subject")
    tok = tiny_tokenizer()
    tiny_llama(tok, n_layers=4, d_model=D_SUBJECT, seed=3).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def cross_nla(subject_dir) -> NLA:
    av_tok, ar_tok = tiny_tokenizer(), tiny_tokenizer()
    av = tiny_causal_lm("qwen2", av_tok, n_layers=2, d_model=D_NLA, seed=0)
    ar = tiny_causal_lm("gemma3_text", ar_tok, n_layers=6, d_model=D_NLA, seed=1)
    return NLA.untrained(
        str(subject_dir),
        layer=LAYER,
        injection_scale=5.0,
        base_models=((av, av_tok), (ar, ar_tok)),
        av_base="tiny-qwen2",
        ar_base="tiny-gemma3",
    )


@pytest.fixture()
def nla(subject_dir):
    return cross_nla(subject_dir)


def vectors(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, D_SUBJECT, generator=torch.Generator().manual_seed(seed)) * 7


def test_the_halves_map_between_the_widths_and_the_ar_keeps_the_relative_depth(nla):
    assert nla.d_model == D_SUBJECT
    assert tuple(nla.av.input_map.weight.shape) == (D_NLA, D_SUBJECT)
    assert tuple(nla.ar.value_head.weight.shape) == (D_SUBJECT, D_NLA)
    # K = 1 of 4 subject blocks keeps 2 of 4; at the same relative depth the 6-block AR keeps 3.
    assert nla.ar.cfg.kept_blocks == 3 and nla.ar.backbone.config.num_hidden_layers == 3
    assert nla.av.cfg.lm_d_model == D_NLA and nla.ar.cfg.lm_d_model == D_NLA
    assert nla.av.cfg.provenance["base_model"] == "tiny-qwen2" and nla.ar.cfg.provenance["base_model"] == "tiny-gemma3"
    frame = nla.explain(vectors(), max_new_tokens=6)
    assert len(frame) == 4
    assert nla.ar.reconstruct(["a cat", "a dog"]).shape == (2, D_SUBJECT)
    with pytest.raises(ShapeError, match=str(D_SUBJECT)):
        nla.explain(torch.randn(2, D_NLA))  # vectors of the AV's own width are not the subject's


def test_the_injected_row_is_the_mapped_vector_at_the_injection_scale(nla):
    av, v = nla.av, vectors(2)
    seen = {}
    with av.injecting(v):
        handle = av.model.get_input_embeddings().register_forward_hook(lambda m, a, out: seen.update(out=out))
        with torch.no_grad():
            av.model(input_ids=av.prompt_ids()[None].repeat(2, 1))
        handle.remove()
    with torch.no_grad():
        want = normalize(v @ av.input_map.weight.T, av.cfg.injection_scale)
    got = seen["out"][:, av._marker_position()]
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, want[[1, 0]], atol=1e-3)  # each row gets its own vector


def test_save_and_load_give_identical_outputs_and_the_sidecars_record_both_widths(nla, tmp_path):
    with torch.no_grad():  # a trained map is not the one a fresh untrained NLA would rebuild
        nla.av.input_map.weight.add_(torch.randn(D_NLA, D_SUBJECT, generator=torch.Generator().manual_seed(1)))
        nla.ar.value_head.weight.mul_(1.5)
    nla.save_pretrained(tmp_path / "nla")
    sidecar = yaml.safe_load((tmp_path / "nla" / "av" / "nla_meta.yaml").read_text())
    assert sidecar["d_model"] == D_SUBJECT and sidecar["cross_architecture"] == {"lm_d_model": D_NLA}
    ar_sidecar = yaml.safe_load((tmp_path / "nla" / "ar" / "nla_meta.yaml").read_text())
    assert ar_sidecar["cross_architecture"] == {"lm_d_model": D_NLA, "kept_blocks": 3}
    loaded = NLA.from_pretrained(tmp_path / "nla")
    v = vectors(3, seed=5)
    assert torch.equal(loaded.av.input_map.weight, nla.av.input_map.weight)
    assert torch.equal(loaded.av.generate(v, max_new_tokens=8)[0], nla.av.generate(v, max_new_tokens=8)[0])
    texts = ["the cat sat", "on a mat"]
    assert torch.allclose(loaded.ar.reconstruct(texts), nla.ar.reconstruct(texts), atol=1e-6)


def test_a_folder_without_its_map_and_a_width_without_a_map_are_refused(nla, tmp_path):
    nla.save_pretrained(tmp_path / "nla")
    (tmp_path / "nla" / "av" / INPUT_MAP_FILE).unlink()
    with pytest.raises(CheckpointError, match="input_map.safetensors"):
        ActivationVerbalizer.from_pretrained(tmp_path / "nla" / "av")
    meta = nla.av.cfg
    plain = type(meta)(**{**meta.__dict__, "lm_d_model": None})  # a sidecar that says "same width"
    with pytest.raises(CheckpointError, match="hidden size 48"):
        ActivationVerbalizer(nla.av.model, nla.av.tokenizer, plain)


def test_an_export_to_the_published_layout_is_refused(nla, tmp_path):
    with pytest.raises(InputError, match="cross-architecture"):
        nla.save_pretrained(tmp_path / "export", merged=True)
    assert not (tmp_path / "export").exists()


def test_the_warm_start_trains_the_map_and_its_checkpoint_restores_it(nla, tmp_path):
    from nla_lens.testing.synthetic import concept_dataset
    from nla_lens.training import AVWarmStart, WarmStartConfig

    data, texts = concept_dataset(16, D_SUBJECT)
    before = nla.av.input_map.weight.detach().clone()
    config = WarmStartConfig(lr=1e-2, batch_size=4, lora_r=4, checkpoint_every=2, output_dir=str(tmp_path))
    run = AVWarmStart(nla.av, data, texts, config)
    run.train(2, progress=False)
    trained = nla.av.input_map.weight.detach().clone()
    assert (trained - before).abs().max() > 1e-4
    fresh = cross_nla_like(nla)
    resumed = AVWarmStart(fresh.av, data, texts, config, resume_from=tmp_path / "checkpoint-2")
    assert resumed.step_count == 2
    assert torch.equal(fresh.av.input_map.weight, trained)


def cross_nla_like(nla: NLA) -> NLA:
    """A fresh untrained NLA of the same bases (the map back at its initial weights)."""
    return cross_nla(nla.av.cfg.subject_model)


def test_a_grpo_step_trains_the_map_with_the_adapters(nla):
    from nla_lens.testing.synthetic import concept_dataset
    from nla_lens.training import AVWarmStart, GRPOConfig, GRPOTrainer, WarmStartConfig

    data, texts = concept_dataset(48, D_SUBJECT)
    AVWarmStart(nla.av, data, texts, WarmStartConfig(lr=1e-2, batch_size=16)).train(15, progress=False)
    before = nla.av.input_map.weight.detach().clone()
    trainer = GRPOTrainer(nla, data, GRPOConfig(n_vectors=4, group_size=4, max_new_tokens=12, lr=1e-2, seed=0))
    metrics = trainer.step()
    assert metrics["failure_rate"] < 1, "every rollout failed (no advantage to learn from)"
    assert (nla.av.input_map.weight - before).abs().max() > 1e-5
