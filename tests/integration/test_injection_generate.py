"""The injection hook inside Hugging Face ``generate`` on a tiny random llama: with the KV cache, the
hook injects on the prefill only, exactly as generating from the injected ``inputs_embeds`` does.

The injection functions themselves are tested without a model in ``tests/unit/test_injection.py``.
"""

from __future__ import annotations

import pytest
import torch

from nla_lens.injection import choose_marker, find_marker_positions, inject, make_injection_hook, marker_neighbors
from nla_lens.testing.tokenizers import tiny_tokenizer


def test_hook_in_hf_generate_matches_generation_from_injected_embeds() -> None:
    """Cached HF generation: the hook injects on the prefill only, like inputs_embeds would."""
    transformers = pytest.importorskip("transformers")
    tok = tiny_tokenizer()
    marker = choose_marker(tok)
    template = "Say <concept>{injection_char}</concept> now"
    left, right = marker_neighbors(tok, template, marker.char, marker.token_id)
    content = template.format(injection_char=marker.char)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=True, add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=None,
        pad_token_id=tok.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    vec = torch.randn(1, 16) * 50
    kwargs = dict(max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(ids), pad_token_id=tok.pad_token_id)
    hook = make_injection_hook(vec, marker_id=marker.token_id, left_id=left, right_id=right, injection_scale=3.0)
    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        with torch.no_grad():
            hooked = model.generate(ids, **kwargs)[0, ids.shape[1] :]
    finally:
        handle.remove()
    with torch.no_grad():
        embeds = inject(
            model.get_input_embeddings()(ids), find_marker_positions(ids, marker.token_id, left, right), vec, 3.0
        )
        direct = model.generate(inputs_embeds=embeds, **kwargs)[0, -6:]
    assert hooked.tolist() == direct.tolist()
    assert hook.n_injections == 1 and hook.n_passthrough == 5
