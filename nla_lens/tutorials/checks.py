"""The visible tests of the course's exercises: one ``check_*`` function per exercise.

Each check calls the student's function on fresh inputs, compares the answer with the library's
own implementation (``nla_lens.hooks``, ``nla_lens.injection``, ``nla_lens.metrics``,
``nla_lens.training.losses``, the ``ActivationReconstructor``...) or with a stated property,
prints ``✓ <exercise>: <n> tests passed`` on success and raises ``AssertionError`` with a hint
on the first mismatch; a common wrong answer gets a hint of its own. A stub that still raises
``NotImplementedError`` lets that error through, so the student sees which function is unfinished.

Every check runs behind :func:`_student_view`: an error's traceback keeps the student's frames and
drops this module's, whose source lines hold the reference answers (``want = ...``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

__all__ = [
    "check_error_in_features",
    "check_find_markers",
    "check_fve_nrm",
    "check_get_resid",
    "check_group_advantages",
    "check_hidden_states_index",
    "check_inject",
    "check_normalized_mse",
    "check_predict_mean",
    "check_previous_token_score",
    "check_reconstructor_forward",
    "check_rewards_from_mse",
    "check_scramble_words",
    "check_top_features",
]

TICK = "\u2713"
F = TypeVar("F", bound=Callable[..., None])


def _without_this_module(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without the frames of this module (their source shows the reference answers)."""
    kept = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != __file__:
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for frame in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    return rebuilt


def _student_view(check: F) -> F:
    """Run ``check`` so that a failure shows the student's code and the hint, never the reference."""

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            check(*args, **kwargs)
        except Exception as error:
            # Only this frame's own line (the raise below) remains of this module in the traceback.
            raise error.with_traceback(_without_this_module(error.__traceback__)) from None

    return run  # type: ignore[return-value]


def _passed(name: str, n: int) -> None:
    print(f"{TICK} {name}: {n} tests passed")


def _close(
    got: Any,
    want: torch.Tensor,
    what: str,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    wrong: Sequence[tuple[torch.Tensor, str]] = (),
) -> None:
    """Assert ``got`` equals ``want``; ``wrong`` lists common wrong answers, each with its hint."""
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got)
        except (TypeError, ValueError, RuntimeError) as err:
            raise AssertionError(f"{what}: expected a tensor, got {type(got).__name__}.") from err
    assert tuple(got.shape) == tuple(want.shape), f"{what}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}."
    got, want = got.detach().double(), want.detach().double()
    if torch.allclose(got, want, atol=atol, rtol=rtol):
        return
    for answer, hint in wrong:
        if torch.allclose(got, answer.detach().double(), atol=atol, rtol=rtol):
            raise AssertionError(f"{what}: {hint}")
    worst = float((got - want).abs().max()) if got.numel() else 0.0
    raise AssertionError(f"{what}: values differ from the reference (largest difference {worst:.3g}).")


def _float(got: Any, want: float, what: str, *, atol: float = 1e-5) -> None:
    try:
        value = float(got)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{what}: expected a number, got {type(got).__name__}.") from err
    assert math.isfinite(value) and abs(value - want) <= atol + 1e-4 * abs(want), (
        f"{what}: expected {want:.6f}, got {value:.6f}."
    )


# -- tutorial 1: residual streams and hook points ---------------------------------------------
@_student_view
def check_hidden_states_index(fn: Callable[[str], int | None]) -> None:
    """``fn(hook_name) -> int | None``: the HF ``hidden_states`` index equal to a TransformerLens hook."""
    from nla_lens.hooks import parse_hook_name

    names = [f"blocks.{k}.hook_resid_post" for k in (0, 1, 7, 20, 29)]
    names += [f"blocks.{k}.hook_resid_pre" for k in (0, 5, 20)]
    names += ["hook_embed", "blocks.3.attn.hook_z", "blocks.20.hook_mlp_out"]
    for name in names:
        want = parse_hook_name(name).hidden_states_index
        got = fn(name)
        assert got == want, (
            f"{name!r}: expected {want}, got {got}. Remember hidden_states[0] is the embedding, "
            "so block K's output is one further along; hooks with no twin return None."
        )
    _passed("hidden_states_index", len(names))


