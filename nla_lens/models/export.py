"""Exporting an NLA as full folders in the published layout, for the published tools to read.

Owns :func:`export_merged`: it writes ``path/av`` and ``path/ar`` as full Hugging Face model
folders (LoRA adapters merged into copies of the live models, never the live models themselves),
each with its tokenizer and an ``nla_meta.yaml`` whose provenance no longer names a base model.
The AR folder is the published AR layout: ``config.json`` with ``num_hidden_layers = K + 1``,
the truncated weights with the original final norm, and ``value_head.safetensors``.

Why this exists: the published tools read full model folders only. A LoRA adapter folder has no
weights or tokenizer for them, and a LoRA AR folder whose adapter points at the full-depth base is
silently built as an untruncated model.

The folders read the same on transformers 4.57 (the published serving stack's pin) as on 5.x
(:mod:`nla_lens.models.portable`: legacy rotary fields, a tokenizer class both lines know), the AV's
chat template ends its generation prompt with the sidecar's ``av_prefill`` (a client that only applies
the chat template sends nla_lens's AV prompt, token for token), and the AR's sidecar records
``tokens.critic_suffix_ids``.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nla_lens.atomic import atomic_folder
from nla_lens.errors import InputError
from nla_lens.injection import chat_template_ids
from nla_lens.models.portable import chat_template_with_prefill, write_legacy_config, write_legacy_tokenizer_config
from nla_lens.models.reconstructor import ActivationReconstructor
from nla_lens.schema import SIDECAR_NAME, NLAMeta

if TYPE_CHECKING:
    from nla_lens.models.nla import NLA
    from nla_lens.models.verbalizer import ActivationVerbalizer

__all__ = ["export_merged"]

EXPORTED_FROM = "exported_from"
"""Provenance key recording what the exported folder was made from (``"lora"`` or ``"full"``)."""


def export_merged(nla: NLA, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``nla`` as two full published-layout folders, ``path/av`` and ``path/ar``.

    LoRA adapters are merged into deep copies of the live models (the live NLA keeps its adapters
    and keeps training or explaining unchanged); a merge needs memory for one extra copy of each
    half. Weights are saved as safetensors in the dtype the live models have. The pair is built
    beside ``path`` and renamed into place, so an interrupted export leaves nothing partial.

    Args:
        nla: The NLA to export (its halves may be PEFT models or full models).
        path: The folder to create.
        overwrite: Replace ``path`` if it is a non-empty folder (its old content is deleted).

    Returns:
        ``path``, holding ``av/`` and ``ar/``.

    Raises:
        InputError: ``path`` (or a folder above it) exists as a file, or ``path`` is a non-empty
            folder and ``overwrite`` is false; or the NLA is cross-architecture.
    """
    for half in (nla.av, nla.ar):
        if half.cfg.cross_architecture or half.cfg.kept_blocks is not None:
            # Refused rather than approximated: a published client injects the subject's vector,
            # rescaled, as the AV's own embedding row and reads a square [d, d] AR head, so the layout
            # has no place for the input map (it acts before the rescaling, which no weight can absorb)
            # or for an AR of another depth than K + 1.
            raise InputError(
                f"This NLA is cross-architecture (subject width {nla.d_model}; AV width {nla.av.cfg.lm_width}, "
                f"AR width {nla.ar.cfg.lm_width}), and the published layout cannot carry its learned input map "
                "or its AR's width and depth: published clients would inject the subject's vector into another "
                "width. Save it with nla.save_pretrained(path) (nla_lens's layout, which records both) instead."
            )
    path = Path(path).expanduser()
    _check_target(path, overwrite=overwrite)
    with atomic_folder(path) as tmp:
        for folder in (_export_av(nla.av, tmp / "av"), _export_ar(nla.ar, tmp / "ar")):
            write_legacy_config(folder)
            write_legacy_tokenizer_config(folder)
    return path


def _check_target(path: Path, *, overwrite: bool) -> None:
    """Refuse targets that cannot hold the export, or whose content the export would delete."""
    if path.exists() and not path.is_dir():
        raise InputError(
            f"Cannot export into {str(path)!r}: it exists as a file. Pass a folder path "
            "(it is created; it will hold av/ and ar/)."
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"Cannot export into {str(path)!r}: {str(parent)!r} is a file, not a folder.")
            break
    # The atomic swap replaces the whole folder, so an unrelated folder's files would be lost.
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(
            f"Cannot export into {str(path)!r}: the folder is not empty and exporting replaces "
            "its whole content. Choose a new folder, or pass overwrite=True (--overwrite)."
        )


def _merged_copy(model: Any) -> tuple[Any, bool]:
    """A full model to save: LoRA merged into a deep copy for a PEFT model, else ``model`` itself
    (an HF causal LM, typed ``Any`` as its HF and peft methods read as ``Tensor | Module`` on a ``Module``).

    Returns:
        ``(model, merged)``, ``merged`` telling whether adapters were merged.
    """
    if hasattr(model, "peft_config"):
        # merge_and_unload rewrites the modules it is called on: work on a copy so the live
        # model keeps its adapters (and stays trainable).
        return copy.deepcopy(model).merge_and_unload(), True
    return model, False


