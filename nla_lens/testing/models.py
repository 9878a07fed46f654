"""Tiny offline HF causal LMs for tests and smoke runs (random weights, milliseconds)."""

from __future__ import annotations

import torch


def tiny_llama(tokenizer, *, n_layers: int = 3, d_model: int = 32, n_heads: int = 4, seed: int = 0):
    """A random ``LlamaForCausalLM`` sized for unit tests, matching ``tokenizer``'s vocabulary.

    Args:
        tokenizer: The tokenizer the model will be used with (``len(tokenizer)`` = vocab size).
        n_layers: Number of decoder blocks.
        d_model: Hidden size.
        n_heads: Attention heads (``d_model`` must be divisible by it).
        seed: Seed of the weight initialisation.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=2 * d_model,
        num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_heads,
        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()
