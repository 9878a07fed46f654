"""The recipe owns its run-wide settings, and a run's config.json reads back as the same recipe."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nla_lens.errors import InputError
from nla_lens.training import GRPOConfig, WarmStartConfig
from nla_lens.training.recipe import PRESETS, Recipe


@pytest.mark.parametrize(
    ("stage", "config"),
    [
        ("rl", GRPOConfig(seed=3)),
        ("av", WarmStartConfig(eval_every=5)),
        ("ar", WarmStartConfig(eval_size=8)),
        ("ar_refit", WarmStartConfig(checkpoint_every=2, output_dir="x")),
    ],
)
def test_a_stage_config_that_sets_what_the_recipe_owns_is_refused(stage, config):
    with pytest.raises(InputError, match=rf"Recipe\.{stage} sets .*Recipe\.seed"):
        Recipe(name="mine", **{stage: config})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_json_reads_back_as_the_same_recipe(name, tmp_path):
    recipe = dataclasses.replace(PRESETS[name], seed=4, av_base="gemma3-270m", rl_steps=7)
    (tmp_path / "config.json").write_text(json.dumps(recipe.to_dict(), indent=2))
    again = Recipe.from_json(tmp_path)
    assert again == recipe
    assert isinstance(again.rl, GRPOConfig) and isinstance(again.ar_refit, WarmStartConfig)


def test_unknown_fields_are_named():
    data = {**PRESETS["smoke"].to_dict(), "rl_stpes": 3}
    with pytest.raises(InputError, match="rl_stpes"):
        Recipe.from_dict(data)
    data = PRESETS["smoke"].to_dict()
    data["rl"]["kl_coeff"] = 0.0
    with pytest.raises(InputError, match="kl_coeff"):
        Recipe.from_dict(data)


def test_the_train_command_applies_precision_and_kl_coef_to_the_preset(monkeypatch, tmp_path):
    from nla_lens import cli
    from nla_lens.training import recipe as recipe_module

    ran = {}

    def record(recipe, out, cache_dir=None):
        ran["recipe"] = recipe
        raise SystemExit(0)  # stop before reporting: only the recipe handed over is under test

    monkeypatch.setattr(recipe_module, "run_recipe", record)
    with pytest.raises(SystemExit):
        cli.main(["train", "--preset", "smoke", "--out", str(tmp_path), "--precision", "fp32", "--kl-coef", "0.02"])
    recipe = ran["recipe"]
    assert recipe.rl.kl_coef == 0.02 and recipe.rl.precision == "fp32" and recipe.av.precision == "fp32"
    assert recipe.rl.n_vectors == PRESETS["smoke"].rl.n_vectors  # the rest of the preset's GRPO settings kept
