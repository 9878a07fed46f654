"""Check a built documentation site: a page per public module, and no broken internal link.

    python -m sphinx -W --keep-going -b html docs docs/_build/html && python scripts/check_docs.py

Sphinx (with -W) already fails on a missing document or cross-reference; this reads the HTML it
wrote and checks what it does not: every module of the package has its API page, and every relative
``href`` (page and ``#anchor``) resolves inside the site. External links are not followed (CI has
no network).
"""

from __future__ import annotations

import argparse
import pkgutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nla_lens

ROOT = Path(__file__).resolve().parents[1]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name == "href" and value and tag == "a":
                self.hrefs.append(value)


def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    names = ["nla_lens"]
    for info in pkgutil.walk_packages(nla_lens.__path__, "nla_lens."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def missing_module_pages(site: Path) -> list[str]:
    return [name for name in public_modules() if not (site / "_autosummary" / f"{name}.html").is_file()]


def broken_links(site: Path) -> list[str]:
    pages: dict[Path, _Links] = {}
    for path in site.rglob("*.html"):
        parser = _Links()
        parser.feed(path.read_text(errors="replace"))
        pages[path.resolve()] = parser
    broken = []
    for path, parser in pages.items():
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue  # external: not followed
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(site)} -> {href}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in pages[target].ids:
                broken.append(f"{where} (no anchor #{parts.fragment})")
    return sorted(broken)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", type=Path, default=ROOT / "docs" / "_build" / "html")
    site = parser.parse_args().site.resolve()
    if not (site / "index.html").is_file():
        print(f"No built site in {site}: build it first (see this script's docstring).", file=sys.stderr)
        return 2
    problems = [f"no API page for module {name}" for name in missing_module_pages(site)] + broken_links(site)
    for problem in problems:
        print(problem, file=sys.stderr)
    n_modules, n_pages = len(public_modules()), sum(1 for _ in site.rglob("*.html"))
    print(f"{n_pages} pages, {n_modules} modules with an API page each, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