def _exported_meta(meta: NLAMeta, *, merged: bool) -> NLAMeta:
    """The sidecar of an exported full folder: provenance without ``base_model``.

    ``provenance.base_model`` tells the loader which base to put adapters on; a full folder has
    no base, so the name moves to ``merged_base_model`` (kept as a record only, read by nothing).
    """
    provenance = copy.deepcopy(meta.provenance)
    base = provenance.pop("base_model", None)
    if merged:
        provenance[EXPORTED_FROM] = "lora"
        if base:
            provenance["merged_base_model"] = base
    else:
        provenance.setdefault(EXPORTED_FROM, "full")  # a re-export keeps the first record
    return dataclasses.replace(copy.deepcopy(meta), provenance=provenance)


def _export_av(av: ActivationVerbalizer, folder: Path) -> Path:
    """Write the AV as a full HF folder: weights, tokenizer, sidecar."""
    model, merged = _merged_copy(av.model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    # An adapter folder may leave its tokenizer out (the shipped NLA does); the published
    # tools load it from the model folder, so it is always written here.
    _prefilled_tokenizer(av).save_pretrained(folder)
    _exported_meta(av.cfg, merged=merged).save(folder / SIDECAR_NAME)
    return folder


def _prefilled_tokenizer(av: ActivationVerbalizer) -> Any:
    """The AV's tokenizer with its pre-fill in the chat template's generation prompt (a copy).

    Clients that apply the chat template (``add_generation_prompt=True``) then send exactly
    ``av.prompt_ids()``. Where rendering the pre-fill inside the template would tokenize differently
    from nla_lens's prompt (a merge across the boundary), the template is left as it is, with a
    warning: the sidecar's ``av_prefill`` still records the pre-fill.
    """
    if av.cfg.av_format == "plain":
        return _plain_chat_tokenizer(av)
    template = getattr(av.tokenizer, "chat_template", None)
    if not av.prefill or not isinstance(template, str):
        return av.tokenizer
    tokenizer = copy.deepcopy(av.tokenizer)
    tokenizer.chat_template = chat_template_with_prefill(template, av.prefill)
    content = av.cfg.av_prompt()
    if chat_template_ids(tokenizer, content) != av.prompt_ids().tolist():
        warnings.warn(
            f"The AV's pre-fill {av.prefill!r} tokenizes differently inside its chat template than after "
            "it, so the exported chat template is left without it: clients must append "
            "prompt_templates.av_prefill (nla_meta.yaml) to the rendered prompt themselves.",
            stacklevel=3,
        )
        return av.tokenizer
    return tokenizer


#: The chat template an exported plain-prompt AV carries (a base model has none): the BOS, the one
#: message's text and a newline, as :func:`nla_lens.injection.av_prompt_ids` renders it, then the
#: generation prompt, which is the pre-fill.
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}{{ prefill }}{% endif %}"
)


def _plain_chat_tokenizer(av: ActivationVerbalizer) -> Any:
    """A copy of a plain-prompt AV's tokenizer with a chat template that renders exactly its prompt,
    so the published clients (which apply a chat template) send what nla_lens sends."""
    tokenizer = copy.deepcopy(av.tokenizer)
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE.replace("{{ prefill }}", av.prefill.replace("{", "{{ '{' }}"))
    content = av.cfg.av_prompt()
    if chat_template_ids(tokenizer, content) != av.prompt_ids().tolist():
        raise InputError(
            "This plain-prompt AV's prompt cannot be written as a chat template that renders the same tokens "
            "(its pre-fill merges with the text before it); the published layout cannot carry it."
        )
    return tokenizer


def _export_ar(ar: ActivationReconstructor, folder: Path) -> Path:
    """Write the AR in the published AR layout, through the reconstructor's own full-model save."""
    backbone, merged = _merged_copy(ar.backbone)
    meta = _exported_meta(ar.cfg, merged=merged)
    meta = dataclasses.replace(meta, tokens=dataclasses.replace(meta.tokens, critic_suffix_ids=ar.suffix_ids()))
    # A reconstructor around the merged backbone writes exactly the published layout (config with
    # K+1 blocks, weights plus final norm, head, tokenizer, sidecar). Its __init__ finds the final
    # norm already replaced by the identity, so the live AR's saved norm weights are handed over.
    # Without a merge the backbone is the live one: __init__ only re-sets its identity lm_head.
    full = ActivationReconstructor(backbone, ar.tokenizer, meta, copy.deepcopy(ar.value_head), max_length=ar.max_length)
    dtype = next(backbone.parameters()).dtype  # the norm was set aside before any later cast
    full._final_norm_state = {k: v.to(dtype) for k, v in ar._final_norm_state.items()}
    return full.save_pretrained(folder)
