"""LoRA adapters folded into their weights for passes that train no adapter.

A ``peft`` LoRA layer computes ``W x + s B (A x)``: three matrix products and a scaled add per
adapted matrix. Merged, it computes ``(W + s B A) x``: one. Generation trains no adapter, so
``ActivationVerbalizer.generate`` runs merged (peft's own ``merge_adapter``/``unmerge_adapter``, as
TRL does around its vLLM weight sync): on 2 CPU cores the shipped NLA generates 1.21x faster one
vector at a time and 1.05x in batches of 32 (``benchmarks/bench_verbalize.py --pretrained``).
Unmerging subtracts the same delta it added, so each weight comes back within a float ulp
(``tests/integration/test_merged_adapters.py`` holds the tokens and weights to the unmerged ones).

Only plain LoRA layers over floating-point weights are merged: a quantized base (4-bit, 8-bit) would
be re-quantized, a lossy round trip, so such a model keeps computing its adapters separately.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["mergeable", "merged_adapters"]


def mergeable(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a ``peft`` model whose LoRA adapters are active, unmerged and foldable.

    ``False`` for a plain model, a model already merged, one whose adapters are switched off
    (``disable_adapter()``), one with other tuner types, or one whose adapted weights are not
    floating point (quantized).
    """
    if not hasattr(model, "peft_config"):
        return False
    from peft.tuners.lora import LoraLayer
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        return False
    for layer in layers:
        if not isinstance(layer, LoraLayer) or layer.merged or getattr(layer, "disable_adapters", False):
            return False
        weight = getattr(layer.get_base_layer(), "weight", None)
        if weight is None or not weight.dtype.is_floating_point:
            return False
    return True


@contextlib.contextmanager
def merged_adapters(model: Any) -> Iterator[bool]:
    """Inside the block, ``model``'s LoRA adapters are folded into its weights (when
    :func:`mergeable`; otherwise nothing changes). Yields whether it merged.

    ``model`` is any ``torch.nn.Module``; a ``peft`` model's ``merge_adapter`` and ``unmerge_adapter``
    are called (typed ``Any``: on a ``Module`` those read as ``Tensor | Module``).

    For passes without gradients only: a merged layer computes no adapter, so no adapter
    gradient. Raises if gradients are on and an adapter would train.
    """
    if not mergeable(model):
        yield False
        return
    if torch.is_grad_enabled() and any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n):
        raise RuntimeError("merged_adapters is for passes without gradients (use torch.no_grad()).")
    model.merge_adapter()
    try:
        yield True
    finally:
        model.unmerge_adapter()
