"""Explaining a difference and a direction, without a model: the shared direction function, the word
measures, the view, and :func:`compare`/:func:`explain_direction` on a stand-in NLA.

The stand-in's verbalizer names the dimension a vector points along most (``WORDS[argmax]``) in a
"Current token" snippet, beside a constant one, and its reconstructor rebuilds that dimension's
one-hot vector: enough to check which snippets change, the controls and the refusals. The real
NLA on the embedded model is tested in ``tests/integration/test_difference.py``.
"""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch

from nla_lens.analysis.difference import change_level, compare, explain_direction, snippet_changes
from nla_lens.analysis.direction import default_strengths, direction_vectors, random_directions, typical_activation
from nla_lens.cli import format_comparison, main
from nla_lens.errors import InputError, ShapeError
from nla_lens.vis import DifferenceView, external_references
from nla_lens.vis.difference import highlight_words

D = 8
WORDS = ["cat", "dog", "bird", "tree", "park", "mat", "sea", "ship"]


class _AV:
    d_model = D

    def verbalize(self, vectors, **kwargs):
        vectors = torch.as_tensor(vectors)
        texts = [
            f'1. Recent context: "a story"\n2. Current token: " {WORDS[int(v.argmax())]}"' for v in vectors.float()
        ]
        return pd.DataFrame({"vector": range(len(texts)), "explanation": texts, "ok": True})


class _AR(torch.nn.Module):
    def reconstruct(self, texts, batch_size=16):
        out = torch.full((len(texts), D), 0.1)
        for i, text in enumerate(texts):
            out[i, WORDS.index(re.search(r'token: " (\w+)', text).group(1))] = 1.0
        return out


class _NLA:
    d_model = D

    def __init__(self):
        self.av, self.ar = _AV(), _AR()


def one_hot(i: int, scale: float = 10.0) -> torch.Tensor:
    v = torch.full((D,), 1.0)
    v[i] = scale
    return v


# -- the shared direction function -----------------------------------------------------------------
def test_direction_vectors_shapes_norms_and_strengths():
    g = torch.Generator().manual_seed(0)
    vectors = 5 + torch.randn(16, D, generator=g)  # [16, D]
    directions = torch.randn(3, D, generator=g)  # [3, D]
    median = vectors.norm(dim=-1).median()
    out = direction_vectors(vectors, directions, torch.tensor([0.5, 2.0, 0.0]))
    assert out.shape == (3, D)
    assert torch.allclose(out.norm(dim=-1), median.expand(3))  # every row at the typical norm
    mean = vectors.mean(0)
    expected = mean + 0.5 * directions[0]
    assert torch.allclose(out[0], expected * median / expected.norm())
    # a non-positive strength falls back to the typical spread over the direction's norm
    spread = (vectors - mean).norm(dim=-1).median()
    assert torch.allclose(default_strengths(vectors, directions), spread / directions.norm(dim=-1))
    assert torch.allclose(direction_vectors(vectors, directions)[2], out[2])
    base = typical_activation(vectors)
    assert base.shape == (D,) and torch.isclose(base.norm(), median)
    assert torch.allclose(base / base.norm(), mean / mean.norm())


def test_random_directions_keep_each_norm_and_are_seeded():
    directions = torch.stack([torch.arange(D).float(), torch.zeros(D), torch.ones(D)])
    r = random_directions(directions, seed=3)
    assert r.shape == directions.shape and torch.allclose(r.norm(dim=-1), directions.norm(dim=-1))
    assert torch.equal(r, random_directions(directions, seed=3))
    assert not torch.equal(r, random_directions(directions, seed=4))
    assert abs(float(torch.nn.functional.cosine_similarity(r[0], directions[0], dim=0))) < 0.9