@_student_view
def check_get_resid(fn: Callable[[Any, str, int], torch.Tensor], bridge: Any) -> None:
    """``fn(bridge, text, layer) -> [seq, d_model]``: the residual stream after block ``layer``."""
    from nla_lens.hooks import parse_hook_name
    from nla_lens.subjects.adapters import as_subject

    subject = as_subject(bridge)
    cases = [
        ("The cat sat on the mat.", 0),
        ("Residual streams are sums of block outputs.", 20),
        ("A cynic is a blackguard whose faulty vision sees things as they are.", subject.n_layers - 1),
    ]
    for text, layer in cases:
        tokens = bridge.to_tokens(text)
        want = subject.activations(tokens, parse_hook_name(f"blocks.{layer}.hook_resid_post"))[0]
        with _blocks_run(bridge) as ran:
            got = fn(bridge, text, layer)
        _close(got, want, f"get_resid(bridge, {text[:24]!r}..., layer={layer})", atol=1e-4)
        beyond = sorted(b for b in ran if b > layer)
        assert not beyond, (
            f"get_resid(..., layer={layer}) also ran blocks {beyond[0]}-{beyond[-1]}: the answer is right, but "
            f"not cheap. Stop the forward pass after block {layer} (run_with_cache's stop_at_layer={layer + 1}) "
            "and cache only the hook you read (names_filter)."
        )
    _passed("get_resid", 2 * len(cases))


@contextlib.contextmanager
def _blocks_run(model: Any) -> Iterator[set[int]]:
    """The indices of ``model.blocks`` that run inside the block (forward hooks, removed after)."""
    ran: set[int] = set()
    handles = [
        block.register_forward_hook(lambda *_, index=index: ran.add(index)) for index, block in enumerate(model.blocks)
    ]
    try:
        yield ran
    finally:
        for handle in handles:
            handle.remove()


# -- tutorial 2: reading activations with an NLA ----------------------------------------------
def _vector_pairs(seed: int, n: int = 12, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g).mul(50).add(1) + 2.0
    pred = (target + torch.randn(n, d, generator=g) * 3) * torch.rand(n, 1, generator=g).mul(10).add(0.1)
    return pred, target


