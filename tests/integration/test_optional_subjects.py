"""The two TransformerLens lines on a tiny subject: the SAELens-only calls name the extra and the line,
and ``tiny_subject`` is a ``TransformerBridge`` with raw HF numerics on both lines.

The model-free checks of the optional packages are in ``tests/unit/test_optional.py``.
"""

from __future__ import annotations

import pytest

from nla_lens.errors import MissingDependencyError
from nla_lens.optional import has_sae_lens, sae_lens
from nla_lens.testing.tokenizers import tiny_tokenizer


def test_sae_lens_only_calls_name_the_extra_and_the_line(tmp_path):
    from nla_lens.testing.models import tiny_subject
    from nla_lens.training.sae import load_sae, train_embedded_sae

    if has_sae_lens():
        assert sae_lens().__name__ == "sae_lens"
        return
    for call in (
        lambda: load_sae(tmp_path),
        lambda: train_embedded_sae(
            tiny_subject(tiny_tokenizer()),
            ["The cat sat on the mat."],
            hook_name="blocks.1.hook_resid_post",
            cache_dir=tmp_path,
        ),
    ):
        with pytest.raises(MissingDependencyError) as info:
            call()
        message = str(info.value)
        assert "nla_lens[sae]" in message and "transformer-lens<4" in message and "nla_lens.sae" in message


def test_tiny_subject_is_a_bridge_with_raw_hf_numerics():
    import torch

    from nla_lens.testing.models import tiny_subject

    bridge = tiny_subject(tiny_tokenizer(), n_layers=2)
    ids = torch.tensor([[5, 6, 7, 8]])
    _, cache = bridge.run_with_cache(ids, names_filter="blocks.0.hook_resid_post")
    hidden = bridge.original_model(ids, output_hidden_states=True).hidden_states[1]
    assert torch.equal(cache["blocks.0.hook_resid_post"], hidden)
    assert type(bridge).__name__ == "TransformerBridge" and not bridge.cfg.default_prepend_bos
