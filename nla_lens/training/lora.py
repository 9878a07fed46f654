"""LoRA through ``peft``: one helper so every trainer adapts models the same way."""

from __future__ import annotations

from typing import Any


def apply_lora(
    model: Any,
    r: int,
    *,
    alpha: int | None = None,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
) -> Any:
    """Wrap an HF model with fresh LoRA adapters (``r``, ``alpha`` default ``2r``), unless it has some.

    Returns:
        A ``peft`` model whose only trainable parameters are the adapters.
    """
    from peft import LoraConfig, get_peft_model

    if hasattr(model, "peft_config"):
        return model
    config = LoraConfig(
        r=r,
        lora_alpha=alpha or 2 * r,
        lora_dropout=dropout,
        target_modules=target_modules,
        exclude_modules=["lm_head"] if target_modules == "all-linear" else None,
    )
    return get_peft_model(model, config)
