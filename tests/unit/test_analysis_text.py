"""Snippets, content words, grounding and the offline paraphraser (pure text, no model)."""

from __future__ import annotations

import math

import pytest

from nla_lens.analysis.paraphrase import OPS, RuleParaphraser
from nla_lens.analysis.text import content_words, grounding, heading_of, join_snippets, snippet_style, split_snippets
from nla_lens.errors import InputError

CONTEXT = (
    '1. Recent context: "…pulled at his forelock some hours after a Saracen"\n'
    '2. Likely next: "scimitar", "sword", "army"\n3. Current token: " Saracen"'
)


@pytest.mark.parametrize(
    "text, style, n",
    [
        (CONTEXT, "numbered", 3),
        ("- the topic is cats\n- the next word is a noun", "bullets", 2),
        ("Topic: cats\nCurrent word: mat", "lines", 2),
        ("The text is about cats. It ends on a noun. Next comes a verb.", "sentences", 3),
        ("", "sentences", 0),
    ],
)
def test_snippets_split_and_join_back(text, style, n):
    assert snippet_style(text) == style
    snippets = split_snippets(text)
    assert len(snippets) == n
    if n:
        assert split_snippets(join_snippets(snippets, style)) == snippets


def test_headings_are_format_not_content():
    assert [heading_of(s) for s in split_snippets(CONTEXT)] == ["Recent context", "Likely next", "Current token"]
    assert heading_of("This is a long sentence that happens to contain: a colon") == ""
    words = content_words(CONTEXT)
    assert "saracen" in words and "scimitar" in words
    assert not {"recent", "context", "likely", "current", "token"} & set(words)


def test_grounding_rises_with_shared_content():
    prefix = "The knight pulled at his forelock some hours after a Saracen"
    assert grounding(CONTEXT, prefix) > grounding(CONTEXT, "The weather in the valley was mild and dry.")
    assert grounding('1. Topic: "forelock"', prefix) == 1.0
    assert math.isnan(grounding("1. Topic: the", prefix))


def test_rule_paraphraser_keeps_content_and_changes_form():
    rewrite = RuleParaphraser()([CONTEXT])[0]
    assert rewrite != CONTEXT
    assert sorted(content_words(rewrite)) == sorted(content_words(CONTEXT))
    first = split_snippets(rewrite)[0]
    assert "Saracen" in first and "Token being read" in first  # the last snippet moved to the front
    assert '"' not in rewrite and snippet_style(rewrite) == "bullets"


@pytest.mark.parametrize("op", OPS)
def test_each_rule_changes_something_and_keeps_meaning(op):
    text = CONTEXT if op != "synonyms" else "The text is about a cat because it mentions whiskers."
    rewrite = RuleParaphraser(ops=(op,))([text])[0]
    assert rewrite != text
    assert sorted(content_words(rewrite)) == sorted(content_words(text)) or op == "synonyms"
    if op == "synonyms":
        assert {"cat", "whiskers"} <= set(content_words(rewrite))


def test_paraphraser_refuses_bad_input():
    with pytest.raises(InputError, match="list"):
        RuleParaphraser()("a single string")
    with pytest.raises(InputError, match="ops"):
        RuleParaphraser(ops=())
