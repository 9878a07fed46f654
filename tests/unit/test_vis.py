"""Tests of nla_lens.vis: self-contained HTML rendered from prepared tables.

No model is built here: the views take a DataFrame, tokens, an attention tensor and feature
contexts and only render them (circuitsvis style). The computing behind them (the side-by-side
table, SAE training and top contexts) is tested in ``tests/integration/test_vis_compute.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import nla_lens
from nla_lens.vis import Section, SideBySide, circuitsvis_html, feature_html, highlight_context, page
from nla_lens.vis.side_by_side import FRAME_COLUMNS, GAIN_LEGEND, cosine_colour, score_colour

HOOK = "blocks.1.hook_resid_post"
EXTERNAL = re.compile(r"https?://|//cdn|@import\s+url\(", re.IGNORECASE)
MOUNT = re.compile(r'<div id="(circuits-vis-[^"]+)"[^>]*></div>')
TOKENS = ["<s>", "The", " cat", " </", "sat", "\n"]


def _frame(positions=(1, 2, 3), features=True) -> pd.DataFrame:
    """A prepared side-by-side table, as :func:`nla_lens.analysis.side_by_side` returns it."""
    rows = []
    for i, pos in enumerate(positions):
        rows.append(
            {
                "position": pos,
                "token": TOKENS[pos],
                "explanation": f"about <b>{TOKENS[pos]}</b> & more",
                "mse": 0.5 + i,
                "cosine": [0.9, 0.1, float("nan")][i % 3],
                "gain": [0.8, -0.2, float("nan")][i % 3],
                "sae_features": [(7, 2.5), (3, 0.25)] if features and i == 0 else [],
                "ok": True,
            }
        )
    return pd.DataFrame(rows, columns=[*FRAME_COLUMNS, "ok"])


# -- self-contained pages ----------------------------------------------------------------------
def test_raw_circuitsvis_local_src_would_fail_the_checks():
    """The checks below can fail: circuitsvis's own local_src has URLs and a self-closed mount div."""
    import circuitsvis as cv

    raw = cv.attention.attention_heads(attention=torch.rand(2, 3, 3), tokens=["a", "b", "c"]).local_src
    assert EXTERNAL.search(raw) and re.search(r'<div id="circuits-vis-[^"]+"[^>]*/>', raw)
    assert not MOUNT.search(raw)
    fixed = circuitsvis_html(cv.attention.attention_heads(attention=torch.rand(2, 3, 3), tokens=["a", "b", "c"]))
    assert not EXTERNAL.search(fixed) and len(MOUNT.findall(fixed)) == 1
    assert "http:\\/\\/www.w3.org/2000/svg" in fixed  # escaped, not deleted: JS reads the same string


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to parse the inlined JavaScript")
def test_escaped_circuitsvis_script_is_still_valid_javascript(tmp_path):
    import circuitsvis as cv

    html = circuitsvis_html(cv.attention.attention_heads(attention=torch.rand(1, 2, 2), tokens=["</", "x"]))
    script = html.split('<script crossorigin type="module">', 1)[1].rsplit("</script>", 1)[0]
    (tmp_path / "view.mjs").write_text(script, encoding="utf-8")
    done = subprocess.run(["node", "--check", str(tmp_path / "view.mjs")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


# -- the side-by-side view, from a prepared table ----------------------------------------------
def test_side_by_side_view_renders_a_prepared_table_self_contained(tmp_path):
    url = "see https://cdn.example.com/«x».js or //cdn.example.com"  # user text holding URLs
    view = SideBySide(
        _frame(),
        TOKENS,
        hook_name=HOOK,
        attention=torch.rand(2, 6, 6),
        layer=1,
        heads=[0, 2],
        feature_contexts={7: ["the «cat» sat", url]},
        notices=["The prompt was cut."],
        description="subject tiny",
    )
    html = view.html
    assert view._repr_html_() == html and 'data-nla-vis="side-by-side"' in html
    assert html.count('class="nla-tok nla-explained"') == 3 and html.count('class="nla-tok"') == 3
    assert "> &lt;&#47;</span>" in html and ">&lt;s&gt;</span>" in html  # the token strip is escaped
    assert "<b>" not in html.split("</style>", 1)[1] and "about &lt;b&gt;" in html
    assert "<th>top SAE features</th>" in html and 'data-feature="7"' in html and 'data-feature="3"' in html
    assert "<mark>cat</mark>" in html and "<mark>x</mark>" in html  # contexts shown, «token» marked
    assert re.search(r'class="nla-notice"[^>]*>The prompt was cut\.', html)
    assert "L1H0" in html and "L1H2" in html and "L1H1" not in html
    assert f"background:{score_colour(0.8)}" in html and f"background:{score_colour(float('nan'))}" in html
    assert f"background:{score_colour(0.9)}" not in html  # coloured by gain, not by the raw cosine
    assert "SideBySide(6 tokens, 3 explained" in repr(view)
    text = view.save(tmp_path / "out" / "view.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and html in text and not EXTERNAL.search(text)
    assert "cdn.example.com" in text  # shown, but as text


def test_side_by_side_view_without_sae_or_attention():
    view = SideBySide(_frame(positions=[2], features=False), TOKENS, hook_name=HOOK)
    html = view.html
    assert "top SAE features" not in html and "circuits-vis" not in html and "Attention" not in html
    assert "nla-notice" not in html.split("</style>", 1)[1]
    assert html.count('class="nla-tok nla-explained"') == 1 and 'data-pos="2" title=' in html


def test_page_of_two_views_and_a_raw_attention_view():
    import circuitsvis as cv

    first = SideBySide(
        _frame(),
        TOKENS,
        hook_name=HOOK,
        attention=torch.rand(2, 6, 6),
        layer=1,
        heads=[0, 1],
        feature_contexts={7: ["a «b» c"]},
    )
    second = SideBySide(
        _frame(positions=[4]), TOKENS, hook_name=HOOK, attention=torch.rand(1, 6, 6), layer=0, heads=[3]
    )
    attention = cv.attention.attention_heads(attention=torch.rand(4, 5, 5), tokens=list("abcde"))
    html = page(Section(first, "first"), second, Section(attention, "raw attention"), title="three views")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert EXTERNAL.findall(html) == [] and "sourceMappingURL" not in html
    assert html.count('data-nla-vis="side-by-side"') == 2
    assert html.count('data-nla-vis="circuitsvis"') == 3 and html.count("CircuitsVis.render(") == 3
    mounts = MOUNT.findall(html)
    assert len(mounts) == 3 and len(set(mounts)) == 3
    assert html.count("<section") == 3 and html.count("</section>") == 3
    assert '" <\\/"' in html  # the token " </" inside the circuitsvis props cannot end the script


def test_feature_html_and_highlighted_contexts():
    assert (
        feature_html(5, 1.234)
        == '<span class="nla-feat nla-num" data-feature="5">#5 <span class="nla-num">1.23</span></span>'
    )
    chip = feature_html(5, 1.0, ["x «<y>» z", "«a»"])
    assert chip.startswith('<details class="nla-feat" data-feature="5"><summary>#5')
    assert chip.count('class="nla-ctx"') == 2 and "<mark>&lt;y&gt;</mark>" in chip and "<mark>a</mark>" in chip
    assert highlight_context("no mark <here>") == "no mark &lt;here&gt;"


def test_cosine_colour_runs_red_to_green_and_grey_for_nan():
    assert cosine_colour(-0.5) == cosine_colour(0.0) == "hsl(0, 75%, 82%)"
    assert cosine_colour(0.5) == "hsl(60, 75%, 82%)" and cosine_colour(2.0) == "hsl(120, 75%, 82%)"
    assert cosine_colour(float("nan")) == cosine_colour(None) == "#eaeef2"


def test_core_modules_never_import_vis():
    # vis, widgets, analysis and the tutorials helpers are the layers on top; the core stays below.
    root = Path(nla_lens.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.parts[len(root.parts)] not in ("vis", "widgets", "analysis", "tutorials")
        and re.search(r"nla_lens\.vis\b|from nla_lens import vis\b", p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_importing_nla_lens_loads_no_optional_view_dependency():
    code = (
        "import sys, nla_lens; print(','.join(m for m in ('circuitsvis', 'sae_lens', 'anywidget') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_a_high_cosine_token_no_better_than_the_mean_direction_is_painted_red_with_a_legend():
    frame = _frame(features=False)
    frame["cosine"], frame["gain"] = [0.95, 0.95, 0.95], [0.0, -0.3, 0.9]
    html = SideBySide(frame, TOKENS, hook_name=HOOK).html
    colours = re.findall(r'class="nla-tok nla-explained"[^>]*style="background:([^"]+)"', html)
    assert colours == [score_colour(0.0), score_colour(-0.3), score_colour(0.9)]
    assert colours[0] == colours[1] == "hsl(0, 75%, 82%)" and colours[2] != colours[0]
    assert GAIN_LEGEND in html and "<th>gain</th>" in html
