"""Surface forms of an explanation: the same content in other layouts, headings, quotes and prose.

An explanation's *content* is what its snippets say: the recent context, the likely next tokens,
the current token (the offline teacher's three snippets), or any other headed snippet. Its
*surface form* is how that is written down: snippet order, headings, quoting, list format, or
plain sentences. A reconstructor that reads meaning should reconstruct every surface form of the
same content about equally well; one trained on a single template learns the layout instead
(issue 19: a plain-prose rewrite of the shipped NLA's explanations fell from fve_nrm 0.33 to -0.46).

This module parses an explanation into :class:`Part` s (:func:`parse`) and writes parts back in a
named *style* (:func:`render`). Styles come in two disjoint sets:

* :data:`TRAIN_STYLES`: what the AR trains on (:func:`augment`, used by the warm start, the refit
  and GRPO's AR updates) — other headings, snippet orders, list formats, double quotes or
  backticks, prose composed from training phrasings in any order, and the bare context text;
* :data:`HELD_OUT_STYLES`: what the faithfulness report measures and training never sees — the
  project's reorder rule (last snippet first), the rule paraphraser's headings, single and curly
  quotes, and two prose templates with wording no training style uses.

Written here rather than with a paraphrase library: those need model weights (no network here)
and may change the content words; these rewrites keep every quoted value verbatim by construction.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Callable, Sequence

from nla_lens.errors import InputError
from nla_lens.sampling import sample_seeds
from nla_lens.snippets import HEADING_RE, heading_of, join_snippets, split_snippets

__all__ = [
    "HELD_OUT_STYLES",
    "STYLES",
    "TRAIN_STYLES",
    "Part",
    "Style",
    "augment",
    "parse",
    "render",
    "restyle",
]

ROLES = ("context", "topics", "next", "token", "other")
"""What a snippet says: recent context, topic words, likely next tokens, the current token, or other."""

#: Training headings per role (the first is the offline teacher's own).
TRAIN_HEADINGS = {
    "context": ("Recent context", "Preceding text", "Context", "Text so far", "Last words"),
    "topics": ("Topic words", "Topics", "Themes"),
    "next": ("Likely next", "Predicted next", "Next token guesses", "Expected continuation"),
    "token": ("Current token", "Token", "Now reading", "Latest token"),
}

#: Held-out headings per role: the rule paraphraser's (``nla_lens.analysis.paraphrase.HEADINGS``).
HELD_OUT_HEADINGS = {
    "context": ("Text just before", "Final words"),
    "topics": ("Main themes", "Subject"),
    "next": ("Probable continuations",),
    "token": ("Token being read",),
}

_ROLE_OF = {h.lower(): role for table in (TRAIN_HEADINGS, HELD_OUT_HEADINGS) for role, hs in table.items() for h in hs}
_ROLE_OF.update({"topic": "topics", "genre": "other"})
_QUOTED_RE = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")
_SUB_HEADING_RE = re.compile(r";\s+(?=[A-Za-z][A-Za-z '\-]{0,40}:\s)")


@dataclasses.dataclass(frozen=True)
class Part:
    """One snippet's content.

    Attributes:
        role: One of :data:`ROLES` (from the heading; ``"other"`` when unknown or missing).
        heading: The heading as written (``""`` if none).
        items: The quoted values, unquoted (``("…the cat sat",)``, ``("tired", "sleepy")``), or
            the snippet's body as one item when it quotes nothing.
        quoted: Whether the values were quoted.
    """

    role: str
    heading: str
    items: tuple[str, ...]
    quoted: bool


def _unquote(body: str) -> tuple[tuple[str, ...], bool]:
    if body.strip() == "(none)":  # the teacher's empty list
        return (), True
    found = _QUOTED_RE.findall(body)
    if not found:
        return (body.strip(),), False
    items = []
    for raw in found:
        try:
            items.append(json.loads(f'"{raw}"'))
        except json.JSONDecodeError:  # a stray backslash: keep the text as written
            items.append(raw)
    return tuple(items), True


def parse(text: str) -> list[Part]:
    """The content of one explanation: one :class:`Part` per (sub-)snippet, in order.

    A snippet holding two headed halves (``Topic words: ...; last words: "..."``) gives two parts.
    An empty text gives no parts.
    """
    parts: list[Part] = []
    for snippet in split_snippets(text or ""):
        for piece in _SUB_HEADING_RE.split(snippet):
            heading = heading_of(piece)
            body = HEADING_RE.sub("", piece, count=1) if heading else piece
            items, quoted = _unquote(body)
            role = _ROLE_OF.get(heading.lower(), "other") if heading else "other"
            parts.append(Part(role, heading, items, quoted))
    return parts


# -- how values are written ----------------------------------------------------------------------
def _double(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _visible(s: str) -> str:
    """Control characters escaped as JSON writes them, so a ``"\\n"`` prediction stays on its line."""
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _backtick(s: str) -> str:
    return f"`{_visible(s)}`"


def _single(s: str) -> str:
    return f"'{_visible(s)}'"


def _curly(s: str) -> str:
    return f"\u201c{_visible(s)}\u201d"


def _values(part: Part, quote: Callable[[str], str], last: str = ", ") -> str:
    """A part's values written with ``quote``; ``last`` joins the final pair (``" or "`` in prose)."""
    if not part.quoted:
        return part.items[0]
    values = [quote(item) for item in part.items]
    if len(values) < 2:
        return values[0] if values else "(none)"
    return ", ".join(values[:-1]) + last + values[-1]


