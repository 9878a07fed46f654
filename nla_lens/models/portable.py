"""Exported folders that transformers 4.57 (the published serving stack's pin) and 5.x read the same way.

Owns the rewrites :mod:`nla_lens.models.export` applies to a saved folder:

- **Rotary settings.** transformers 5 writes them only as ``rope_parameters``; 4.57 ignores that field
  and silently falls back to its defaults (``rope_theta`` 10,000), so an AR reconstructs 10-27 % off.
  :func:`legacy_rope_fields` writes the fields 4.57 reads (``rope_theta``, ``rope_scaling`` and, for
  Gemma-3, ``rope_local_base_freq``) beside ``rope_parameters``, which transformers 5 keeps reading.
- **Tokenizer config.** transformers 5 names ``TokenizersBackend`` in ``tokenizer_config.json``, a class
  4.57 does not know, and lists added special tokens as ``extra_special_tokens`` (a name 4.57 reads as
  a mapping); both lines read ``PreTrainedTokenizerFast`` with ``additional_special_tokens`` from the
  same ``tokenizer.json``.
- **The AV's pre-fill.** nla_lens's AV prompt adds the sidecar's ``av_prefill`` (``<explanation>``)
  after the chat template. :func:`chat_template_with_prefill` puts it at the end of the template's
  generation prompt, so any client that applies the chat template sends nla_lens's prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nla_lens.errors import CheckpointError

__all__ = [
    "LEGACY_TOKENIZER_CLASS",
    "chat_template_with_prefill",
    "legacy_rope_fields",
    "write_legacy_config",
    "write_legacy_tokenizer_config",
]

LEGACY_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
"""The tokenizer class both transformers lines build from ``tokenizer.json`` alone."""

_UNKNOWN_TO_457 = ("TokenizersBackend",)
_LAYER_TYPED = ("full_attention", "sliding_attention")


def _scaling(params: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The 4.57 ``rope_scaling`` of one ``rope_parameters`` entry (``None`` for plain RoPE)."""
    scaling = {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor")}
    if scaling.get("rope_type", "default") == "default" and set(scaling) <= {"rope_type"}:
        return None
    if "rope_type" not in scaling:
        raise CheckpointError(f"config.json {where}.rope_parameters has scaling settings but no rope_type: {params}.")
    return scaling


def legacy_rope_fields(config: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """The rotary fields transformers 4.57 reads, derived from a text config's ``rope_parameters``.

    Args:
        config: One (text) config as a dict, as ``config.json`` holds it.
        where: Its place in the file, for error messages.

    Returns:
        The fields ``rope_theta`` and, where the config has them, ``rope_scaling``,
        ``rope_local_base_freq`` and ``partial_rotary_factor``, as a dict; ``{}`` when the config
        has no ``rope_parameters`` (transformers 4.x wrote it; it already holds the legacy fields).

    Raises:
        CheckpointError: Settings 4.57 cannot express (a scaled rope on Gemma-3's sliding layers).
    """
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or not params:
        return {}
    out: dict[str, Any] = {}
    if set(params) & set(_LAYER_TYPED):  # per layer type (Gemma-3): full layers global, sliding local
        full = params.get("full_attention") or {}
        sliding = params.get("sliding_attention") or {}
        if _scaling(sliding, where) is not None:
            raise CheckpointError(
                f"config.json {where}: the sliding-attention layers use a scaled rope ({sliding}), which "
                "transformers 4.57 cannot express (it scales only the full-attention layers)."
            )
        if "rope_theta" in full:
            out["rope_theta"] = full["rope_theta"]
        if "rope_theta" in sliding:
            out["rope_local_base_freq"] = sliding["rope_theta"]
        scaling = _scaling(full, where)
    else:
        if "rope_theta" in params:
            out["rope_theta"] = params["rope_theta"]
        if "partial_rotary_factor" in params:
            out["partial_rotary_factor"] = params["partial_rotary_factor"]
        scaling = _scaling(params, where)
    if scaling is not None:
        out["rope_scaling"] = scaling
    return out


def write_legacy_config(folder: Path) -> None:
    """Add the 4.57 rotary fields beside ``rope_parameters`` in ``folder/config.json`` (and its
    ``text_config``, for a multimodal wrapper such as Gemma-3's); a no-op without a config."""
    path = folder / "config.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    changed = False
    for where, config in (("config", data), ("text_config", data.get("text_config"))):
        if isinstance(config, dict):
            fields = legacy_rope_fields(config, where)
            changed |= any(config.get(k) != v for k, v in fields.items())
            config.update(fields)
    if changed:
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_legacy_tokenizer_config(folder: Path) -> None:
    """Name a tokenizer class transformers 4.57 knows in ``folder/tokenizer_config.json``.

    Only a class 4.57 lacks is replaced, and only where ``tokenizer.json`` (which that class is built
    from) is present; a no-op otherwise.
    """
    path = folder / "tokenizer_config.json"
    if not path.is_file() or not (folder / "tokenizer.json").is_file():
        return
    data = json.loads(path.read_text())
    before = dict(data)
    if data.get("tokenizer_class") in _UNKNOWN_TO_457:
        data["tokenizer_class"] = LEGACY_TOKENIZER_CLASS
    if isinstance(data.get("extra_special_tokens"), list) and "additional_special_tokens" not in data:
        # transformers 5 writes the added special tokens as a list under this name; 4.57 reads a
        # mapping of named tokens there (a list crashes its tokenizer) and the list under this one.
        data["additional_special_tokens"] = data.pop("extra_special_tokens")
    if data != before:
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def chat_template_with_prefill(template: str, prefill: str) -> str:
    """``template`` with ``prefill`` written after its generation prompt.

    The generation prompt is the last thing every chat template renders, so the pre-fill is
    appended at the end, inside ``{% if add_generation_prompt %}``: rendering without a generation
    prompt (a finished conversation) is unchanged. Applying it twice adds the pre-fill once.

    Args:
        template: A Jinja chat template.
        prefill: The text the assistant turn starts with (the sidecar's ``av_prefill``).
    """
    block = "{% if add_generation_prompt %}{{ " + json.dumps(prefill) + " }}{% endif %}"
    if not prefill or template.endswith(block):
        return template
    return template + block
