"""Self-contained HTML building blocks: views, sections, pages, and offline circuitsvis.

Owns :class:`HTMLView` (a fragment that displays itself in a notebook and saves as a standalone
page), :class:`Section` (one titled ``<section>`` of a page), :func:`page` (a whole HTML
document), :func:`circuitsvis_html` (a circuitsvis view made safe to share a page with others)
and :func:`external_references` (the check that nothing in a page points at the network).

Nothing here fetches anything: no CDN, no web font, no ``@import``. circuitsvis views are
always taken from their ``local_src`` (the inlined 1.3 MB bundle), never ``str(view)`` or the
view's own ``_repr_html_`` (which pings the network and then picks the CDN version).
"""

from __future__ import annotations

import html as _html
import itertools
import re
import uuid
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_CSS",
    "HTMLView",
    "Section",
    "circuitsvis_html",
    "esc",
    "external_references",
    "page",
]

#: Anything a browser (or a reviewer) would read as a reference to another host.
EXTERNAL_URL_RE = re.compile(r"https?://|//cdn|@import\s+url\(|\bsrc\s*=\s*[\"']?//", re.IGNORECASE)

_SELF_CLOSED_DIV_RE = re.compile(r'<div id="(circuits-vis-[^"]+)"([^>]*?)/>')
_SOURCE_MAP_RE = re.compile(r"^\s*//# sourceMappingURL=\S*\s*$", re.MULTILINE)
_counter = itertools.count()

#: Styles of every nla_lens view; all rules are scoped under ``.nla-vis``. System fonts only.
BASE_CSS = """
.nla-vis { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px;
  color: #1f2328; line-height: 1.45; }
.nla-vis h2 { font-size: 16px; margin: 12px 0 6px; }
.nla-vis h3 { font-size: 14px; margin: 10px 0 4px; }
.nla-vis .nla-meta { color: #57606a; font-size: 12px; }
.nla-vis .nla-notice { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 4px;
  padding: 4px 8px; margin: 6px 0; }
.nla-vis .nla-strip { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap;
  line-height: 2.0; margin: 6px 0; }
.nla-vis .nla-tok { border-radius: 3px; padding: 1px 0; border: 1px solid transparent; }
.nla-vis .nla-tok.nla-explained { border-color: rgba(0,0,0,0.25); cursor: help; }
.nla-vis .nla-tok sub { font-size: 9px; color: #57606a; }
.nla-vis table.nla-table { border-collapse: collapse; margin: 6px 0; width: 100%; }
.nla-vis table.nla-table th, .nla-vis table.nla-table td { border-bottom: 1px solid #d0d7de;
  padding: 3px 6px; text-align: left; vertical-align: top; }
.nla-vis table.nla-table th { background: #f6f8fa; }
.nla-vis .nla-num { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: nowrap; }
.nla-vis .nla-feat { display: inline-block; margin: 1px 4px 1px 0; }
.nla-vis .nla-feat summary { cursor: pointer; font-family: ui-monospace, Menlo, Consolas, monospace; }
.nla-vis .nla-dense { background: #fff1c2; border-radius: 3px; padding: 0 3px; font-size: 11px; }
.nla-vis .nla-ungrounded { color: #8c959f; }
.nla-vis .nla-ctx { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px;
  color: #424a53; margin: 2px 0 2px 12px; white-space: pre-wrap; }
.nla-vis .nla-ctx mark { background: #ffd33d; padding: 0 1px; }
.nla-vis .nla-legend { font-size: 11px; color: #57606a; }
.nla-vis .nla-cv { margin: 6px 0; }
"""


def esc(text: Any) -> str:
    """HTML-escape any value (quotes included) for text and attribute positions.

    ``/`` becomes ``&#47;`` too (it displays the same), so a URL inside user text (a prompt, an
    explanation, a context) never appears as a reference in the page source.
    """
    return _html.escape(str(text), quote=True).replace("/", "&#47;")


