"""The difference view: two NLA explanations side by side, the words that change, and a control.

Owns :class:`DifferenceView`: a table with one row per snippet heading (``Recent context``,
``Current token``, ...) and the two explanations in two columns, the words only one side has
highlighted (removed ones struck out on the left, added ones marked on the right), the
reconstruction scores of each side, and a control line (the same change measured for a random
direction of the same norm, or each explanation scored against the swapped input). Pure data ->
HTML: the rows are computed by :func:`nla_lens.analysis.difference.compare` and
:func:`~nla_lens.analysis.difference.explain_direction`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nla_lens.vis.html import BASE_CSS, HTMLView, esc, unique_id

__all__ = ["DifferenceView", "highlight_words"]

#: A word as the analyses count it (the pattern of ``nla_lens.words.WORD_RE``), so the words marked
#: here are exactly the content words the analysis found added or removed.
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")

_DIFF_CSS = """
.nla-vis .nla-added { background: #aceebb; border-radius: 2px; padding: 0 1px; }
.nla-vis .nla-removed { background: #ffcecb; border-radius: 2px; padding: 0 1px; }
.nla-vis tr.nla-changed > td:first-child { border-left: 3px solid #d4a72c; }
.nla-vis tr.nla-same { color: #57606a; }
.nla-vis .nla-words { font-size: 11px; color: #57606a; }
.nla-vis .nla-control { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 4px;
  padding: 4px 8px; margin: 6px 0; }
"""


def highlight_words(text: str, words: Iterable[str], tag: str = "mark", css_class: str = "nla-added") -> str:
    """``text`` HTML-escaped, with each word whose lower-cased form is in ``words`` wrapped in ``<tag>``."""
    wanted = {w.lower() for w in words}
    out, last = [], 0
    for match in _WORD_RE.finditer(text):
        if match.group(0).lower() in wanted:
            out += [esc(text[last : match.start()]), f'<{tag} class="{css_class}">{esc(match.group(0))}</{tag}>']
            last = match.end()
    out.append(esc(text[last:]))
    return "".join(out)


def _number(value: Any) -> str:
    return "—" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


def _words(added: Sequence[str], removed: Sequence[str], level: Any = None) -> str:
    parts = [] if level is None or not math.isfinite(float(level)) else [f"change {float(level):.2f}"]
    parts += [f'<span class="nla-removed">−{esc(w)}</span>' for w in removed]
    parts += [f'<span class="nla-added">+{esc(w)}</span>' for w in added]
    return f'<div class="nla-words">{" ".join(parts)}</div>' if parts else ""


class DifferenceView(HTMLView):
    """Two explanations compared, snippet by snippet, with their reconstructions and a control (renders only).

    Args:
        sides: Two mappings, A then B: ``label``, ``explanation``, ``cosine`` and ``mse`` (of the
            reconstruction against its own input), and optionally ``cosine_other`` (against the
            other side's input), ``token``.
        changed: One mapping per snippet heading: ``heading``, ``before`` (A's snippet, ``""`` when
            A has none), ``after`` (B's), ``changed`` (bool), ``added`` and ``removed`` (content
            words only B, only A has), optionally ``change_level`` (of that snippet).
        change_level: Share of content words that differ between A and B (0: the same words).
        control: ``kind`` (what the control is, in words), ``change_level`` (NaN when it has none),
            and optionally ``explanation``, ``changed_headings``, ``cosine`` and ``mse``; or ``None``.
        description: A line under the title (what was compared).
    """

    title = "nla_lens difference"

    def __init__(
        self,
        sides: Sequence[Mapping[str, Any]],
        changed: Sequence[Mapping[str, Any]],
        *,
        change_level: float,
        control: Mapping[str, Any] | None = None,
        description: str = "",
    ):
        super().__init__()
        if len(sides) != 2:
            raise ValueError(f"DifferenceView compares two sides, got {len(sides)}.")
        self.sides = [dict(s) for s in sides]
        self.changed = [dict(r) for r in changed]
        self.change_level = float(change_level)
        self.control = dict(control) if control is not None else None
        self.description = description

    def __repr__(self) -> str:
        n = sum(bool(r.get("changed")) for r in self.changed)
        return f"DifferenceView({n} of {len(self.changed)} snippets changed, change level {self.change_level:.2f})"

    def render(self) -> str:
        a, b = self.sides
        level = f"change level <b>{_number(self.change_level)}</b> (share of content words that differ)"
        if self.control is not None and math.isfinite(float(self.control.get("change_level", math.nan))):
            level += f" · control {_number(self.control['change_level'])}"
        parts = [
            f'<div class="nla-vis nla-difference" data-nla-vis="difference" id="{unique_id()}">',
            f"<style>{BASE_CSS}{_DIFF_CSS}</style>",
            "<h2>NLA explanations compared</h2>",
        ]
        if self.description:
            parts.append(f'<div class="nla-meta">{esc(self.description)}</div>')
        parts += [f'<div class="nla-meta">{level}</div>', self._table_html(a, b), self._control_html(), "</div>"]
        return "\n".join(parts)

    def _table_html(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
        head = f"<tr><th>snippet</th><th>A: {esc(a.get('label', 'A'))}</th><th>B: {esc(b.get('label', 'B'))}</th></tr>"
        rows = []
        for r in self.changed:
            before = highlight_words(str(r.get("before", "")), r.get("removed", ()), "del", "nla-removed")
            after = highlight_words(str(r.get("after", "")), r.get("added", ()), "mark", "nla-added")
            cls = "nla-changed" if r.get("changed") else "nla-same"
            words = _words(r.get("added", ()), r.get("removed", ()), r.get("change_level"))
            rows.append(
                f'<tr class="{cls}" data-heading="{esc(r.get("heading", ""))}"><td>{esc(r.get("heading", ""))}'
                f"{words}</td><td>{before}</td><td>{after}</td></tr>"
            )

        def score(side: Mapping[str, Any]) -> str:
            cos = side.get("cosine", math.nan)
            text = f"cos {_number(cos)} · mse {_number(side.get('mse', math.nan))}"
            if "cosine_other" in side:
                text += f" (cos to the other input {_number(side['cosine_other'])})"
            return f'<td class="nla-num">{esc(text)}</td>'

        # Raw cosines, uncoloured: the mean direction alone scores 0.7-0.8 (see the views' gain colours).
        rows.append(f"<tr><td>reconstruction</td>{score(a)}{score(b)}</tr>")
        return f'<table class="nla-table">{head}{"".join(rows)}</table>'

    def _control_html(self) -> str:
        c = self.control
        if c is None:
            return ""
        lines = [f"<b>Control</b>: {esc(c.get('kind', ''))}"]
        level = float(c.get("change_level", math.nan))
        if math.isfinite(level):
            changed = list(c.get("changed_headings") or [])
            lines.append(
                f"change level {_number(level)} (vs {_number(self.change_level)} for B); snippets changed: "
                f"{esc(', '.join(changed)) if changed else 'none'}"
            )
        if c.get("explanation"):
            lines.append(f"its explanation: {esc(str(c['explanation'])).replace(chr(10), ' / ')}")
        if "cosine" in c:
            lines.append(f"its reconstruction: cos {_number(c['cosine'])} · mse {_number(c.get('mse', math.nan))}")
        return f'<div class="nla-control">{"<br>".join(lines)}</div>'
