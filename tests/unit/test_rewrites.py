"""The surface forms of an explanation (``nla_lens.rewrites``): content kept, held-out forms never trained on.

Model-free. The inputs are teacher-format explanations written by the offline ``ContextTeacher``
(both of its variants, with and without next-token predictions), so the checks run on the text
the AR is really trained on.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from nla_lens.data.teachers import ContextTeacher
from nla_lens.errors import InputError
from nla_lens.rewrites import HELD_OUT_STYLES, STYLES, TRAIN_STYLES, augment, parse, render, restyle

WORDS = (
    "the cat sat on a mat while an old river ran past the doctor's garden and it was quiet by night "
    "storm violin engine bread forest candle 42 3.5 don't well"
).split()

#: Wording that only the held-out prose styles use.
HELD_OUT_WORDING = ("has just reached the word", "sits on", "next it will probably say", "what follows is most likely")
#: Headings that only the held-out styles (and the rule paraphraser) use.
HELD_OUT_HEADINGS = ("Text just before", "Probable continuations", "Token being read", "Main themes", "Final words")


def teacher_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` explanations in the offline teacher's formats: context + predictions, context + topic
    words, and the ``template`` variant (topic words; last words) with and without predictions."""
    rng = random.Random(seed)
    context, template = ContextTeacher(progress=False), ContextTeacher(progress=False, variant="template")
    texts = []
    for i in range(n):
        prefix = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24)))
        if i % 7 == 0:
            prefix += ',\nhe said "no"'  # a quote and a newline inside the context
        token = " " + prefix.split()[-1]
        predictions = [rng.choice(WORDS) for _ in range(3)] if i % 3 else None
        if i % 11 == 0 and predictions:
            predictions[1] = "\n"  # a newline is a common prediction of the subject model
        texts.append((template if i % 4 == 0 else context).explain(prefix, token, predictions))
    return texts


TEXTS = teacher_texts(60)


def values(text: str) -> list[tuple[str, str]]:
    """``(role, value)`` for every quoted value of a teacher-format explanation."""
    return [(part.role, item) for part in parse(text) for item in part.items]


def written(value: str, text: str) -> bool:
    """Whether ``value`` appears verbatim in ``text`` as one quoted unit, whatever the quoting
    (control characters escaped as JSON writes them, so a ``"\\n"`` value stays on its line)."""
    visible = json.dumps(value, ensure_ascii=False)[1:-1].replace('\\"', '"')
    forms = (json.dumps(value, ensure_ascii=False), f"`{visible}`", f"'{visible}'", f"\u201c{visible}\u201d")
    return any(form in text for form in forms)


def test_the_teacher_format_parses_into_its_roles():
    text = ContextTeacher(progress=False).explain("The sea was calm and the", " the", ["ship", "boat", "sea"])
    assert [(p.role, p.heading, p.items) for p in parse(text)] == [
        ("context", "Recent context", ("The sea was calm and the",)),
        ("next", "Likely next", ("ship", "boat", "sea")),
        ("token", "Current token", (" the",)),
    ]
    template = ContextTeacher(progress=False, variant="template").explain("The sea was calm", " calm")
    assert [p.role for p in parse(template)] == ["topics", "context", "token"]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_keeps_every_quoted_value_verbatim(style):
    for text in TEXTS:
        out = restyle([text], style)[0]
        assert out.strip(), (style, text)
        if STYLES[style].split == "held_out":
            assert out != text, (style, text)
        if style == "bare_context":  # the context alone, unquoted, by design
            context = next(p for p in parse(text) if p.role == "context").items[-1]
            assert out == context.lstrip("…").strip()
            continue
        missing = [v for _, v in values(text) if not written(v, out)]
        assert missing == [], (style, text, out)


@pytest.mark.parametrize("style", ["reorder_rule", "held_out_headings"])
def test_double_quoted_held_out_templates_parse_back_to_the_same_content(style):
    for text in TEXTS:
        parts, back = parse(text), parse(restyle([text], style)[0])
        assert sorted((p.role, p.items) for p in back) == sorted((p.role, p.items) for p in parts)
        if style == "reorder_rule":  # the last snippet first, the others in order
            assert [p.role for p in back] == [p.role for p in [*parts[-1:], *parts[:-1]]]
        else:
            assert [p.role for p in back] == [p.role for p in parts]
            assert {p.heading for p in back} <= set(HELD_OUT_HEADINGS)


