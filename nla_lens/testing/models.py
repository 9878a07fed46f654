"""Tiny offline models for tests and smoke runs (random weights, milliseconds).

:func:`tiny_subject` is the subject model of tests and smoke-mode notebooks on both TransformerLens
lines (a tiny llama booted into a ``TransformerBridge``); :func:`tiny_hooked_transformer` exists only
on the 3.9 line and raises a clear error on 4.x. :func:`tiny_nla` is the test NLA (the suite's
``tiny_nla`` fixture is its default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


def tiny_llama(
    tokenizer,
    *,
    n_layers: int = 3,
    d_model: int = 32,
    n_heads: int = 4,
    seed: int = 0,
    n_ctx: int = 512,
    init_std: float = 0.02,
):
    """A random ``LlamaForCausalLM`` sized for unit tests, matching ``tokenizer``'s vocabulary.

    Args:
        tokenizer: The tokenizer the model will be used with (``len(tokenizer)`` = vocab size).
        n_layers: Number of decoder blocks.
        d_model: Hidden size.
        n_heads: Attention heads (``d_model`` must be divisible by it).
        seed: Seed of the weight initialisation.
        n_ctx: Longest context (``max_position_embeddings``).
        init_std: Standard deviation of the weight initialisation (``initializer_range``).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=n_ctx,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
        initializer_range=init_std,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


def tiny_subject(tokenizer, *, n_layers: int = 2, d_model: int = 32, n_ctx: int = 128, seed: int = 0):
    """A random tiny llama in a TransformerLens ``TransformerBridge``: the test subject on both TL lines.

    Booted offline from the model object (``TransformerBridge.boot_transformers(name, hf_model=...)``
    reads the config from it), with raw HF numerics: ``blocks.K.hook_resid_post`` equals the llama's
    ``hidden_states[K+1]``. Weights are drawn with std ``1/sqrt(d_model)`` (not HF's 0.02), so
    logits span a few nats as a trained model's do and steering effects are measurable.

    Args:
        tokenizer: Its tokenizer (``len(tokenizer)`` = vocab size); SmolLM2-style, no BOS prepended.
        n_layers: Number of blocks.
        d_model: Residual width (a multiple of 8; heads of width 8).
        n_ctx: Context length.
        seed: Seed of the weight initialisation.
    """
    from transformer_lens.model_bridge import TransformerBridge

    from nla_lens.subjects.adapters import remember_name

    hf_model = tiny_llama(
        tokenizer,
        n_layers=n_layers,
        d_model=d_model,
        n_heads=d_model // 8,
        seed=seed,
        n_ctx=n_ctx,
        init_std=d_model**-0.5,
    )
    bridge = TransformerBridge.boot_transformers(
        "nla-lens-tiny-llama", hf_model=hf_model, tokenizer=tokenizer, device="cpu"
    )
    bridge.cfg.default_prepend_bos = False
    remember_name(bridge, "nla-lens-tiny-llama")
    return bridge.eval()


def tiny_hooked_transformer(tokenizer, *, n_layers: int = 2, d_model: int = 32, n_ctx: int = 128, seed: int = 0):
    """A random TransformerLens ``HookedTransformer`` subject (heads of width 8, GELU MLP of 2x).

    Args:
        tokenizer: Its tokenizer (``len(tokenizer)`` = vocab size); SmolLM2-style, no BOS prepended.
        n_layers: Number of blocks.
        d_model: Residual width (a multiple of 8).
        n_ctx: Context length.
        seed: Seed of the weight initialisation.
    """
    from nla_lens.optional import hooked_transformer

    HookedTransformer, HookedTransformerConfig = hooked_transformer("tiny_hooked_transformer")
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_ctx=n_ctx,
        d_head=8,
        n_heads=d_model // 8,
        d_mlp=2 * d_model,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        default_prepend_bos=False,
        seed=seed,
    )
    return HookedTransformer(cfg, tokenizer=tokenizer).eval()


