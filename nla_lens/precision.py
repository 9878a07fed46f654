"""Compute precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, decided once from what the hardware does well.

bfloat16 pays only where the hardware multiplies it natively: a CUDA GPU, or an x86 CPU with
AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``). There a bf16 matrix product runs 2-4x an fp32
one at these models' widths; elsewhere bf16 is emulated and slower than fp32. ``"auto"`` picks bf16
on such hardware and fp32 everywhere else. The CPU's flags are read once per process
(:func:`cpu_bf16`); ``NLA_LENS_CPU_BF16=0`` (or ``1``) overrides what they say, e.g. to check the
fp32 path on a bf16-capable machine.

How bf16 is used (:func:`autocast` for passes with gradients, :class:`InferenceCopy` for passes
without): trained weights, optimizer states and losses stay float32; matrix products run in bf16
under ``torch.autocast``, the frozen weights under LoRA adapters held in bf16 for those passes
(:class:`FrozenWeightCast`: the same products without a cast per call); frozen passes that run many small products (token-by-token generation,
the GRPO reference policy) run on a bf16 copy of the weights made once per weight update, because
autocast would cast every fp32 weight again on every call, which at a batch of 32 rows costs more
than the bf16 product saves. bf16 is a recipe choice, not a loss-identical rewrite: the test
``tests/integration/test_precision.py`` states how close the two precisions come.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from nla_lens.errors import InputError

__all__ = [
    "PRECISIONS",
    "FrozenWeightCast",
    "InferenceCopy",
    "autocast",
    "capability",
    "cpu_bf16",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16")

#: CPU flags (``/proc/cpuinfo``) of native bf16 matrix products.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to read, so no claim of native bf16
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16); read once per process.

    ``NLA_LENS_CPU_BF16=0`` or ``=1`` overrides the flags.
    """
    forced = os.environ.get("NLA_LENS_CPU_BF16")
    if forced is not None:
        if forced not in ("0", "1"):
            raise InputError(f"NLA_LENS_CPU_BF16 must be 0 or 1, got {forced!r}.")
        return forced == "1"
    return bool(_cpu_flags() & set(BF16_CPU_FLAGS))


