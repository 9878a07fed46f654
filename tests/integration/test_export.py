"""Exporting an NLA as full published-layout folders (``export_merged``, ``nla-lens export``).

The shipped embedded NLA (LoRA adapters over SmolLM2-135M-Instruct) is exported with its adapters
merged, reloaded from the export, and must explain and reconstruct as before; the live NLA must
keep its adapters. Tiny random llamas cover the full-model (nothing to merge) path, the dtype and
the refused targets in seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
import torch
import yaml
from safetensors import safe_open
from torch import nn

import nla_lens
from nla_lens import NLA, cli
from nla_lens.errors import InputError, NLALensError
from nla_lens.models.export import export_merged
from nla_lens.testing.models import tiny_nla

KW = dict(max_new_tokens=24, progress=False, warn=False)


def _explain(nla: NLA, vectors: torch.Tensor, **kwargs) -> list[str]:
    return nla.explain(vectors, **{**KW, **kwargs})["explanation"].tolist()


def _dtypes(file) -> set[str]:
    """The safetensors dtype names (``"F32"``, ``"BF16"``) of a weights file's tensors."""
    with safe_open(str(file), framework="pt") as handle:
        return {handle.get_slice(key).get_dtype() for key in handle.keys()}


@pytest.fixture(scope="module")
def shipped() -> NLA:
    return NLA.from_pretrained("smollm2-135m-L20")


@pytest.fixture(scope="module")
def vectors(shipped) -> torch.Tensor:
    texts = nla_lens.load_corpus(max_documents=3)
    dataset = nla_lens.extract_activations(
        nla_lens.load_subject(), texts, shipped.hook_name, positions_per_doc=2, progress=False
    )
    return dataset.vectors[:4]


@pytest.fixture(scope="module")
def before(shipped, vectors) -> tuple[list[str], torch.Tensor]:
    """The live NLA's greedy explanations and their reconstructions, before any export."""
    explanations = _explain(shipped, vectors)
    return explanations, shipped.ar.reconstruct(explanations)


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    """``nla-lens export`` of the shipped NLA (its default): the folder and what it printed."""
    out = tmp_path_factory.mktemp("cli") / "smollm2-export"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["export", "--out", str(out)])
    assert code == 0
    return out, printed.getvalue()


@pytest.mark.embedded
def test_cli_export_reloads_as_full_folders_that_explain_and_reconstruct_the_same(cli_export, shipped, vectors, before):
    out, printed = cli_export
    assert str(out / "av") in printed and str(out / "ar") in printed
    av, ar = out / "av", out / "ar"
    # Full folders: nothing for a loader to put on a base model, everything the published tools read.
    assert not (av / "adapter_config.json").exists() and not (ar / "adapter_config.json").exists()
    assert json.loads((ar / "config.json").read_text())["num_hidden_layers"] == shipped.layer + 1 == 21
    assert (ar / "tokenizer.json").is_file() or (ar / "tokenizer_config.json").is_file()
    assert (av / "tokenizer.json").is_file() or (av / "tokenizer_config.json").is_file()
    with safe_open(str(ar / "value_head.safetensors"), framework="pt") as head:
        assert list(head.keys()) == ["weight"] and head.get_slice("weight").get_shape() == [576, 576]
    with safe_open(str(ar / "model.safetensors"), framework="pt") as weights:
        # The original final norm travels with the truncated blocks (the live AR replaced it by Identity).
        assert torch.equal(weights.get_tensor("model.norm.weight"), shipped.ar._final_norm_state["norm.weight"])
        assert not any("lora" in key for key in weights.keys())
    assert _dtypes(av / "model.safetensors") == _dtypes(ar / "model.safetensors") == {"F32"}
    for half in (av, ar):
        provenance = yaml.safe_load((half / "nla_meta.yaml").read_text())["provenance"]
        assert "base_model" not in provenance
        assert provenance["exported_from"] == "lora" and provenance["merged_base_model"] == "smollm2-135m"

    reloaded = NLA.from_pretrained(out)
    assert not hasattr(reloaded.av.model, "peft_config") and not hasattr(reloaded.ar.backbone, "peft_config")
    explanations, reconstructions = before
    assert _explain(reloaded, vectors) == explanations
    # Outputs reach |x| ~ 150; merged weights round differently from base + LoRA by ~1e-4 there
    # (~7e-7 relative), so the tolerance is relative with a 1e-4 floor.
    torch.testing.assert_close(reloaded.ar.reconstruct(explanations), reconstructions, rtol=1e-5, atol=1e-4)


