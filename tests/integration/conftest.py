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


@pytest.fixture()
def tiny_nla():
    """An untrained NLA built on two random 3-block tiny llamas (AV full, AR truncated at K=1)."""
    from nla_lens.models import NLA
    from nla_lens.testing.models import tiny_llama
    from nla_lens.testing.tokenizers import tiny_tokenizer

    av_tok, ar_tok = tiny_tokenizer(), tiny_tokenizer()
    return NLA.untrained("tiny", layer=1, injection_scale=5.0,
                         base_models=((tiny_llama(av_tok), av_tok), (tiny_llama(ar_tok, seed=1), ar_tok)))
