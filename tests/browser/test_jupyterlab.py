"""Real-browser test: JupyterLab on loopback, driven by headless Chromium through Playwright.

A notebook trains a tiny NLA with the live dashboard (``trainer.train(n, dashboard=True)``),
then shows the token explorer and a side-by-side view (NLA explanations, circuitsvis attention,
SAE features) for the embedded SmolLM2 with the shipped NLA. Every cell runs in the browser;
the test then reads the rendered DOM: the dashboard reached the final step and drew its
curves, the explorer drew one chip per token and answers a click, and the side-by-side view
drew its token strip, table, SAE features and circuitsvis attention. Screenshots go to
``$NLA_LENS_TEST_OUTPUT/browser`` (default ``test-output/browser`` in the repository).

Needs Debian's ``chromium`` (``apt-get install chromium``; no browser download) and the
``browser`` extra (``jupyterlab``, ``playwright``); ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("NLA_LENS_TEST_OUTPUT", REPO / "test-output")) / "browser"
STEPS = 6
LONG_STEPS = 5000
DONE = "NLA_NOTEBOOK_DONE"
PROMPT = "The old sailor tied the rope to the mast"

CELLS = [
    # 1. Train a tiny NLA (random 2-block llamas, synthetic concept vectors) with the dashboard.
    f"""\
import torch
from nla_lens.testing.models import tiny_nla
from nla_lens.testing.synthetic import concept_dataset
from nla_lens.training import GRPOConfig, GRPOTrainer

torch.manual_seed(0)
tiny = tiny_nla(n_layers=2)
data, _ = concept_dataset(16, 32)
trainer = GRPOTrainer(tiny, data, GRPOConfig(n_vectors=2, group_size=2, max_new_tokens=8, eval_every=2,
                                             eval_size=4), eval_dataset=data)
history = trainer.train({STEPS}, dashboard=True)""",
    # 2. A long run that only the dashboard's Stop button (clicked by the test) can end in time.
    f"""\
long_run = GRPOTrainer(tiny, data, GRPOConfig(n_vectors=2, group_size=2, max_new_tokens=8))
long_history = long_run.train({LONG_STEPS}, dashboard=True)""",
    # 3. The token explorer on the embedded model with the shipped NLA.
    f"""\
import nla_lens
from nla_lens import NLA
from nla_lens.widgets import NLAExplorer

bridge = nla_lens.load_subject("smollm2-135m")
nla = NLA.from_pretrained("smollm2-135m-L20")
explorer = NLAExplorer(nla, bridge, prompt={PROMPT!r}, max_new_tokens=32, n_alternatives=2)
explorer""",
    # 4. A small SAE (SAELens, trained on a slice of the embedded corpus) and the side-by-side view.
    f"""\
import tempfile
from nla_lens.analysis import side_by_side, top_feature_contexts
from nla_lens.training.sae import train_embedded_sae

texts = nla_lens.load_corpus(max_documents=24)
sae = train_embedded_sae(bridge, texts, hook_name=nla.hook_name, d_sae=256, k=8, training_tokens=3000,
                         batch_size_tokens=256, max_length=48, cache_dir=tempfile.mkdtemp())
contexts = top_feature_contexts(sae, bridge, texts[:8], nla.hook_name, k=2, max_length=48)
view = side_by_side(nla, bridge, {PROMPT!r}, positions=[2, 5, 8], heads=[0, 1], sae=sae, feature_contexts=contexts,
                    max_new_tokens=32)
