"""Prompt tables, layer sweeps and steering on tiny offline models (TransformerLens and nnsight)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from nla_lens.analysis import (
    explain_prompt,
    explanation_vector,
    layer_sweep,
    steer,
    steered_generate,
    steering_sweep,
    topic_logprob,
)
from nla_lens.analysis.fluency import MAX_LOGPROB_DROP, MAX_REPETITION
from nla_lens.analysis.prompt_table import PROMPT_COLUMNS
from nla_lens.analysis.steering import subject_steerer, topic_token_ids
from nla_lens.errors import FluencyWarning, HookNameError, InputError
from nla_lens.metrics import fve_nrm
from nla_lens.models import NLA
from nla_lens.subjects.adapters import as_subject
from nla_lens.testing.models import tiny_llama, tiny_nla, tiny_subject
from nla_lens.testing.tokenizers import tiny_tokenizer
from nla_lens.vis.html import external_references

pytestmark = pytest.mark.filterwarnings("ignore:This NLA was trained")

PROMPT = "The cat sat on the mat. The dog ran in the park."
KW = dict(max_new_tokens=4, progress=False)


def _subject(d_model: int = 32, n_layers: int = 2):
    return tiny_subject(tiny_tokenizer(), n_layers=n_layers, d_model=d_model, n_ctx=64)


@pytest.fixture(scope="module")
def subject():
    return _subject()


@pytest.fixture(scope="module")
def nla0() -> NLA:
    return tiny_nla(0, n_layers=2)


@pytest.fixture(scope="module")
def nla1() -> NLA:
    return tiny_nla(1, n_layers=2, seed=2)


# -- explain a whole prompt ------------------------------------------------------------------
def test_prompt_table_scores_every_token_and_exports(nla1, subject, tmp_path):
    table = explain_prompt(nla1, subject, PROMPT, **KW)
    n = len(subject.tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    assert list(table.frame.columns[: len(PROMPT_COLUMNS)]) == list(PROMPT_COLUMNS)
    assert table.frame["position"].tolist() == list(range(1, n))
    # the fve column is each token's share: its mean is the table's fve_nrm
    acts = as_subject(subject).activations(
        torch.tensor([subject.tokenizer(PROMPT)["input_ids"]]),
        as_subject(subject).resolve_hook("blocks.1.hook_resid_post"),
    )[0, 1:]
    pred = nla1.reconstruct(table.frame["explanation"].map(lambda e: e or "(empty)").tolist())
    assert table.frame["fve"].mean() == pytest.approx(fve_nrm(pred, acts), abs=1e-4)
    csv = pd.read_csv(table.to_csv(tmp_path / "t.csv"))
    parquet = pd.read_parquet(table.to_parquet(tmp_path / "t.parquet"))
    assert csv["mse"].tolist() == pytest.approx(table.frame["mse"].tolist())
    assert parquet["explanation"].tolist() == table.frame["explanation"].tolist()
    html = table.to_html(tmp_path / "t.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and not external_references(html)
    assert html.count('class="nla-tok nla-explained"') == n - 1


def test_prompt_table_selected_positions_and_reference(nla1, subject):
    table = explain_prompt(nla1, subject, PROMPT, positions=[2, 5], **KW)
    assert table.frame["position"].tolist() == [2, 5]
    ref = torch.randn(50, 32)
    with_ref = explain_prompt(nla1, subject, PROMPT, positions=[2, 5], reference=ref, **KW)
    assert with_ref.frame["mse"].tolist() == table.frame["mse"].tolist()
    assert with_ref.frame["fve"].tolist() != table.frame["fve"].tolist()


def test_empty_prompt_gives_an_empty_table(nla1, subject, tmp_path):
    for prompt in ("", "The"):  # no token / only the first token (never explained by default)
        table = explain_prompt(nla1, subject, prompt, **KW)
        assert len(table) == 0 and list(table.frame.columns) == list(PROMPT_COLUMNS)
        assert "0 explained" in table.html
    assert len(pd.read_csv(explain_prompt(nla1, subject, "", **KW).to_csv(tmp_path / "e.csv"))) == 0


def test_mismatched_hook_or_subject_is_refused(nla1, subject):
    with pytest.raises(InputError, match="trained on 'blocks.1.hook_resid_post', not 'blocks.0.hook_resid_post'"):
        explain_prompt(nla1, subject, PROMPT, layer=0, **KW)
    with pytest.raises(HookNameError, match="out of range"):
        explain_prompt(tiny_nla(5, n_layers=2, seed=10), subject, PROMPT, **KW)  # the subject has 2 blocks
    with pytest.raises(InputError, match="d_model is 48"):
        explain_prompt(nla1, _subject(d_model=48), PROMPT, **KW)
    with pytest.raises(InputError, match="positions"):
        explain_prompt(nla1, subject, PROMPT, positions=[999], **KW)
    with pytest.raises(InputError, match="not 'blocks.0"):
        steer(nla1, subject, PROMPT, "the cat", hook_name="blocks.0.hook_resid_post", progress=False)


# -- layer sweep -----------------------------------------------------------------------------
def test_layer_sweep_explains_the_token_at_every_hook(nla0, nla1, subject, tmp_path):
    sweep = layer_sweep({1: nla1, "blocks.0.hook_resid_post": nla0}, subject, PROMPT, position=3, **KW)
    assert sweep.frame["hook_name"].tolist() == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    adapter = as_subject(subject)
    ids = torch.tensor([adapter.encode(PROMPT)])
    for row, nla in zip(sweep.frame.itertuples(), (nla0, nla1)):
        vector = adapter.activations(ids, adapter.resolve_hook(row.hook_name))[0, 3]
        expected = nla.round_trip(vector[None], warn=False, **KW)
        assert row.explanation == expected["explanation"][0] and row.mse == pytest.approx(expected["mse"][0])
        assert row.norm == pytest.approx(float(vector.norm()), rel=1e-5)
    assert sweep.frame["norm"].nunique() == 2 and (sweep.frame["token"] == adapter.tokenizer.decode(ids[0, 3])).all()
    html = sweep.save(tmp_path / "sweep.html").read_text()
    assert not external_references(html) and html.count("<tr>") == 3
    assert layer_sweep([nla1, nla0], subject, PROMPT, **KW).frame["position"].iloc[0] == ids.shape[1] - 1


def test_layer_sweep_refuses_mismatched_keys(nla0, nla1, subject):
    with pytest.raises(InputError, match="trained on 'blocks.1.hook_resid_post', not 'blocks.0"):
        layer_sweep({0: nla1}, subject, PROMPT, **KW)
    with pytest.raises(InputError, match="same hook"):
        layer_sweep([nla1, nla1], subject, PROMPT, **KW)
    with pytest.raises(InputError, match="out of range"):
        layer_sweep([nla1], subject, PROMPT, position=99, **KW)
    with pytest.raises(InputError, match="No NLAs"):
        layer_sweep({}, subject, PROMPT, **KW)


# -- steering --------------------------------------------------------------------------------
def _unembed_direction(subject, words) -> torch.Tensor:
    ids = topic_token_ids(subject.tokenizer, words)
    direction = subject.W_U[:, ids].mean(dim=1).detach()
    return direction / direction.norm()


def test_explanation_vector_is_the_ar_direction_at_activation_scale(nla1):
    vector = explanation_vector(nla1, "the cat sat on the mat")
    raw = nla1.ar.reconstruct(["the cat sat on the mat"])[0]
    assert vector.norm() == pytest.approx(nla1.av.cfg.injection_scale)
    assert torch.nn.functional.cosine_similarity(vector, raw, dim=0) == pytest.approx(1.0, abs=1e-5)
    assert explanation_vector(nla1, "the cat", norm=2.0).norm() == pytest.approx(2.0)
    with pytest.raises(InputError):
        explanation_vector(nla1, "  ")


def test_steering_toward_a_topic_direction_raises_its_words(nla1, subject):
    """The measure itself: a direction that writes 'cat'/'dog' into the logits must score above
    no steering and above a random direction of the same norm."""
    vector = 40.0 * _unembed_direction(subject, ["cat", "dog"])
    result = steer(
        nla1,
        subject,
        ["The bird sang in the", "A language model reads"],
        "the cat and the dog",
        vector=vector,
        coefficient=1.0,
        max_new_tokens=6,
        progress=False,
        warn=False,
    )
    s = result.summary
    assert result.topic_words == ["cat", "dog"]
    assert s["gain_vs_none"] > 1.0 and s["gain_vs_random"] > 1.0
    assert s["gain_vs_none_fixed"] > 1.0 and s["gain_vs_random_fixed"] > 1.0
    assert set(result.frame["condition"]) == {"none", "explanation", "random"}
    steered = result.frame.query("condition == 'explanation'")["continuation"]
    assert steered.str.contains("cat|dog").all()


def test_too_strong_steering_is_reported_as_not_fluent(nla1, subject):
    """A vector far larger than the residual stream drives the text into a loop the unsteered
    subject finds unlikely: the result must say so (column, summary, warning), while a zero
    coefficient stays as fluent as no steering and stays silent."""
    vector = _unembed_direction(subject, ["cat"])
    prompts = ["The bird sang in the", "A language model reads"]
    with pytest.warns(FluencyWarning, match="not fluent"):
        strong = steer(
            nla1, subject, prompts, "the cat", vector=vector, coefficient=400.0, max_new_tokens=8, progress=False
        )
    s = strong.summary
    assert not s["fluent"] and (s["logprob_drop"] > MAX_LOGPROB_DROP or s["repetition_explanation"] > MAX_REPETITION)
    rows = strong.frame.set_index("condition")
    assert not rows.loc["explanation", "fluent"].any() and rows.loc["none", "fluent"].all()
    assert (rows.loc["none", "logprob_drop"] == 0).all()
    assert {"logprob", "perplexity", "repetition", "logprob_drop", "fluent"} <= set(strong.frame.columns)
    assert "fluent=False" in repr(strong) and "Not fluent" in strong._repr_html_()

    with warnings.catch_warnings():
        warnings.simplefilter("error", FluencyWarning)
        weak = steer(
            nla1, subject, prompts, "the cat", vector=vector, coefficient=0.0, max_new_tokens=8, progress=False
        )
    assert weak.summary["fluent"] and weak.summary["logprob_drop"] == pytest.approx(0.0, abs=1e-5)


def test_steering_sweep_has_one_row_per_coefficient(nla1, subject):
    vector = 40.0 * _unembed_direction(subject, ["cat", "dog"])
    sweep = steering_sweep(
        nla1,
        subject,
        "The bird sang in the",
        "the cat and the dog",
        vector=vector,
        coefficients=[0.0, 1.0, 10.0],
        max_new_tokens=6,
        progress=False,
    )
    assert sweep["coefficient"].tolist() == [0.0, 1.0, 10.0]
    assert {"gain_vs_none", "gain_vs_random", "logprob_drop", "repetition_explanation", "fluent", "example"} <= set(
        sweep.columns
    )
    assert sweep["gain_vs_none"].iloc[0] == pytest.approx(0.0, abs=1e-5) and sweep["fluent"].iloc[0]
    assert sweep["gain_vs_none"].iloc[1] > 1.0 and not sweep["fluent"].iloc[-1]
    with pytest.raises(InputError, match="coefficient"):
        steering_sweep(nla1, subject, "The bird", "the cat", vector=vector, coefficients=[float("nan")])
    with pytest.raises(InputError, match="coefficient"):
        steering_sweep(nla1, subject, "The bird", "the cat", vector=vector, coefficients=[])


def test_zero_coefficient_is_no_steering(subject):
    vector = 40.0 * _unembed_direction(subject, ["cat"])
    hook = "blocks.1.hook_resid_post"
    plain = steered_generate(subject, "The bird sang in the", None, hook_name=hook, max_new_tokens=5)
    assert (
        steered_generate(subject, "The bird sang in the", vector, hook_name=hook, coefficient=0.0, max_new_tokens=5)
        == plain
    )
    assert steered_generate(subject, "The bird sang in the", vector, hook_name=hook, max_new_tokens=5) != plain
    ids = torch.tensor(subject.tokenizer("The bird sang in the cat")["input_ids"])
    cat = topic_token_ids(subject.tokenizer, ["cat"])
    assert topic_logprob(subject, ids, len(ids) - 1, cat, vector=vector, hook_name=hook) > topic_logprob(
        subject, ids, len(ids) - 1, cat, hook_name=hook
    )
    with pytest.raises(InputError, match="dimensions"):
        steered_generate(subject, "The bird", torch.ones(7), hook_name=hook)
    with pytest.raises(InputError, match="non-empty"):
        steered_generate(subject, "", vector, hook_name=hook)


def test_nnsight_steering_equals_an_hf_forward_hook():
    """The nnsight path adds the vector at the decoder layer's output, as a plain HF hook would."""
    from nnsight.modeling.transformers import TransformersModel

    tok = tiny_tokenizer()
    hf = tiny_llama(tok, n_layers=3, seed=4)
    adapter = as_subject(TransformersModel(hf, tokenizer=tok))
    hook = adapter.resolve_hook("blocks.1.hook_resid_post")
    delta = 3.0 * torch.randn(32, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor(tok("The cat sat on the")["input_ids"])
    steerer = subject_steerer(adapter, hook)
    assert steerer.adapter is adapter and type(adapter).__name__ == "NNsightSubject"  # the adapter owns the edit

    handle = hf.model.layers[1].register_forward_hook(
        lambda module, args, out: (out[0] + delta, *out[1:]) if isinstance(out, tuple) else out + delta
    )
    try:
        with torch.no_grad():
            expected = hf(input_ids=ids[None]).logits[0]
            expected_new = hf.generate(
                input_ids=ids[None],
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=5,
                min_new_tokens=5,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )[0, len(ids) :]
    finally:
        handle.remove()
    assert torch.allclose(steerer.logits(ids, delta), expected, atol=1e-5)
    assert steerer.generate(ids, delta, 5).tolist() == expected_new.tolist()
    with torch.no_grad():
        plain = hf(input_ids=ids[None]).logits[0]
    assert torch.allclose(steerer.logits(ids, None), plain, atol=1e-5)
    assert not torch.allclose(plain, expected, atol=1e-3)


def test_text_logprobs_reads_each_text_as_if_alone():
    """Batched and right-padded, each text scores what the model gives it alone (a one-token text: NaN)."""
    import math

    from nla_lens.analysis.fluency import continuation_logprob, text_logprobs

    tok = tiny_tokenizer()
    model = tiny_llama(tok, n_layers=2, seed=3).eval()
    texts = ["the cat sat on the mat", "a dog", "x", "the cat sat on the mat the cat sat on the mat"]
    batched = text_logprobs(model, tok, texts, batch_size=3)
    for text, got in zip(texts, batched):
        ids = torch.tensor(tok.encode(text, add_special_tokens=False))
        if len(ids) < 2:
            assert math.isnan(got)
            continue
        with torch.no_grad():
            alone = continuation_logprob(model(input_ids=ids[None]).logits[0], ids, 1)
        assert got == pytest.approx(alone, abs=1e-5)
