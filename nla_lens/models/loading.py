"""Loading model folders: base LMs by name, safetensors-only checks, PEFT adapter folders.

Shared by the verbalizer, the reconstructor and the NLA pair so that all three refuse pickle
checkpoints the same way and resolve the embedded base model the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nla_lens.errors import CheckpointError, InputError
from nla_lens.schema import NLAMeta
from nla_lens.subjects.embedded import embedded_model, is_embedded_name, load_embedded_hf

ADAPTER_CONFIG = "adapter_config.json"
_PICKLE_FILES = (
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.bin",
    "value_head.bin",
    "value_head.pt",
)


def lm_shape(model_or_name: Any) -> tuple[int, int]:
    """``(hidden_size, num_hidden_layers)`` of a loaded HF model, or of a model by name: an embedded
    model from its registry entry (no load), anything else from its config (hub id or folder)."""
    if not isinstance(model_or_name, str):
        config = text_config(model_or_name)
        return int(config.hidden_size), int(config.num_hidden_layers)
    entry = embedded_model(model_or_name)
    if entry is not None:
        return entry.d_model, entry.n_layers
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_or_name)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.hidden_size), int(config.num_hidden_layers)


def load_base_lm(
    name_or_path: str,
    *,
    dtype: torch.dtype | str | None = torch.float32,
    cache_dir: Any = None,
    device_map: Any = None,
    n_blocks: int | None = None,
):
    """Load an HF causal LM and its tokenizer; the embedded name loads offline.

    Args:
        name_or_path: A hub id, a folder, or an embedded model's name (``"smollm2-135m"``, ``"gemma3-270m"``).
        dtype: Parameter dtype; ``None`` or ``"auto"``: the dtype the checkpoint was saved in.
        cache_dir: Cache root of the embedded model.
        device_map: accelerate placement (``"auto"``, an explicit map); weights are loaded straight
            onto their devices in ``dtype``, never as a full fp32 copy in CPU memory first.
        n_blocks: Build only the first ``n_blocks`` blocks (an AR's K+1): the rest is never loaded.

    Returns:
        ``(model, tokenizer)`` with the model in eval mode.
    """
    if is_embedded_name(name_or_path):
        model, tokenizer = load_embedded_hf(cache_dir, name=name_or_path)
        return model.to(dtype if isinstance(dtype, torch.dtype) else torch.float32), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {} if n_blocks is None else {"num_hidden_layers": int(n_blocks)}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype or "auto", device_map=device_map, use_safetensors=True, **extra
        )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as exc:
        raise CheckpointError(f"Could not load base model {name_or_path!r}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def text_config(model: Any) -> Any:
    """The config holding the language model's sizes: ``config.get_text_config()`` (a multimodal
    wrapper such as Gemma-3's keeps ``hidden_size`` in ``text_config``), else ``config`` itself."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def check_model_folder(path: Path, *, role: str) -> None:
    """Refuse folders that are missing, or hold only pickled weights (never unpickled here)."""
    if not path.is_dir():
        raise CheckpointError(f"No {role} checkpoint folder at {str(path)!r}.")
    names = {p.name for p in path.iterdir()}
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    pickles = sorted(n for n in names if n in _PICKLE_FILES)
    if pickles and not has_safetensors:
        raise CheckpointError(
            f"{path} holds only pickled weights ({', '.join(pickles)}); nla_lens loads safetensors "
            "only, because unpickling can run arbitrary code. Convert it where you trust it: "
            "model.save_pretrained(path, safe_serialization=True)."
        )
    if not has_safetensors:
        raise CheckpointError(f"{path} has no .safetensors weights; is it a {role} checkpoint folder?")


SEALED_BASE_PREFIX = "nla_lens AR adapters over a truncated base"
"""Start of the ``base_model_name_or_path`` an AR adapter folder carries (:func:`seal_adapter_base`)."""


def seal_adapter_base(path: Path, n_blocks: int | None) -> str | None:
    """Make an AR adapter folder's ``adapter_config.json`` name a base no reader can resolve.

    transformers (``AutoModelForCausalLM``) and peft (``AutoPeftModelForCausalLM``) follow
    ``base_model_name_or_path`` to the base and build all its blocks, silently, although the adapters
    belong to the first K+1 only. The name written instead is neither a folder nor a hub id, so both
    fail loudly, saying what the folder is; nla_lens reads the real base from the sidecar's
    ``provenance.base_model``.

    Args:
        path: The adapter folder (``adapter_config.json`` written).
        n_blocks: The K+1 blocks the adapters apply to (named in the sealed text).

    Returns:
        The base the adapter config named before (``None`` if it was already sealed or named none):
        record it as ``provenance.base_model``.
    """
    config = path / ADAPTER_CONFIG
    data = json.loads(config.read_text())
    base = data.get("base_model_name_or_path")
    if isinstance(base, str) and base.startswith(SEALED_BASE_PREFIX):
        return None
    blocks = f"its first {n_blocks} blocks" if n_blocks else "its first K+1 blocks"
    data["base_model_name_or_path"] = (
        f"{SEALED_BASE_PREFIX} ({blocks}; the base is provenance.base_model in nla_meta.yaml): load with "
        "nla_lens.ActivationReconstructor.from_pretrained, or run nla-lens export for a full folder"
    )
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return base or None


def adapter_base(path: Path, provenance: dict[str, Any]) -> str | None:
    """Base model of a PEFT adapter folder, or ``None`` if ``path`` holds a full model.

    The sidecar's ``provenance.base_model`` wins (it names the embedded model portably, and an AR
    adapter folder's own config names no loadable base: :func:`seal_adapter_base`); otherwise the
    adapter config's ``base_model_name_or_path``.

    Raises:
        CheckpointError: An adapter folder that names no base model.
    """
    config = path / ADAPTER_CONFIG
    if not config.is_file():
        return None
    base = provenance.get("base_model") or json.loads(config.read_text()).get("base_model_name_or_path")
    if not base or base.startswith(SEALED_BASE_PREFIX):
        raise CheckpointError(
            f"{path} holds LoRA adapters but names no base model: set provenance.base_model "
            "in its nla_meta.yaml (e.g. 'smollm2-135m')."
        )
    return base


def recorded_blocks(path: Path) -> int | None:
    """Blocks an AR folder's ``config.json`` keeps (K+1: a full AR, or an adapter folder's truncated
    base), if it has one; the text config's for a multimodal wrapper."""
    config = path / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    blocks = data.get("num_hidden_layers") or (data.get("text_config") or {}).get("num_hidden_layers")
    return int(blocks) if blocks else None


def load_lm_folder(
    path: Path,
    provenance: dict[str, Any],
    *,
    dtype: torch.dtype | str | None = None,
    device_map: Any = None,
    is_trainable: bool = False,
    n_blocks: int | None = None,
):
    """Load the causal LM of an AV/AR folder: a full HF model, or PEFT adapters over a named base.

    The folder's own tokenizer is used when it has one; an adapter folder may leave it out and
    use its base model's (the shipped NLAs do, to stay small).

    Args:
        path: The folder (already checked with :func:`check_model_folder`).
        provenance: The sidecar's provenance (``base_model`` names the base of adapters).
        dtype: Parameter dtype; ``None``: the dtype the checkpoint (or the adapters' base) was saved in.
        device_map: accelerate placement, e.g. ``"auto"`` (weights load straight onto their devices).
        is_trainable: Load adapters trainable (to continue training).
        n_blocks: Truncate the base to this many blocks before adding adapters (an AR).

    Returns:
        ``(model, tokenizer)``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = adapter_base(path, provenance)
    recorded = recorded_blocks(path) if base is not None else None
    if recorded is not None and n_blocks is None and NLAMeta.load(path).role == "ar":
        raise CheckpointError(
            f"{path} holds LoRA adapters for a base truncated to {recorded} blocks (its config.json), "
            "so it is an AR and cannot load as a full model. Load it with "
            "ActivationReconstructor.from_pretrained or NLA.from_pretrained; for a full folder other "
            "tools read, run nla-lens export."
        )
    if recorded is not None and n_blocks is not None and recorded != n_blocks:
        raise CheckpointError(
            f"{path} records a base of {recorded} blocks (config.json) but its sidecar keeps "
            f"{n_blocks} (extraction layer {n_blocks - 1}); fix extraction.layer or the config."
        )
    if base is not None:
        from peft import PeftModel

        model, tokenizer = load_base_lm(base, dtype=dtype, device_map=device_map, n_blocks=n_blocks)
        if n_blocks is not None and text_config(model).num_hidden_layers != n_blocks:
            model = truncate_causal_lm(model, n_blocks)  # the embedded base loads whole from its cache
        model = PeftModel.from_pretrained(model, path, is_trainable=is_trainable)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype or "auto", device_map=device_map, use_safetensors=True
        )
        tokenizer = None
    if (path / "tokenizer_config.json").is_file() or tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def decoder_stack(causal_lm: nn.Module) -> nn.Module:
    """The decoder stack inside a causal LM (``model`` for llama/qwen, ``transformer`` for gpt2)."""
    for name in ("model", "transformer"):
        inner = getattr(causal_lm, name, None)
        if isinstance(inner, nn.Module):
            return inner
    raise CheckpointError(f"Cannot find the decoder stack of {type(causal_lm).__name__}.")


def _layers_attr(inner: nn.Module) -> str:
    for name in ("layers", "h", "blocks"):
        if isinstance(getattr(inner, name, None), nn.ModuleList):
            return name
    raise CheckpointError(f"Cannot find the list of blocks of {type(inner).__name__}.")


def truncate_causal_lm(causal_lm: nn.Module, n_blocks: int) -> nn.Module:
    """Keep the first ``n_blocks`` blocks of a causal LM in place and update its config."""
    inner = decoder_stack(causal_lm)
    name = _layers_attr(inner)
    layers = getattr(inner, name)
    if not 1 <= n_blocks <= len(layers):
        raise InputError(f"Cannot keep {n_blocks} blocks of a model with {len(layers)}.")
    setattr(inner, name, nn.ModuleList(list(layers)[:n_blocks]))
    config = text_config(causal_lm)
    config.num_hidden_layers = n_blocks
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:n_blocks]
    return causal_lm