def _heading(part: Part, table: dict[str, tuple[str, ...]], rng: random.Random | None) -> str:
    choices = table.get(part.role)
    if not choices or not part.heading:
        return part.heading
    return choices[0] if rng is None else rng.choice(choices)


def _snippets(
    parts: Sequence[Part],
    quote: Callable[[str], str],
    headings: dict[str, tuple[str, ...]] | None = None,
    rng: random.Random | None = None,
) -> list[str]:
    out = []
    for part in parts:
        heading = _heading(part, headings, rng) if headings else part.heading
        body = _values(part, quote)
        out.append(f"{heading}: {body}" if heading else body)
    return out


# -- prose ---------------------------------------------------------------------------------------
def _by_role(parts: Sequence[Part]) -> dict[str, Part]:
    found: dict[str, Part] = {}
    for part in parts:
        found.setdefault(part.role, part)
    return found


def _prose(parts: Sequence[Part], quote: Callable[[str], str], sentences: dict[str, str], order: Sequence[str]) -> str:
    """Sentences built from the known roles (``sentences[role]`` with ``{v}`` for its values), in
    ``order``; parts of other roles (or repeated roles) follow as "Heading: values." sentences."""
    parts = [part for part in parts if part.items]  # an empty list says nothing in prose
    known = _by_role(parts)
    out = []
    for role in order:
        if role in known and role in sentences:
            out.append(sentences[role].format(v=_values(known[role], quote, last=" or ")))
    used = {id(known[r]) for r in order if r in known and r in sentences}
    for part in parts:
        if id(part) not in used:
            values = _values(part, quote, last=" or ")
            out.append(f"{part.heading}: {values}." if part.heading else f"{values.rstrip('.')}.")
    out = [s for s in out if s]
    # A piece opens a sentence when it is the first or the one before it ended one.
    return " ".join(s[0].upper() + s[1:] if i == 0 or out[i - 1].endswith(".") else s for i, s in enumerate(out))


#: Training phrasings per role (``{v}``: the values). A training prose rewrite draws one phrasing
#: per role, an order of the roles and how each sentence ends (:func:`_train_prose`): about 10^5
#: combinations, so the AR learns to read the quoted values in any sentence rather than the
#: wording of a few templates. None of the held-out prose styles' wording is here.
_PROSE_PHRASES = {
    "context": (
        "the recent text is {v}",
        "{v} came just before",
        "the passage so far ends with {v}",
        "it follows the words {v}",
        "the preceding words are {v}",
        "in the passage {v}",
        "at the end of {v}",
        "the last words read {v}",
    ),
    "topics": (
        "it is about {v}",
        "the themes are {v}",
        "the passage concerns {v}",
        "topics: {v}",
        "the subject matter is {v}",
    ),
    "token": (
        "the model is reading {v}",
        "it has just read {v}",
        "this is the token {v}",
        "the current word is {v}",
        "the token in focus is {v}",
        "reading {v} right now",
    ),
    "next": (
        "it will likely continue with {v}",
        "the next token is probably {v}",
        "next it should write {v}",
        "likely followed by {v}",
        "the model expects {v} next",
        "a good guess for what comes next is {v}",
    ),
}

