"""Shared-prefix log-probs (``ActivationVerbalizer.logprobs(share_prefix=True)``) equal the full pass.

The prompt before the marker is computed once per batch, the rest once per distinct vector, and the
responses continue from that KV cache. These tests hold it to the plain path (one full prompt +
response pass per row): the same log-probs and gradients on every batch layout and every released
architecture (Gemma-3's sliding-window layers included), the same GRPO update on a fixed batch, a
model whose cache cannot be shared takes the full pass, and the comparison catches a wrong injection.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nla_lens.models.verbalizer import _new_shared_cache, unique_rows
from nla_lens.testing.models import RELEASED_ARCHITECTURES, tiny_llama
from nla_lens.testing.released import tiny_released_pair
from nla_lens.training.grpo import FastPaths
from nla_lens.training.lora import apply_lora

ATOL = 1e-5


def _batch(layout: str, d_model: int, seed: int = 0) -> tuple[torch.Tensor, list[list[int]]]:
    """Vectors ``[N, d]`` in a batch layout and ragged responses (1 to 40 tokens) of random ids."""
    g = torch.Generator().manual_seed(seed)
    distinct = torch.randn(4, d_model, generator=g) * 3
    if layout == "groups":  # GRPO: each vector repeated group_size times, consecutively
        vectors = distinct.repeat_interleave(3, dim=0)
    elif layout == "split_groups":  # a micro-batch that cuts groups
        vectors = distinct.repeat_interleave(3, dim=0)[2:9]
    elif layout == "distinct":  # the AV warm start
        vectors = distinct
    elif layout == "shuffled":  # duplicates in any order
        vectors = distinct[torch.tensor([2, 0, 2, 1, 3, 0, 2, 3])]
    else:
        raise ValueError(layout)
    lengths = torch.randint(1, 41, (len(vectors),), generator=g).tolist()
    lengths[0] = 40  # the longest reaches past Gemma-3's sliding window (64) with the prompt
    return vectors, [torch.randint(5, 90, (n,), generator=g).tolist() for n in lengths]


def _logprobs_and_grads(av, vectors, responses, share_prefix):
    """Log-probs ``[N, L]`` and the gradients of a weighted sum of them (every weight the text reaches)."""
    av.model.zero_grad(set_to_none=True)
    logp, mask = av.logprobs(vectors, responses, share_prefix=share_prefix)
    weights = torch.linspace(-1.0, 2.0, logp.numel()).view_as(logp)
    (logp * weights).sum().backward()
    # Gemma-3's wrapper holds a vision tower that text never reaches: no gradient there.
    grads = {n: p.grad.clone() for n, p in av.model.named_parameters() if p.grad is not None}
    return logp.detach(), mask, grads


def _assert_same(a, b, *, atol=ATOL, grad_rtol=1e-4):
    """Equal masks, log-probs within ``atol``, each weight's gradient within ``grad_rtol`` of its norm."""
    (logp_a, mask_a, grads_a), (logp_b, mask_b, grads_b) = a, b
    assert torch.equal(mask_a, mask_b)
    torch.testing.assert_close(logp_a, logp_b, atol=atol, rtol=0)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        error, norm = float((grads_a[name] - grads_b[name]).norm()), float(grads_b[name].norm())
        assert error <= grad_rtol * norm + 1e-7, f"{name}: gradients differ by {error:.3g} (norm {norm:.3g})"


