"""NLADashboard without a browser on tiny trainers: synced traitlets, trainer wiring, the stop button,
and the view rendered under node. Its model-free checks (offline assets, optional import, the stop
button in a real kernel) are in ``tests/unit/test_dashboard_view.py``."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("anywidget", reason="needs anywidget (pip install 'nla_lens[widgets]')")

from nla_lens.models import NLA
from nla_lens.testing.models import tiny_nla
from nla_lens.testing.synthetic import concept_dataset
from nla_lens.training import ARWarmStart, GRPOConfig, GRPOTrainer, TrainerCallback, WarmStartConfig
from nla_lens.widgets import NLADashboard

D = 32


def untrained() -> NLA:
    torch.manual_seed(0)
    return tiny_nla(n_layers=2, d_model=D)


def ar_trainer(**config) -> ARWarmStart:
    data, texts = concept_dataset(16, D)
    cfg = WarmStartConfig(**{"lr": 3e-3, "batch_size": 4, "eval_size": 4, **config})
    return ARWarmStart(untrained().ar, data, texts, cfg, eval_dataset=data, eval_explanations=texts)


def grpo_trainer() -> GRPOTrainer:
    data, _ = concept_dataset(8, D)
    return GRPOTrainer(untrained(), data, GRPOConfig(n_vectors=2, group_size=2, max_new_tokens=8))


class OnStep(TrainerCallback):
    """Calls ``fn(trainer, metrics)`` after every step."""

    def __init__(self, fn):
        self.fn = fn

    def on_step(self, trainer, metrics):
        self.fn(trainer, metrics)


def strict_json(board: NLADashboard) -> str:
    return json.dumps(board.get_state(), allow_nan=False)


def test_history_grows_one_row_per_step_with_the_plotted_keys():
    trainer = ar_trainer(eval_every=2)
    board = NLADashboard(trainer)
    seen = []
    trainer.train(
        4,
        progress=False,
        callbacks=[
            OnStep(
                lambda t, m: seen.append((len(board.history), board.step, board.total_steps, board.status, board.eta))
            )
        ],
    )
    assert [s[:4] for s in seen] == [(i, i, 4, "running") for i in range(1, 5)]
    assert all(eta is not None and eta >= 0 for *_, eta in seen) and seen[-1][-1] == 0
    assert [row["step"] for row in board.history] == [1, 2, 3, 4]
    assert set(board.history[0]) == {"step", "loss"}
    assert set(board.history[1]) == {"step", "loss", "eval_fve_nrm", "eval_fve_nrm_shuffled"}
    assert all(isinstance(row["loss"], float) for row in board.history)
    assert (board.status, board.step, board.eta) == ("done", 4, 0.0) and board.elapsed > 0
    assert board.samples == []  # a warm start has no samples
    strict_json(board)


def test_a_new_dashboard_starts_from_the_trainer_records_and_keeps_following():
    trainer = ar_trainer()
    trainer.train(3, progress=False)
    board = NLADashboard(trainer)
    assert [row["step"] for row in board.history] == [1, 2, 3] and board.step == 3
    trainer.train(2, progress=False)
    assert [row["step"] for row in board.history] == [1, 2, 3, 4, 5]
    assert (board.step, board.total_steps, board.status) == (5, 5, "done")
    trainer.step()  # a bare step outside train() updates it too
    assert board.step == 6 and len(board.history) == 6


def test_samples_follow_the_grpo_trainers_last_samples():
    trainer = grpo_trainer()
    board = NLADashboard(trainer)
    sizes = []
    trainer.train(2, progress=False, callbacks=[OnStep(lambda t, m: sizes.append(len(board.samples)))])
    assert sizes == [4, 4]
    expected = trainer.last_samples
    assert [s["explanation"] for s in board.samples] == list(expected.explanation)
    assert [s["failed"] for s in board.samples] == [bool(f) for f in expected.failed]
    assert [s["vector"] for s in board.samples] == list(expected.vector)
    for got, want in zip(board.samples, expected.reward):
        assert got["reward"] == pytest.approx(want)
    assert {"step", "reward_mean", "reward_std", "kl", "response_length"} <= set(board.history[-1])
    assert "ar_loss" in board.history[-1]
    strict_json(board)


def test_samples_are_capped():
    trainer = ar_trainer()
    board = NLADashboard(trainer, max_samples=3)
    trainer.last_samples = pd.DataFrame(
        {
            "vector": range(10),
            "explanation": [f"<b>{i}</b>" for i in range(10)],
            "reward": np.linspace(-1, 0, 10),
            "failed": [False] * 10,
        }
    )
    trainer.step()
    assert [s["explanation"] for s in board.samples] == ["<b>0</b>", "<b>1</b>", "<b>2</b>"]


def test_stop_requested_from_the_view_stops_training_after_the_current_step():
    trainer = ar_trainer()
    board = NLADashboard(trainer)
    during = []

    def press_stop(t, metrics):
        if metrics["step"] == 2:
            board.stop_requested = True  # what the view's button does
            during.append(board.status)

    history = trainer.train(10, progress=False, callbacks=[OnStep(press_stop)])
    assert len(history) == 2 and trainer.step_count == 2 and len(board.history) == 2
    assert during == ["stopping"]
    assert (board.status, board.step, board.total_steps, board.eta) == ("stopped", 2, 10, None)
    # The next train() call starts afresh: the request is cleared.
    trainer.train(2, progress=False)
    assert (board.stop_requested, board.status, board.step, board.total_steps) == (False, "done", 4, 4)


def test_stop_message_is_seen_on_the_kernels_routing_hook():
    """ipykernel >= 7 calls ``comm._reply_subshell_for`` on its shell thread while a cell runs."""
    trainer = ar_trainer()
    board = NLADashboard(trainer)
    message = {"method": "update", "state": {"stop_requested": True}, "buffer_paths": []}
    assert board.comm._reply_subshell_for({"method": "update", "state": {"title": "x"}}, "main") == "main"
    assert board.comm._reply_subshell_for(message, None) is None  # idle: nothing to stop
    assert board.comm._reply_subshell_for("garbage", "main") == "main"  # never raises

    def message_arrives(t, metrics):
        if metrics["step"] == 3:
            board.comm._reply_subshell_for(message, None)

    trainer.train(10, progress=False, callbacks=[OnStep(message_arrives)])
    assert trainer.step_count == 3 and board.status == "stopped"


def test_train_with_dashboard_true_works_outside_a_notebook(monkeypatch, capsys):
    boards = []
    show = NLADashboard.show
    monkeypatch.setattr(NLADashboard, "show", lambda self: boards.append(self) or show(self))
    trainer = ar_trainer()
    before = list(trainer.callbacks)
    history = trainer.train(3, progress=False, dashboard=True)
    assert len(history) == 3 and len(boards) == 1
    board = boards[0]
    assert [row["step"] for row in board.history] == [1, 2, 3] and board.status == "done"
    assert trainer.callbacks == before  # used for that call only
    assert capsys.readouterr().out == ""  # nothing printed in place of a display
    # An existing (attached) dashboard is reused, not registered twice.
    mine = NLADashboard(trainer)
    trainer.train(2, progress=False, dashboard=mine)
    assert [row["step"] for row in mine.history] == [1, 2, 3, 4, 5] and len(boards) == 1
    with pytest.raises(ValueError, match="dashboard="):
        trainer.train(1, progress=False, dashboard="yes")


def test_nan_and_tensor_metrics_serialise_as_json_null():
    trainer = ar_trainer()
    board = NLADashboard(trainer)
    trainer.last_samples = pd.DataFrame(
        {"vector": [np.int64(0)], "explanation": ["x"], "reward": [math.nan], "failed": [np.bool_(True)]}
    )
    board.on_step(
        trainer,
        {
            "step": 1,
            "loss": math.nan,
            "kl": math.inf,
            "reward_mean": np.float32(0.5),
            "ar_loss": torch.tensor(0.25),
            "eval_fve_nrm": None,
            "unplotted": "ignored",
        },
    )
    row = board.history[-1]
    assert row == {"step": 1, "loss": None, "kl": None, "reward_mean": 0.5, "ar_loss": 0.25, "eval_fve_nrm": None}
    assert board.samples == [{"explanation": "x", "reward": None, "failed": True, "vector": 0}]
    text = strict_json(board)
    assert "NaN" not in text and "Infinity" not in text


def test_history_is_thinned_to_max_points_keeping_evaluations_and_the_latest_step():
    trainer = ar_trainer()
    board = NLADashboard(trainer, max_points=10)
    for step in range(1, 26):
        board.on_step(trainer, {"step": step, "loss": 1.0 / step, **({"eval_fve_nrm": 0.5} if step % 5 == 0 else {})})
        assert len(board.history) <= 10
    steps = [row["step"] for row in board.history]
    assert steps == sorted(steps) and steps[-1] == 25
    assert {5, 10, 15, 20, 25} <= set(steps)
    with pytest.raises(ValueError, match="max_points"):
        NLADashboard(trainer, max_points=1)


# A minimal DOM, enough for the view's render() to run under node (no browser, no jsdom).
_NODE_SHIM = r"""
class El {
  constructor(tag) { Object.assign(this, { tagName: tag, children: [], attrs: {}, style: {}, className: "",
    _text: "", listeners: {} }); }
  appendChild(c) { this.children.push(c); return c; }
  append(...cs) { cs.forEach((c) => this.appendChild(c)); }
  replaceChildren(...cs) { this.children = cs; }
  setAttribute(k, v) { this.attrs[k] = v; }
  addEventListener(e, f) { this.listeners[e] = f; }
  set textContent(t) { this._text = String(t); this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
}
globalThis.document = { createElement: (t) => new El(t), createElementNS: (ns, t) => new El(t) };
globalThis.DOMParser = class { parseFromString() { return { body: { firstChild: { namespaceURI: "svg" } } }; } };
const { default: view } = await import(process.argv[2]);
const state = JSON.parse(process.argv[3]);
const handlers = {};
const model = {
  get: (k) => state[k], set: (k, v) => { state[k] = v; }, save_changes: () => { state.saved = true; },
  on: (e, f) => { (handlers[e] ||= []).push(f); },
  off: (e, f) => { handlers[e] = handlers[e].filter((g) => g !== f); },
};
const root = new El("div");
const cleanup = view.render({ model, el: root });
const walk = (n, out) => { out.push(n); n.children.forEach((c) => walk(c, out)); return out; };
const all = walk(root, []);
const find = (cls) => all.find((n) => n.className === cls);
const stop = find("nla-stop");
const out = {
  panels: all.filter((n) => n.className === "nla-panel").map((n) => n.children[0].textContent),
  badAttrs: all.filter((n) => Object.values(n.attrs).some((v) => /NaN|undefined|Infinity/.test(v))).length,
  tags: [...new Set(all.map((n) => n.tagName))],
  cells: all.filter((n) => n.tagName === "td").map((n) => n.textContent),
  counter: find("nla-counter").textContent,
  dashed: all.filter((n) => /nla-line.*nla-dashed/.test(n.attrs.class)).length,
  bands: all.filter((n) => n.tagName === "polygon").length,
  stopDisabled: stop.disabled,
  empty: (find("nla-empty") || { textContent: "" }).textContent,
};
stop.listeners.click();
out.afterClick = [state.stop_requested, state.saved === true];
cleanup();
out.handlersLeft = Object.values(handlers).reduce((a, h) => a + h.length, 0);
console.log(JSON.stringify(out));
"""


def render_under_node(board, tmp_path) -> dict:
    """The view's ES module run by node against the minimal DOM, with ``board``'s state; what it saw."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node (runs the view's ES module against a minimal DOM)")
    (tmp_path / "view.mjs").write_text(NLADashboard._esm)
    (tmp_path / "shim.mjs").write_text(_NODE_SHIM)
    result = subprocess.run(
        [node, str(tmp_path / "shim.mjs"), str(tmp_path / "view.mjs"), strict_json(board)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_before_the_first_step_a_running_board_says_how_long_it_has_waited(tmp_path):
    trainer = ar_trainer()
    board = NLADashboard(trainer, title="GRPOTrainer")
    board.on_train_begin(trainer, 3)
    out = render_under_node(board, tmp_path)
    assert out["empty"].startswith("Waiting for the first step") and "0:00 so far" in out["empty"]
    assert out["handlersLeft"] == 0  # and node exited: the clock's timer was cleared with the view


def test_the_view_renders_every_panel_under_node(tmp_path):
    trainer = ar_trainer()
    board = NLADashboard(trainer, title="GRPOTrainer")
    board.on_train_begin(trainer, 100)
    trainer.last_samples = pd.DataFrame(
        {
            "vector": [0, 0],
            "explanation": ["<script>alert(1)</script> &", "x"],
            "reward": [-0.25, math.nan],
            "failed": [False, True],
        }
    )
    for step in range(1, 31):
        trainer.step_count = step
        evaluation = {"eval_fve_nrm": step / 40, "eval_fve_nrm_shuffled": 0.0} if step % 10 == 0 else {}
        board.on_step(
            trainer,
            {
                "step": step,
                "ar_loss": math.nan if step == 7 else 1 / step,
                "reward_mean": step / 30,
                "reward_std": 0.1,
                "kl": 0.01 * step,
                "response_length": 10 + step,
                **evaluation,
            },
        )
    out = render_under_node(board, tmp_path)
    assert out["empty"] == ""
    assert out["panels"] == ["Loss", "Held-out fve_nrm", "Reward", "KL to reference", "Response length (tokens)"]
    assert out["badAttrs"] == 0 and out["dashed"] == 1 and out["bands"] == 1
    assert "script" not in out["tags"] and "<script>alert(1)</script> &" in out["cells"]
    assert "\u2013 (failed)" in out["cells"]  # a NaN reward arrives as null and shows as a dash
    assert out["counter"] == "step 30 / 100"
    assert out["stopDisabled"] is False and out["afterClick"] == [True, True] and out["handlersLeft"] == 0
