"""LoRA adapters merged while generating (``nla_lens.models.adapters``) change no number.

HF generation folds the AV's adapters into its weights while sampling. These tests hold it to the
unmerged computation: the same tokens (greedy and seeded sampling), the same weights afterwards, the
same GRPO update on a fixed batch; and ``kl_coef=0`` (no reference model, no reference pass) makes
the update of a vanishing KL weight.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nla_lens.models.adapters import mergeable, merged_adapters
from nla_lens.training import GRPOTrainer
from nla_lens.training.grpo import FastPaths
from nla_lens.training.lora import apply_lora


def _lora_av(nla, seed: int = 0):
    """The NLA's AV wrapped in LoRA adapters with non-zero B (a fresh B = 0 would make merging trivial)."""
    torch.manual_seed(seed)
    nla.av.model = apply_lora(nla.av.model, 4)
    for name, p in nla.av.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    return nla.av


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@pytest.mark.parametrize("sampling", [False, True], ids=["greedy", "seeded"])
def test_merged_generation_gives_the_same_tokens_and_restores_the_weights(tiny_nla, sampling):
    av = _lora_av(tiny_nla)
    vectors = torch.randn(6, av.d_model, generator=torch.Generator().manual_seed(1)) * 3
    before = {n: p.detach().clone() for n, p in av.model.named_parameters()}
    kw = dict(max_new_tokens=24, do_sample=sampling, seeds=list(range(6)) if sampling else None)
    merged, _ = av.generate(vectors, merge_adapters=True, **kw)
    plain, _ = av.generate(vectors, merge_adapters=False, **kw)
    assert torch.equal(merged, plain)
    assert not any(layer.merged for layer in _lora_layers(av.model))  # unmerged again
    for name, p in av.model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name], atol=1e-6, rtol=0, msg=name)


def test_merged_logits_match_and_the_comparison_can_fail(tiny_nla):
    """Merged and unmerged forwards agree to float rounding; dropping the adapters instead does not."""
    av = _lora_av(tiny_nla)
    ids = av.prompt_ids()[None]
    with torch.no_grad():
        plain = av.model(input_ids=ids).logits
        with merged_adapters(av.model) as did_merge:
            merged = av.model(input_ids=ids).logits
        with av.model.disable_adapter():
            base = av.model(input_ids=ids).logits
    assert did_merge
    torch.testing.assert_close(merged, plain, atol=1e-5, rtol=0)
    assert (base - plain).abs().max() > 100 * 1e-5


def test_what_is_not_merged(tiny_nla):
    av = tiny_nla.av
    assert not mergeable(av.model)  # no adapters
    with merged_adapters(av.model) as did_merge:
        assert not did_merge
    model = _lora_av(tiny_nla).model
    with model.disable_adapter():
        assert not mergeable(model)  # switched off: merging would add them back
    model.merge_adapter()
    assert not mergeable(model)  # already merged
    model.unmerge_adapter()
    assert mergeable(model)
    with pytest.raises(RuntimeError, match="without gradients"):
        with merged_adapters(model):
            pass  # gradients on and the adapters train


def test_a_grpo_step_is_the_same_with_merged_rollouts(warm_av_nla, same_grpo_update):
    """The AV holds LoRA adapters with non-zero B before GRPO starts: the rollouts fold them in."""
    nla, data = warm_av_nla
    nla = copy.deepcopy(nla)
    _lora_av(nla, seed=3)
    merged, plain = same_grpo_update(nla, data, dict(), dict(fast_paths=FastPaths(merge_adapters=False)))
    assert merged.history["av_grad_norm"].iloc[0] > 0 and merged.history["kl"].iloc[-1] > 0
    assert merged.last_samples.equals(plain.last_samples)  # the same explanations
    assert not any(layer.merged for layer in _lora_layers(merged.nla.av.model))


def test_no_kl_means_no_reference_and_the_update_of_a_vanishing_kl(warm_av_nla, same_grpo_update, tmp_path):
    nla, data = warm_av_nla
    without, vanishing = same_grpo_update(
        nla,
        data,
        dict(kl_coef=0.0, lora_r=4, output_dir=str(tmp_path / "run"), checkpoint_every=2),
        dict(kl_coef=1e-12, lora_r=4),
        columns=("policy_loss", "av_grad_norm", "reward_mean"),
    )
    assert without.reference is None and vanishing.reference is not None
    assert without.history["kl"].isna().all() and (vanishing.history["kl"] > 0).any()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert not (checkpoint / "reference.safetensors").exists()
    GRPOTrainer(copy.deepcopy(nla), data, without.config, resume_from=checkpoint)