def tiny_nla(layer: int = 1, *, n_layers: int = 3, d_model: int = 32, seed: int = 0, hook_name: str | None = None):
    """An untrained NLA of two random tiny llamas reading ``blocks.{layer}.hook_resid_post`` (milliseconds).

    The test NLA of the whole suite. Each half has its own :func:`~nla_lens.testing.tokenizers.tiny_tokenizer`
    and ``injection_scale`` is 5.0. The AV has ``n_layers`` blocks and seed ``seed``; the AR is built with
    ``max(n_layers, layer + 1)`` blocks and seed ``seed + 1``, then truncated to ``layer + 1`` by
    :meth:`NLA.untrained <nla_lens.models.NLA.untrained>`. The weights depend on nothing but these
    arguments (the global random state is left untouched), so equal arguments give equal NLAs and
    NLAs at different layers differ when their seeds do (e.g. ``seed=2 * layer``).

    Args:
        layer: Extraction layer K of the subject model.
        n_layers: Blocks of the AV (and of the AR's base before truncation).
        d_model: Residual width of both halves (and of the vectors it reads).
        seed: Seed of the AV's weights; the AR's is ``seed + 1``.
        hook_name: TransformerLens hook name (default ``blocks.{layer}.hook_resid_post``).
    """
    from nla_lens.models import NLA
    from nla_lens.testing.tokenizers import tiny_tokenizer

    av_tok, ar_tok = tiny_tokenizer(), tiny_tokenizer()
    av = tiny_llama(av_tok, n_layers=n_layers, d_model=d_model, seed=seed)
    ar = tiny_llama(ar_tok, n_layers=max(n_layers, layer + 1), d_model=d_model, seed=seed + 1)
    return NLA.untrained(
        "tiny", layer=layer, injection_scale=5.0, hook_name=hook_name, base_models=((av, av_tok), (ar, ar_tok))
    )


#: Architectures of the released NLAs that :func:`tiny_causal_lm` builds.
RELEASED_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "gemma3_text", "gemma3")


def tiny_causal_lm(architecture: str, tokenizer, *, n_layers: int = 2, d_model: int = 32, seed: int = 0):
    """A random tiny model of one released NLA's architecture (offline, milliseconds).

    Args:
        architecture: ``"llama"`` (Llama-3.3), ``"qwen2"`` (Qwen2.5), ``"gemma3_text"`` (Gemma-3's
            language model) or ``"gemma3"`` (the multimodal wrapper the Gemma-3 AVs are saved as:
            ``Gemma3ForConditionalGeneration``, sizes in ``config.text_config``).
        tokenizer: Its tokenizer (``len(tokenizer)`` = vocab size).
        n_layers: Decoder blocks.
        d_model: Hidden size (heads of width 8).
        seed: Seed of the weight initialisation.
    """
    import transformers

    sizes = dict(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=d_model // 8,
        num_key_value_heads=d_model // 16,
        head_dim=8,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    model_class: type[PreTrainedModel]
    config: PretrainedConfig
    if architecture == "llama":
        model_class, config = transformers.LlamaForCausalLM, transformers.LlamaConfig(**sizes)
    elif architecture == "qwen2":
        model_class, config = transformers.Qwen2ForCausalLM, transformers.Qwen2Config(**sizes)
    elif architecture in ("gemma3_text", "gemma3"):
        text = transformers.Gemma3TextConfig(**sizes, sliding_window=64, query_pre_attn_scalar=8)
        if architecture == "gemma3_text":
            model_class, config = transformers.Gemma3ForCausalLM, text
        else:
            vision = transformers.SiglipVisionConfig(
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=28,
                patch_size=14,
            )
            config = transformers.Gemma3Config(
                text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=len(tokenizer) + 10
            )
            model_class = transformers.Gemma3ForConditionalGeneration
    else:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {RELEASED_ARCHITECTURES}.")
    return _seeded_model(model_class, config, seed).eval()


def _seeded_model(model_class: type[PreTrainedModel], config: PretrainedConfig, seed: int) -> PreTrainedModel:
    """``model_class(config)`` with its weights initialised from ``seed`` (the global RNG left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return model_class(config)
