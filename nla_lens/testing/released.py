"""Offline stand-ins for the released NLAs: tiny random pairs of the same architecture, written in
the published layout (separate AV and AR repos, published sidecar fields, no pre-fill) into a local
Hugging Face hub cache and registered by name, so the GPU code path runs in tests and smoke mode."""

from __future__ import annotations

from pathlib import Path

from nla_lens.models import NLA, ActivationReconstructor, ActivationVerbalizer
from nla_lens.models.registry import register_pretrained
from nla_lens.schema import NLAMeta
from nla_lens.testing.hub import add_to_hub_cache
from nla_lens.testing.models import tiny_causal_lm
from nla_lens.testing.tokenizers import tiny_tokenizer_with_bos

__all__ = ["stand_in_for_release", "tiny_released_pair"]


def tiny_released_pair(
    architecture: str, *, layer: int = 1, d_model: int = 32, injection_scale: float = 7.0, seed: int = 0
) -> NLA:
    """An untrained NLA whose halves have a released pair's architecture (BOS-adding tokenizers).

    Args:
        architecture: One of :data:`nla_lens.testing.models.RELEASED_ARCHITECTURES`; a Gemma-3
            wrapper AV (``"gemma3"``) gets a Gemma-3 text AR, as released.
        layer: Extraction layer K (the AR keeps K+1 of its 2+ blocks).
        d_model: Width.
        injection_scale: The AV's injection norm.
        seed: Seeds the two models (AV ``seed``, AR ``seed + 1``).
    """
    tok_av, tok_ar = tiny_tokenizer_with_bos(), tiny_tokenizer_with_bos()
    n_layers = max(2, layer + 1)
    av_model = tiny_causal_lm(architecture, tok_av, n_layers=n_layers, d_model=d_model, seed=seed)
    ar_arch = "gemma3_text" if architecture == "gemma3" else architecture
    ar_model = tiny_causal_lm(ar_arch, tok_ar, n_layers=n_layers, d_model=d_model, seed=seed + 1)
    fields = dict(layer=layer, subject_model=f"tiny-{architecture}")
    av_meta = NLAMeta.for_tokenizer(tok_av, role="av", d_model=d_model, injection_scale=injection_scale, **fields)
    ar_meta = NLAMeta.for_tokenizer(tok_ar, role="ar", d_model=d_model, injection_scale=None, **fields)
    return NLA(
        ActivationVerbalizer(av_model, tok_av, av_meta), ActivationReconstructor.from_base(ar_model, tok_ar, ar_meta)
    )


def stand_in_for_release(architecture: str, cache_dir: str | Path, **kwargs) -> str:
    """Write :func:`tiny_released_pair` as two hub repos in ``cache_dir`` and register it.

    Returns:
        The registry name (``"tiny-<architecture>-L<K>"``) that ``NLA.from_pretrained(name,
        cache_dir=cache_dir)`` loads offline, as it would a released pair.
    """
    nla = tiny_released_pair(architecture, **kwargs)
    layer = nla.layer
    staging = Path(cache_dir) / "staging" / architecture
    nla.save_pretrained(staging)
    repos = {role: f"tiny-org/nla-{architecture}-L{layer}-{role}" for role in ("av", "ar")}
    for role, repo in repos.items():
        add_to_hub_cache(staging / role, cache_dir, repo)
    name = f"tiny-{architecture}-L{layer}"
    register_pretrained(
        name,
        av=repos["av"],
        ar=repos["ar"],
        subject_model=f"tiny-{architecture}",
        hook_name=nla.hook_name,
        layer=layer,
        d_model=nla.d_model,
        notes="offline stand-in of a released pair (random weights)",
    )
    return name
