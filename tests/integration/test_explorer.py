"""NLAExplorer without a browser: synced traitlets, recomputation on prompt/hook/selection, the view under node.

Tiny random models only (a 2-block tiny-llama TransformerBridge subject with a 16-token context, two
tiny-llama NLAs at layers 0 and 1): the whole file runs in seconds on a CPU. The view's ES module
is run once under node with a minimal stand-in DOM when node is installed. The view's assets, which
need no model, are checked in ``tests/unit/test_explorer_assets.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources

import pytest
import torch

pytest.importorskip("anywidget", reason="needs anywidget (pip install 'nla_lens[widgets]')")

import traitlets

from nla_lens.errors import HookNameError, InputError
from nla_lens.metrics import cosine, mean_direction
from nla_lens.models import NLA
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.adapters import as_subject
from nla_lens.testing.models import tiny_nla, tiny_subject
from nla_lens.testing.tokenizers import tiny_tokenizer
from nla_lens.vis.side_by_side import score_colour
from nla_lens.widgets import NLAExplorer
from nla_lens.widgets.explorer import ALTERNATIVE_KEYS, TOKEN_KEYS

N_CTX = 16
HOOK0, HOOK1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"
PROMPT = "The cat sat on the mat."
OTHER = "A dog ran in the park."
LONG = "The cat sat on the mat. " * 10
KW = dict(max_new_tokens=4, progress=False, warn=False)


@pytest.fixture(scope="module")
def subject():
    return tiny_subject(tiny_tokenizer(), n_ctx=N_CTX)


@pytest.fixture(scope="module")
def nla1() -> NLA:
    return tiny_nla(1, n_layers=2, seed=2)


@pytest.fixture(scope="module")
def nla0() -> NLA:
    return tiny_nla(0, n_layers=2)


def explorer(nlas, subject, **kwargs) -> NLAExplorer:
    return NLAExplorer(nlas, subject, **{"max_new_tokens": 4, **kwargs})


def n_tokens(subject, text: str) -> int:
    return len(subject.tokenizer(text, add_special_tokens=False)["input_ids"])


def assert_matches_round_trip(ex: NLAExplorer, nla: NLA, subject, text: str) -> None:
    expected = nla.round_trip(text=text, subject=subject, **KW)
    assert [t["position"] for t in ex.tokens] == expected["position"].tolist()
    assert [t["token"] for t in ex.tokens] == expected["token"].tolist()
    assert [t["explanation"] for t in ex.tokens] == expected["explanation"].tolist()
    assert [t["ok"] for t in ex.tokens] == expected["ok"].tolist()
    assert [t["cosine"] for t in ex.tokens] == pytest.approx(expected["cosine"].tolist(), abs=1e-5)
    assert [t["mse"] for t in ex.tokens] == pytest.approx(expected["mse"].tolist(), abs=1e-5)


# -- tokens ---------------------------------------------------------------------------------------
def test_prompt_fills_one_row_per_position_after_the_first_as_round_trip_does(nla1, subject):
    ex = explorer(nla1, subject)
    assert ex.tokens == [] and ex.hooks == [HOOK1] and ex.hook == HOOK1
    ex.prompt = PROMPT
    n = n_tokens(subject, PROMPT)
    assert [t["position"] for t in ex.tokens] == list(range(1, n))
    assert all(tuple(t) == TOKEN_KEYS for t in ex.tokens)
    assert ex.first_token == subject.tokenizer.decode([subject.tokenizer(PROMPT)["input_ids"][0]])
    assert_matches_round_trip(ex, nla1, subject, PROMPT)
    for t in ex.tokens:  # normalised MSE of unit vectors is 2(1 - cos)
        assert t["mse"] == pytest.approx(2 * (1 - t["cosine"]), abs=1e-4)
    assert ex.busy is False and ex.notice == ""


def test_a_prompt_given_to_the_constructor_is_explained_at_once(nla1, subject):
    ex = explorer(nla1, subject, prompt=PROMPT)
    assert len(ex.tokens) == n_tokens(subject, PROMPT) - 1


def test_explore_sets_the_prompt_and_returns_the_frame(nla1, subject):
    ex = explorer(nla1, subject)
    frame = ex.explore(OTHER)
    assert ex.prompt == OTHER
    assert list(frame.columns) == list(TOKEN_KEYS)
    assert frame["position"].tolist() == list(range(1, n_tokens(subject, OTHER)))
    assert frame["explanation"].tolist() == [t["explanation"] for t in ex.tokens]
    assert list(explorer(nla1, subject).frame.columns) == list(TOKEN_KEYS)  # empty frame too


def test_run_requested_and_explore_recompute_an_unchanged_prompt(nla1, subject, monkeypatch):
    ex = explorer(nla1, subject, prompt=PROMPT)
    calls = []
    real = nla1.round_trip
    monkeypatch.setattr(nla1, "round_trip", lambda vectors, **k: calls.append(len(vectors)) or real(vectors, **k))
    ex.run_requested += 1
    ex.explore(PROMPT)
    assert calls == [n_tokens(subject, PROMPT) - 1] * 2  # the prompt's vectors, read again each time


def test_empty_prompt_gives_no_tokens_and_no_error(nla1, subject):
    ex = explorer(nla1, subject, prompt="")
    assert ex.tokens == [] and ex.notice == "" and ex.alternatives == [] and ex.first_token == ""
    ex.prompt = PROMPT
    ex.selected = 2
    ex.prompt = ""
    assert ex.tokens == [] and ex.selected == -1 and ex.alternatives == [] and ex.notice == ""
    assert ex.frame.empty


def test_a_one_token_prompt_explains_nothing_and_says_why(nla1, subject):
    assert n_tokens(subject, " ") == 1
    ex = explorer(nla1, subject, prompt=" ")
    assert ex.tokens == [] and "one token" in ex.notice


def test_a_prompt_longer_than_the_context_is_truncated_with_a_notice(nla1, subject):
    assert n_tokens(subject, LONG) > N_CTX
    ex = explorer(nla1, subject, prompt=LONG)
    assert [t["position"] for t in ex.tokens] == list(range(1, N_CTX))
    assert f"{n_tokens(subject, LONG)} tokens" in ex.notice and f"({N_CTX})" in ex.notice
    ex.prompt = PROMPT
    assert ex.notice == ""


# -- alternatives -------------------------------------------------------------------------------
def test_selecting_a_token_samples_scored_alternatives(nla1, subject):
    ex = explorer(nla1, subject, prompt=PROMPT, n_alternatives=3, seed=7)
    assert ex.alternatives == []
    ex.selected = 3
    assert len(ex.alternatives) == 3
    assert all(tuple(a) == ALTERNATIVE_KEYS for a in ex.alternatives)
    adapter = as_subject(subject)
    acts = adapter.activations(torch.tensor([adapter.encode(PROMPT)]), adapter.resolve_hook(nla1.hook_name))[0, 3:4]
    texts = [a["explanation"] if a["explanation"].strip() else "(empty)" for a in ex.alternatives]
    expected = cosine(nla1.reconstruct(texts), acts.expand(len(texts), -1)).tolist()
    assert [a["cosine"] for a in ex.alternatives] == pytest.approx(expected, abs=1e-5)
    for a in ex.alternatives:
        assert a["mse"] == pytest.approx(2 * (1 - a["cosine"]), abs=1e-4)
    again = explorer(nla1, subject, prompt=PROMPT, n_alternatives=3, seed=7)
    again.selected = 3
    assert again.alternatives == ex.alternatives  # seeded sampling
    ex.selected = -1
    assert ex.alternatives == []


def test_selecting_a_position_without_a_row_gives_no_alternatives(nla1, subject):
    ex = explorer(nla1, subject, prompt=PROMPT)
    ex.selected = 0
    assert ex.alternatives == []
    ex.selected = 99
    assert ex.alternatives == []


# -- hooks --------------------------------------------------------------------------------------
def test_switching_hook_recomputes_with_that_hook(nla0, nla1, subject):
    ex = explorer({HOOK1: nla1, HOOK0: nla0}, subject, prompt=PROMPT)
    assert ex.hooks == [HOOK1, HOOK0] and ex.hook == HOOK1
    assert_matches_round_trip(ex, nla1, subject, PROMPT)
    before = [t["cosine"] for t in ex.tokens]
    ex.selected = 2
    alternatives_before = ex.alternatives
    ex.hook = HOOK0
    assert ex.nla is nla0
    assert_matches_round_trip(ex, nla0, subject, PROMPT)
    assert [t["cosine"] for t in ex.tokens] != pytest.approx(before, abs=1e-4)
    assert ex.selected == 2 and len(ex.alternatives) == 3 and ex.alternatives != alternatives_before
    with pytest.raises(traitlets.TraitError, match="hook must be one of"):
        ex.hook = "blocks.5.hook_resid_post"


def test_constructor_checks_hooks_loudly(nla0, nla1, subject):
    with pytest.raises(InputError, match="trained at 'blocks.1.hook_resid_post'"):
        NLAExplorer({HOOK0: nla1}, subject)
    with pytest.raises(InputError, match="empty"):
        NLAExplorer({}, subject)
    with pytest.raises(InputError, match="n_alternatives"):
        NLAExplorer(nla1, subject, n_alternatives=0)
    with pytest.raises(HookNameError):
        NLAExplorer(tiny_nla(1, n_layers=2, seed=2, hook_name="blocks.1.hook_resid_psot"), subject)


# -- state and assets ---------------------------------------------------------------------------
def test_every_synced_trait_is_strict_json(nla0, nla1, subject):
    ex = explorer({HOOK1: nla1, HOOK0: nla0}, subject, prompt=LONG)
    ex.selected = 1
    state = json.loads(json.dumps(ex.get_state(), allow_nan=False))
    for name in (
        "prompt",
        "run_requested",
        "hooks",
        "hook",
        "first_token",
        "tokens",
        "selected",
        "alternatives",
        "notice",
        "busy",
    ):
        assert name in state
    assert state["tokens"] and state["alternatives"] and state["notice"]


HARNESS = r"""
class Node {
  constructor(tag) { this.tag = tag; this.children = []; this.style = {}; this.attrs = {}; this.on = {};
    this.textContent = ""; this.className = "";
    this.classList = { add: (c) => { this.className += " " + c; },
                       toggle: (c, on) => { if (on) this.className += " " + c; } }; }
  appendChild(c) { this.children.push(c); return c; }
  append(...cs) { this.children.push(...cs); }
  replaceChildren(...cs) { this.children = cs; }
  setAttribute(k, v) { this.attrs[k] = v; }
  addEventListener(e, f) { this.on[e] = f; }
}
globalThis.document = { createElement: (tag) => new Node(tag) };
const all = (n) => [n, ...n.children.flatMap(all)];
const { default: widget } = await import(process.argv[2]);
const state = JSON.parse(process.argv[3]);
const sent = [];
const model = { get: (k) => state[k], set: (k, v) => { state[k] = v; sent.push([k, v]); }, save_changes() {},
                on() {}, off() {} };