@pytest.mark.embedded
def test_save_pretrained_merged_writes_the_files_nla_lens_export_writes(cli_export, shipped, tmp_path):
    out, _ = cli_export
    saved = shipped.save_pretrained(tmp_path / "merged", merged=True)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert {"av/model.safetensors", "av/chat_template.jinja", "ar/value_head.safetensors"} <= set(files)
    for name in files:
        assert (out / name).read_bytes() == (saved / name).read_bytes(), name
    assert (out / "av" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.embedded
def test_export_leaves_the_live_nla_unchanged(shipped, vectors, before, tmp_path):
    out = export_merged(shipped, tmp_path / "nla")
    assert (out / "av" / "model.safetensors").is_file() and (out / "ar" / "value_head.safetensors").is_file()
    assert hasattr(shipped.av.model, "peft_config") and hasattr(shipped.ar.backbone, "peft_config")
    assert isinstance(shipped.ar._inner.norm, nn.Identity)
    assert shipped.av.cfg.provenance["base_model"] == shipped.ar.cfg.provenance["base_model"] == "smollm2-135m"
    explanations, reconstructions = before
    assert _explain(shipped, vectors) == explanations
    assert torch.equal(shipped.ar.reconstruct(explanations), reconstructions)


def test_a_full_bfloat16_nla_exports_in_its_dtype_and_reloads_the_same(tmp_path):
    nla = tiny_nla(1, n_layers=2, seed=2)
    nla.av.model.to(torch.bfloat16)
    nla.ar.to(torch.bfloat16)
    out = export_merged(nla, tmp_path / "tiny")
    assert _dtypes(out / "av" / "model.safetensors") == _dtypes(out / "ar" / "model.safetensors") == {"BF16"}
    assert json.loads((out / "ar" / "config.json").read_text())["num_hidden_layers"] == 2
    assert yaml.safe_load((out / "ar" / "nla_meta.yaml").read_text())["provenance"] == {
        "stage": "untrained",
        "exported_from": "full",
    }

    reloaded = NLA.from_pretrained(out, dtype=torch.bfloat16)
    vectors = torch.randn(3, nla.d_model, generator=torch.Generator().manual_seed(0)) * 5
    assert _explain(reloaded, vectors, max_new_tokens=4) == _explain(nla, vectors, max_new_tokens=4)
    texts = ["the cat sat", "a dog ran"]
    assert torch.equal(reloaded.ar.reconstruct(texts), nla.ar.reconstruct(texts))


def test_targets_that_cannot_hold_an_export_are_refused(tmp_path):
    nla = tiny_nla(1, n_layers=2, seed=2)
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    for target in (a_file, a_file / "nla"):
        with pytest.raises(InputError, match="file"):
            export_merged(nla, target)
    assert issubclass(InputError, NLALensError) and a_file.read_text() == "keep me"

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        export_merged(nla, busy)
    assert (busy / "notes.txt").read_text() == "mine"
    export_merged(nla, busy, overwrite=True)
    assert sorted(p.name for p in busy.iterdir()) == ["ar", "av"]


def test_cli_reports_a_bad_target_without_a_traceback(tmp_path, capsys):
    source = tiny_nla(1, n_layers=2, seed=2).save_pretrained(tmp_path / "tiny")
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    assert cli.main(["export", "--nla", str(source), "--out", str(a_file)]) == 2
    assert "exists as a file" in capsys.readouterr().err
