"""The course (tutorials/) and research notebooks (notebooks/): clean, well-formed, and executed.

- Every notebook is committed without outputs.
- Every exercise has a stub, a visible test cell and a collapsed solution; the check behind the
  test rejects the stub and deliberately broken implementations, and accepts the solution.
- Every notebook executes top to bottom in smoke mode (``NLA_LENS_MODE=smoke``, Hugging Face hub
  offline) with the exercise stubs replaced by their solutions, within a per-notebook budget, and
  every exercise's test cell reports success in the executed outputs.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch

from nla_lens.tutorials import authoring, checks
from nla_lens.tutorials.prepare import COURSE_SAES

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted([*ROOT.glob("tutorials/*.ipynb"), *ROOT.glob("notebooks/*.ipynb")])
IDS = [f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS]
#: Notebooks that train an SAE with SAELens (TransformerLens 3.9 only); the others run on both lines.
NEEDS_SAE_LENS = {"tutorials/06_nla_vs_sae_and_attention", "notebooks/02_nla_vs_sae_over_a_corpus"}
#: What a notebook's code names when it loads the embedded SmolLM2 (its smoke run is marked ``embedded``).
LOADS_EMBEDDED = ("smollm2-135m", "load_embedded_hf", "embedded_model_dir")


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def _marks(path: Path, notebook_id: str) -> list[pytest.MarkDecorator]:
    code = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
    return ([pytest.mark.sae_lens] if notebook_id in NEEDS_SAE_LENS else []) + (
        [pytest.mark.embedded] if any(name in code for name in LOADS_EMBEDDED) else []
    )


EXECUTED = [pytest.param(p, marks=_marks(p, i)) for p, i in zip(NOTEBOOKS, IDS)]

#: Wall-clock budget per notebook in smoke mode (seconds); CI runs them on 2 cores.
BUDGET_SECONDS = 300
DEFAULT_CELL_TIMEOUT = BUDGET_SECONDS


ALL_EXERCISES = [(path, name, parts) for path in NOTEBOOKS for name, parts in authoring.exercises(_read(path)).items()]


def test_there_is_a_course_and_research_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert sum(p.parent.name == "tutorials" for p in NOTEBOOKS) >= 6, names
    assert sum(p.parent.name == "notebooks" for p in NOTEBOOKS) >= 3, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing."
    assert "widgets" not in nb.metadata, f"{path.name} carries saved widget state; clear it."


#: Emoji blocks (pictographs, and the misc symbols such as U+26AA) that show as missing-glyph boxes
#: where no emoji font is installed (Debian's Chromium without fonts-noto-color-emoji).
EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u26ff\u2b50-\u2b55]")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_emoji_that_renders_as_a_box(path):
    found = {c for cell in _read(path).cells for c in EMOJI.findall(cell.source)}
    assert not found, f"{path.name} uses {sorted(found)}: write it in words (see authoring.DIFFICULTY)"


def _training_and_eval_sets(source: str) -> list[tuple[str, str]]:
    """``(training data, eval_dataset)`` source text of every call that passes ``eval_dataset=``."""
    import ast

    pairs = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            for keyword in node.keywords:
                if keyword.arg == "eval_dataset":
                    pairs.append((ast.unparse(node.args[1]), ast.unparse(keyword.value)))
    return pairs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_trainers_evaluate_on_data_they_do_not_train_on(path):
    code = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code" and not c.source.startswith("%"))
    same = [pair for pair in _training_and_eval_sets(code) if pair[0] == pair[1]]
    assert not same, f"{path.name}: eval_dataset is the training set in {same}; hold out a split"


def test_the_eval_check_catches_a_training_set_passed_as_eval_dataset():
    assert _training_and_eval_sets("GRPOTrainer(nla, data, config, eval_dataset=data)") == [("data", "data")]


# -- exercises --------------------------------------------------------------------------------
def _broken_hidden_states_index(name):
    parts = name.split(".")
    if name == "hook_embed":
        return 0
    if len(parts) == 3 and parts[2] in ("hook_resid_post", "hook_resid_pre"):
        return int(parts[1])  # forgets the embedding slot of hidden_states
    return None


def _broken_get_resid(bridge, text, layer):
    name = f"blocks.{layer}.hook_resid_pre"  # the input of the block, not its output
    _, cache = bridge.run_with_cache(text, names_filter=name, stop_at_layer=layer + 1)
    return cache[name][0]


def _get_resid_full_forward(bridge, text, layer):
    _, cache = bridge.run_with_cache(text)  # the right numbers, after running all 30 blocks
    return cache[f"blocks.{layer}.hook_resid_post"][0]


def _fve_without_normalising(pred, target):
    err = ((target - pred) ** 2).sum(-1).mean()
    return float(1 - err / ((target - target.mean(0)) ** 2).sum(-1).mean())


def _fve_as_cosine(pred, target):
    return float(torch.nn.functional.cosine_similarity(pred, target, dim=-1).mean())


def _predict_mean_renormalised(train, evals):
    mean = torch.nn.functional.normalize(torch.nn.functional.normalize(train, dim=-1).mean(0), dim=0)
    u = torch.nn.functional.normalize(evals, dim=-1)
    return float(1 - ((u - mean) ** 2).sum(-1).mean() / ((u - u.mean(0)) ** 2).sum(-1).mean())


def _predict_mean_of_eval_targets(train, evals):
    return 0.0  # the mean of the *eval* targets always scores exactly 0: a leak, not a baseline


def _markers_ignoring_neighbours(ids, marker, left, right):
    return (ids == marker).nonzero().long()


def _markers_off_by_one(ids, marker, left, right):
    valid = (ids[:, 1:-1] == marker) & (ids[:, :-2] == left) & (ids[:, 2:] == right)
    return valid.nonzero().long()  # forgets that the slice starts at position 1


def _inject_in_place(embeddings, positions, vectors, scale):
    embeddings[positions[:, 0], positions[:, 1]] = vectors / vectors.norm(dim=-1, keepdim=True) * scale
    return embeddings


def _inject_without_rescaling(embeddings, positions, vectors, scale):
    out = embeddings.clone()
    out[positions[:, 0], positions[:, 1]] = vectors
    return out


def _mse_raw(pred, target):
    return ((pred - target) ** 2).mean(-1)


def _mse_unit(pred, target):
    u, v = torch.nn.functional.normalize(pred, dim=-1), torch.nn.functional.normalize(target, dim=-1)
    return ((u - v) ** 2).mean(-1)  # unit vectors: off by a factor d


def _forward_last_column(causal_lm, head, n_blocks, ids, mask):
    hidden = causal_lm(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return head(hidden[n_blocks][:, -1])  # reads padding on the shorter rows


def _forward_final_norm(causal_lm, head, n_blocks, ids, mask):
    hidden = causal_lm(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return head(hidden[-1][torch.arange(len(ids)), mask.sum(1) - 1])  # all blocks + the final norm


def _forward_without_head(causal_lm, head, n_blocks, ids, mask):
    hidden = causal_lm(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return hidden[n_blocks][torch.arange(len(ids)), mask.sum(1) - 1]


def _rewards_zero_for_failed(mse, failed):
    return torch.where(failed, torch.zeros_like(mse), -mse)


def _rewards_positive(mse, failed):
    return torch.where(failed, torch.full_like(mse, -2.0), mse)


def _advantages_global(rewards):
    return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-4)


def _advantages_no_eps(rewards):
    return (rewards - rewards.mean(1, keepdim=True)) / rewards.std(1, keepdim=True, unbiased=False)


def _scramble_identity(text, seed):
    return text


def _scramble_drops_a_word(text, seed):
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words[1:])


def _scramble_unseeded(text, seed):
    words = text.split()
    random.shuffle(words)
    return " ".join(words)


def _scramble_reversed(text, seed):
    return " ".join(reversed(text.split()))  # ignores the seed: every seed gives the same text


def _previous_with_self(pattern):
    return (
        pattern.diagonal(offset=-1, dim1=1, dim2=2).sum(-1) + pattern.diagonal(dim1=1, dim2=2).sum(-1)
    ) / pattern.shape[1]


def _previous_reversed(pattern):
    return pattern.diagonal(offset=1, dim1=1, dim2=2).mean(-1)  # key q + 1: the next token, masked out


def _previous_over_all_queries(pattern):
    return pattern.diagonal(offset=-1, dim1=1, dim2=2).sum(-1) / pattern.shape[1]


def _top_features_linear(sae, acts, k):
    with torch.no_grad():
        return (acts @ sae.W_enc).topk(k, dim=-1)


def _top_features_smallest(sae, acts, k):
    with torch.no_grad():
        values, ids = sae.encode(acts).sort(dim=-1)
    return values[:, :k], ids[:, :k]


def _error_share_without_orthonormalising(error, directions):
    return float((directions @ error).pow(2).sum() / error.pow(2).sum())


def _error_share_of_unit_rows(error, directions):
    units = directions / directions.norm(dim=-1, keepdim=True)
    return float((units @ error).pow(2).sum() / error.pow(2).sum())


BROKEN: dict[str, list[Callable[..., Any]]] = {
    "hidden_states_index": [_broken_hidden_states_index],
    "get_resid": [_broken_get_resid, _get_resid_full_forward],
    "fve_nrm": [_fve_without_normalising, _fve_as_cosine],
    "predict_mean": [_predict_mean_renormalised, _predict_mean_of_eval_targets],
    "find_markers": [_markers_ignoring_neighbours, _markers_off_by_one],
    "inject": [_inject_in_place, _inject_without_rescaling],
    "normalized_mse": [_mse_raw, _mse_unit],
    "reconstructor_forward": [_forward_last_column, _forward_final_norm, _forward_without_head],
    "rewards_from_mse": [_rewards_zero_for_failed, _rewards_positive],
    "group_advantages": [_advantages_global, _advantages_no_eps],
    "scramble_words": [_scramble_identity, _scramble_drops_a_word, _scramble_unseeded, _scramble_reversed],
    "previous_token_score": [_previous_with_self, _previous_over_all_queries, _previous_reversed],
    "top_features": [_top_features_linear, _top_features_smallest],
    "error_in_features": [_error_share_without_orthonormalising, _error_share_of_unit_rows],
}
NEEDS_BRIDGE = {"get_resid"}
#: Common wrong answers and a phrase of the hint each must get (not just "values differ").
HINTS: dict[str, list[tuple[Callable[..., Any], str]]] = {
    "rewards_from_mse": [(_rewards_positive, "a smaller error must earn a larger reward")],
    "group_advantages": [(_advantages_global, "within each group")],
    "previous_token_score": [(_previous_reversed, "one key *behind* the query")],
    "get_resid": [(_get_resid_full_forward, "not cheap")],
}


@pytest.fixture(scope="module")
def bridge():
    from nla_lens import load_subject

    return load_subject("smollm2-135m")


def _define(source: str, name: str) -> Callable[..., Any]:
    """Execute a cell defining ``name`` in a namespace with the notebooks' usual imports."""
    namespace: dict[str, Any] = {"torch": torch, "math": math, "random": random, "re": __import__("re")}
    exec(compile(source, f"<exercise {name}>", "exec"), namespace)
    return namespace[name]