const el = new Node("div");
const cleanup = widget.render({ model, el });
const chips = all(el).filter((n) => n.className.includes("nla-x-tok") && n.on.click);
chips[1].on.click();  // the selected token: a second click clears the selection
chips[0].on.click();
console.log(JSON.stringify({ sent, chips: chips.map((c) => c.textContent), text: all(el).map((n) => n.textContent),
                             colours: chips.map((c) => c.style.background), cleanup: typeof cleanup }));
"""


def render_under_node(ex: NLAExplorer, tmp_path) -> dict:
    """Render the view's ES module under node with the widget's state (HARNESS); what it reports."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node to run the view's ES module")
    module = tmp_path / "explorer.mjs"
    module.write_text(resources.files("nla_lens.widgets").joinpath("explorer.js").read_text(encoding="utf-8"))
    (tmp_path / "harness.mjs").write_text(HARNESS)
    state = json.dumps(ex.get_state(), allow_nan=False)
    run = subprocess.run(
        [node, str(tmp_path / "harness.mjs"), module.as_uri(), state], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_view_renders_and_a_click_selects_a_token_under_node(nla1, subject, tmp_path):
    ex = explorer(nla1, subject, prompt=PROMPT)
    ex.selected = 2
    out = render_under_node(ex, tmp_path)
    assert out["chips"] == [t["token"].replace("\n", "\u21b5") for t in ex.tokens]
    assert ex.tokens[1]["position"] == ex.selected
    assert out["sent"] == [["selected", -1], ["selected", ex.tokens[0]["position"]]]
    assert ex.tokens[2]["explanation"] in out["text"] or not ex.tokens[2]["explanation"]
    assert any(a["explanation"] == t for a in ex.alternatives for t in out["text"])
    assert out["cleanup"] == "function"


def test_a_token_explained_no_better_than_the_mean_direction_is_not_coloured_good(nla1, subject, tmp_path, monkeypatch):
    """Honest colours: an AR that always answers the mean direction of the prompt's tokens gets a high
    raw cosine but gain 0, and the view paints every such token red (the colour of "no better than the
    mean direction"), not the green a cosine-coloured strip would show."""
    read = prompt_activations(subject, PROMPT, nla1.hook_name)
    mean = mean_direction(read.vectors)
    monkeypatch.setattr(nla1.ar, "reconstruct", lambda texts, batch_size=16: mean.expand(len(texts), -1).clone())
    ex = explorer(nla1, subject, prompt=PROMPT)
    ex.selected = ex.tokens[0]["position"]
    assert [t["gain"] for t in ex.tokens] == pytest.approx([0.0] * len(ex.tokens), abs=1e-5)
    assert [a["gain"] for a in ex.alternatives] == pytest.approx([0.0] * len(ex.alternatives), abs=1e-5)
    assert max(t["cosine"] for t in ex.tokens) > 0.1  # a cosine-coloured chip would not be red
    colours = render_under_node(ex, tmp_path)["colours"]
    assert len(colours) == len(ex.tokens) and set(colours) == {score_colour(0.0)} == {"hsl(0, 75%, 82%)"}
