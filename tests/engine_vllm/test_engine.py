"""VLLMEngine against the AV's own HF generation on the embedded NLA: same tokens, no prefix-cache
leak between vectors, per-row seeds, and weight updates (issue 17)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.vllm, pytest.mark.embedded]

MAX_NEW = 40


@pytest.fixture(scope="module")
def hf_greedy(nla, vectors):
    """The HF reference, computed before vLLM starts (its processes would share the cores)."""
    return nla.av.generate(vectors, max_new_tokens=MAX_NEW)


@pytest.fixture(scope="module")
def engine(nla, hf_greedy):
    from nla_lens.engines import VLLMEngine

    with VLLMEngine(nla.av, enforce_eager=True) as engine:
        yield engine


def test_greedy_equals_hf_token_for_token(nla, engine, vectors, hf_greedy):
    tokens, finished = engine.generate(vectors, max_new_tokens=MAX_NEW)
    hf_tokens, hf_finished = hf_greedy
    assert tokens.shape == hf_tokens.shape and len(tokens) >= 16
    assert torch.equal(tokens, hf_tokens)
    assert torch.equal(finished, hf_finished)
    # The block size caches as much of the prompt before the marker as any size vLLM's CPU attention
    # takes (on the short default prompt, 30 tokens, no whole block: nothing to cache there).
    prefix = nla.av.prompt_ids().tolist().index(nla.av.cfg.tokens.injection_token_id)
    cached = prefix // engine.block_size * engine.block_size
    assert all(prefix // size * size <= cached for size in (32, 64, 96, 128))


def test_prompt_embeds_are_the_hook_path(nla, vectors):
    from nla_lens.engines import prompt_embeds

    av = nla.av
    embeds = prompt_embeds(av, vectors[:3])
    ids = av.prompt_ids()
    marker = ids.tolist().index(av.cfg.tokens.injection_token_id)
    plain = av.model.get_input_embeddings()(ids)
    assert embeds.shape == (3, len(ids), av.d_model)
    assert torch.equal(embeds[:, :marker], plain[None, :marker].expand(3, -1, -1))
    assert torch.allclose(embeds[:, marker].norm(dim=-1), torch.full((3,), av.cfg.injection_scale))
    with torch.no_grad():  # generating from these embeddings with HF equals the hook path
        out = av.model.generate(
            inputs_embeds=embeds[:1],
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=av.tokenizer.pad_token_id,
        )
    assert torch.equal(out[0, -8:], av.generate(vectors[:1], max_new_tokens=8)[0][0])


def test_stop_token_kept_and_padded_like_hf(nla, engine, vectors):
    av = nla.av
    tokens, finished = engine.generate(vectors[:4], max_new_tokens=120)
    hf_tokens, hf_finished = av.generate(vectors[:4], max_new_tokens=120)
    assert finished.any(), "no response finished within 120 tokens; the stop contract is untested"
    assert torch.equal(tokens, hf_tokens) and torch.equal(finished, hf_finished)
    for row, done in zip(tokens.tolist(), finished.tolist()):
        assert av.describe(row)["truncated"] is (not done)


def test_no_prefix_cache_leak_between_vectors(engine, vectors):
    a, b = vectors[3:4], vectors[9:10]
    alone_a, _ = engine.generate(a, max_new_tokens=16)
    alone_b, _ = engine.generate(b, max_new_tokens=16)
    assert not torch.equal(alone_a, alone_b)
    together, _ = engine.generate(torch.cat([a, b]), max_new_tokens=16)
    assert torch.equal(together[0], alone_a[0]) and torch.equal(together[1], alone_b[0])
    again, _ = engine.generate(torch.cat([b, a]), max_new_tokens=16)  # now every block is cached
    assert torch.equal(again[0], alone_b[0]) and torch.equal(again[1], alone_a[0])


def test_sampled_rows_depend_on_their_seed_only(engine, vectors):
    kwargs = dict(max_new_tokens=16, do_sample=True, temperature=1.0)
    batch, _ = engine.generate(vectors[:4], seeds=[11, 12, 13, 14], **kwargs)
    other, _ = engine.generate(torch.stack([vectors[5], vectors[2], vectors[0]]), seeds=[99, 13, 11], **kwargs)
    width = min(other.shape[1], batch.shape[1])  # the pad width follows the batch's longest row
    assert torch.equal(other[1, :width], batch[2, :width]) and torch.equal(other[2, :width], batch[0, :width])
    reseeded, _ = engine.generate(vectors[:1].repeat(4, 1), seeds=[1, 2, 3, 4], **kwargs)
    assert len({tuple(r.tolist()) for r in reseeded}) > 1  # different seeds, different samples
    with pytest.raises(ValueError, match="seeds"):
        engine.generate(vectors[:2], seeds=[1], **kwargs)


def test_update_weights_serves_the_new_weights(nla, engine, vectors):
    av = nla.av
    some = vectors[:4]
    before, _ = engine.generate(some, max_new_tokens=16)
    lora_b = [p for n, p in av.model.named_parameters() if "lora_B" in n]
    originals = [p.detach().clone() for p in lora_b]
    try:
        with torch.no_grad():  # a training step's worth of change, made loud: twice every adapter's update
            for p in lora_b:
                p.mul_(2.0)
        hf_after, _ = av.generate(some, max_new_tokens=16)
        assert not torch.equal(hf_after, before), "doubling the LoRA updates changed nothing in HF either"
        engine.update_weights()
        after, _ = engine.generate(some, max_new_tokens=16)
        assert torch.equal(after, hf_after)
    finally:
        with torch.no_grad():
            for p, original in zip(lora_b, originals):
                p.copy_(original)
        engine.update_weights()
    restored, _ = engine.generate(some, max_new_tokens=16)
    assert torch.equal(restored, before)
