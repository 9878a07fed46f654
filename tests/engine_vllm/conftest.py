"""The vLLM tier: one engine per module on the shipped embedded NLA's AV (fp32), real vectors.

Run in the vLLM environment (locks/vllm.txt, ``.venv-vllm``); elsewhere every test here skips,
naming the package. vLLM's engine process is spawned, so it is started once per module (~20 s
eager on a CPU) and closed at the end.
"""

from __future__ import annotations

import pytest
import torch

N_VECTORS = 16


@pytest.fixture(scope="session")
def nla():
    import nla_lens

    return nla_lens.NLA.from_pretrained("smollm2-135m-L20", dtype=torch.float32)


@pytest.fixture(scope="session")
def vectors(nla) -> torch.Tensor:
    """``[16, 576]`` activations of the embedded subject at the NLA's hook, from 8 corpus documents."""
    import nla_lens

    bridge = nla_lens.load_subject("smollm2-135m")
    docs = nla_lens.load_corpus(max_documents=N_VECTORS // 2)
    data = nla_lens.extract_activations(bridge, docs, nla.hook_name, positions_per_doc=2, max_length=64, progress=False)
    assert len(data.vectors) >= N_VECTORS
    return data.vectors[:N_VECTORS].float()