def unique_id(prefix: str = "nla-vis") -> str:
    """A page-unique element id (a counter plus a random part, so saved pages never collide)."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def external_references(html: str) -> list[str]:
    """Every substring of ``html`` that could make a browser reach the network.

    Returns:
        The matches of :data:`EXTERNAL_URL_RE` (``http://``, ``https://``, ``//cdn``,
        ``@import url(``, protocol-relative ``src``), empty for a self-contained page.
    """
    return [m.group(0) for m in EXTERNAL_URL_RE.finditer(html)]


def circuitsvis_html(view: Any) -> str:
    """The offline HTML of a circuitsvis view, safe to put beside other views on one page.

    circuitsvis's ``local_src`` has three problems on a shared page, all fixed here:

    * it opens its mount point as ``<div id=.../>``, which HTML does not self-close: the div
      swallows everything after it, and the first view's React root then wipes the views that
      follow (only the first rendered). The div is closed explicitly;
    * its bundle carries URL-like strings (XML namespace URIs, links in error messages) and a
      ``sourceMappingURL`` comment. ``://`` becomes ``:\\/\\/`` (the same string to JavaScript,
      since ``\\/`` is ``/`` in strings, templates and regexes) and the comment is dropped;
    * the props are JSON inside a ``<script>``: a ``</`` in a token (``"</script>"``) would end
      the script early, and a token may hold a URL, so every ``/`` in the props becomes ``\\/``.

    Each view keeps its own bundle inside a ``type="module"`` script, so each has its own
    ``CircuitsVis`` binding and the views cannot collide. The result is wrapped in its own
    ``<div class="nla-cv">``.

    Args:
        view: A circuitsvis ``RenderedHTML`` (anything with ``local_src``), e.g. from
            ``circuitsvis.attention.attention_heads(...)``.

    Returns:
        An HTML fragment with no external reference.
    """
    src = getattr(view, "local_src", None)
    if not isinstance(src, str):
        raise TypeError(f"Expected a circuitsvis view with .local_src, got {type(view).__name__}.")
    src, n_divs = _SELF_CLOSED_DIV_RE.subn(r'<div id="\1"\2></div>', src, count=1)
    if n_divs != 1:
        raise ValueError(
            'Unrecognised circuitsvis local_src (no <div id="circuits-vis-..."/> mount point); '
            "this circuitsvis version is not supported by nla_lens.vis."
        )
    cut = src.rfind("CircuitsVis.render(")
    bundle, call = (src[:cut], src[cut:]) if cut >= 0 else (src, "")
    bundle = _SOURCE_MAP_RE.sub("", bundle).replace("://", r":\/\/")
    end = call.rfind("</script>")  # the real end of the view's script stays as it is
    call = call[:end].replace("/", r"\/") + call[end:] if end >= 0 else call
    return f'<div class="nla-cv" data-nla-vis="circuitsvis">{bundle}{call}</div>'


class HTMLView:
    """An HTML fragment that displays itself in Jupyter and saves as a standalone page.

    Subclasses override :meth:`render`; ``.html`` is computed once and cached.

    Args:
        html: The fragment (ignored by subclasses that override :meth:`render`).
        title: Title of the page :meth:`save` writes.
    """

    title: str = "nla_lens"

    def __init__(self, html: str = "", *, title: str | None = None):
        self._html: str | None = html or None
        if title is not None:
            self.title = title

    def render(self) -> str:
        """Build the HTML fragment (a ``<div class="nla-vis">`` with its own ``<style>``)."""
        return self._html or ""

    @property
    def html(self) -> str:
        """The fragment, self-contained (styles inline; circuitsvis bundles inlined)."""
        if self._html is None:
            self._html = self.render()
        return self._html

    def _repr_html_(self) -> str:
        return self.html

    def __html__(self) -> str:
        return self.html

    def save(self, path: str | Path) -> Path:
        """Write a standalone page (UTF-8) holding only this view; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page(self, title=self.title), encoding="utf-8")
        return path


class Section:
    """One titled block of a page: its own ``<section>`` with its own ``<div>`` around the body.

    Args:
        body: An :class:`HTMLView`, a circuitsvis view (``local_src`` is used), or an HTML string.
        title: Heading shown above the body, or ``None``.
    """

    def __init__(self, body: Any, title: str | None = None):
        self.body = body
        self.title = title

    @property
    def html(self) -> str:
        inner = _fragment(self.body)
        heading = f"<h2>{esc(self.title)}</h2>" if self.title else ""
        return (
            f'<section class="nla-vis nla-section" id="{unique_id("nla-section")}">{heading}'
            f'<div class="nla-section-body">{inner}</div></section>'
        )

    def _repr_html_(self) -> str:
        return self.html


def _fragment(item: Any) -> str:
    if isinstance(item, (HTMLView, Section)):
        return item.html
    if hasattr(item, "local_src"):
        return circuitsvis_html(item)
    if isinstance(item, str):
        return item
    if hasattr(item, "_repr_html_") and not hasattr(item, "cdn_src"):
        return str(item._repr_html_())
    raise TypeError(
        f"Cannot put a {type(item).__name__} on a page; pass an HTMLView, a Section, "
        "a circuitsvis view or an HTML string."
    )


def page(*sections: Any, title: str = "nla_lens") -> str:
    """A whole standalone HTML document holding ``sections`` in order.

    Args:
        *sections: :class:`Section` objects, or anything a :class:`Section` accepts as its body
            (each is then wrapped in an untitled section, i.e. in its own ``<div>``).
        title: The document title.

    Returns:
        ``<!DOCTYPE html>...``: UTF-8, inline styles and scripts only, no external reference.
    """
    body = "\n".join((s if isinstance(s, Section) else Section(s)).html for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{BASE_CSS}</style>\n</head>\n"
        f'<body class="nla-vis">\n{body}\n</body>\n</html>\n'
    )
