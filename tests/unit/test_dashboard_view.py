"""NLADashboard without a model: the view is self-contained, core never imports the widgets at
module level, and the stop button reaches a real kernel busy in ``train`` (a model-free trainer).

The dashboard on tiny trainers is in ``tests/integration/test_dashboard.py``.
"""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("anywidget", reason="needs anywidget (pip install 'nla_lens[widgets]')")

from nla_lens.widgets import NLADashboard


def test_the_view_is_self_contained_and_never_parses_html():
    for text in (NLADashboard._esm, NLADashboard._css):
        assert isinstance(text, str) and len(text) > 200
        for needle in ("http://", "https://", "//cdn", "@import", "url("):
            assert needle not in text, needle
    esm = NLADashboard._esm
    assert re.search(r"^export default", esm, re.M)
    assert not re.search(r"^\s*import\b|\bimport\(", esm, re.M)  # no module fetched, not even a local one
    assert "innerHTML" not in esm and "insertAdjacentHTML" not in esm and "outerHTML" not in esm
    for event in ("change:history", "change:samples", "change:${name}"):
        assert event in esm
    for key in (
        "loss",
        "ar_loss",
        "eval_fve_nrm",
        "eval_fve_nrm_shuffled",
        "reward_mean",
        "reward_std",
        "kl",
        "response_length",
        "stop_requested",
    ):
        assert f'"{key}"' in esm, key
    assert "model.save_changes()" in esm


def test_core_does_not_import_the_widgets_at_module_level():
    """anywidget stays optional: only ``if TYPE_CHECKING`` blocks and function bodies may import widgets."""
    import ast
    from pathlib import Path

    import nla_lens

    root = Path(nla_lens.__file__).parent
    for file in root.rglob("*.py"):
        if "widgets" in file.relative_to(root).parts:
            continue
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    break
                names = (
                    [a.name for a in sub.names]
                    if isinstance(sub, ast.Import)
                    else ([sub.module or ""] if isinstance(sub, ast.ImportFrom) else [])
                )
                assert not any("widgets" in n for n in names), f"{file} imports the widgets at module level"


_KERNEL_SETUP = """
import time
from nla_lens.training.base import Trainer
from nla_lens.widgets import NLADashboard

class Slow(Trainer):
    def _step(self):
        time.sleep(0.02)
        return {"loss": 1.0}
    def _modules(self):
        return {}
    def _optimizers(self):
        return {}

trainer = Slow()
board = NLADashboard(trainer)
"""


def test_the_stop_button_reaches_a_kernel_busy_in_train():
    """A real ipykernel: the view's update arrives while the cell runs ``train(2000)`` (40 s)."""
    comm_module = pytest.importorskip("ipykernel.comm", reason="needs ipykernel")
    pytest.importorskip("jupyter_client", reason="needs jupyter_client")
    if not hasattr(comm_module.Comm, "_reply_subshell_for"):
        pytest.skip("needs ipykernel >= 7 (comm routing hook); older kernels stop when idle")
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:

        def run(code: str, timeout: float = 120) -> dict:
            expression = "(trainer.step_count, board.status, board.comm.comm_id)"
            msg_id = kc.execute(code, user_expressions={"out": expression})
            while True:
                reply = kc.get_shell_msg(timeout=timeout)
                if reply["parent_header"].get("msg_id") == msg_id:
                    assert reply["content"]["status"] == "ok", reply["content"]
                    return reply

        def state(reply: dict) -> tuple:
            return eval(reply["content"]["user_expressions"]["out"]["data"]["text/plain"])

        _, _, comm_id = state(run(_KERNEL_SETUP))
        msg_id = kc.execute("trainer.train(2000, progress=False)")
        time.sleep(1.0)  # the cell is now busy training
        kc.shell_channel.send(
            kc.session.msg(
                "comm_msg",
                {
                    "comm_id": comm_id,
                    "data": {"method": "update", "state": {"stop_requested": True}, "buffer_paths": []},
                },
            )
        )
        while kc.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
            pass
        steps, status, _ = state(run("pass"))
        assert 0 < steps < 1000 and status == "stopped"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
