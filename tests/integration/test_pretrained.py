"""The NLA shipped inside the package for the embedded model, and `nla-lens explain`."""

from __future__ import annotations

import json
import re

import pytest

import nla_lens
from nla_lens.cli import _GREEN, gain_colour, main
from nla_lens.models.registry import get_pretrained, resolve_source


def test_shipped_nla_is_small_complete_and_documented():
    folder = resolve_source(get_pretrained("smollm2-135m-L20").av).parent
    size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    assert size_mb <= 25
    for name in (
        "av/adapter_model.safetensors",
        "av/nla_meta.yaml",
        "ar/adapter_model.safetensors",
        "ar/value_head.safetensors",
        "ar/nla_meta.yaml",
        "ar/config.json",  # the AR's truncated base: transformers refuses to build the whole base under it
        "README.md",
        "report.json",
    ):
        assert (folder / name).is_file(), name
    report = json.loads((folder / "report.json").read_text())
    card = (folder / "README.md").read_text()
    assert f"{report['rl']['fve_nrm']:.3f}" in card and f"{report['sft']['fve_nrm']:.3f}" in card


@pytest.mark.embedded
def test_shipped_nla_loads_offline_and_explains(capsys):
    nla = nla_lens.NLA.from_pretrained()  # default: the registry's shipped NLA
    assert nla.hook_name == "blocks.20.hook_resid_post" and nla.d_model == 576
    assert nla.av.cfg.provenance["stage"] == "rl"
    assert (
        main(
            [
                "explain",
                "The cat sat on the mat because it was tired.",
                "--positions",
                "3",
                "8",
                "--max-new-tokens",
                "24",
            ]
        )
        == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == ["[  3", "[  8"]
    assert all("mse" in line and "cos" in line for line in lines)


@pytest.mark.embedded
def test_explain_colours_each_token_by_its_gain_not_its_cosine(capsys):
    """On the shipped NLA, every token's colour is its gain's (red when no better than the mean
    direction), though every raw cosine here is high; the lines are ranked by gain at the end."""
    assert main(["explain", "The cat sat on the mat because it was tired.", "--color", "always"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    gains = [float(re.search(r"gain\s+(-?\d+\.\d+)", line).group(1)) for line in lines]
    cosines = [float(re.search(r"cos (\d\.\d+)", line).group(1)) for line in lines]
    assert len(lines) == 10 and min(cosines) > 0.5
    for line, gain in zip(lines, gains):
        assert line.split("] ", 1)[1].startswith(gain_colour(gain)), line
    # A token explained no better than the mean direction (here ' on', cosine 0.83) is never green.
    assert all(_GREEN not in line for line, gain in zip(lines, gains) if gain <= 0)
    assert "no better than the mean direction" in out and "best explained:" in out
