"""Unit tests for nla_lens.injection (pure tensors, tiny offline tokenizers, no real model).

The hook inside Hugging Face ``generate`` is tested in ``tests/integration/test_injection_generate.py``.
"""

from __future__ import annotations

import pytest
import torch

from nla_lens.errors import InputError, MarkerError, ShapeError
from nla_lens.injection import (
    chat_template_ids,
    choose_marker,
    find_marker_positions,
    inject,
    make_injection_hook,
    marker_neighbors,
)
from nla_lens.testing.tokenizers import tiny_tokenizer, tiny_tokenizer_with_cjk_marker

MARKER, LEFT, RIGHT = 7, 5, 6


def _ids(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


# ------------------------------------------------------------------ choose_marker
def test_choose_marker_takes_single_token_cjk_char() -> None:
    tok = tiny_tokenizer_with_cjk_marker("\u320e")
    choice = choose_marker(tok)
    assert choice.source == "cjk"
    assert choice.char == "\u320e"
    assert tok.encode(choice.char, add_special_tokens=False) == [choice.token_id]


def test_choose_marker_falls_back_to_rare_added_token() -> None:
    tok = tiny_tokenizer()
    choice = choose_marker(tok)
    assert choice.source == "added_token"
    assert choice.char == "<empty_output>"
    assert choice.token_id not in {tok.eos_token_id, tok.pad_token_id}
    # Without the preferred token it takes another added token, never a chat/eos/pad token.
    other = choose_marker(tiny_tokenizer(marker_tokens=("<file_sep>",)))
    assert other.char == "<file_sep>"


def test_choose_marker_raises_when_nothing_usable() -> None:
    with pytest.raises(MarkerError, match="add_special_tokens"):
        choose_marker(tiny_tokenizer(marker_tokens=()))


def test_marker_neighbors_rejects_marker_twice() -> None:
    tok = tiny_tokenizer()
    marker = choose_marker(tok)
    with pytest.raises(MarkerError, match="2 times"):
        marker_neighbors(tok, "{injection_char} and {injection_char}", marker.char, marker.token_id)


def test_chat_template_ids_flattens_every_return_shape() -> None:
    class Fake:
        def __init__(self, value):
            self.value = value

        def apply_chat_template(self, *args, **kwargs):
            return self.value

    ids = [1, 5, 7, 6, 2]
    for value in (ids, [ids], {"input_ids": ids}, {"input_ids": [ids]}):
        assert chat_template_ids(Fake(value), "x") == ids


def test_marker_neighbors_reads_the_rendered_chat_prompt() -> None:
    tok = tiny_tokenizer()
    marker = choose_marker(tok)
    left, right = marker_neighbors(tok, "Hi <concept>{injection_char}</concept>", marker.char, marker.token_id)
    assert tok.convert_ids_to_tokens([left, right]) == [">", "</"]
    with pytest.raises(MarkerError, match="0 times"):
        marker_neighbors(tok, "no marker", marker.char, marker.token_id)


# ------------------------------------------------------------------ find_marker_positions
def test_find_marker_positions_requires_both_neighbours() -> None:
    ids = _ids(
        [1, LEFT, MARKER, RIGHT, 2, 9],
        [1, 9, MARKER, RIGHT, LEFT, MARKER],  # wrong left; marker at the edge
        [LEFT, MARKER, 9, 3, LEFT, MARKER],  # wrong right; marker at the edge
        [MARKER, 2, 3, LEFT, MARKER, RIGHT],
    )
    pos = find_marker_positions(ids, MARKER, LEFT, RIGHT)
    assert pos.tolist() == [[0, 2], [3, 4]]


def test_find_marker_positions_batch_order_and_shapes() -> None:
    ids = _ids([LEFT, MARKER, RIGHT, LEFT, MARKER, RIGHT], [0, LEFT, MARKER, RIGHT, 0, 0])
    assert find_marker_positions(ids, MARKER, LEFT, RIGHT).tolist() == [[0, 1], [0, 4], [1, 2]]
    assert find_marker_positions(_ids([LEFT, MARKER]), MARKER, LEFT, RIGHT).shape == (0, 2)
    with pytest.raises(ShapeError):
        find_marker_positions(torch.tensor([LEFT, MARKER, RIGHT]), MARKER, LEFT, RIGHT)


# ------------------------------------------------------------------ inject
def test_inject_rescales_exactly_and_changes_only_marker_rows() -> None:
    ids = _ids([1, LEFT, MARKER, RIGHT, 2], [LEFT, MARKER, RIGHT, 3, 4])
    emb = torch.randn(2, 5, 8)
    before = emb.clone()
    vectors = torch.randn(2, 8) * 40.0
    pos = find_marker_positions(ids, MARKER, LEFT, RIGHT)
    out = inject(emb, pos, vectors, injection_scale=250.0)
    changed = (out != emb).any(dim=-1)
    assert changed.nonzero().tolist() == [[0, 2], [1, 1]]
    assert torch.allclose(out[0, 2].norm(), torch.tensor(250.0), rtol=1e-6)
    assert torch.allclose(out[1, 1], vectors[1] / vectors[1].norm() * 250.0, rtol=1e-5)
    assert torch.equal(emb, before)  # out of place: the input is untouched


def test_inject_keeps_embedding_dtype_and_gradients() -> None:
    emb = torch.randn(1, 3, 4, dtype=torch.bfloat16)
    vec = torch.randn(1, 4, requires_grad=True)
    out = inject(emb, torch.tensor([[0, 1]]), vec, 2.0)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert vec.grad is not None


def test_inject_count_mismatch_raises() -> None:
    ids = _ids([1, LEFT, MARKER, RIGHT, 2])
    pos = find_marker_positions(ids, MARKER, LEFT, RIGHT)
    with pytest.raises(MarkerError, match="1 valid marker position"):
        inject(torch.randn(1, 5, 4), pos, torch.randn(2, 4), 1.0)
    with pytest.raises(MarkerError):
        inject(torch.randn(1, 5, 4), pos[:0], torch.randn(1, 4), 1.0)


def test_inject_validates_vectors() -> None:
    pos = torch.tensor([[0, 1]])
    emb = torch.randn(1, 3, 4)
    with pytest.raises(ShapeError, match="width 5"):
        inject(emb, pos, torch.randn(1, 5), 1.0)
    bad = torch.randn(1, 4)
    bad[0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite"):
        inject(emb, pos, bad, 1.0)
    with pytest.raises(InputError, match="zero vector"):
        inject(emb, pos, torch.zeros(1, 4), 1.0)
    with pytest.raises(InputError):
        inject(emb, pos, torch.randn(1, 4), 0.0)  # injection_scale must be positive
    with pytest.raises(ShapeError):
        inject(emb, torch.tensor([[0, 9]]), torch.randn(1, 4), 1.0)


# ------------------------------------------------------------------ forward hook
class _TinyLM(torch.nn.Module):
    """Embedding + Linear: enough to check that the hook feeds exactly the injected rows."""

    def __init__(self, vocab: int = 16, d: int = 8) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.head = torch.nn.Linear(d, vocab)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids))

    def forward_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.head(embeds)


