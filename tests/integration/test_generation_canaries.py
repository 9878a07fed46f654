"""Canaries: greedy generation through every subject backend equals HF ``generate`` token for token.

transformers 5.24 renamed the KV-cache argument inside its decoder layers, and TransformerLens's
``TransformerBridge.generate`` (3.9 and 4.3 alike) silently kept an empty cache from then on:
garbage after the first token, no error. nla_lens generates through TransformerLens subjects with
its own loop (``steered_generate``), so these tests pin that loop, and the nnsight path, to what the
model really writes: the next silent upstream break fails a test named after its cause. A researcher
calls ``bridge.generate`` itself, so it is pinned too: the locked environments hold transformers below
5.24 for it (pyproject.toml says why), and ``scripts/latest.sh`` shows when a newer release breaks it.
"""

from __future__ import annotations

import pytest
import torch

from nla_lens.analysis import steered_generate
from nla_lens.models.verbalizer import stop_token_ids
from nla_lens.optional import has_hooked_transformer

PROMPTS = ["The old sailor tied the rope to the", "Paris is the capital of", "def add(a, b):\n    return"]
NEW_TOKENS = 16


def _cut(tokens: list[int], tokenizer) -> list[int]:
    stops = set(stop_token_ids(tokenizer))
    return next((tokens[:i] for i, t in enumerate(tokens) if t in stops), tokens)


@torch.no_grad()
def _hf_greedy_text(hf_model, tokenizer, prompt: str) -> str:
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    out = hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(_cut(out[0, ids.shape[1] :].tolist(), tokenizer), skip_special_tokens=True)


@torch.no_grad()
def _tl_greedy_text(model, tokenizer, ids: torch.Tensor) -> str:
    """TransformerLens's own KV-cached greedy ``generate`` (bridge or HookedTransformer), decoded."""
    out = model.generate(
        ids,
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        stop_at_eos=False,
        use_past_kv_cache=True,
        return_type="tokens",
        verbose=False,
    )
    return tokenizer.decode(_cut(out[0, ids.shape[1] :].tolist(), tokenizer), skip_special_tokens=True)


@pytest.mark.embedded
@pytest.mark.parametrize("prompt", PROMPTS)
def test_transformer_bridge_generation_equals_hf_generate(bridge, embedded_hf, prompt):
    hf_model, tokenizer = embedded_hf
    want = _hf_greedy_text(hf_model, tokenizer, prompt)
    assert len(want) > 10  # a real continuation, so equality says something
    assert steered_generate(bridge, prompt, None, layer=20, max_new_tokens=NEW_TOKENS) == want


@pytest.mark.embedded
@pytest.mark.parametrize("with_hook", [False, True], ids=["plain", "with-hook"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_transformer_lens_own_bridge_generate_equals_hf_generate(bridge, embedded_hf, prompt, with_hook):
    # TransformerLens's own KV-cached generation, as a researcher calls it (with and without a hook
    # attached); transformers 5.24 broke it silently, so the locks hold transformers below 5.24.
    hf_model, tokenizer = embedded_hf
    want = _hf_greedy_text(hf_model, tokenizer, prompt)
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    seen: list[int] = []

    def record(activation, hook):
        seen.append(activation.shape[1])
        return activation

    hooks = [("blocks.20.hook_resid_post", record)] if with_hook else []
    with bridge.hooks(fwd_hooks=hooks):
        got = _tl_greedy_text(bridge, tokenizer, ids)
    assert len(want) > 10
    assert got == want
    assert len(seen) == (NEW_TOKENS if with_hook else 0)  # the hook ran on every forward pass


@pytest.mark.embedded
@pytest.mark.parametrize("prompt", PROMPTS)
def test_nnsight_generation_equals_hf_generate(embedded_hf, prompt):
    from nnsight.modeling.transformers import TransformersModel

    hf_model, tokenizer = embedded_hf
    subject = TransformersModel(hf_model, tokenizer=tokenizer)
    got = steered_generate(subject, prompt, None, layer=20, max_new_tokens=NEW_TOKENS)
    assert got == _hf_greedy_text(hf_model, tokenizer, prompt)


@pytest.mark.skipif(
    not has_hooked_transformer(),
    reason="HookedTransformer is absent from transformer-lens 4.x "
    "(removed in 4.0); the 4.x refusal is tested in tests/unit/test_optional.py",
)
def test_hooked_transformer_generation_equals_its_own_kv_cache_generate():
    # No HF twin of a HookedTransformer exists offline, so its own cached generate is the reference.
    from nla_lens.testing.models import tiny_hooked_transformer
    from nla_lens.testing.tokenizers import tiny_tokenizer

    model = tiny_hooked_transformer(tiny_tokenizer(), n_layers=2, n_ctx=64)
    ids = model.tokenizer("The cat sat on the", add_special_tokens=False, return_tensors="pt")["input_ids"]
    text = _tl_greedy_text(model, model.tokenizer, ids)
    assert steered_generate(model, "The cat sat on the", None, layer=1, max_new_tokens=NEW_TOKENS) == text
