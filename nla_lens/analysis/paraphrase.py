"""Meaning-preserving rewrites of explanations, for the paraphrase-robustness check.

A *paraphraser* is any callable ``list[str] -> list[str]`` returning one rewrite per explanation,
in order (an LLM behind an API, a local instruct model, or the offline ones here). The published
faithfulness check asks whether reconstruction survives such rewording: an AR that reads meaning
keeps its fve_nrm, one that keys on the exact surface form loses it. Offline paraphrasers:

* :class:`RuleParaphraser`: deterministic rewrites that keep every content word and change only
  the surface form (snippet order, heading wording, quoting, list format, a few function-word
  synonyms); the report's default ``paraphraser``;
* :class:`StyleParaphraser`: every explanation rebuilt in one named surface form of
  :mod:`nla_lens.rewrites` (a template or plain prose, a training or a held-out style), and
  :class:`ProseParaphraser`, the same restricted to prose styles: the content as sentences.

A paraphraser may say what it is with three attributes, which the faithfulness report's
per-style table reads (:func:`paraphraser_labels`): ``split`` (``"train"`` when the AR trains on
its surface form, ``"held_out"`` when it never does), ``kind`` and ``description``.

Written here rather than taken from a library: offline paraphrase libraries need model
weights; a rule-based rewrite is transparent, needs nothing, and by construction cannot change
the content words, which is exactly the property the check relies on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from nla_lens.analysis.text import heading_of, join_snippets, snippet_style, split_snippets
from nla_lens.errors import InputError
from nla_lens.rewrites import HELD_OUT_STYLES, STYLES, restyle

__all__ = [
    "DEFAULT_PARAPHRASE_STYLES",
    "OPS",
    "RULES",
    "Paraphraser",
    "ProseParaphraser",
    "RuleParaphraser",
    "StyleParaphraser",
    "check_paraphrases",
    "paraphraser_labels",
    "resolve_paraphrasers",
]

Paraphraser = Callable[[list[str]], list[str]]

RULES = "rules"
"""The name of the :class:`RuleParaphraser` all-ops rewrite among paraphrase styles."""

DEFAULT_PARAPHRASE_STYLES: tuple[str, ...] = (*HELD_OUT_STYLES, RULES)
"""What the faithfulness report's per-style table measures by default: every held-out surface
form of :mod:`nla_lens.rewrites` (no training style writes them) and the rule paraphraser."""

OPS = ("reorder", "headings", "quotes", "format", "synonyms")
"""The rewrites :class:`RuleParaphraser` knows, applied in this order."""

#: Heading rewrites (lower-cased heading -> new heading); unknown headings stay as they are.
HEADINGS = {
    "recent context": "Text just before",
    "likely next": "Probable continuations",
    "current token": "Token being read",
    "topic words": "Main themes",
    "last words": "Final words",
    "topic": "Subject",
    "genre": "Kind of text",
}

#: Function-word and phrasing synonyms (whole words, case kept for the first letter).
SYNONYMS = {
    "about": "concerning",
    "likely": "probably",
    "because": "since",
    "shows": "displays",
    "describes": "depicts",
    "mentions": "refers to",
    "begins": "starts",
    "ends": "finishes",
    "next": "following",
    "word": "term",
}

_QUOTED_RE = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")


def _swap_case(template: str, original: str) -> str:
    return template[:1].upper() + template[1:] if original[:1].isupper() else template


class RuleParaphraser:
    """Offline, deterministic paraphraser (a callable ``list[str] -> list[str]``).

    Args:
        ops: Which rewrites to apply, a subset of :data:`OPS`:
            ``"reorder"`` moves the last snippet to the front (and renumbers);
            ``"headings"`` rewords snippet headings (``Recent context:`` -> ``Text just before:``);
            ``"quotes"`` turns ``"double"`` quotes into ``'single'`` ones and ``…`` into ``...``;
            ``"format"`` turns a numbered list into a bullet list (and sentences into lines);
            ``"synonyms"`` swaps a few function words (``about`` -> ``concerning``).
            Content words are never changed.

    Example:
        >>> RuleParaphraser()(['1. Topic: "cats"\\n2. Current token: " sat"'])
        ["- Token being read: ' sat'\\n- Subject: 'cats'"]
    """

    def __init__(self, ops: Sequence[str] = OPS):
        if isinstance(ops, str):
            ops = (ops,)
        unknown = sorted(set(ops) - set(OPS))
        if unknown or not ops:
            raise InputError(f"Unknown paraphrase ops {unknown or list(ops)}; choose from {OPS}.")
        self.ops = tuple(op for op in OPS if op in ops)

    kind = "rules"

    def __repr__(self) -> str:
        return f"RuleParaphraser(ops={self.ops})"

    @property
    def split(self) -> str:
        """``"train"`` when the rewrite is one the AR trains on (a change of list format alone: the
        training templates write bullet lists too), else ``"held_out"`` (the reorder and the headings
        are the held-out ones of :mod:`nla_lens.rewrites`; no training style writes single quotes
        or the synonyms)."""
        return "train" if set(self.ops) <= {"format"} else "held_out"

    @property
    def description(self) -> str:
        """One line for tables."""
        return "rule paraphraser: " + ", ".join(self.ops)

    def __call__(self, explanations: list[str]) -> list[str]:
        if isinstance(explanations, str):
            raise InputError("A paraphraser takes a list of explanations; wrap a single one in a list.")
        return [self.rewrite(text) for text in explanations]

    def rewrite(self, text: str) -> str:
        """Rewrite one explanation."""
        style = snippet_style(text)
        snippets = split_snippets(text)
        if not snippets:
            return text
        if "reorder" in self.ops and len(snippets) > 1:
            snippets = snippets[-1:] + snippets[:-1]
        if "headings" in self.ops:
            snippets = [self._heading(s) for s in snippets]
        if "quotes" in self.ops:
            snippets = [
                _QUOTED_RE.sub(lambda m: "'" + m.group(1).replace('\\"', '"') + "'", s).replace("…", "...")
                for s in snippets
            ]
        if "synonyms" in self.ops:
            snippets = [self._synonyms(s) for s in snippets]
        if "format" in self.ops:
            style = {"numbered": "bullets", "bullets": "numbered", "lines": "bullets", "sentences": "lines"}[style]
        return join_snippets(snippets, style)

    @staticmethod
    def _heading(snippet: str) -> str:
        heading = heading_of(snippet)
        new = HEADINGS.get(heading.lower())
        if not heading or new is None:
            return snippet
        return snippet.replace(heading, new, 1)

    @staticmethod
    def _synonyms(snippet: str) -> str:
        # Only outside quotes: quoted text is the source's own words and stays verbatim.
        parts = re.split(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", snippet)
        for i in range(0, len(parts), 2):
            parts[i] = re.sub(
                r"\b[A-Za-z]+\b",
                lambda m: (
                    _swap_case(SYNONYMS[m.group(0).lower()], m.group(0))
                    if m.group(0).lower() in SYNONYMS
                    else m.group(0)
                ),
                parts[i],
            )
        return "".join(parts)


class StyleParaphraser:
    """Offline paraphraser rewriting every explanation into one named surface form (a callable
    ``list[str] -> list[str]``, like :class:`RuleParaphraser`).

    The explanation is parsed into its snippets' content and written again in ``style``
    (:func:`nla_lens.rewrites.restyle`): quoted values are kept verbatim, only layout, headings,
    quoting or sentence wording change.

    Args:
        style: A key of :data:`nla_lens.rewrites.STYLES`; :data:`~nla_lens.rewrites.HELD_OUT_STYLES`
            are the surface forms training never shows the AR.
        seed: Seeds the training styles, which draw their headings, order and quotes at random per
            explanation; held-out styles are deterministic.

    Attributes:
        split: ``"train"`` or ``"held_out"`` (the style's).
        kind: ``"template"`` or ``"prose"``.
        description: The style's one-line description.

    Example:
        >>> StyleParaphraser("reorder_rule")(['1. Recent context: "the cat sat"\\n2. Current token: " sat"'])
        ['1. Current token: " sat"\\n2. Recent context: "the cat sat"']
    """

    def __init__(self, style: str, *, seed: int = 0):
        if not isinstance(style, str) or style not in STYLES:
            raise InputError(f"Unknown surface style {style!r}; choose one of {sorted(STYLES)}.")
        self.style, self.seed = style, int(seed)
        found = STYLES[style]
        self.split, self.kind, self.description = found.split, found.kind, found.description

    def __repr__(self) -> str:
        return f"{type(self).__name__}(style={self.style!r}, seed={self.seed})"

    def __call__(self, explanations: list[str]) -> list[str]:
        if isinstance(explanations, str):
            raise InputError("A paraphraser takes a list of explanations; wrap a single one in a list.")
        return restyle(list(explanations), self.style, seed=self.seed)


class ProseParaphraser(StyleParaphraser):
    """The offline prose paraphraser: each explanation's content rebuilt as plain sentences.

    A :class:`StyleParaphraser` restricted to prose styles; the default ``"prose_says"`` (and
    ``"prose_sits"``) use wording no training style uses, so retention on them measures whether
    the AR reads what an explanation says rather than its template.

    Args:
        style: A prose style of :data:`nla_lens.rewrites.STYLES`.
        seed: As for :class:`StyleParaphraser`.

    Example:
        >>> ProseParaphraser()(['1. Recent context: "the cat sat"\\n2. Likely next: "on"\\n3. Current token: " sat"'])
        ["The text says 'the cat sat' and has just reached the word ' sat'; next it will probably say 'on'."]
    """

    def __init__(self, style: str = "prose_says", *, seed: int = 0):
        prose = sorted(name for name, s in STYLES.items() if s.kind == "prose")
        if style not in prose:
            kind = f"a {STYLES[style].kind} style" if style in STYLES else "not a style"
            raise InputError(
                f"ProseParaphraser writes plain sentences; {style!r} is {kind}. Choose one of {prose}, "
                "or use StyleParaphraser for template styles."
            )
        super().__init__(style, seed=seed)


def paraphraser_labels(paraphraser: Paraphraser) -> dict[str, str]:
    """How the faithfulness report labels a paraphraser's row: its ``split``, ``kind`` and
    ``description`` attributes where it declares them, else ``"custom"``, ``"custom"`` and its ``repr``.

    Returns:
        ``{"split": "train" | "held_out" | "custom", "kind": ..., "description": ...}``.
    """
    split = getattr(paraphraser, "split", None)
    kind = getattr(paraphraser, "kind", None)
    description = getattr(paraphraser, "description", None)
    return {
        "split": split if split in ("train", "held_out") else "custom",
        "kind": kind if isinstance(kind, str) and kind else "custom",
        "description": description if isinstance(description, str) and description else repr(paraphraser),
    }


def resolve_paraphrasers(styles: Sequence[str] | Mapping[str, str | Paraphraser] | None) -> dict[str, Paraphraser]:
    """The paraphrasers of the faithfulness report's per-style table, by row name.

    Args:
        styles: ``None`` for :data:`DEFAULT_PARAPHRASE_STYLES`; a sequence of names, each a key of
            :data:`nla_lens.rewrites.STYLES` (a :class:`StyleParaphraser`) or :data:`RULES` (the
            all-ops :class:`RuleParaphraser`); or a mapping from row name to such a name or to any
            paraphraser callable (an LLM, ``RuleParaphraser(ops=("reorder",))``).

    Returns:
        Row name -> paraphraser, in the given order.

    Raises:
        InputError: An unknown name, a repeated name, a bare string, or a value that is neither a
            name nor a callable.
    """
    if styles is None:
        styles = DEFAULT_PARAPHRASE_STYLES
    if isinstance(styles, str):
        raise InputError(f"paraphrase_styles takes a list of style names; wrap {styles!r} in a list.")
    if isinstance(styles, Mapping):
        items = [(str(name), value) for name, value in styles.items()]
    else:
        items = [(value if isinstance(value, str) else repr(value), value) for value in styles]
    out: dict[str, Paraphraser] = {}
    for name, value in items:
        if name in out:
            raise InputError(f"The paraphrase style {name!r} is listed twice.")
        if isinstance(value, str):
            if value == RULES:
                out[name] = RuleParaphraser()
            elif value in STYLES:
                out[name] = StyleParaphraser(value)
            else:
                raise InputError(
                    f"Unknown paraphrase style {value!r}; choose from {[*STYLES, RULES]}, or pass a mapping "
                    "{name: paraphraser} for a paraphraser of your own."
                )
        elif callable(value):
            if not isinstance(styles, Mapping):
                raise InputError(
                    f"Name the paraphraser {value!r}: pass a mapping {{name: paraphraser}} as paraphrase_styles."
                )
            out[name] = value
        else:
            raise InputError(
                f"paraphrase_styles[{name!r}] must be a style name or a callable list[str] -> list[str], "
                f"got {type(value).__name__}."
            )
    return out


def check_paraphrases(explanations: Sequence[str], paraphrases: object) -> list[str]:
    """Validate a paraphraser's output: a list of strings, one per explanation, each non-empty where its
    explanation is (an empty explanation has nothing to rewrite; the AR reads both as ``"(empty)"``)."""
    if not isinstance(paraphrases, (list, tuple)) or len(paraphrases) != len(explanations):
        got = len(paraphrases) if isinstance(paraphrases, (list, tuple)) else type(paraphrases).__name__
        raise InputError(
            f"The paraphraser must return a list of {len(explanations)} strings (one per "
            f"explanation, in order); it returned {got}."
        )
    bad = [
        i
        for i, (e, p) in enumerate(zip(explanations, paraphrases))
        if not isinstance(p, str) or (not p.strip() and isinstance(e, str) and e.strip())
    ]
    if bad:
        raise InputError(f"The paraphraser returned empty or non-string rewrites at rows {bad[:5]}.")
    return list(paraphrases)
