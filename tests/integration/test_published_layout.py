"""Published-layout sidecars: the AV pre-fill field, ``mse_scale``, ``critic_suffix_ids`` and the
extraction layer read from a full AR folder's config (tiny random llamas, seconds)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import yaml

from nla_lens.errors import CheckpointError
from nla_lens.models import NLA, ActivationReconstructor, ActivationVerbalizer
from nla_lens.schema import NLAMeta, TokenMeta
from nla_lens.testing.models import tiny_nla


def _published_av(nla: NLA) -> ActivationVerbalizer:
    """The same AV weights driven with the published prompt (no pre-fill after the template)."""
    return ActivationVerbalizer(nla.av.model, nla.av.tokenizer, dataclasses.replace(nla.av.cfg, av_prefill=None))


def test_an_av_trained_without_prefill_parses_under_its_own_prompt(tmp_path):
    nla = tiny_nla(1, n_layers=2, seed=2)
    av = _published_av(nla)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    responses = av.response_ids(["the cat sat", "the cat sat"])
    assert av.tokenizer.decode(responses[0]).startswith("<explanation>")  # the AV opens the tag itself
    optimizer = torch.optim.Adam(av.model.parameters(), lr=1e-2)
    av.model.train()
    losses = []
    for _ in range(100):  # teach it to write one complete published-style response
        logp, mask = av.logprobs(vectors, responses)
        loss = -(logp * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    av.model.eval()
    assert losses[-1] < losses[0] / 10

    nla.av = av
    nla.save_pretrained(tmp_path / "published")
    sidecar = yaml.safe_load((tmp_path / "published" / "av" / "nla_meta.yaml").read_text())
    assert "av_prefill" not in sidecar["prompt_templates"]  # absent = published behaviour
    loaded = NLA.from_pretrained(tmp_path / "published")
    frame = loaded.explain(vectors, max_new_tokens=16, progress=False, warn=False)
    assert frame["explanation"].tolist() == ["the cat sat", "the cat sat"]
    assert not frame["missing_tag"].any() and frame["ok"].all()


def _ar_folder(tmp_path, **sidecar_changes):
    nla = tiny_nla(1, n_layers=2, seed=2)
    nla.ar.save_pretrained(tmp_path / "ar")
    path = tmp_path / "ar" / "nla_meta.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in sidecar_changes.items():
        section, _, field = key.partition(".")
        if value is None and field:
            data[section].pop(field, None)
        elif field:
            data[section][field] = value
        else:
            data.pop(section, None) if value is None else data.__setitem__(section, value)
    path.write_text(yaml.safe_dump(data))
    return nla, tmp_path / "ar"


def test_full_ar_folder_without_a_layer_field_takes_k_from_its_config(tmp_path):
    nla, folder = _ar_folder(
        tmp_path,
        **{"extraction.layer": None, "extraction.hook_name": None, "extraction_layer_index": None, "critic": None},
    )
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2
    ar = ActivationReconstructor.from_pretrained(folder)
    assert ar.cfg.layer == 1 and ar.cfg.n_kept_blocks == 2
    texts = ["the cat", "a dog in the park"]
    assert torch.allclose(ar.reconstruct(texts), nla.ar.reconstruct(texts), atol=1e-6)


def test_mse_scale_other_than_sqrt_d_is_refused(tmp_path):
    _, folder = _ar_folder(tmp_path, **{"extraction.mse_scale": 1.0})
    with pytest.raises(CheckpointError, match=r"mse_scale is 1\.0.*sqrt\(d_model\) = 5\.65685"):
        ActivationReconstructor.from_pretrained(folder)


@pytest.mark.parametrize("written, accepted", [(5.657, True), (5.652, True), (5.67, False), (5.5, False)])
def test_mse_scale_written_rounded_reads_as_sqrt_d_and_a_wrong_one_is_refused(tmp_path, written, accepted):
    # sqrt(32) = 5.65685: 5.657 and 5.652 are within 0.1 % of it, 5.67 (0.23 %) and 5.5 are not.
    _, folder = _ar_folder(tmp_path, **{"extraction.mse_scale": written})
    if accepted:
        assert ActivationReconstructor.from_pretrained(folder).cfg.mse_scale == math.sqrt(32)
    else:
        with pytest.raises(CheckpointError, match=rf"mse_scale is {written}"):
            ActivationReconstructor.from_pretrained(folder)


def test_mse_scale_as_the_published_docs_round_it_means_sqrt_d():
    tokens = TokenMeta("x", 1, 2, 3)
    assert NLAMeta(role="ar", d_model=3584, tokens=tokens, mse_scale=59.87).mse_scale == math.sqrt(3584)
    assert NLAMeta(role="ar", d_model=3584, tokens=tokens, mse_scale=59.0).mse_scale == 59.0  # the AR refuses it


def test_critic_suffix_ids_are_checked_against_the_tokenizer(tmp_path):
    nla = tiny_nla(1, n_layers=2, seed=2)
    prompt = nla.ar.tokenizer(nla.ar.cfg.ar_template.format(explanation="x"))["input_ids"]
    tokens = {**nla.ar.cfg.tokens.to_dict(), "critic_suffix_ids": prompt[-2:]}
    _, folder = _ar_folder(tmp_path, tokens=tokens)
    ActivationReconstructor.from_pretrained(folder)  # the recorded suffix matches: loads
    tokens["critic_suffix_ids"] = [prompt[-1], prompt[-2]]
    _, folder = _ar_folder(tmp_path / "bad", tokens=tokens)
    with pytest.raises(CheckpointError, match="critic_suffix_ids"):
        ActivationReconstructor.from_pretrained(folder)