# -- the word measures -----------------------------------------------------------------------------
def test_change_level_and_snippet_changes():
    a = '1. Recent context: "the cat sat"\n2. Current token: " cat"'
    b = '1. Recent context: "the cat sat"\n2. Current token: " dog"'
    assert change_level(a, a) == 0.0 and change_level("", "") == 0.0
    assert change_level(a, b) == pytest.approx(1 / 3)  # {cat, sat} vs {cat, sat, dog}: cat stays in the context
    assert change_level("1. Current token: cat", "1. Current token: dog") == 1.0
    table = snippet_changes(a, b)
    assert table["heading"].tolist() == ["Recent context", "Current token"]
    assert table["changed"].tolist() == [False, True]
    row = table.iloc[1]
    assert row.added == ["dog"] and row.removed == ["cat"] and row.before.endswith('" cat"')
    assert table["change_level"].tolist() == [0.0, 1.0]  # per snippet: the current token changes entirely
    assert snippet_changes(a, a)["changed"].sum() == 0
    # snippets only one side has, and snippets without a heading (matched by place)
    extra = snippet_changes("1. Current token: cat\n2. the end", "1. Likely next: dog\n2. the end")
    assert extra["heading"].tolist() == ["Current token", "snippet 2", "Likely next"]
    assert extra["changed"].tolist() == [True, False, True] and extra.iloc[2].before == ""


# -- the view --------------------------------------------------------------------------------------
def _view() -> DifferenceView:
    sides = [
        {"label": "A <cat>", "explanation": "x", "cosine": 0.9, "mse": 0.2, "cosine_other": 0.5},
        {"label": "B", "explanation": "y", "cosine": 0.8, "mse": 0.4, "cosine_other": 0.6},
    ]
    changed = snippet_changes(
        '1. Recent context: "a story"\n2. Current token: " cat"',
        '1. Recent context: "a story"\n2. Current token: " dog"',
    )
    control = {"kind": "a random direction of the same norm", "change_level": 0.25, "changed_headings": []}
    return DifferenceView(sides, changed.to_dict("records"), change_level=0.5, control=control)


def test_the_view_renders_both_sides_the_changed_words_and_the_control():
    html = _view().html
    assert 'data-nla-vis="difference"' in html and "A: A &lt;cat&gt;" in html
    assert '<del class="nla-removed">cat</del>' in html and '<mark class="nla-added">dog</mark>' in html
    assert 'class="nla-changed" data-heading="Current token"' in html
    assert 'class="nla-same" data-heading="Recent context"' in html
    assert "change level <b>0.500</b>" in html and "control 0.250" in html and "snippets changed: none" in html
    assert "cos 0.900" in html and "change 1.00" in html and external_references(html) == []
    assert highlight_words("The cat's cat, Cat.", ["cat"]) == (
        'The cat&#x27;s <mark class="nla-added">cat</mark>, <mark class="nla-added">Cat</mark>.'
    )


