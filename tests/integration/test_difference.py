"""Explaining a difference and a direction with the shipped NLA on the embedded SmolLM2-135M.

Constructed cases (CPU; each comparison is two or three greedy explanations):

* the same activation twice: no snippet and no word changes, change level 0;
* the direction from the layer-20 activation at " cat" to the one at " dog" in an otherwise
  identical prompt, added to the cat activation at strength 0.8: the "Current token" snippet turns
  from " cat" to " dog"; the control, a random direction of the same norm at the same strength,
  moves other words (its change level is reported, and on this NLA is no lower than the flip's:
  the recent-context quote and the likely next words move for any push) but leaves the current
  token alone;
* ``nla-lens explain --compare`` prints both explanations and the snippet that changes.

The shipped NLA is retrained from time to time; what is asserted is the current-token identity
(the snippet the NLA is trained to get right) and the shape of the report, not exact wording.
"""

from __future__ import annotations

import math
import re
from html import unescape

import pytest

import nla_lens
from nla_lens.cli import main
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.hook_check import check_subject
from nla_lens.vis import external_references

pytestmark = pytest.mark.embedded

KW = dict(max_new_tokens=64, progress=False, warn=False)
CAT, DOG = "The little cat", "The little dog"


@pytest.fixture(scope="module")
def shipped():
    return nla_lens.NLA.from_pretrained()


@pytest.fixture(scope="module")
def cat_dog(shipped, bridge):
    """The layer-20 activations ``[d_model]`` at the last token of CAT and of DOG."""
    adapter, hook = check_subject(shipped, bridge)
    reads = [prompt_activations(adapter, text, hook, [2]) for text in (CAT, DOG)]
    assert [r.tokens[2] for r in reads] == [" cat", " dog"]
    return reads[0].vectors[0], reads[1].vectors[0]


@pytest.fixture(scope="module")
def flip(shipped, cat_dog):
    cat, dog = cat_dog
    return shipped.explain_direction(dog - cat, vectors=cat[None], strength=0.8, seed=0, **KW)


def current_token(text: str) -> str:
    return next(s for s in nla_lens.analysis.split_snippets(text) if s.startswith("Current token"))


def test_the_same_input_twice_changes_no_word(shipped, cat_dog):
    cat, _ = cat_dog
    result = shipped.compare(cat, cat.clone(), control="swap", **KW)
    a, b = result.explanations
    assert a == b and result.change_level == 0.0 and result.changed.empty, result.frame
    assert result.snippets["added"].map(len).sum() == 0 and result.snippets["removed"].map(len).sum() == 0
    assert '" cat"' in current_token(a)
    assert math.isnan(result.control_change_level) and "rebuilds B's input" in result.summary["control_kind"]


def test_a_direction_that_flips_the_token_changes_the_current_token_snippet_and_the_control_does_not(flip):
    a, b, control = flip.explanations
    print(flip, *flip.explanations, sep="\n")
    assert '" cat"' in current_token(a) and '" dog"' in current_token(b), flip.frame
    assert "Current token" in flip.summary["changed_headings"]
    row = flip.changed.set_index("heading").loc["Current token"]
    assert row.added == ["dog"] and row.removed == ["cat"] and row.change_level == 1.0
    # the control: a random direction of the same norm, added at the same strength
    assert 0.0 <= flip.control_change_level <= 1.0 and 0.0 < flip.change_level <= 1.0
    assert "Current token" not in flip.summary["control_changed_headings"], control
    assert '" cat"' in current_token(control)
    # every vector at the typical norm (here the cat activation's own), the reconstructions scored
    assert flip.vectors.shape == (3, 576)
    assert flip.vectors.norm(dim=-1).sub(flip.vectors[0].norm()).abs().max() < 1e-2
    assert flip.frame["cosine"].between(0.5, 1).all() and flip.frame["mse"].between(0, 1).all()


def test_the_view_shows_both_explanations_the_changed_words_and_the_control(flip, tmp_path):
    html = flip._repr_html_()
    a, b, control = flip.explanations
    text = unescape(re.sub(r"<[^>]+>", "", html))  # what a reader sees
    for snippet in nla_lens.analysis.split_snippets(a) + nla_lens.analysis.split_snippets(b):
        assert snippet in text  # both explanations, snippet by snippet
    assert "A: typical activation" in text and "B: + direction" in text
    assert 'class="nla-changed" data-heading="Current token"' in html
    assert 'Current token: &quot; <del class="nla-removed">cat</del>&quot;' in html
    assert 'Current token: &quot; <mark class="nla-added">dog</mark>&quot;' in html
    assert "Control</b>: a random direction of the same norm" in html
    assert f"control {flip.control_change_level:.3f}" in html
    page = flip.save(tmp_path / "flip.html").read_text(encoding="utf-8")
    assert external_references(page) == [] and "NLA explanations compared" in page


def test_the_cli_compares_two_texts(capsys):
    assert main(["explain", "--compare", CAT, DOG, "--max-new-tokens", "64"]) == 0
    out = capsys.readouterr().out
    print(out)
    lines = out.splitlines()
    a = next(line for line in lines if line.startswith("A  "))
    b = next(line for line in lines if line.startswith("B  "))
    assert "' cat'" in a and "' dog'" in b and "cos " in a and "mse " in b
    explanations = [lines[lines.index(a) + 1], lines[lines.index(b) + 1]]
    assert 'Current token: " cat"' in explanations[0] and 'Current token: " dog"' in explanations[1]
    assert "  Current token" in lines and "    words: -cat +dog" in lines
    summary = next(line for line in lines if line.startswith("change level"))
    assert "control" in summary and "random direction of the same norm" in summary
