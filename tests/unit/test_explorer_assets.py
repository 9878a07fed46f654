"""NLAExplorer's view assets (ES module and stylesheet): offline, and text built with textContent.

No model: the explorer's behaviour on tiny models is in ``tests/integration/test_explorer.py``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

pytest.importorskip("anywidget", reason="needs anywidget (pip install 'nla_lens[widgets]')")

from nla_lens.widgets import NLAExplorer

EXTERNAL = re.compile(r"https?://|//cdn|innerHTML|@import|url\(", re.IGNORECASE)


def test_assets_are_offline_and_build_text_with_text_content():
    for name in ("explorer.js", "explorer.css"):
        text = resources.files("nla_lens.widgets").joinpath(name).read_text(encoding="utf-8")
        assert not EXTERNAL.search(text), f"{name} refers to something outside the page"
    js = NLAExplorer._esm if isinstance(NLAExplorer._esm, str) else Path(NLAExplorer._esm).read_text()
    assert "export default" in js and "textContent" in js
    assert not re.search(r"\b(eval|Function|insertAdjacentHTML|outerHTML|document\.write)\s*\(", js)