def test_the_view_page_is_self_contained(tmp_path):
    path = _view().save(tmp_path / "diff.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and external_references(text) == []


# -- compare and explain_direction on a stand-in NLA ------------------------------------------------
def test_the_same_vector_twice_changes_nothing():
    result = compare(_NLA(), one_hot(0), one_hot(0))
    assert result.change_level == 0.0 and result.changed.empty
    assert result.snippets["added"].map(len).sum() == 0 and result.snippets["removed"].map(len).sum() == 0
    assert result.control_change_level == 0.0  # a random direction of norm 0
    assert result.frame["side"].tolist() == ["A", "B", "control"]


def test_a_flip_changes_the_current_token_and_the_control_is_reported():
    result = compare(_NLA(), one_hot(0), one_hot(1), seed=0)
    assert result.summary["changed_headings"] == ["Current token"]
    assert result.change_level == pytest.approx(2 / 3)  # {story, cat} vs {story, dog}
    row = result.changed.iloc[0]
    assert row.added == ["dog"] and row.removed == ["cat"]
    assert 0.0 <= result.control_change_level <= 1.0
    frame = result.frame.set_index("side")
    assert frame.loc["A", "cosine"] > frame.loc["A", "cosine_other"]  # A's explanation rebuilds A, not B
    assert "Current token" in result._repr_html_() and "Comparison(change level 0.67" in repr(result)
    swapped = compare(_NLA(), one_hot(0), one_hot(1), control="swap")
    assert len(swapped.frame) == 2 and math.isnan(swapped.control_change_level)
    assert "A's explanation rebuilds B's input" in swapped.summary["control_kind"]


def test_explain_direction_adds_the_direction_to_the_typical_activation():
    g = torch.Generator().manual_seed(1)
    vectors = one_hot(0) + 0.1 * torch.randn(32, D, generator=g)  # typical activations: "cat"
    direction = torch.zeros(D)
    direction[1] = 1.0  # towards "dog"
    result = explain_direction(_NLA(), direction, vectors=vectors, strength=20.0)
    assert result.explanations[0].endswith('" cat"') and result.explanations[1].endswith('" dog"')
    assert result.summary["changed_headings"] == ["Current token"]
    assert result.vectors.shape == (3, D)
    median = vectors.norm(dim=-1).median()
    assert torch.allclose(result.vectors.norm(dim=-1), median.expand(3))  # all at the typical norm
    assert 0.0 <= result.control_change_level <= 1.0
    # the default strength: the typical spread, too small to flip the token here
    assert explain_direction(_NLA(), direction, vectors=vectors).change_level == 0.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda n: compare(n, torch.ones(D + 1), torch.ones(D)), ShapeError, "width 9 but width 8"),
        (lambda n: compare(n, torch.ones(2, D), torch.ones(D)), ShapeError, "one activation of shape"),
        (lambda n: compare(n, torch.full((D,), math.nan), torch.ones(D)), InputError, "NaN"),
        (lambda n: compare(n, "The cat", "The dog"), InputError, "pass subject="),
        (lambda n: compare(n, torch.ones(D), torch.ones(D), control="other"), InputError, "control must be"),
        (lambda n: compare(n, torch.ones(D), torch.ones(D), do_sample=True), InputError, "greedy"),
        (lambda n: compare(n, "a", "b", positions=[1, 2, 3]), InputError, "positions must be"),
        (lambda n: explain_direction(n, torch.zeros(D), vectors=torch.ones(4, D)), InputError, "direction is zero"),
        (lambda n: explain_direction(n, torch.ones(D)), InputError, "needs vectors="),
        (lambda n: explain_direction(n, torch.ones(D), vectors=torch.ones(D)), InputError, "pass strength="),
        (lambda n: explain_direction(n, torch.ones(D), vectors=torch.ones(D), strength=-1), InputError, "positive"),
        (lambda n: explain_direction(n, torch.ones(D + 2), vectors=torch.ones(D)), ShapeError, "width 10"),
        (lambda n: explain_direction(n, torch.ones(D), vectors=torch.ones(3, D + 1)), ShapeError, "width 9"),
    ],
)
def test_bad_input_is_refused_saying_how_to_fix_it(call, error, match):
    with pytest.raises(error, match=match):
        call(_NLA())


# -- the command line ------------------------------------------------------------------------------
def test_the_cli_lines_show_both_explanations_the_changed_words_and_the_control():
    lines = format_comparison(compare(_NLA(), one_hot(0), one_hot(1), labels=("cat", "dog")), 120)
    assert lines[0].startswith("A  'cat'  cos ") and lines[2].startswith("B  'dog'  cos ")
    assert lines[1] == '   1. Recent context: "a story" / 2. Current token: " cat"'
    assert lines[3].endswith('Current token: " dog"')
    assert "changed snippets: 1 of 2" in lines and "  Current token" in lines and "    words: -cat +dog" in lines
    assert lines[-1].startswith("change level 0.67 (share of content words that differ); control ")
    assert "random direction of the same norm as B − A" in lines[-1]
    swapped = format_comparison(compare(_NLA(), one_hot(0), one_hot(1), control="swap"), 120)
    assert "control (swapped inputs: A's explanation rebuilds B's input at cos" in swapped[-1]


def test_the_cli_asks_for_one_text_or_two_to_compare(capsys):
    assert main(["explain"]) == 2
    assert main(["explain", "a text", "--compare", "text A", "text B"]) == 2
    assert main(["explain", "--compare", "text A", "text B", "--positions", "1", "2", "3"]) == 2
    assert "--compare" in capsys.readouterr().err