def _run_check(test_source: str, name: str, fn: Callable[..., Any], request) -> None:
    namespace: dict[str, Any] = {"checks": checks, name: fn}
    if name in NEEDS_BRIDGE:
        namespace["bridge"] = request.getfixturevalue("bridge")
    exec(compile(test_source, f"<test {name}>", "exec"), namespace)


def test_every_exercise_has_broken_variants_and_a_check():
    names = [name for _, name, _ in ALL_EXERCISES]
    assert len(names) == len(set(names)), f"exercise names must be unique: {names}"
    assert len(names) >= 12
    assert set(names) == set(BROKEN), "each exercise needs broken implementations in BROKEN (and vice versa)"
    for _, name, parts in ALL_EXERCISES:
        called = checks.solution_check_names(parts["test"])
        assert called == [f"check_{name}"], f"{name}: the test cell should call checks.check_{name}, calls {called}"
        assert "NotImplementedError" in parts["stub"], f"{name}: the stub should raise NotImplementedError"


@pytest.mark.parametrize(
    "path,name,parts",
    [
        pytest.param(*exercise, marks=[pytest.mark.embedded] if exercise[1] in NEEDS_BRIDGE else [])
        for exercise in ALL_EXERCISES
    ],
    ids=[n for _, n, _ in ALL_EXERCISES],
)
def test_check_accepts_the_solution_and_rejects_the_stub_and_broken_versions(path, name, parts, request, capsys):
    _run_check(parts["test"], name, _define(parts["solution"], name), request)
    assert checks.TICK in capsys.readouterr().out

    with pytest.raises(NotImplementedError):
        _run_check(parts["test"], name, _define(parts["stub"], name), request)
    for broken in BROKEN[name]:
        with pytest.raises(AssertionError):
            _run_check(parts["test"], name, broken, request)