_PROSE_HELD_OUT = {
    "prose_says": (
        {
            "context": "the text says {v}",
            "topics": "(its topics: {v})",
            "token": "and has just reached the word {v};",
            "next": "next it will probably say {v}.",
        },
        ("context", "topics", "token", "next"),
    ),
    "prose_sits": (
        {
            "token": "right now the model sits on {v}.",
            "context": "before it came {v}.",
            "topics": "the passage deals with {v}.",
            "next": "what follows is most likely {v}.",
        },
        ("token", "context", "topics", "next"),
    ),
}


# -- styles --------------------------------------------------------------------------------------
def _rotate(parts: Sequence[Part]) -> list[Part]:
    """The project's reorder rule: the last snippet first (``RuleParaphraser(ops=["reorder"])``)."""
    return [*parts[-1:], *parts[:-1]] if len(parts) > 1 else list(parts)


def _train_order(parts: Sequence[Part], rng: random.Random) -> list[Part]:
    """A random order of ``parts`` that is neither the original nor the held-out rotation.

    Two parts have no such order (swapping them *is* the rotation), so they keep theirs.
    """
    parts = list(parts)
    banned = {tuple(map(id, parts)), tuple(map(id, _rotate(parts)))}
    if len(parts) < 3:
        return parts
    while True:
        order = rng.sample(parts, len(parts))
        if tuple(map(id, order)) not in banned:
            return order


def _bare_context(parts: Sequence[Part], rng: random.Random) -> str:
    """The recent context alone, unquoted: how the context oracle feeds raw text to the AR."""
    context = _by_role(parts).get("context")
    if context is None or not context.quoted:
        return _template(parts, rng)
    return context.items[-1].lstrip("…").strip() or _template(parts, rng)


def _template(parts: Sequence[Part], rng: random.Random) -> str:
    """A random mix of training headings, order, list format and quotes."""
    if rng.random() < 0.5:
        parts = _train_order(parts, rng)
    quote = rng.choice((_double, _double, _backtick))
    snippets = _snippets(parts, quote, TRAIN_HEADINGS, rng)
    fmt = rng.choice(("numbered", "bullets", "lines", "semicolons"))
    return "; ".join(snippets) if fmt == "semicolons" else join_snippets(snippets, fmt)


def _train_prose(parts: Sequence[Part], rng: random.Random) -> str:
    """Plain sentences from random :data:`_PROSE_PHRASES`, roles in a random order, each sentence
    ended by a full stop, a semicolon or a comma (the last by a full stop)."""
    present = {part.role for part in parts if part.items}
    order = [role for role in rng.sample(list(_PROSE_PHRASES), len(_PROSE_PHRASES)) if role in present]
    ends = [rng.choice((".", ".", ";", ",")) for _ in order[:-1]] + ["."]
    sentences = {role: rng.choice(_PROSE_PHRASES[role]) + end for role, end in zip(order, ends)}
    return _prose(parts, rng.choice((_double, _backtick)), sentences, order)


@dataclasses.dataclass(frozen=True)
class Style:
    """A named surface form.

    Attributes:
        name: Its name (a key of :data:`STYLES`).
        kind: ``"template"`` (snippets with headings) or ``"prose"`` (plain sentences).
        split: ``"train"`` (the AR trains on it) or ``"held_out"`` (evaluation only).
        description: One line for tables.
        write: ``(parts, rng) -> text``; held-out styles ignore ``rng`` (deterministic).
        weight: How often :func:`augment` draws a training style, relative to the others.
    """

    name: str
    kind: str
    split: str
    description: str
    write: Callable[[Sequence[Part], random.Random], str]
    weight: float = 1.0


