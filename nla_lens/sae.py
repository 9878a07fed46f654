"""The SAE interface nla_lens reads (:class:`SAELike`), and the checks every place that accepts an SAE runs.

Any object with these four things works wherever nla_lens takes an SAE (the views, the explorer,
the analyses), on both TransformerLens lines:

- ``encode(x)``: activations ``[..., d_in]`` -> feature activations ``[..., d_sae]``;
- ``W_dec``: decoder directions, a tensor ``[d_sae, d_in]`` (its device and dtype are the SAE's);
- ``cfg.d_in``: the input width;
- the hook it reads: ``cfg.metadata.hook_name`` (SAELens 6) or ``cfg.hook_name``.

The first three are :class:`SAELike` (a ``typing.Protocol``, for annotations); the hook name, read
from either place, is checked when the SAE is used (:func:`check_sae`). nla_lens reads nothing else
(no ``W_enc``, ``decode`` or biases). A SAELens ``SAE`` has all four (the first-class route on
TransformerLens 3.9, where SAELens installs); :class:`nla_lens.testing.TinySAE` is a twenty-line
example for 4.x, where it does not.
"""

from __future__ import annotations

from typing import Protocol

import torch

from nla_lens.errors import InputError, SAEInterfaceError

__all__ = ["SAEConfigLike", "SAELike", "check_sae", "sae_device_dtype", "sae_hook_name", "validate_sae_interface"]


class SAEConfigLike(Protocol):
    """The part of an SAE's ``cfg`` nla_lens types: the input width. The hook name (``metadata.hook_name``
    in SAELens 6, else ``hook_name``) is read with ``getattr`` (:func:`sae_hook_name`)."""

    @property
    def d_in(self) -> int:
        """Width of the activations the SAE encodes."""
        ...


class SAELike(Protocol):
    """What nla_lens reads from an SAE (this module's docstring); a SAELens ``SAE`` and
    :class:`~nla_lens.testing.TinySAE` have it. Annotations only: :func:`validate_sae_interface`
    checks an object at run time, naming what it lacks."""

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder directions ``[d_sae, d_in]``, on the SAE's device and in its dtype."""
        ...

    @property
    def cfg(self) -> SAEConfigLike:
        """The SAE's config (``d_in``, and the hook name it was trained on)."""
        ...

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of activations ``x`` ``[..., d_in]``."""
        ...


def sae_hook_name(sae: SAELike) -> str | None:
    """The hook an SAE was trained on: ``sae.cfg.metadata.hook_name`` (SAELens 6) or ``cfg.hook_name``."""
    cfg = getattr(sae, "cfg", None)
    metadata = getattr(cfg, "metadata", None)
    name = getattr(metadata, "hook_name", None) if metadata is not None else None
    return name or getattr(cfg, "hook_name", None)


def validate_sae_interface(sae: object) -> None:
    """Refuse an object that lacks the SAE interface (module docstring), naming what is missing.

    Raises:
        SAEInterfaceError: No callable ``encode``, no 2-D tensor ``W_dec``, or no integer
            ``cfg.d_in`` matching ``W_dec``'s width.
    """
    missing = []
    if not callable(getattr(sae, "encode", None)):
        missing.append("encode(x) -> feature activations")
    w_dec = getattr(sae, "W_dec", None)
    if not (isinstance(w_dec, torch.Tensor) and w_dec.ndim == 2):
        missing.append("W_dec, a tensor [d_sae, d_in]")
    d_in = getattr(getattr(sae, "cfg", None), "d_in", None)
    if not isinstance(d_in, int):
        missing.append("cfg.d_in, the input width")
    if missing:
        raise SAEInterfaceError(
            f"{type(sae).__name__} is not usable as an SAE: it lacks {'; '.join(missing)}. Pass a SAELens SAE "
            "(TransformerLens 3.9, pip install 'nla_lens[sae]') or any object with encode, W_dec, cfg.d_in and "
            "cfg.hook_name (see nla_lens.sae; nla_lens.testing.TinySAE is an example)."
        )
    if isinstance(w_dec, torch.Tensor) and w_dec.shape[1] != d_in:  # always a tensor here (checked above)
        raise SAEInterfaceError(
            f"The SAE's W_dec has shape {tuple(w_dec.shape)} but cfg.d_in={d_in}; W_dec must be [d_sae, d_in]."
        )


def check_sae(sae: SAELike, *, d_model: int, hook_name: str | None, what: str = "the NLA") -> None:
    """Refuse an SAE that lacks the interface or does not read the vectors ``what`` reads.

    Args:
        sae: A SAELens ``SAE`` or any object with the interface of this module.
        d_model: Width of the vectors (``nla.d_model``).
        hook_name: Hook of the vectors (``nla.hook_name``).
        what: How to name the other side in messages.

    Raises:
        SAEInterfaceError: The object lacks the interface.
        InputError: ``sae.cfg.d_in != d_model``, the SAE's hook differs from ``hook_name``, or the
            SAE records no hook at all. The message names both sides.
    """
    validate_sae_interface(sae)
    d_in = int(sae.cfg.d_in)
    if d_in != int(d_model):
        raise InputError(
            f"The SAE reads d_in={d_in} vectors but {what} reads d_model={d_model} vectors; "
            f"use an SAE trained on {what}'s hook ({hook_name})."
        )
    sae_hook = sae_hook_name(sae)
    if sae_hook is None:
        raise InputError(
            f"The SAE records no hook name, so it cannot be checked against {what}'s hook "
            f"{hook_name!r}. If it was trained there, set sae.cfg.metadata.hook_name = {hook_name!r} "
            f"(SAELens) or sae.cfg.hook_name = {hook_name!r}."
        )
    if hook_name is not None and sae_hook != hook_name:
        raise InputError(
            f"The SAE was trained on hook {sae_hook!r} but {what} reads hook {hook_name!r}; "
            f"its features would describe other vectors. Use an SAE trained on {hook_name!r}."
        )


def sae_device_dtype(sae: SAELike) -> tuple[torch.device, torch.dtype]:
    """Where the SAE's weights live and their dtype (read from ``W_dec``)."""
    return sae.W_dec.device, sae.W_dec.dtype
