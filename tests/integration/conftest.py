"""Session-wide embedded model fixtures (loaded once: ~3 s from the cache, ~20 s the first time)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def embedded_hf():
    from nla_lens.subjects.embedded import load_embedded_hf

    # Eager attention, as the TransformerBridge computes it: hidden states then agree bit for bit
    # (sdpa kernels round differently, ~2e-4 absolute at layer 20).
    return load_embedded_hf(attn_implementation="eager")


@pytest.fixture(scope="session")
def bridge():
    from nla_lens import load_subject

    return load_subject("smollm2-135m")


@pytest.fixture(scope="session")
def documents():
    from nla_lens import load_corpus

    return load_corpus(max_documents=12)