STYLES: dict[str, Style] = {
    style.name: style
    for style in (
        Style(
            "template_mix",
            "template",
            "train",
            "training headings, another snippet order, list format and quotes (random mix)",
            _template,
        ),
        Style(
            "prose_mix", "prose", "train", "training phrasings per snippet in a random order (random mix)", _train_prose
        ),
        # Rarely: it drops the other snippets, but it is the text the context oracle feeds the AR.
        Style("bare_context", "prose", "train", "the recent context alone, unquoted", _bare_context, weight=0.2),
        Style(
            "reorder_rule",
            "template",
            "held_out",
            "the project's reorder rule: last snippet first, renumbered",
            lambda parts, rng: join_snippets(_snippets(_rotate(parts), _double), "numbered"),
        ),
        Style(
            "held_out_headings",
            "template",
            "held_out",
            "the rule paraphraser's headings (Text just before, Probable continuations, Token being read)",
            lambda parts, rng: join_snippets(_snippets(parts, _double, HELD_OUT_HEADINGS), "numbered"),
        ),
        Style(
            "curly_quotes",
            "template",
            "held_out",
            "curly quotes, numbered as written",
            lambda parts, rng: join_snippets(_snippets(parts, _curly), "numbered"),
        ),
        Style(
            "prose_says",
            "prose",
            "held_out",
            "one sentence: the text says ... and has just reached the word ...; next it will probably say ...",
            lambda parts, rng: _prose(parts, _single, *_PROSE_HELD_OUT["prose_says"]),
        ),
        Style(
            "prose_sits",
            "prose",
            "held_out",
            "three sentences: right now the model sits on ... Before it came ... What follows is most likely ...",
            lambda parts, rng: _prose(parts, _curly, *_PROSE_HELD_OUT["prose_sits"]),
        ),
    )
}

TRAIN_STYLES: tuple[str, ...] = tuple(name for name, s in STYLES.items() if s.split == "train")
"""Styles the AR trains on (:func:`augment`)."""

HELD_OUT_STYLES: tuple[str, ...] = tuple(name for name, s in STYLES.items() if s.split == "held_out")
"""Styles only the faithfulness report uses: no training style writes their headings, quotes or
sentences, and no training template writes the reorder rule's snippet order (prose sentences come
in any order)."""


def render(parts: Sequence[Part], style: str, rng: random.Random | None = None) -> str:
    """Write parsed content in the surface form ``style`` (a key of :data:`STYLES`)."""
    if style not in STYLES:
        raise InputError(f"Unknown style {style!r}; choose one of {sorted(STYLES)}.")
    if not parts:
        return ""
    return STYLES[style].write(parts, rng if rng is not None else random.Random(0))


def restyle(texts: Sequence[str], style: str, *, seed: int = 0) -> list[str]:
    """Each explanation rewritten in ``style``; a text with nothing to rewrite (empty, or only empty
    lists) stays as it is."""
    if isinstance(texts, str):
        raise InputError("restyle takes a list of explanations; wrap a single one in a list.")
    seeds = sample_seeds(("restyle", style, seed), range(len(texts)))
    out = []
    for text, row_seed in zip(texts, seeds):
        parts = parse(text)
        out.append((render(parts, style, random.Random(row_seed)) if parts else "") or text)
    return out


def augment(texts: Sequence[str], ids: Sequence[int], share: float, seed: object) -> list[str]:
    """Data augmentation for the AR: each text rewritten, with probability ``share``, into a random
    :data:`TRAIN_STYLES` surface form.

    The draw for each text depends on ``(seed, ids[i])`` only (``seed`` e.g. ``(run_seed, step)``,
    ``ids`` dataset rows), so a text gets the same rewrite whichever process or batch slot holds it.

    Args:
        texts: Explanations.
        ids: A stable id per text (dataset rows).
        share: Probability in ``[0, 1]`` of rewriting a text (0: every text as given).
        seed: What else the draw depends on.

    Returns:
        ``len(texts)`` texts.
    """
    if not 0.0 <= share <= 1.0:
        raise InputError(f"The augmentation share must be in [0, 1], got {share!r}.")
    if len(ids) != len(texts):
        raise InputError(f"{len(texts)} texts but {len(ids)} ids.")
    if share == 0.0:
        return list(texts)
    out = []
    for text, row_seed in zip(texts, sample_seeds(("augment", seed), ids)):
        rng = random.Random(row_seed)
        parts = parse(text)
        if not parts or rng.random() >= share:
            out.append(text)
            continue
        style = rng.choices(TRAIN_STYLES, weights=[STYLES[name].weight for name in TRAIN_STYLES])[0]
        out.append(render(parts, style, rng) or text)
    return out
