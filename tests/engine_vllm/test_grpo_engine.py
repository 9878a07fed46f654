"""GRPO with ``engine="vllm"``: vLLM samples the rollouts, torch trains, and after each optimizer
step the engine serves the new weights (its greedy output equals the HF AV's after the update)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.vllm, pytest.mark.embedded]


@pytest.fixture(scope="module")
def trained(vectors):
    import nla_lens
    from nla_lens.training import GRPOConfig, GRPOTrainer

    nla = nla_lens.NLA.from_pretrained("smollm2-135m-L20", dtype=torch.float32, is_trainable=True)
    bridge = nla_lens.load_subject("smollm2-135m")
    data = nla_lens.extract_activations(
        bridge, nla_lens.load_corpus(max_documents=8), nla.hook_name, positions_per_doc=2, max_length=64, progress=False
    )
    del bridge
    probe = vectors[:6]
    before_tokens, _ = nla.av.generate(probe, max_new_tokens=32)
    before_weights = {k: v.detach().clone() for k, v in nla.av.model.named_parameters() if v.requires_grad}
    engine = nla.av.start_engine("vllm", enforce_eager=True)  # the trainer's rollouts use this engine
    trainer = GRPOTrainer(
        nla,
        data,
        GRPOConfig(n_vectors=4, group_size=4, max_new_tokens=64, lr=5e-3, ar_lr=1e-4, engine="vllm", seed=0),
    )
    metrics = trainer.step()
    yield nla, probe, before_tokens, before_weights, metrics, trainer, engine
    nla.av.close_engines()


def test_the_step_trains_the_av_with_vllm_rollouts(trained):
    nla, _, _, before_weights, metrics, trainer, _ = trained
    changed = max(
        float((p.detach() - before_weights[k]).abs().max())
        for k, p in nla.av.model.named_parameters()
        if p.requires_grad
    )
    assert metrics["failure_rate"] < 1, "every rollout failed (no advantage to learn from)"
    assert changed > 1e-4
    assert metrics["sync_seconds"] > 0.05 and metrics["generate_seconds"] > 0  # a reload takes ~1 s
    assert len(trainer.last_samples) == 16 and trainer.last_samples["explanation"].str.len().gt(0).any()


def test_the_engine_serves_the_updated_weights(trained):
    nla, probe, before_tokens, _, _, _, engine = trained
    after_hf, _ = nla.av.generate(probe, max_new_tokens=32)
    assert not torch.equal(after_hf, before_tokens), "the update did not change any greedy output; raise lr"
    # The engine object itself, not av.engine("vllm") (which would sync again): the step's own
    # push after the optimizer step is what the next rollout sees.
    after_engine, _ = engine.generate(probe, max_new_tokens=32)
    assert torch.equal(after_engine, after_hf)
