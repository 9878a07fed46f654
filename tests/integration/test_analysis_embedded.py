"""Analyses with the shipped NLA on the embedded SmolLM2-135M (CPU, about a minute in all).

The shipped NLA is retrained from time to time, so nothing here depends on its exact outputs:
the assertions are directions (steering toward a topic raises its words more than a random
vector does; the round trip beats the shuffled control).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import nla_lens
from nla_lens.analysis import explain_prompt, faithfulness_report, steer, steered_generate
from nla_lens.analysis.fluency import MAX_LOGPROB_DROP, MAX_REPETITION
from nla_lens.analysis.steering import DEFAULT_COEFFICIENT
from nla_lens.errors import FluencyWarning, InputError

pytestmark = pytest.mark.embedded

SEA = (
    '1. Recent context: "…the ocean waves crashed on the beach as the sailors pulled the boat to the sea"\n'
    '2. Likely next: "sea", "ocean", "ship"\n3. Current token: " sea"'
)
PROMPTS = ["I want to tell you about", "Yesterday afternoon we went to the", "The most important thing in life is"]
TOPIC = ["sea", "ocean", "ship", "boat", "waves", "beach", "sailors", "water"]


@pytest.fixture(scope="module")
def shipped():
    return nla_lens.NLA.from_pretrained("smollm2-135m-L20")


def test_steering_at_the_default_strength_pulls_toward_its_topic_and_stays_fluent(shipped, bridge):
    """The default coefficient (chosen by scripts/steering_sweep.py) keeps the steered text within the
    stated fluency margin of the unsteered text, with no FluencyWarning, and still moves it toward the topic."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FluencyWarning)
        result = steer(shipped, bridge, PROMPTS, SEA, topic_words=TOPIC, max_new_tokens=12, progress=False)
    s = result.summary
    assert s["coefficient"] == DEFAULT_COEFFICIENT
    assert s["norm"] == pytest.approx(shipped.av.cfg.injection_scale)
    assert s["fluent"] and s["logprob_drop"] <= MAX_LOGPROB_DROP, result.frame
    assert s["repetition_explanation"] <= MAX_REPETITION, result.frame
    # on each condition's own continuation, and on the same (unsteered) continuation
    assert s["gain_vs_none"] > 0 and s["gain_vs_random"] > 0, result.frame
    assert s["gain_vs_none_fixed"] > 0 and s["gain_vs_random_fixed"] > 0, result.frame


def test_too_strong_steering_on_the_embedded_model_is_flagged(shipped, bridge):
    """Twice the typical activation norm turns the text into loops (", of, of, of"): the topic gain
    may still look large, so the result must carry the warning and the not-fluent flags."""
    with pytest.warns(FluencyWarning, match="not fluent"):
        result = steer(
            shipped, bridge, PROMPTS, SEA, topic_words=TOPIC, coefficient=2.0, max_new_tokens=12, progress=False
        )
    s = result.summary
    assert not s["fluent"], result.frame
    assert s["logprob_drop"] > MAX_LOGPROB_DROP or s["repetition_explanation"] > MAX_REPETITION
    rows = result.frame.set_index("condition")
    assert rows.loc["none", "fluent"].all() and not rows.loc["explanation", "fluent"].all(), result.frame


def test_nnsight_and_transformer_lens_steer_identically(shipped, bridge, embedded_hf):
    from nnsight.modeling.transformers import TransformersModel

    hf_model, tokenizer = embedded_hf
    vector = nla_lens.analysis.explanation_vector(shipped, SEA)
    kwargs = dict(hook_name=shipped.hook_name, coefficient=1.0, max_new_tokens=8)
    via_bridge = steered_generate(bridge, PROMPTS[0], vector, **kwargs)
    via_nnsight = steered_generate(TransformersModel(hf_model, tokenizer=tokenizer), PROMPTS[0], vector, **kwargs)
    assert via_bridge == via_nnsight
    assert via_bridge != steered_generate(bridge, PROMPTS[0], None, **kwargs)


def test_faithfulness_report_on_the_shipped_nla(shipped, bridge):
    docs = nla_lens.load_corpus()[800:805]  # documents the shipped recipe never trained on
    held = nla_lens.extract_activations(
        bridge, docs, shipped.hook_name, positions_per_doc=2, max_length=96, splits={"eval": 1.0}, progress=False
    )
    report = faithfulness_report(shipped, held, n=None, n_random=2, max_new_tokens=56, progress=False)
    s = report.summary
    assert s["n"] == len(held) == len(report.frame)
    assert s["fve_nrm"] > s["fve_nrm_shuffled"] and s["fve_nrm_shuffled"] < 0.1
    for key in (
        "predict_mean",
        "random_vector_fve_nrm",
        "paraphrase_fve_nrm",
        "ablation_mse_increase",
        "grounding",
        "grounding_shuffled",
        "context_oracle_fve_nrm",
        "non_english_rate",
        "failure_rate",
    ):
        assert isinstance(s[key], float) and math.isfinite(s[key]), key
    assert len(report.ablations) > 0 and report.frame["paraphrase"].ne(report.frame["explanation"]).all()


def test_prompt_table_and_hook_check_on_the_embedded_model(shipped, bridge):
    table = explain_prompt(
        shipped,
        bridge,
        "The cat sat on the mat because it was tired.",
        positions=[3, 8],
        max_new_tokens=16,
        progress=False,
    )
    assert table.frame["token"].tolist() == [" on", " was"]
    assert torch.isfinite(torch.tensor(table.frame["fve"].to_numpy())).all()
    assert len(explain_prompt(shipped, bridge, "", progress=False)) == 0
    with pytest.raises(InputError, match="blocks.20.hook_resid_post"):
        explain_prompt(shipped, bridge, "The cat sat.", layer=10)