@pytest.mark.parametrize(
    "name,broken,phrase",
    [
        pytest.param(name, broken, phrase, marks=[pytest.mark.embedded] if name in NEEDS_BRIDGE else [])
        for name, hints in HINTS.items()
        for broken, phrase in hints
    ],
    ids=[f"{name}-{broken.__name__}" for name, hints in HINTS.items() for broken, _ in hints],
)
def test_a_common_wrong_answer_gets_its_own_hint(name, broken, phrase, request):
    parts = next(parts for _, n, parts in ALL_EXERCISES if n == name)
    with pytest.raises(AssertionError, match=re.escape(phrase)):
        _run_check(parts["test"], name, broken, request)


def _reference_lines() -> set[str]:
    """Source lines of checks.py that a student must not see (all but the wrapper that re-raises)."""
    import inspect

    lines = Path(checks.__file__).read_text().splitlines()
    _, start = inspect.getsourcelines(checks._student_view)
    shown = range(start - 10, start + 30)  # the wrapper and the context lines IPython prints around it
    return {line.strip() for i, line in enumerate(lines, 1) if i not in shown and len(line.strip()) > 12}


@pytest.mark.parametrize("name", [n for n in BROKEN if n not in NEEDS_BRIDGE])
def test_a_failing_check_shows_no_reference_code(name, request):
    import inspect

    from IPython.core.ultratb import VerboseTB

    parts = next(parts for _, n, parts in ALL_EXERCISES if n == name)
    secret = _reference_lines()
    for broken in BROKEN[name]:
        try:
            _run_check(parts["test"], name, broken, request)
        except AssertionError as error:
            shown = VerboseTB(theme_name="nocolor").text(type(error), error, error.__traceback__)
        else:
            raise AssertionError(f"{broken.__name__} passed the check")
        own = {line.strip() for line in inspect.getsource(broken).splitlines()}  # the student's code may repeat a line
        leaked = [line for line in secret - own if line in shown]
        assert not leaked, f"the traceback of {broken.__name__} shows reference code: {leaked[:3]}"
        assert "want" not in shown.split("AssertionError")[0], shown