view""",
    f'print("{DONE}", len(history), len(long_history), explorer.frame.shape[0], view.frame.shape[0])',
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """JupyterLab user settings for a quiet, fully rendered, state-saving session."""
    settings = {
        # every cell stays in the DOM (JupyterLab 4 virtualises long notebooks by default)
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        # no news or update pop-up over the screenshot (and no network request)
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "checkForUpdates": False,
            "fetchNews": "false",
        },
        # widget state is written into the notebook on save
        "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture()
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving ``tmp_path/work``; yields (base URL, token, root)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "The browser test needs Debian's chromium: `apt-get install -y chromium` (.ci/run installs it)."
    root, home = tmp_path / "work", tmp_path / "jupyter"
    root.mkdir()
    _write_settings(home / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    log = tmp_path / "jupyterlab.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                f"--ServerApp.root_dir={root}",
                f"--IdentityProvider.token={token}",
                "--LabApp.expose_app_in_browser=True",
                "--ServerApp.port_retries=0",
                *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            ],
            cwd=root,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", process, log)
        yield base, token, root, chromium
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _stderr(page) -> list[str]:
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


@pytest.mark.embedded
def test_notebook_with_dashboard_explorer_and_side_by_side_runs_in_chromium(jupyterlab):
    from playwright.sync_api import sync_playwright

    base, token, root, chromium = jupyterlab
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "views.ipynb")
    OUTPUT.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.goto(f"{base}/lab/tree/views.ipynb?token={token}")
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session",
            timeout=90_000,
        )
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        # Not awaited: the command's promise settles only when every cell has run.
        page.evaluate(
            "async () => { const w = window.jupyterapp.shell.currentWidget;"
            " await w.sessionContext.ready; window.jupyterapp.commands.execute("
            "'notebook:run-all-cells'); }"
        )
        done = page.locator(f".jp-OutputArea-output:has-text('{DONE}')")
        error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")

        # The second dashboard's Stop button ends its long run while the kernel is busy training.
        long_board = page.locator(".nla-dash").nth(1)
        page.wait_for_function(
            "() => { const c = document.querySelectorAll('.nla-dash .nla-counter')[1];"
            " return document.querySelector(\".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']\")"
            " || (c && Number(c.textContent.split(' ')[1]) >= 3); }",
            timeout=300_000,
        )
        assert not error.count(), f"A cell raised:\n{error.all_inner_texts()}\nstderr: {_stderr(page)}"
        long_board.locator(".nla-stop").click()
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline and not done.count() and not error.count():
            page.wait_for_timeout(1000)
        page.screenshot(path=str(OUTPUT / "jupyterlab.png"))
        assert not error.count(), f"A cell raised:\n{error.all_inner_texts()}\nstderr: {_stderr(page)}"
        assert done.count(), f"The notebook did not finish in time; stderr: {_stderr(page)}; console: {console}"

        # The dashboard reached the final step, finished, and drew its curves and samples.
        assert page.locator(".nla-dash").count() == 2
        dash = page.locator(".nla-dash").first
        assert dash.locator(".nla-counter").inner_text() == f"step {STEPS} / {STEPS}"
        assert dash.locator(".nla-status").inner_text() == "done"
        assert dash.locator("svg.nla-chart").count() >= 3
        assert dash.locator(".nla-line").count() >= 3
        assert dash.locator(".nla-table tr").count() >= 2
        dash.screenshot(path=str(OUTPUT / "dashboard.png"))

        # The stopped run ended cleanly, long before its last step.
        stopped_steps = int(done.inner_text().split()[2])
        assert long_board.locator(".nla-status").inner_text() == "stopped"
        assert 3 <= stopped_steps < LONG_STEPS
        assert long_board.locator(".nla-counter").inner_text() == f"step {stopped_steps} / {LONG_STEPS}"

        # The explorer drew one chip per token; a click shows the explanation and samples alternatives.
        explorer = page.locator(".nla-explorer")
        chips = explorer.locator(".nla-x-strip .nla-x-tok")
        n_tokens = int(done.inner_text().split()[3]) + 1  # explained positions + the unexplained first token
        assert chips.count() == n_tokens
        chips.nth(3).click()
        explorer.locator(".nla-x-details .nla-x-text").first.wait_for(timeout=30_000)
        assert explorer.locator(".nla-x-details .nla-x-text").first.inner_text().strip()
        explorer.locator(".nla-x-list li").first.wait_for(timeout=120_000)
        assert explorer.locator(".nla-x-list li").count() == 2
        explorer.screenshot(path=str(OUTPUT / "explorer.png"))

        # The side-by-side view: token strip, explanation table, SAE features and circuitsvis attention.
        view = page.locator(".nla-side-by-side")
        assert view.locator(".nla-tok.nla-explained").count() == 3
        assert view.locator(".nla-table tr").count() == 4  # header + 3 positions
        assert view.locator(".nla-feat").count() >= 3
        drawn = view.locator(".nla-cv *:not(script):not(style)")
        drawn.first.wait_for(timeout=30_000)
        assert drawn.count() > 5, "circuitsvis drew nothing inside its mount point"
        view.screenshot(path=str(OUTPUT / "side_by_side.png"))

        # Saved with the widget state, so the final curves survive without a kernel.
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_timeout(2000)
        browser.close()

    saved = json.loads((root / "views.ipynb").read_text())
    states = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    boards = [s["state"] for s in states.values() if s["state"].get("total_steps") == STEPS]
    assert boards and boards[0]["step"] == STEPS and len(boards[0]["history"]) == STEPS
    shutil.copy(root / "views.ipynb", OUTPUT / "views.ipynb")
