"""VLLMEngine on Gemma-3-270M's real weights (``nla_lens[gemma]``), the second embedded model: greedy
generation from the injected prompt embeddings equals the AV's own HF generation token for token.

Gemma scales its token embeddings by √d inside the embedding module and reads a plain-text prompt
(a base model), so this is the path where vLLM's embedding input could differ from HF's.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.vllm, pytest.mark.embedded]

LAYER = 12
MAX_NEW = 32


@pytest.fixture(scope="module")
def gemma_vectors() -> torch.Tensor:
    """``[8, 640]`` activations of Gemma-3-270M at ``blocks.12.hook_resid_post``, from 4 corpus documents."""
    import nla_lens

    bridge = nla_lens.load_subject("gemma3-270m")
    docs = nla_lens.load_corpus(max_documents=4)
    data = nla_lens.extract_activations(bridge, docs, layer=LAYER, positions_per_doc=2, max_length=64, progress=False)
    return data.vectors[:8].float()


@pytest.fixture(scope="module")
def gemma_nla(gemma_vectors):
    import nla_lens

    return nla_lens.NLA.untrained(
        "gemma3-270m", layer=LAYER, injection_scale=float(gemma_vectors.norm(dim=-1).median())
    )


def test_gemma_greedy_equals_hf_token_for_token(gemma_nla, gemma_vectors):
    from nla_lens.engines import VLLMEngine

    av = gemma_nla.av
    hf_tokens, hf_finished = av.generate(gemma_vectors, max_new_tokens=MAX_NEW)  # before vLLM takes the cores
    with VLLMEngine(av, enforce_eager=True) as engine:
        tokens, finished = engine.generate(gemma_vectors, max_new_tokens=MAX_NEW)
    assert len(set(map(tuple, hf_tokens.tolist()))) > 1, "every vector gave the same text; the vectors are not read"
    assert torch.equal(tokens, hf_tokens)
    assert torch.equal(finished, hf_finished)