def test_hook_output_equals_feeding_the_rescaled_vector_directly() -> None:
    torch.manual_seed(0)
    model = _TinyLM()
    ids = _ids([1, LEFT, MARKER, RIGHT, 2], [3, LEFT, MARKER, RIGHT, 4])
    vectors = torch.randn(2, 8) * 30
    hook = make_injection_hook(vectors, marker_id=MARKER, left_id=LEFT, right_id=RIGHT, injection_scale=5.0)
    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        got = model(ids)
    finally:
        handle.remove()
    embeds = model.embed(ids).detach().clone()
    embeds[0, 2] = vectors[0] / vectors[0].norm() * 5.0
    embeds[1, 2] = vectors[1] / vectors[1].norm() * 5.0
    expected = model.forward_embeds(embeds)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, model(ids))  # the hook really changed something
    assert hook.n_injections == 1


def test_hook_passes_decode_steps_through_untouched() -> None:
    model = _TinyLM()
    hook = make_injection_hook(torch.randn(1, 8), marker_id=MARKER, left_id=LEFT, right_id=RIGHT, injection_scale=5.0)
    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        model(_ids([1, LEFT, MARKER, RIGHT, 2]))  # prefill
        step = _ids([MARKER])  # even a generated marker token is a one-token decode step
        assert torch.equal(model(step), model.forward_embeds(model.embed.weight[step]))
        model(_ids([9]))
    finally:
        handle.remove()
    assert (hook.n_injections, hook.n_passthrough) == (1, 2)


def test_hook_with_prompt_length_only_injects_the_prefill() -> None:
    model = _TinyLM()
    hook = make_injection_hook(
        torch.randn(1, 8), marker_id=MARKER, left_id=LEFT, right_id=RIGHT, injection_scale=5.0, prompt_length=5
    )
    out = hook(model.embed, (_ids([1, LEFT, MARKER, RIGHT]),), model.embed(_ids([1, LEFT, MARKER, RIGHT])))
    assert out is None
    out = hook(model.embed, (_ids([1, LEFT, MARKER, RIGHT, 2]),), model.embed(_ids([1, LEFT, MARKER, RIGHT, 2])))
    assert out is not None and hook.n_injections == 1


def test_hook_raises_when_markers_are_missing_on_a_full_pass() -> None:
    model = _TinyLM()
    hook = make_injection_hook(torch.randn(1, 8), marker_id=MARKER, left_id=LEFT, right_id=RIGHT, injection_scale=5.0)
    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        with pytest.raises(MarkerError):
            model(_ids([1, 9, MARKER, RIGHT, 2]))  # marker with the wrong left neighbour
    finally:
        handle.remove()


def test_hook_validates_vectors_at_creation() -> None:
    with pytest.raises(InputError):
        make_injection_hook(torch.zeros(1, 8), marker_id=MARKER, left_id=LEFT, right_id=RIGHT, injection_scale=5.0)
