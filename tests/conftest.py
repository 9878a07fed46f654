"""Shared fixtures. Tests never reach the network: the Hugging Face hub is switched off."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    config.addinivalue_line("markers", "sae_lens: needs SAELens, which installs only beside transformer-lens 3.9")


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``sae_lens`` where SAELens cannot be imported, naming why."""
    from nla_lens.optional import has_sae_lens, transformer_lens_version

    if has_sae_lens():
        return
    import pytest

    skip = pytest.mark.skip(reason=f"needs sae-lens, which pins transformer-lens<4 (installed: "
                                   f"transformer-lens {transformer_lens_version()}); install nla_lens[sae] on 3.9")
    for item in items:
        if "sae_lens" in item.keywords:
            item.add_marker(skip)
