"""The faithfulness report on constructed cases: each check must move in the right direction.

The NLAs here are small real objects whose AR output is a deterministic function of the text
(a bag of concept-word vectors, a constant, an exact-string lookup, a reader of the teacher's
template by line position) and whose AV names the concept words closest to a vector. The ARs are ``nn.Module``s without weights, like a real AR,
because every round trip puts its AR in eval mode (``metrics.score_round_trip``). They are the *input* of the report under test: a report that
always printed good numbers would fail the constant and surface-form cases.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from nla_lens.analysis import (
    ProseParaphraser,
    RuleParaphraser,
    context_oracle,
    faithfulness_report,
    snippet_ablation,
)
from nla_lens.analysis.faithfulness import PARAPHRASE_TABLE_COLUMNS
from nla_lens.analysis.paraphrase import DEFAULT_PARAPHRASE_STYLES
from nla_lens.data.dataset import ActivationDataset, norm_stats
from nla_lens.errors import InputError, ShapeError
from nla_lens.rewrites import STYLES, restyle
from nla_lens.training.model_card import _faithfulness

D = 32
WORDS = (
    "cat",
    "ocean",
    "razor",
    "castle",
    "music",
    "winter",
    "doctor",
    "garden",
    "river",
    "engine",
    "bread",
    "storm",
    "violin",
    "desert",
    "candle",
    "forest",
)
WORD_VECTORS = torch.randn(len(WORDS), D, generator=torch.Generator().manual_seed(0))
N = 40


def explain_words(words) -> str:
    a, b, c = words
    return (
        f'1. Recent context: "…the {a} stood by the old wall"\n2. Likely next: "{b}", "and"\n3. Current token: " {c}"'
    )


def bag_vector(text: str) -> torch.Tensor:
    """Sum of the vectors of the concept words in ``text`` (a fixed vector when there is none)."""
    found = [i for i, w in enumerate(WORDS) if re.search(rf"\b{w}\b", text.lower())]
    return WORD_VECTORS[found].sum(0) if found else torch.ones(D)


class BagAR(torch.nn.Module):
    """Reads meaning: the output depends only on which concept words the text contains."""

    d_model = D

    def reconstruct(self, texts, batch_size: int = 16) -> torch.Tensor:
        return torch.stack([bag_vector(t) for t in texts])


class ConstantAR(torch.nn.Module):
    """Ignores its input."""

    d_model = D

    def reconstruct(self, texts, batch_size: int = 16) -> torch.Tensor:
        return WORD_VECTORS.sum(0).expand(len(texts), D).clone()


class SurfaceAR(torch.nn.Module):
    """Knows the exact training strings and nothing else (a hash of any other string)."""

    d_model = D

    def __init__(self, table: dict[str, torch.Tensor]):
        super().__init__()
        self.table = table

    def reconstruct(self, texts, batch_size: int = 16) -> torch.Tensor:
        out = []
        for t in texts:
            if t in self.table:
                out.append(self.table[t])
            else:
                seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
                out.append(torch.randn(D, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(out)


class LayoutAR(torch.nn.Module):
    """Reads the teacher's template by line position, as an AR trained on one layout does: line 1
    must hold the quoted context (``"…the WORD``), line 2 a quoted prediction, line 3 the quoted
    current token with its leading space. Other headings keep the reading; another snippet order,
    other quotes, another list format or prose lose it."""

    d_model = D
    PATTERNS = (r'^1\. [^:]+: "…the (\w+)', r'^2\. [^:]+: "(\w+)"', r'^3\. [^:]+: " (\w+)"')

    def reconstruct(self, texts, batch_size: int = 16) -> torch.Tensor:
        out = []
        for text in texts:
            found = [m.group(1) for p, line in zip(self.PATTERNS, text.split("\n")) if (m := re.match(p, line))]
            out.append(bag_vector(" ".join(found)))
        return torch.stack(out)


class RecordingAR(BagAR):
    """A :class:`BagAR` that keeps every text it reads."""

    def __init__(self):
        super().__init__()
        self.read: list[str] = []

    def reconstruct(self, texts, batch_size: int = 16) -> torch.Tensor:
        self.read.extend(texts)
        return super().reconstruct(texts, batch_size)


class DropTokenProse(ProseParaphraser):
    """Prose that loses the current token's word: a held-out prose rewrite that changes the content."""

    def __call__(self, explanations):
        tokens = [re.search(r'Current token: " (\w+)"', e).group(1) for e in explanations]
        return [re.sub(rf"\b{t}\b", "thing", p) for t, p in zip(tokens, super().__call__(explanations))]


TRIPLES = list(itertools.combinations(range(len(WORDS)), 3))
TRIPLE_SUMS = torch.stack([WORD_VECTORS[list(t)].sum(0) for t in TRIPLES])  # [560, D]


class NearestWordsAV:
    """Names the three concept words whose sum is closest to the vector (optionally in Japanese)."""

    def __init__(self, gibberish_every: int = 0):
        self.gibberish_every = gibberish_every
        self.calls = 0

    def verbalize(self, vectors, **kwargs) -> pd.DataFrame:
        best = torch.cdist(torch.as_tensor(vectors).float(), TRIPLE_SUMS).argmin(dim=1)
        rows = []
        for i, index in enumerate(best.tolist()):
            text = explain_words([WORDS[j] for j in TRIPLES[index]])
            if self.gibberish_every and i % self.gibberish_every == 0:
                text = "猫が座った"
            rows.append({"vector": i, "explanation": text, "ok": True, "n_tokens": 20})
        return pd.DataFrame(rows)


class StandInNLA:
    def __init__(self, ar, av=None):
        self.ar, self.av, self.d_model, self.hook_name = ar, av or NearestWordsAV(), D, "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def case():
    """``N`` vectors, each the sum of three concept vectors, with their truthful explanations."""
    rng = np.random.default_rng(1)
    triples = [tuple(WORDS[j] for j in rng.choice(len(WORDS), 3, replace=False)) for _ in range(N)]
    noise = 0.05 * torch.randn(N, D, generator=torch.Generator().manual_seed(2))
    vectors = torch.stack([WORD_VECTORS[[WORDS.index(w) for w in t]].sum(0) for t in triples]) + noise
    explanations = [explain_words(t) for t in triples]
    frame = pd.DataFrame(
        {
            "doc_id": range(N),
            "split": ["eval"] * (N // 2) + ["rl"] * (N - N // 2),
            "position": 10,
            "token_id": 0,
            "token": [f" {t[2]}" for t in triples],
            "prefix": [f"Once the {t[0]} saw a {t[2]}" for t in triples],
            "norm": vectors.norm(dim=-1).numpy(),
        }
    )
    meta = {"hook_name": "blocks.1.hook_resid_post", "norm_stats": norm_stats(vectors)}
    return ActivationDataset(vectors, frame, meta), explanations


def report(nla, case, **kwargs):
    dataset, _ = case
    return faithfulness_report(nla, dataset, n=None, progress=False, **kwargs)


def test_meaning_reading_nla_beats_every_control(case):
    summary = report(StandInNLA(BagAR()), case).summary
    assert summary["n"] == N // 2 and summary["split"] == "eval"
    assert summary["fve_nrm"] > 0.9
    assert summary["fve_nrm_shuffled"] < 0.2 < summary["fve_nrm"] - 0.5
    assert summary["predict_mean"] < 0.1 and not summary["predict_mean_in_sample"]
    assert summary["random_vector_fve_nrm"] < summary["fve_nrm"] - 0.5
    assert summary["paraphrase_retention"] > 0.95  # the rewrite keeps every concept word
    assert summary["paraphrase_retention_vs_shuffled"] > 0.95
    assert summary["ablation_mse_increase"] > 0.2  # every snippet names a concept
    assert set(summary["ablation_by_heading"]) == {"Recent context", "Likely next", "Current token"}
    assert summary["grounding"] > summary["grounding_shuffled"]
    assert summary["non_english_rate"] == 0.0


def test_current_token_baseline_explains_the_named_word_and_the_nla_beats_it(case):
    rng = np.random.default_rng(3)  # a larger set than `case`: the baseline is a regression
    triples = [tuple(rng.choice(len(WORDS), 3, replace=False)) for _ in range(400)]
    vectors = torch.stack([WORD_VECTORS[list(t)].sum(0) for t in triples])
    frame = pd.DataFrame(
        {
            "doc_id": range(400),
            "split": ["eval"] * 100 + ["rl"] * 300,
            "position": 10,
            "token_id": [t[2] for t in triples],
            "token": [f" {WORDS[t[2]]}" for t in triples],
            "prefix": [f"Once the {WORDS[t[2]]}" for t in triples],
            "norm": vectors.norm(dim=-1).numpy(),
        }
    )
    meta = {"hook_name": "blocks.1.hook_resid_post", "norm_stats": norm_stats(vectors)}
    data = ActivationDataset(vectors, frame, meta)
    summary = report(StandInNLA(BagAR()), (data, None), token_embeddings=WORD_VECTORS, n_random=0).summary
    unrelated = frame.assign(token_id=rng.integers(0, len(WORDS), 400))
    blind = report(
        StandInNLA(BagAR()),
        (ActivationDataset(vectors, unrelated, dict(data.meta)), None),
        token_embeddings=WORD_VECTORS,
        n_random=0,
    ).summary
    # one of the three concept words is the current token: the baseline gets part of the vector
    # (little on unit vectors), tokens unrelated to the vectors get nothing, the NLA all of it
    assert blind["current_token_control"] + 0.1 < summary["current_token_control"] < summary["fve_nrm"] - 0.5
    assert math.isnan(report(StandInNLA(BagAR()), (data, None), n_random=0).summary["current_token_control"])
    with pytest.raises(InputError, match="token ids"):
        faithfulness_report(StandInNLA(BagAR()), vectors, token_embeddings=WORD_VECTORS, progress=False)


def test_an_ar_that_ignores_its_input_shows_no_signal(case):
    rep = report(StandInNLA(ConstantAR()), case)
    s = rep.summary
    assert s["fve_nrm"] <= 0.0
    assert s["fve_nrm"] == pytest.approx(s["fve_nrm_shuffled"], abs=1e-6)
    assert s["paraphrase_drop"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(s["paraphrase_retention"])  # nothing to retain below the mean baseline
    assert math.isnan(s["paraphrase_retention_vs_shuffled"])  # nor above chance
    assert rep.paraphrase_table[["retention", "retention_vs_shuffled"]].isna().all().all()
    assert math.isnan(s["reorder_retention"]) and math.isnan(s["prose_retention"])
    assert rep.ablations["mse_increase"].abs().max() < 1e-6


def test_a_surface_form_ar_fails_the_paraphrase_check(case):
    dataset, explanations = case
    held = dataset.split("eval")
    table = {e: v for e, v in zip(explanations, held.vectors)}  # exact strings of the eval rows
    rep = report(StandInNLA(SurfaceAR(table)), case, explanations=explanations[: N // 2])
    s = rep.summary
    assert s["fve_nrm"] > 0.99
    assert s["paraphrase_fve_nrm"] < 0.2 and s["paraphrase_retention"] < 0.2
    assert s["paraphrase_retention_vs_shuffled"] < 0.5
    assert (rep.paraphrase_table["retention"] < 0.2).all(), rep.paraphrase_table
    assert s["reorder_retention"] < 0.2 and s["prose_retention"] < 0.2


def test_the_style_table_labels_each_style_and_a_meaning_reader_keeps_them_all(case):
    ar = RecordingAR()
    rep = report(StandInNLA(ar), case)
    table, s = rep.paraphrase_table, rep.summary
    assert list(table.columns) == list(PARAPHRASE_TABLE_COLUMNS)
    assert table["style"].tolist() == list(DEFAULT_PARAPHRASE_STYLES)
    for row in table.itertuples():
        style = STYLES.get(row.style)
        expected = (style.split, style.kind) if style else ("held_out", "rules")  # rules: held-out reorder, headings
        assert (row.split, row.kind) == expected, row
        first = rep.frame["explanation"][0]
        assert row.example == (restyle([first], row.style)[0] if style else rep.frame["paraphrase"][0])
    assert (table["retention"] > 0.95).all() and (table["retention_vs_shuffled"] > 0.95).all(), table
    assert s["reorder_retention"] > 0.95 and s["prose_retention"] > 0.95
    assert s["prose_retention_style"] in ("prose_says", "prose_sits")
    assert s["paraphrase_retention_by_style"] == dict(zip(table["style"], table["retention"]))
    # the default paraphraser is the "rules" row: scored once, its figures shared
    rules = table.set_index("style").loc["rules"]
    assert rules["fve_nrm"] == s["paraphrase_fve_nrm"] and rules["retention"] == s["paraphrase_retention"]
    assert sum(text.startswith("- Token being read") for text in ar.read) == N // 2


def test_a_layout_reading_ar_keeps_only_the_rewording_inside_its_template(case):
    rep = report(StandInNLA(LayoutAR()), case)
    s, by_style = rep.summary, rep.summary["paraphrase_retention_by_style"]
    assert s["fve_nrm"] > 0.9
    assert by_style["held_out_headings"] > 0.95  # same positions and quotes, other headings
    lost = {k: v for k, v in by_style.items() if k != "held_out_headings"}
    assert max(lost.values()) < 0.2, by_style  # another order, quotes, list format, or prose
    assert s["reorder_retention"] == by_style["reorder_rule"] < 0.2
    assert s["prose_retention"] == min(by_style["prose_says"], by_style["prose_sits"]) < 0.2


def test_paraphrase_styles_take_names_and_labelled_or_custom_paraphrasers(case):
    keep = lambda texts: list(texts)  # noqa: E731
    styles = {"template_mix": "template_mix", "prose": "prose_says", "lossy": DropTokenProse(), "as_is": keep}
    rep = report(StandInNLA(BagAR()), case, paraphrase_styles=styles, n_random=0)
    table, s = rep.paraphrase_table.set_index("style"), rep.summary
    assert table.index.tolist() == list(styles)
    assert tuple(table.loc["template_mix", ["split", "kind"]]) == ("train", "template")
    assert tuple(table.loc["lossy", ["split", "kind"]]) == ("held_out", "prose")  # labels it declares
    assert tuple(table.loc["as_is", ["split", "kind"]]) == ("custom", "custom")
    assert table.loc["as_is", "description"] == repr(keep)
    assert table.loc["as_is", "retention"] == pytest.approx(1.0)
    # the acceptance figure is the worst held-out prose style, here the one that loses a word
    assert table.loc["lossy", "retention"] < table.loc["prose", "retention"] - 0.1
    assert s["prose_retention"] == table.loc["lossy", "retention"] and s["prose_retention_style"] == "lossy"
    assert math.isnan(s["reorder_retention"])  # no reorder_rule row
    assert report(StandInNLA(BagAR()), case, paraphrase_styles=["reorder_rule"], n_random=0).summary[
        "reorder_retention"
    ] == pytest.approx(1.0)
    empty = report(StandInNLA(BagAR()), case, paraphrase_styles=(), n_random=0)
    assert len(empty.paraphrase_table) == 0 and math.isnan(empty.summary["prose_retention"])
    assert "paraphrase_retention" in empty.summary  # the paraphraser= check runs regardless
    for bad, match in (
        (["pirate"], "Unknown paraphrase style"),
        ("prose_says", "list"),
        ([keep], "mapping"),
        (["prose_says", "prose_says"], "twice"),
        ({"x": 3}, "style name or a callable"),
    ):
        with pytest.raises(InputError, match=match):
            faithfulness_report(StandInNLA(BagAR()), case[0], paraphrase_styles=bad, progress=False)


def test_given_explanations_are_scored_not_regenerated(case):
    dataset, explanations = case
    wrong = explanations[N // 2 :]  # explanations of other vectors
    s = report(StandInNLA(BagAR()), case, explanations=wrong).summary
    assert s["fve_nrm"] < 0.2 and math.isnan(s["failure_rate"])


def test_custom_paraphraser_is_used(case):
    drop_words = lambda texts: [re.sub(r"\b(" + "|".join(WORDS) + r")\b", "thing", t) for t in texts]  # noqa: E731
    rep = report(StandInNLA(BagAR()), case, paraphraser=drop_words)
    assert rep.summary["paraphrase_retention"] < 0.2
    assert all("thing" in p for p in rep.frame["paraphrase"])


def test_gibberish_rate_counts_non_english_explanations(case):
    s = report(StandInNLA(BagAR(), NearestWordsAV(gibberish_every=4)), case, n_random=0).summary
    assert s["non_english_rate"] == pytest.approx(5 / 20)
    assert math.isnan(s["random_vector_fve_nrm"])


def test_context_oracle_perfect_and_blind(case):
    dataset, explanations = case
    held = dataset.split("eval")
    full = [e.replace("\n", " ") for e in explanations[: N // 2]]  # source texts naming all three concepts
    perfect = context_oracle(BagAR(), held.vectors, prefixes=full, n_words=None)
    blind = context_oracle(ConstantAR(), held.vectors, prefixes=full, n_words=None)
    assert perfect.attrs["report"]["fve_nrm"] > 0.9
    assert blind.attrs["report"]["fve_nrm"] <= 0.0
    partial = report(StandInNLA(BagAR()), case).summary["context_oracle_fve_nrm"]  # prefixes name 2 of 3
    assert blind.attrs["report"]["fve_nrm"] < partial < perfect.attrs["report"]["fve_nrm"]


def test_snippet_ablation_finds_the_informative_snippet():
    target = WORD_VECTORS[WORDS.index("ocean")][None]
    text = '1. Topic: "ocean"\n2. Style: "plain and short"'
    frame = snippet_ablation(BagAR(), [text], target)
    by = dict(zip(frame["heading"], frame["mse_increase"]))
    assert by["Topic"] > 0.5 and abs(by["Style"]) < 1e-6


def test_json_summary_round_trips(case, tmp_path):
    import json

    rep = report(StandInNLA(BagAR()), case)
    strict = {"parse_constant": lambda name: pytest.fail(f"{name} is not valid JSON")}
    loaded = json.loads(rep.to_json(tmp_path / "r.json"), **strict)
    assert loaded["fve_nrm"] == pytest.approx(rep.summary["fve_nrm"])
    assert math.isnan(rep.summary["current_token_control"]) and loaded["current_token_control"] is None
    assert loaded == json.loads((tmp_path / "r.json").read_text(), **strict)
    back = pd.DataFrame(loaded["paraphrase_by_style"])
    pd.testing.assert_frame_equal(back, rep.paraphrase_table)
    assert loaded["paraphrase_retention_by_style"] == pytest.approx(rep.summary["paraphrase_retention_by_style"])
    html = rep._repr_html_()
    assert "fve_nrm" in html and "Paraphrase retention by style" in html and "prose_sits" in html
    assert "prose_retention=" in repr(rep) and "FaithfulnessReport" in repr(rep)


def test_the_model_card_shows_the_style_table_and_reads_older_reports(case):
    import json

    summary = json.loads(report(StandInNLA(LayoutAR()), case).to_json())
    card = _faithfulness(summary)
    for row in summary["paraphrase_by_style"]:
        assert f"| {row['style']} | {row['split']} | {row['description']} | {row['fve_nrm']:.3f} |" in card
    assert "Held out from training (no training style writes these forms): reorder_rule, held_out_headings" in card
    assert f"keeps {summary['prose_retention']:.3f} on the worst held-out prose style" in card
    # a report written before the table: the rule-at-a-time line, no table, no error
    old = {k: v for k, v in summary.items() if "style" not in k and k not in ("reorder_retention", "prose_retention")}
    old_card = _faithfulness({**old, "paraphrase_fve_nrm_by_op": {"reorder": -0.475, "headings": 0.162}})
    assert "one rewrite rule at a time: reorder -0.475, headings 0.162" in old_card
    assert "Paraphrase retention by surface form" not in old_card and "| NLA round trip (greedy) |" in old_card
    # a NaN retention (fve_nrm <= 0) is written as null in JSON and read as n/a
    nan_card = _faithfulness(json.loads(report(StandInNLA(ConstantAR()), case).to_json()))
    assert "| reorder_rule | held_out |" in nan_card and "| n/a |" in nan_card


def test_bad_input_is_refused_with_a_reason(case):
    dataset, explanations = case
    nla = StandInNLA(BagAR())
    with pytest.raises(InputError, match="one explanation per vector"):
        faithfulness_report(nla, dataset, explanations=explanations, progress=False)
    with pytest.raises(ShapeError, match="wide"):
        faithfulness_report(nla, torch.randn(4, D + 1), progress=False)
    with pytest.raises(InputError, match="at least 2"):
        faithfulness_report(nla, torch.randn(1, D), progress=False)
    with pytest.raises(InputError, match="list of 20 strings"):
        faithfulness_report(nla, dataset, paraphraser=lambda texts: texts[:1], progress=False)
    other = ActivationDataset(dataset.vectors, dataset.frame, {**dataset.meta, "hook_name": "blocks.0.hook_resid_post"})
    with pytest.raises(InputError, match="trained on"):
        faithfulness_report(nla, other, progress=False)
    with pytest.raises(InputError, match="ops"):
        RuleParaphraser(ops=("translate",))
