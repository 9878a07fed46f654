"""An NLA on Gemma-3-270M's real weights (``nla_lens[gemma]``): a base model, so a plain-text AV prompt.

The injected input must equal the published construction (embedding rows × √d, then the marker row
replaced by the vector rescaled to ``injection_scale``), the prompt must hold the BOS exactly once
and no chat markup, the plain format must survive a save and load, and an export to the published
layout must render the same prompt through a chat template, as the published clients do.
"""

from __future__ import annotations

import math

import pytest
import torch

from nla_lens.errors import CheckpointError
from nla_lens.injection import chat_template_ids
from nla_lens.models import NLA
from nla_lens.schema import NLAMeta

pytestmark = pytest.mark.embedded

SCALE = 14000.0  # about the median norm at blocks.12.hook_resid_post


@pytest.fixture(scope="module")
def gemma_nla():
    return NLA.untrained("gemma3-270m", layer=12, injection_scale=SCALE)


def test_the_av_prompt_is_plain_text_after_one_bos(gemma_nla):
    av = gemma_nla.av
    ids = av.prompt_ids()
    assert av.cfg.av_format == "plain" and gemma_nla.ar.cfg.av_format == "plain"
    assert ids[0].item() == av.tokenizer.bos_token_id
    assert (ids == av.tokenizer.bos_token_id).sum().item() == 1
    text = av.tokenizer.decode(ids)
    content = av.cfg.av_template.format(injection_char=av.cfg.tokens.injection_char)
    assert text == f"{av.tokenizer.bos_token}{content}\n{av.prefill}"


def test_the_injected_input_equals_the_published_construction(gemma_nla):
    av = gemma_nla.av
    ids = av.prompt_ids()[None].repeat(2, 1)
    vectors = torch.randn(2, 640, generator=torch.Generator().manual_seed(0)) * 9000
    seen = {}
    with av.injecting(vectors):
        handle = av.model.get_input_embeddings().register_forward_hook(lambda m, a, out: seen.update(out=out))
        with torch.no_grad():
            av.model(input_ids=ids)
        handle.remove()
    weight = av.model.get_input_embeddings().weight
    want = weight[ids] * torch.tensor(math.sqrt(640), dtype=weight.dtype)  # Gemma scales after the lookup
    want[:, av._marker_position()] = vectors / vectors.norm(dim=-1, keepdim=True) * SCALE
    relative = (seen["out"] - want).norm(dim=-1) / want.norm(dim=-1)
    assert relative.max().item() <= 1e-6


def test_the_plain_format_survives_save_load_and_the_chat_format_is_not_written(gemma_nla, tmp_path):
    gemma_nla.save_pretrained(tmp_path / "nla")
    back = NLA.from_pretrained(tmp_path / "nla")
    assert back.av.cfg.av_format == "plain"
    assert torch.equal(back.av.prompt_ids(), gemma_nla.av.prompt_ids())
    chat = NLAMeta.from_dict({**gemma_nla.av.cfg.to_dict(), "prompt_templates": {"av": "x {injection_char} y"}})
    assert chat.av_format == "chat" and "av_format" not in chat.to_dict()["prompt_templates"]
    with pytest.raises(CheckpointError, match="av_format"):
        NLAMeta.from_dict({**gemma_nla.av.cfg.to_dict(), "prompt_templates": {"av_format": "markdown"}})


def test_an_export_renders_the_same_prompt_through_a_chat_template(gemma_nla, tmp_path):
    from transformers import AutoTokenizer

    from nla_lens.models.export import export_merged

    path = export_merged(gemma_nla, tmp_path / "published")
    tokenizer = AutoTokenizer.from_pretrained(path / "av")
    content = gemma_nla.av.cfg.av_template.format(injection_char=gemma_nla.av.cfg.tokens.injection_char)
    assert chat_template_ids(tokenizer, content) == gemma_nla.av.prompt_ids().tolist()
