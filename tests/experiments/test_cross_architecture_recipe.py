"""One cell of the cross-architecture experiment at smoke size on real weights: the embedded SmolLM2
subject read by an NLA on Gemma-3-270M, trained by the recipe end to end and scored; and the table
that aggregates cells over seeds.

The experiments tier (a few minutes: it loads Gemma-3-270M several times) runs once, in the
README's environment; the TransformerLens 4.x environment runs the unit, integration and notebook tiers.
"""

from __future__ import annotations

import json
import math

import pytest

from nla_lens.training.cross_architecture import SMOKE, cell_recipe, cross_architecture_table, run_cell
from nla_lens.training.recipe import STAGES

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    out = tmp_path_factory.mktemp("cross")
    return out, run_cell(out, "smollm2-135m", "gemma3-270m", 0, SMOKE)


def test_a_smollm2_subject_trains_and_scores_with_a_gemma_nla(cell):
    out, row = cell
    import nla_lens

    nla = nla_lens.NLA.from_pretrained(out / "smollm2-135m__gemma3-270m__seed0" / "nla")
    assert nla.d_model == 576 and nla.av.cfg.lm_d_model == 640 and nla.ar.cfg.lm_d_model == 640
    assert nla.av.cfg.subject_model == "smollm2-135m" and nla.av.cfg.provenance["base_model"] == "gemma3-270m"
    # Injected at Gemma's own residual norm at ~70 % depth (thousands), not SmolLM2's (~240).
    assert nla.av.cfg.injection_scale > 2000
    for key in ("fve_nrm", "fve_nrm_shuffled", "predict_mean", "current_token_control", "words", "perplexity"):
        assert math.isfinite(row[key]), key
    assert row["subject"] == "smollm2-135m" and row["base"] == "gemma3-270m" and row["n"] >= 2


def test_a_finished_cell_is_read_not_retrained(cell):
    out, row = cell
    stamp = (out / "smollm2-135m__gemma3-270m__seed0" / "cross_architecture.json").stat().st_mtime
    again = run_cell(out, "smollm2-135m", "gemma3-270m", 0, SMOKE)
    assert json.dumps(again, sort_keys=True) == json.dumps(row, sort_keys=True)  # NaN-safe equality
    assert (out / "smollm2-135m__gemma3-270m__seed0" / "cross_architecture.json").stat().st_mtime == stamp


def test_the_cell_recipes_put_other_bases_off_the_diagonal_only():
    assert cell_recipe("gemma3-270m", "gemma3-270m", 1).av_base is None
    # Every cell the same arithmetic whatever the CPU it runs on.
    assert {getattr(cell_recipe("smollm2-135m", "gemma3-270m", 0), s).precision for s in STAGES} == {"fp32"}
    cross = cell_recipe("gemma3-270m", "smollm2-135m", 1)
    assert (cross.subject, cross.layer, cross.av_base, cross.ar_base, cross.seed) == (
        "gemma3-270m",
        12,
        "smollm2-135m",
        "smollm2-135m",
        1,
    )


def test_the_table_has_one_row_per_cell_with_means_and_spreads():
    def row(subject, base, seed, fve, token):
        return dict(subject=subject, base=base, seed=seed, fve_nrm=fve, current_token_control=token, words=10.0)

    rows = [row("a", "a", 0, 0.4, 0.3), row("a", "a", 1, 0.2, 0.3), row("a", "b", 0, 0.1, 0.3)]
    table = cross_architecture_table(rows).set_index(["subject", "base"])
    assert len(table) == 2
    assert table.loc[("a", "a"), "fve_nrm"] == pytest.approx(0.3)
    assert table.loc[("a", "a"), "fve_nrm_spread"] == pytest.approx(0.2)
    assert table.loc[("a", "a"), "over_current_token"] == pytest.approx(0.0)
    assert table.loc[("a", "b"), "seeds"] == "0" and not table.loc[("a", "b"), "same_architecture"]
