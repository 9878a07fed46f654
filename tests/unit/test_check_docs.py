"""scripts/check_docs.py, the internal-link and API-page check CI runs on the built site."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
check_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_docs)


def write(site: Path, name: str, html: str) -> None:
    path = site / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{html}</body></html>")


def test_links_to_pages_and_anchors_that_exist_pass(tmp_path):
    write(tmp_path, "index.html", '<a href="guide/a.html#intro">a</a> <a href="#top">top</a> <p id="top"></p>')
    write(
        tmp_path,
        "guide/a.html",
        '<h1 id="intro">A</h1><a href="../index.html">home</a> <a href="https://x.org/y">x</a>',
    )
    assert check_docs.broken_links(tmp_path) == []


def test_a_missing_page_and_a_missing_anchor_are_reported(tmp_path):
    write(tmp_path, "index.html", '<a href="gone.html">gone</a> <a href="b.html#nowhere">b</a>')
    write(tmp_path, "b.html", '<h1 id="somewhere">B</h1>')
    broken = check_docs.broken_links(tmp_path)
    assert broken == ["index.html -> b.html#nowhere (no anchor #nowhere)", "index.html -> gone.html (no such file)"]


def test_every_public_module_needs_a_page(tmp_path):
    modules = check_docs.public_modules()
    assert "nla_lens.metrics" in modules and not any("._" in m for m in modules)
    write(tmp_path, "_autosummary/nla_lens.metrics.html", "")
    missing = check_docs.missing_module_pages(tmp_path)
    assert "nla_lens.metrics" not in missing and "nla_lens.hooks" in missing