@pytest.mark.parametrize("layout", ["groups", "split_groups", "distinct", "shuffled"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_shared_prefix_equals_the_full_pass(tiny_nla, layout, lora):
    av = tiny_nla.av
    if lora:
        torch.manual_seed(0)
        av.model = apply_lora(av.model, 4)
        for name, p in av.model.named_parameters():  # non-zero B, so every adapter weight has a gradient
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
    vectors, responses = _batch(layout, av.d_model)
    assert av._marker_position() > 1  # a real prefix to share
    _assert_same(
        _logprobs_and_grads(av, vectors, responses, share_prefix=True),
        _logprobs_and_grads(av, vectors, responses, share_prefix=False),
    )


@pytest.mark.parametrize("architecture", RELEASED_ARCHITECTURES)
def test_shared_prefix_equals_the_full_pass_on_released_architectures(architecture):
    av = tiny_released_pair(architecture, seed=2).av
    assert _new_shared_cache(av.model) is not None  # this architecture takes the shared path
    vectors, responses = _batch("shuffled", av.d_model, seed=1)
    _assert_same(
        _logprobs_and_grads(av, vectors, responses, share_prefix=True),
        _logprobs_and_grads(av, vectors, responses, share_prefix=False),
    )


def test_single_token_responses(tiny_nla):
    vectors, _ = _batch("groups", tiny_nla.av.d_model)
    responses = [[7]] * len(vectors)  # only the prompt's last position is read
    with torch.no_grad():
        shared, _ = tiny_nla.av.logprobs(vectors, responses)
        full, _ = tiny_nla.av.logprobs(vectors, responses, share_prefix=False)
    torch.testing.assert_close(shared, full, atol=ATOL, rtol=0)


def test_the_comparison_catches_a_wrong_injection(tiny_nla):
    """The equality above is not vacuous: the same batch with its vectors permuted (each response read
    under another vector) differs from the full pass by far more than the tolerance."""
    av = tiny_nla.av
    vectors, responses = _batch("shuffled", av.d_model)
    permuted = vectors[torch.tensor([1, 0, 3, 2, 4, 7, 6, 5])]
    assert not torch.equal(permuted, vectors)
    with torch.no_grad():
        full, _ = av.logprobs(vectors, responses, share_prefix=False)
        wrong, _ = av.logprobs(permuted, responses, share_prefix=True)
    assert (wrong - full).abs().max() > 100 * ATOL


def test_unique_rows_inverts_any_order():
    vectors, _ = _batch("shuffled", 8)
    vectors.requires_grad_(True)
    unique, inverse = unique_rows(vectors)
    assert len(unique) == 4 and torch.equal(unique[inverse], vectors)
    unique.sum().backward()  # indexed from the input: differentiable
    assert vectors.grad is not None


def test_a_model_whose_cache_cannot_be_shared_takes_the_full_pass(tiny_nla):
    """Rotary frequencies that depend on the pass length (dynamic NTK scaling) would make cached
    pieces differ from one pass: such a model is refused the shared path, and the result is the same."""
    av = tiny_nla.av
    base = tiny_llama(av.tokenizer, n_layers=2, d_model=av.d_model, seed=4)
    assert _new_shared_cache(base) is not None
    config = copy.deepcopy(base.config)
    config.rope_parameters = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    config.max_position_embeddings = 16  # the prompt alone is longer: scaling kicks in
    av.model = type(base)(config).eval()
    assert _new_shared_cache(av.model) is None
    vectors, responses = _batch("groups", av.d_model)
    with torch.no_grad():
        shared, _ = av.logprobs(vectors, responses)
        full, _ = av.logprobs(vectors, responses, share_prefix=False)
    assert torch.equal(shared, full)


# -- one GRPO step -------------------------------------------------------------------------------
def test_a_grpo_step_is_the_same_with_and_without_the_shared_prefix(warm_av_nla, same_grpo_update):
    nla, data = warm_av_nla
    shared, _ = same_grpo_update(nla, data, dict(lora_r=4), dict(lora_r=4, fast_paths=FastPaths(share_prefix=False)))
    assert shared.history["av_grad_norm"].iloc[0] > 0 and shared.history["kl"].iloc[-1] > 0  # a real update, then a KL


# -- the embedded model --------------------------------------------------------------------------
@pytest.mark.embedded
def test_shared_prefix_equals_the_full_pass_on_the_embedded_model():
    from nla_lens.models import NLA

    av = NLA.untrained("smollm2-135m").av
    torch.manual_seed(0)
    av.model = apply_lora(av.model, 4)
    vectors, _ = _batch("groups", av.d_model)
    vectors = vectors[:6] * 80
    g = torch.Generator().manual_seed(5)
    responses = [torch.randint(100, 40000, (n,), generator=g).tolist() for n in (24, 9, 24, 17, 1, 12)]
    _assert_same(
        _logprobs_and_grads(av, vectors, responses, share_prefix=True),
        _logprobs_and_grads(av, vectors, responses, share_prefix=False),
        atol=1e-4,  # 30 layers and a 49k-token softmax: ~2e-5 measured
    )