@_student_view
def check_fve_nrm(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """``fn(pred, target) -> float``: fraction of variance explained on unit vectors."""
    from nla_lens.metrics import fve_nrm

    n = 0
    for seed in range(4):
        pred, target = _vector_pairs(seed)
        _float(fn(pred, target), fve_nrm(pred, target), f"fve_nrm on random pairs (seed {seed})")
        n += 1
    pred, target = _vector_pairs(9)
    mean = torch.nn.functional.normalize(target, dim=-1).mean(0, keepdim=True).expand_as(target)
    _float(fn(mean, target), fve_nrm(mean, target), "fve_nrm of the mean unit target (reference value)")
    _float(fn(target * 7.0, target), 1.0, "fve_nrm of a rescaled copy of the targets (norms must not matter)")
    _passed("fve_nrm", n + 2)


@_student_view
def check_predict_mean(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """``fn(train_targets, eval_targets) -> float``: fve_nrm of always predicting the mean training direction."""
    from nla_lens.metrics import predict_mean_control

    n = 0
    for seed in range(3):
        train, _ = _vector_pairs(seed, n=20)
        evals, _ = _vector_pairs(seed + 10, n=10)
        _float(fn(train, evals), predict_mean_control(train, evals), f"predict-the-mean control (seed {seed})")
        n += 1
    train, _ = _vector_pairs(5, n=20)
    _float(fn(train, train), 0.0, "on the training set itself the control is exactly 0")
    _passed("predict_mean", n + 1)


# -- tutorial 3: building the pieces ------------------------------------------------------------
@_student_view
def check_find_markers(fn: Callable[[torch.Tensor, int, int, int], torch.Tensor]) -> None:
    """``fn(input_ids [B, T], marker_id, left_id, right_id) -> [N, 2]`` rows of (batch, position)."""
    from nla_lens.injection import find_marker_positions

    M, L, R = 7, 3, 4
    cases = [
        torch.tensor([[1, 2, L, M, R, 9], [1, L, M, R, 2, 2]]),  # one marker per row
        torch.tensor([[L, M, R, 5, 5, 5], [5, 5, 9, M, R, 5]]),  # wrong left neighbour in row 1
        torch.tensor([[M, R, 5, 5, L, M]]),  # markers at both edges: none count
        torch.tensor([[L, M, R, L, M, R, 5]]),  # two in one row
        torch.tensor([[5, 5, 5, 5]]),  # none
    ]
    for ids in cases:
        want = find_marker_positions(ids, M, L, R)
        got = fn(ids, M, L, R)
        assert isinstance(got, torch.Tensor), f"expected a tensor of shape [N, 2], got {type(got).__name__}."
        assert tuple(got.shape) == tuple(want.shape) and torch.equal(got.long(), want), (
            f"input_ids={ids.tolist()}: expected {want.tolist()}, got {got.tolist()}. A marker counts only "
            "with the recorded neighbours on both sides (so never at the first or last position)."
        )
    _passed("find_markers", len(cases))


@_student_view
def check_inject(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """``fn(embeddings [B, T, d], positions [N, 2], vectors [N, d], scale) -> [B, T, d]`` (out of place)."""
    from nla_lens.injection import inject

    g = torch.Generator().manual_seed(0)
    n = 0
    for batch, seq, d, positions in ((2, 6, 8, [[0, 3], [1, 2]]), (1, 5, 4, [[0, 1], [0, 3]]), (3, 4, 8, [[2, 2]])):
        embeddings = torch.randn(batch, seq, d, generator=g)
        pos = torch.tensor(positions)
        vectors = torch.randn(len(positions), d, generator=g) * 40
        scale = 5.0
        before = embeddings.clone()
        want = inject(embeddings, pos, vectors, scale)
        got = fn(embeddings, pos, vectors, scale)
        assert torch.equal(embeddings, before), "inject must not modify its input embeddings in place (clone first)."
        _close(got, want, f"inject into [{batch}, {seq}, {d}] at {positions}")
        n += 1
    _passed("inject", n)


@_student_view
def check_normalized_mse(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(pred [..., d], target [..., d]) -> [...]``: MSE after rescaling both to norm sqrt(d)."""
    from nla_lens.metrics import cosine, normalized_mse

    n = 0
    for seed, d in ((0, 16), (1, 576), (2, 3)):
        pred, target = _vector_pairs(seed, n=10, d=d)
        got = fn(pred, target)
        _close(got, normalized_mse(pred, target), f"normalized_mse with d={d}")
        _close(got, 2 * (1 - cosine(pred, target)), f"normalized_mse should equal 2(1 - cos) (d={d})", atol=1e-4)
        n += 2
    pred, target = _vector_pairs(3, n=6, d=8)
    _close(fn(pred[None], target[None]), normalized_mse(pred[None], target[None]), "normalized_mse on [1, N, d]")
    _passed("normalized_mse", n + 1)


@_student_view
def check_reconstructor_forward(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(causal_lm, value_head, n_blocks, input_ids, attention_mask) -> [B, d]``, as the AR computes it."""
    from nla_lens.testing.models import tiny_llama, tiny_nla

    n = 0
    for layer in (0, 1):
        nla = tiny_nla(layer)
        full = tiny_llama(nla.ar.tokenizer, seed=1)  # the AR's base before truncation: same seed, all 3 blocks
        ar = nla.ar.eval()
        with torch.no_grad():  # a head that is not the identity, so forgetting it shows
            ar.value_head.weight.copy_(torch.randn(ar.d_model, ar.d_model, generator=torch.Generator().manual_seed(2)))
        ids, mask = ar.encode(["the cat sat on the mat", "a dog", "the bird sang in the tree and the dog ran"])
        with torch.no_grad():
            want = ar(ids, mask)
            got = fn(full, ar.value_head, layer + 1, ids, mask)
        _close(got, want, f"reconstructor forward with n_blocks={layer + 1} (right-padded batch)", atol=1e-4)
        n += 1
    _passed("reconstructor_forward", n)


# -- tutorial 4: training -----------------------------------------------------------------------
@_student_view
def check_rewards_from_mse(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(mse [N], failed [N] bool) -> [N]``: reward -mse, and -2.0 for failed samples."""
    from nla_lens.training.losses import rewards_from_mse

    cases = [
        (torch.tensor([0.1, 0.5, 1.9, 0.0]), torch.tensor([False, True, False, False])),
        (torch.tensor([0.3, 0.7]), torch.tensor([True, True])),
        (torch.tensor([1.2, 0.4, 0.8]), torch.tensor([False, False, False])),
    ]
    for mse, failed in cases:
        floor = torch.full_like(mse, -2.0)
        wrong = [
            (
                torch.where(failed, floor, mse),
                "the reward is minus the mse: a smaller error must earn a larger reward.",
            ),
            (mse, "the reward is minus the mse (a smaller error earns more), and -2.0 where the sample failed."),
            (-mse, "failed samples get the worst reward, -2.0, whatever their mse."),
        ]
        _close(
            fn(mse, failed),
            rewards_from_mse(mse, failed),
            f"rewards for mse={mse.tolist()}, failed={failed.tolist()}",
            wrong=wrong,
        )
    _passed("rewards_from_mse", len(cases))


@_student_view
def check_group_advantages(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``fn(rewards [G, S]) -> [G, S]``: rewards standardised within each group (population std + 1e-4)."""
    from nla_lens.training.losses import group_advantages

    g = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(3, 4, generator=g),
        torch.randn(1, 8, generator=g) - 5,
        torch.tensor([[-2.0, -2.0, -2.0, -2.0], [-0.5, -0.1, -2.0, -0.3]]),
    ]
    for rewards in cases:
        whole_batch = (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-4)
        sample_std = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
        wrong = [
            (whole_batch, "standardise within each group (each row: dim=1, keepdim=True), not over the whole batch."),
            (sample_std, "use the population standard deviation (unbiased=False), as the task says."),
        ]
        _close(
            fn(rewards),
            group_advantages(rewards),
            f"advantages of rewards with shape {tuple(rewards.shape)}",
            atol=1e-4,
            wrong=wrong,
        )
    _passed("group_advantages", len(cases))


# -- tutorial 5: faithfulness -------------------------------------------------------------------
@_student_view
def check_scramble_words(fn: Callable[[str, int], str]) -> None:
    """``fn(text, seed) -> str``: the same words in a different order, the same for the same seed."""
    texts = [
        "Recent context: the cat sat on the mat because it was tired",
        "1. Topic: dictionaries and cynics 2. Current token: vision",
        "alpha beta gamma delta epsilon zeta",
    ]
    n = 0
    for text in texts:
        out = fn(text, 0)
        assert isinstance(out, str), f"expected a string, got {type(out).__name__}."
        assert sorted(out.split()) == sorted(text.split()), (
            f"{text!r} -> {out!r}: a scramble keeps exactly the same words (split on whitespace), only the order changes."
        )
        assert out.split() != text.split(), f"{text!r}: the word order did not change."
        assert fn(text, 0) == out, "the same seed must give the same scramble (use random.Random(seed))."
        n += 3
    outs = {fn(texts[2], seed) for seed in range(5)}
    assert len(outs) > 1, "different seeds should give different scrambles."
    _passed("scramble_words", n + 1)


# -- tutorial 6: NLA versus SAE and attention ---------------------------------------------------
@_student_view
def check_previous_token_score(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``fn(pattern [H, Q, K]) -> [H]``: mean attention from each query q >= 1 to key q - 1."""
    g = torch.Generator().manual_seed(0)
    n = 0
    for heads, seq in ((4, 6), (2, 9), (9, 2)):
        scores = torch.randn(heads, seq, seq, generator=g).masked_fill(
            torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf")
        )
        pattern = scores.softmax(-1)
        want = pattern.diagonal(offset=-1, dim1=1, dim2=2).mean(-1)
        reversed_offset = pattern.diagonal(offset=1, dim1=1, dim2=2).mean(-1)
        hint = (
            "the previous token is one key *behind* the query: key q - 1 for query q (the diagonal below the main one)."
        )
        _close(
            fn(pattern),
            want,
            f"previous-token score of a [{heads}, {seq}, {seq}] pattern",
            wrong=[(reversed_offset, hint)],
        )
        n += 1
    prev = torch.zeros(1, 5, 5)
    prev[0, 0, 0] = 1.0
    prev[0, torch.arange(1, 5), torch.arange(0, 4)] = 1.0
    _close(fn(prev), torch.tensor([1.0]), "a perfect previous-token head scores 1")
    _passed("previous_token_score", n + 1)


@_student_view
def check_top_features(fn: Callable[[Any, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``fn(sae, acts [N, d], k) -> (values [N, k], feature ids [N, k])``: the strongest SAE features."""
    from nla_lens.testing import TinySAE  # the SAE interface, on both TransformerLens lines

    n = 0
    for seed in (0, 1):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            sae = TinySAE(16, 48, 8, "blocks.0.hook_resid_post", seed=seed)
            with torch.no_grad():
                sae.b_enc.copy_(torch.randn_like(sae.b_enc))
                sae.b_dec.copy_(torch.randn_like(sae.b_dec))
            acts = torch.randn(5, 16) * 3
        with torch.no_grad():
            want_values, want_ids = sae.encode(acts).topk(3, dim=-1)
            values, ids = fn(sae, acts, 3)
        _close(values, want_values, "top feature activations (use sae.encode)")
        assert torch.equal(torch.as_tensor(ids).long(), want_ids), (
            "top feature ids differ from sae.encode(acts).topk(k)."
        )
        n += 2
    _passed("top_features", n)


@_student_view
def check_error_in_features(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """``fn(error [d], directions [k, d]) -> float``: share of the error's squared norm in the directions' span."""
    from nla_lens.analysis.sae_agreement import subspace_share  # the library's measure

    n = 0
    for seed, k in ((0, 1), (1, 3), (2, 5)):
        g = torch.Generator().manual_seed(seed)
        error, directions = torch.randn(12, generator=g), torch.randn(k, 12, generator=g) * 3
        want = subspace_share(error[None], directions, torch.arange(k)[None])[0]
        got = fn(error, directions)
        _close(
            torch.as_tensor(float(got)), want, "error share (orthonormalise the directions first, e.g. torch.linalg.qr)"
        )
        n += 1
    inside = directions.T @ torch.randn(len(directions), generator=g)  # an error inside the span
    _close(torch.as_tensor(float(fn(inside, directions))), torch.tensor(1.0), "an error inside the span")
    _passed("error_in_features", n + 1)


def solution_check_names(source: str) -> list[str]:
    """Names of the ``checks.check_*`` calls in a notebook cell's source."""
    return re.findall(r"checks\.(check_\w+)\(", source)