def capability() -> str:
    """One line for benchmark headers: the CPU's bf16 flags, torch's kernel level, threads, the auto choice."""
    flags = sorted(_cpu_flags() & {*BF16_CPU_FLAGS, "amx_tile", "avx512f"})
    forced = os.environ.get("NLA_LENS_CPU_BF16")
    return (
        f"cpu: {' '.join(flags) or 'no bf16/avx512 flags'} (torch kernels {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads); precision='auto' -> {resolve_precision('auto')}"
        + (f" (NLA_LENS_CPU_BF16={forced})" if forced is not None else "")
    )


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` (one of :data:`PRECISIONS`) on ``device``."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if kind == "cpu" and cpu_bf16() else "fp32"


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """``torch.autocast`` in bf16 when ``precision`` resolves to bf16 on ``device``; otherwise nothing.

    We call ``torch.autocast`` directly rather than accelerate's ``mixed_precision``: accelerate
    autocasts only the forward of the module it prepared, and the shared-prefix log-prob passes run
    the module inside that wrapper.
    """
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


class FrozenWeightCast:
    """bf16 copies of a model's frozen ``nn.Linear`` weights, made once and swapped in for autocast passes.

    ``torch.autocast`` casts every weight to bf16 on every call and caches the cast only for
    weights that require grad, so the frozen base layers under LoRA adapters were cast again on
    every forward (a third of a GRPO step's CPU time went to ``aten::copy_``). autocast rounds a
    float32 weight to bf16 exactly as ``Tensor.to`` does, so the products, losses and gradients are
    the same (``tests/integration/test_precision.py``). Weights shared with an ``nn.Embedding`` (a
    tied output head) stay float32: the embedding lookup must keep the residual stream in float32.

    Frozen means frozen: a weight changed after the copies were made (merging adapters into the
    base layers is the one place that does, and it never runs inside :meth:`swapped`) would be
    stale, so the trainers make the copies once, after wrapping with LoRA, and swap them only
    around forward and backward passes.

    Args:
        modules: The models whose frozen weights to copy (each parameter once).
        dtype: The copies' dtype.
    """

    def __init__(self, modules: Iterable[torch.nn.Module], dtype: torch.dtype = torch.bfloat16):
        modules = list(modules)
        embedded = {id(m.weight) for module in modules for m in module.modules() if isinstance(m, torch.nn.Embedding)}
        self.pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        seen: set[int] = set()
        for module in modules:
            for layer in module.modules():
                weight = getattr(layer, "weight", None)
                if (
                    isinstance(layer, torch.nn.Linear)
                    and isinstance(weight, torch.nn.Parameter)
                    and not weight.requires_grad
                    and weight.dtype == torch.float32
                    and id(weight) not in embedded | seen
                ):
                    seen.add(id(weight))
                    self.pairs.append((weight, weight.detach().to(dtype)))

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The bf16 copies in place of the float32 weights for the duration (forward *and* backward:
        autograd reads the weight again in the backward pass)."""
        originals = [param.data for param, _ in self.pairs]
        for param, low in self.pairs:
            param.data = low
        try:
            yield
        finally:
            for (param, _), original in zip(self.pairs, originals, strict=True):
                param.data = original


def _plain_name(name: str) -> str:
    """A peft parameter name as the plain model names it (``base_model.model.`` and ``.base_layer`` dropped)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


class InferenceCopy:
    """A frozen copy of a model in another dtype, with any LoRA adapters folded in, for passes without gradients.

    Generation and reference passes call it like the model. :meth:`refresh` copies the source's
    current weights in (LoRA folded through :func:`~nla_lens.models.adapters.merged_adapters`), so
    after each optimizer step it costs one cast of the weights, not a new model. On a CPU the copy
    uses eager attention: for one query token at a time (decoding) PyTorch's fused CPU attention
    kernel is slower than the plain products (measured on the embedded AV: 1.2-1.5x faster
    generation in bf16).

    Args:
        model: An HF causal LM, optionally a ``peft`` LoRA model (typed ``Any``: on a ``torch.nn.Module``
            their methods read as ``Tensor | Module``).
        dtype: The copy's dtype (``torch.bfloat16``).

    Attributes:
        model: The copy, a plain HF causal LM.
    """

    def __init__(self, model: Any, dtype: torch.dtype):
        source = model.get_base_model() if hasattr(model, "peft_config") else model
        self.dtype = dtype
        # Deep-copy without the adapters' weights: the copy is a plain model of the base's structure.
        with _without_peft_layers(model, source) as plain:
            self.model = copy.deepcopy(plain)
        self.model.to(dtype).eval().requires_grad_(False)
        if next(self.model.parameters()).device.type == "cpu" and hasattr(self.model, "set_attn_implementation"):
            self.model.set_attn_implementation("eager")
        self.refresh(model)

    @torch.no_grad()
    def refresh(self, model: torch.nn.Module) -> None:
        """Copy ``model``'s current weights (adapters folded in) into the copy."""
        from nla_lens.models.adapters import merged_adapters

        own = dict(self.model.named_parameters())
        with merged_adapters(model):
            for name, param in model.named_parameters():
                if "lora_" in name:
                    continue
                target = own.get(_plain_name(name))
                if target is None:
                    raise RuntimeError(f"InferenceCopy: {name} has no counterpart in the copy.")
                target.copy_(param)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


@contextlib.contextmanager
def _without_peft_layers(model: Any, base: Any) -> Iterator[Any]:
    """``base`` with each peft LoRA layer swapped for its base layer for the duration (a deep copy
    of it then holds no adapter); a plain model is yielded as it is."""
    if base is model:
        yield model
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    swapped = []
    for name, module in list(base.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent_name, _, child = name.rpartition(".")
            parent = base.get_submodule(parent_name) if parent_name else base
            setattr(parent, child, module.get_base_layer())
            swapped.append((parent, child, module))
    try:
        yield base
    finally:
        for parent, child, module in swapped:
            setattr(parent, child, module)