class _FullMode:
    """What a notebook's ``mode`` answers in full mode."""

    smoke = False

    @staticmethod
    def pick(full, smoke, lab=None):
        return full


def _full_mode_sae(notebook_id: str) -> tuple[int, dict]:
    """``(documents, settings)`` of the notebook's ``train_embedded_sae`` call, read as full mode would run it.

    The call's keyword arguments are evaluated with ``mode.pick`` answering ``full``; its texts are
    rebuilt by running the cell's assignments that only read the corpus (``load_corpus``, slices).
    """
    import ast

    import nla_lens

    path = ROOT / f"{notebook_id}.ipynb"
    cell = next(c.source for c in _read(path).cells if c.cell_type == "code" and "train_embedded_sae(" in c.source)
    tree = ast.parse(cell)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "train_embedded_sae")
    names = {"mode": _FullMode, "nla_lens": nla_lens}
    allowed = {"nla_lens.load_corpus", "mode.pick"}
    for statement in tree.body:
        calls = {ast.unparse(n.func) for n in ast.walk(statement) if isinstance(n, ast.Call)}
        if isinstance(statement, ast.Assign) and calls <= allowed:
            exec(compile(ast.Module([statement], []), str(path), "exec"), names)
    settings: dict = {}
    for keyword in call.keywords:
        if keyword.arg == "hook_name":
            continue  # the NLA's hook, not a setting of the cache
        value = eval(compile(ast.Expression(keyword.value), str(path), "eval"), names)
        if keyword.arg is None:
            settings.update(value)
        else:
            settings[keyword.arg] = value
    texts = names[ast.unparse(call.args[1])]
    assert texts == nla_lens.load_corpus()[: len(texts)], "the SAE's texts are no longer the corpus's first documents"
    return len(texts), settings


def test_prepare_course_knows_every_notebook_that_trains_an_sae():
    training = {i for p, i in zip(NOTEBOOKS, IDS) if any("train_embedded_sae(" in c.source for c in _read(p).cells)}
    assert training == set(COURSE_SAES)


@pytest.mark.parametrize("notebook_id", sorted(COURSE_SAES))
def test_prepare_course_caches_the_sae_each_notebook_trains(notebook_id):
    documents, settings = _full_mode_sae(notebook_id)
    assert {"documents": documents, "settings": settings} == COURSE_SAES[notebook_id]


def test_with_solutions_replaces_only_the_exercise_cells():
    path = ROOT / "tutorials" / "03_building_the_pieces.ipynb"
    nb = _read(path)
    solved = authoring.with_solutions(nb)
    changed = [i for i, (a, b) in enumerate(zip(nb.cells, solved.cells)) if a.source != b.source]
    assert changed and all("exercise" in authoring.tags(nb.cells[i]) for i in changed)
    assert all("NotImplementedError" not in solved.cells[i].source for i in changed)


# -- execution in smoke mode ------------------------------------------------------------------
@pytest.mark.parametrize("path", EXECUTED, ids=IDS)
def test_notebook_runs_in_smoke_mode(path, tmp_path):
    nb, elapsed = authoring.execute(path, "smoke", timeout=DEFAULT_CELL_TIMEOUT)
    nbformat.write(nb, tmp_path / path.name)  # kept for inspection when a later assertion fails
    assert elapsed < BUDGET_SECONDS, f"{path.name} took {elapsed:.0f} s in smoke mode (budget {BUDGET_SECONDS} s)"

    outputs = {
        i: "".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream")
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
    }
    tests = [i for i, c in enumerate(nb.cells) if "test" in authoring.tags(c)]
    for i in tests:
        assert checks.TICK in outputs[i], f"{path.name}: the test cell {i} did not report success: {outputs[i]!r}"
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    print(f"{path.parent.name}/{path.name}: {elapsed:.1f} s")
