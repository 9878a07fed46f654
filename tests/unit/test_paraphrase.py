"""The offline style and prose paraphrasers and how the faithfulness report names its paraphrase rows (no model)."""

from __future__ import annotations

import pytest

from nla_lens.analysis import ProseParaphraser, RuleParaphraser, StyleParaphraser
from nla_lens.analysis.paraphrase import (
    DEFAULT_PARAPHRASE_STYLES,
    check_paraphrases,
    paraphraser_labels,
    resolve_paraphrasers,
)
from nla_lens.analysis.text import content_words
from nla_lens.data.teachers import ContextTeacher
from nla_lens.errors import InputError
from nla_lens.rewrites import HELD_OUT_STYLES, STYLES

TEACHER = ContextTeacher(progress=False)
EXPLANATIONS = [
    TEACHER.explain("The knight pulled at his forelock some hours after a Saracen", " Saracen", ["army", "sword"]),
    TEACHER.explain("The sea was calm and the boat drifted", " drifted", None),
    ContextTeacher(progress=False, variant="template").explain("Rain fell on the quiet harbour town", " town"),
    "",
]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_style_paraphraser_rewrites_the_form_and_keeps_the_content(style):
    paraphraser = StyleParaphraser(style)
    rewrites = check_paraphrases(EXPLANATIONS, paraphraser(EXPLANATIONS))
    assert rewrites[-1] == ""  # nothing to rewrite
    for before, after in zip(EXPLANATIONS[:-1], rewrites):
        assert after != before
        if style != "bare_context":  # the context alone, by design
            assert set(content_words(before)) <= set(content_words(after)), (before, after)
    again = eval(repr(paraphraser), {"StyleParaphraser": StyleParaphraser})
    assert again(EXPLANATIONS) == rewrites


def test_the_prose_paraphraser_writes_sentences_and_refuses_templates():
    prose = ProseParaphraser()
    out = prose(EXPLANATIONS[:1])[0]
    assert "\n" not in out and out.endswith(".") and "Recent context" not in out
    assert "Saracen" in out and "sword" in out
    assert ProseParaphraser("prose_sits")(EXPLANATIONS[:1])[0] != out
    assert repr(prose) == "ProseParaphraser(style='prose_says', seed=0)"
    with pytest.raises(InputError, match="plain sentences.*'prose_says'"):
        ProseParaphraser("reorder_rule")
    with pytest.raises(InputError, match="not a style"):
        ProseParaphraser("pirate")
    with pytest.raises(InputError, match="Unknown surface style"):
        StyleParaphraser("pirate")
    with pytest.raises(InputError, match="list"):
        prose("a single string")


def test_an_explanation_with_nothing_to_say_in_prose_stays_as_written():
    text = "Likely next: (none)"  # its only content is an empty list
    assert check_paraphrases([text], ProseParaphraser()([text])) == [text]


def test_rows_are_labelled_by_what_the_paraphraser_declares():
    assert paraphraser_labels(StyleParaphraser("prose_sits"))["split"] == "held_out"
    assert paraphraser_labels(StyleParaphraser("prose_mix"))["split"] == "train"
    # a change of list format alone is a training form; any other rule is held out
    assert RuleParaphraser(ops=("format",)).split == "train"
    assert {RuleParaphraser(ops=(op,)).split for op in ("reorder", "headings", "quotes", "synonyms")} == {"held_out"}
    assert RuleParaphraser().kind == "rules" and "reorder" in RuleParaphraser().description

    def mine(texts):
        return texts

    assert paraphraser_labels(mine) == {"split": "custom", "kind": "custom", "description": repr(mine)}


def test_paraphrase_styles_resolve_names_and_mappings():
    default = resolve_paraphrasers(None)
    assert list(default) == list(DEFAULT_PARAPHRASE_STYLES)
    assert [repr(default[name]) for name in HELD_OUT_STYLES] == [repr(StyleParaphraser(n)) for n in HELD_OUT_STYLES]
    assert repr(default["rules"]) == repr(RuleParaphraser())
    reorder = RuleParaphraser(ops=("reorder",))
    mixed = resolve_paraphrasers({"mine": reorder, "prose": "prose_says"})
    assert mixed["mine"] is reorder and repr(mixed["prose"]) == repr(StyleParaphraser("prose_says"))
    assert resolve_paraphrasers(()) == {}