def test_held_out_styles_never_appear_in_training_rewrites():
    texts = teacher_texts(200, seed=1)
    seen = set()
    for seed in range(8):
        for text, out in zip(texts, augment(texts, list(range(len(texts))), 1.0, seed)):
            seen.add(out)
            assert not [h for h in HELD_OUT_HEADINGS if f"{h}:" in out], out
            assert "\u201c" not in out and "\u201d" not in out, out
            assert not [v for _, v in values(text) if f"'{v}'" in out], out
            assert not [w for w in HELD_OUT_WORDING if w in out.lower()], out
            parts, back = parse(text), parse(out)
            if len(parts) > 2 and [p.role for p in back] == [p.role for p in parts[-1:] + parts[:-1]]:
                # the held-out snippet order: the current token first, then the others as they were
                assert not all(p.heading for p in back), out
    assert len(seen) > 1000  # many different rewrites, not one form over and over


def test_augment_is_deterministic_per_id_and_independent_of_the_batch():
    ids = list(range(100, 160))
    once = augment(TEXTS, ids, 0.7, (3, 11))
    assert once == augment(TEXTS, ids, 0.7, (3, 11))
    order = random.Random(0).sample(range(len(TEXTS)), len(TEXTS))
    shuffled = augment([TEXTS[i] for i in order], [ids[i] for i in order], 0.7, (3, 11))
    assert shuffled == [once[i] for i in order]
    assert augment(TEXTS[5:9], ids[5:9], 0.7, (3, 11)) == once[5:9]
    assert augment(TEXTS, ids, 0.7, (3, 12)) != once  # another step draws other rewrites
    rewritten = sum(a != b for a, b in zip(once, TEXTS))
    assert 0.45 * len(TEXTS) < rewritten < 0.95 * len(TEXTS)


def test_share_zero_and_empty_texts_are_left_as_given():
    assert augment(TEXTS, list(range(len(TEXTS))), 0.0, 0) == TEXTS
    assert augment(["", TEXTS[0]], [0, 1], 1.0, 0)[0] == ""
    for style in STYLES:
        assert restyle(["", "  "], style) == ["", "  "]
        assert render([], style) == ""


def test_bad_arguments_are_refused_with_a_reason():
    for share in (-0.1, 1.5):
        with pytest.raises(InputError, match="share"):
            augment(TEXTS, list(range(len(TEXTS))), share, 0)
    with pytest.raises(InputError, match="ids"):
        augment(TEXTS, [0], 0.5, 0)
    with pytest.raises(InputError, match="Unknown style"):
        restyle(TEXTS[:1], "pirate")
    with pytest.raises(InputError, match="Unknown style"):
        render(parse(TEXTS[0]), "pirate")
    with pytest.raises(InputError, match="list"):
        restyle(TEXTS[0], "reorder_rule")


def test_held_out_styles_are_deterministic_and_training_styles_vary():
    # the report measures the same text on every run; training sees many forms of one text
    for name in HELD_OUT_STYLES:
        assert restyle(TEXTS, name, seed=0) == restyle(TEXTS, name, seed=1)
    for name in ("template_mix", "prose_mix"):
        assert name in TRAIN_STYLES and restyle(TEXTS, name, seed=0) != restyle(TEXTS, name, seed=1)


def test_training_prose_is_composed_in_many_wordings_and_orders():
    """One explanation's training prose comes in many sentence wordings and role orders (not a few
    templates the AR could learn by heart), and never in a held-out style's wording."""
    text = TEXTS[1]  # context, predictions and current token
    assert {part.role for part in parse(text)} == {"context", "next", "token"}
    rewrites = restyle([text] * 200, "prose_mix", seed=0)
    quoted = re.compile(r"\"(?:[^\"\\]|\\.)*\"|`[^`]*`")
    wordings = {quoted.sub("V", rewrite) for rewrite in rewrites}
    assert len(wordings) >= 50, f"only {len(wordings)} wordings in 200 rewrites"
    first_role = Counter(
        min(("context", "next", "token"), key=lambda role, r=rewrite: _first_at(r, parse(text), role))
        for rewrite in rewrites
    )
    assert len(first_role) == 3 and min(first_role.values()) >= 30  # each role opens some rewrites
    assert not any(w in r for r in rewrites for w in HELD_OUT_WORDING)


def _first_at(rewrite: str, parts, role: str) -> int:
    """Where the first value of ``role`` appears in ``rewrite``."""
    value = next(part.items[0] for part in parts if part.role == role)
    visible = json.dumps(value, ensure_ascii=False)[1:-1]
    return min(i for i in (rewrite.find(f'"{visible}"'), rewrite.find(f"`{visible}`")) if i >= 0)
