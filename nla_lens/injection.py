"""Vector injection into the AV's input embeddings: marker choice and search, injection, hook.

The AV reads a fixed chat prompt with one *marker* token. The marker's input-embedding row is
replaced by the vector to explain, rescaled to a fixed L2 norm (``injection_scale``). This
module owns that operation as pure functions on tensors, plus a thin Hugging Face forward hook
for ``model.get_input_embeddings()`` that applies it during training passes and on the prefill
of cached generation.

A position counts as a marker only when the tokens on both sides are the recorded neighbours,
and the number of valid markers must equal the number of vectors: a miss would make the AV read
the literal marker character and write gibberish, so every mismatch raises
:class:`~nla_lens.errors.MarkerError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from nla_lens.errors import MarkerError, ShapeError
from nla_lens.metrics import check_vectors, normalize

__all__ = [
    "CJK_MARKER_RANGE",
    "InjectionHook",
    "MarkerChoice",
    "av_prompt_ids",
    "chat_template_ids",
    "choose_marker",
    "find_marker_positions",
    "inject",
    "make_injection_hook",
    "marker_neighbors",
]

#: Code points scanned for a single-token marker character (as in the published method).
CJK_MARKER_RANGE: tuple[int, int] = (0x3200, 0x3400)

#: Added tokens tried first when no CJK character is a single token (SmolLM2 carries these).
_PREFERRED_ADDED_MARKERS: tuple[str, ...] = ("<empty_output>",)


@dataclass(frozen=True)
class MarkerChoice:
    """A marker that tokenizes to exactly one token.

    Attributes:
        char: The marker string written into the AV prompt (``tokens.injection_char``).
        token_id: Its single token id (``tokens.injection_token_id``).
        source: ``"cjk"`` for a character from U+3200-U+33FF, ``"added_token"`` for an
            existing added/special token of the tokenizer.
    """

    char: str
    token_id: int
    source: Literal["cjk", "added_token"]


def _shape(x: Any) -> Any:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _reserved_token_ids(tokenizer: Any) -> set[int]:
    """Ids of tokens a marker must never be: bos/eos/pad/unk/sep/cls/mask."""
    ids: set[int] = set()
    for attr in (
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "unk_token_id",
        "sep_token_id",
        "cls_token_id",
        "mask_token_id",
    ):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def choose_marker(tokenizer: Any) -> MarkerChoice:
    """Pick the injection marker for a tokenizer.

    First scans U+3200-U+33FF and returns the first character that encodes (without special
    tokens) to exactly one token that is not the unknown token, like the published method.
    A small tokenizer may have none (SmolLM2 has none); then it falls back to an existing
    added token that is rare in prose: ``<empty_output>`` if present, otherwise the added token
    with the lowest id that is not bos/eos/pad/unk and does not appear in the chat template
    (so ``<|im_start|>``-style chat tokens are never chosen).

    Args:
        tokenizer: A Hugging Face tokenizer (``encode``, ``get_added_vocab``, ``chat_template``).

    Returns:
        The :class:`MarkerChoice`.

    Raises:
        MarkerError: No single-token CJK character and no usable added token.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    for code_point in range(*CJK_MARKER_RANGE):
        char = chr(code_point)
        ids = _encode(tokenizer, char)
        if len(ids) == 1 and ids[0] != unk:
            return MarkerChoice(char=char, token_id=int(ids[0]), source="cjk")

    reserved = _reserved_token_ids(tokenizer)
    chat_template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(chat_template, dict):  # named templates
        chat_template = "\n".join(str(t) for t in chat_template.values())
    added: dict[str, int] = getattr(tokenizer, "get_added_vocab", lambda: {})()
    candidates: list[tuple[int, str]] = []
    for content, token_id in added.items():
        if token_id in reserved or not content.strip() or content in chat_template:
            continue
        if _encode(tokenizer, content) == [token_id]:
            candidates.append((int(token_id), content))
    if candidates:
        by_content = {content: token_id for token_id, content in candidates}
        for content in _PREFERRED_ADDED_MARKERS:
            if content in by_content:
                return MarkerChoice(char=content, token_id=by_content[content], source="added_token")
        token_id, content = min(candidates)
        return MarkerChoice(char=content, token_id=token_id, source="added_token")
    raise MarkerError(
        "this tokenizer has no usable injection marker: no character in U+3200-U+33FF is a "
        "single token, and it has no added token other than bos/eos/pad/chat tokens. Add a "
        "dedicated one, e.g. tokenizer.add_special_tokens({'additional_special_tokens': "
        "['<nla_marker>']}) followed by model.resize_token_embeddings(len(tokenizer)), and "
        "record it in the sidecar."
    )


def chat_template_ids(tokenizer: Any, content: str) -> list[int]:
    """Token ids of one user turn rendered with the chat template (generation prompt added).

    Normalises what ``apply_chat_template(tokenize=True)`` returns across transformers
    versions (a list, a nested list, a ``BatchEncoding``, a tensor or a string).

    Raises:
        MarkerError: The tokenizer cannot render a chat (no chat template).
    """
    try:
        ids: Any = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=True, add_generation_prompt=True
        )
    except (ValueError, AttributeError) as err:
        raise MarkerError(
            f"the tokenizer cannot render the AV chat prompt ({err}). The AV is an instruct "
            "model prompted through its chat template; load a tokenizer that has one."
        ) from err
    if isinstance(ids, str):
        ids = tokenizer.encode(ids, add_special_tokens=False)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], (list, tuple)):
        ids = ids[0]
    return [int(i) for i in ids]


def av_prompt_ids(tokenizer: Any, content: str, av_format: str = "chat") -> list[int]:
    """Token ids of the AV prompt around ``content`` (the formatted ``av_template``).

    ``"chat"``: one user turn in the tokenizer's chat template with the generation prompt (an
    instruct model; the published layout). ``"plain"``: the text itself, with the special tokens the
    tokenizer adds (its BOS, once), followed by a newline: a base model without a chat template.
    """
    if av_format == "plain":
        return [int(i) for i in tokenizer(content + "\n", add_special_tokens=True)["input_ids"]]
    if av_format != "chat":
        raise MarkerError(f"prompt_templates.av_format must be 'chat' or 'plain', got {av_format!r}.")
    return chat_template_ids(tokenizer, content)


def marker_neighbors(
    tokenizer: Any, av_template: str, injection_char: str, injection_token_id: int, av_format: str = "chat"
) -> tuple[int, int]:
    """Token ids on both sides of the marker in the rendered AV prompt (:func:`av_prompt_ids`).

    Used both to record ``tokens.injection_{left,right}_neighbor_id`` and to verify them.

    Raises:
        MarkerError: The marker does not occur exactly once, or sits at an edge.
    """
    try:
        content = av_template.format(injection_char=injection_char)
    except (KeyError, IndexError, ValueError) as err:
        raise MarkerError(
            f"prompt_templates.av is not a valid format string ({err!r}); literal braces must "
            "be doubled ({{ }}) and the only placeholder is {injection_char}."
        ) from err
    ids = av_prompt_ids(tokenizer, content, av_format)
    hits = [i for i, t in enumerate(ids) if t == injection_token_id]
    if len(hits) != 1:
        raise MarkerError(
            f"the rendered AV prompt contains the marker token {injection_token_id} "
            f"({injection_char!r}) {len(hits)} times, expected exactly once. The marker merged "
            "with its neighbours, is missing from the template, or appears in the chat template."
        )
    p = hits[0]
    if not 0 < p < len(ids) - 1:
        raise MarkerError(
            f"the marker sits at the edge of the AV prompt (position {p}); "
            "put text on both sides of {injection_char}."
        )
    return ids[p - 1], ids[p + 1]


def find_marker_positions(input_ids: torch.Tensor, marker_id: int, left_id: int, right_id: int) -> torch.Tensor:
    """Find valid marker positions: the marker token with the recorded neighbours on both sides.

    A marker at the first or last position, or with any other neighbour (e.g. the marker
    character pasted into ordinary text), does not count.

    Args:
        input_ids: Token ids, shape ``[B, T]``.
        marker_id: ``tokens.injection_token_id``.
        left_id: ``tokens.injection_left_neighbor_id``.
        right_id: ``tokens.injection_right_neighbor_id``.

    Returns:
        Long tensor of shape ``[N, 2]`` with rows ``(batch_idx, pos)``, sorted by batch then
        position (the order vectors are matched to).

    Raises:
        ShapeError: ``input_ids`` is not 2-D.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        raise ShapeError(f"input_ids must be a tensor of shape [B, T], got {_shape(input_ids)}.")
    if input_ids.shape[1] < 3:
        return torch.empty((0, 2), dtype=torch.long, device=input_ids.device)
    valid = (input_ids[:, 1:-1] == marker_id) & (input_ids[:, :-2] == left_id) & (input_ids[:, 2:] == right_id)
    positions = valid.nonzero()
    positions[:, 1] += 1
    return positions


def inject(
    embeddings: torch.Tensor,
    positions: torch.Tensor,
    vectors: torch.Tensor,
    injection_scale: float,
) -> torch.Tensor:
    """Replace the marker rows of ``embeddings`` by the vectors rescaled to ``injection_scale``.

    Out of place and differentiable (with respect to ``embeddings`` and ``vectors``); only the
    ``N`` marker rows change. Vector ``i`` goes to ``positions[i]``.

    Args:
        embeddings: Input embeddings, shape ``[B, T, d]``.
        positions: ``(batch_idx, pos)`` rows from :func:`find_marker_positions`, shape ``[N, 2]``.
        vectors: Vectors to inject, shape ``[N, d]``.
        injection_scale: L2 norm each vector is rescaled to.

    Returns:
        New embeddings, shape ``[B, T, d]``, in ``embeddings``' dtype and device.

    Raises:
        MarkerError: ``N`` valid markers but a different number of vectors.
        ShapeError: Wrong ranks, a width other than ``d``, or positions out of range.
        InputError: NaN/inf or zero vectors, or a non-positive ``injection_scale``.
    """
    if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 3:
        raise ShapeError(f"embeddings must have shape [B, T, d], got {_shape(embeddings)}.")
    if not isinstance(positions, torch.Tensor) or positions.ndim != 2 or positions.shape[1] != 2:
        raise ShapeError("positions must be an [N, 2] tensor of (batch_idx, pos) rows.")
    batch, seq, d = embeddings.shape
    check_vectors(vectors, d, source="The vectors must come from the hook this NLA was trained on (same d_model).")
    if positions.shape[0] != vectors.shape[0]:
        raise MarkerError(
            f"found {positions.shape[0]} valid marker position(s) but got {vectors.shape[0]} "
            "vector(s); they must match one to one. Check that every prompt was built from the "
            "sidecar's AV template with the recorded marker (tokens.injection_char) and that the "
            "tokenizer is the checkpoint's own (validate the sidecar against it)."
        )
    if positions.numel() and (
        int(positions[:, 0].min()) < 0
        or int(positions[:, 0].max()) >= batch
        or int(positions[:, 1].min()) < 0
        or int(positions[:, 1].max()) >= seq
    ):
        raise ShapeError(f"positions fall outside embeddings of shape {(batch, seq, d)}.")
    scaled = normalize(vectors, injection_scale)
    out = embeddings.clone()
    rows, cols = positions[:, 0].to(out.device), positions[:, 1].to(out.device)
    out[rows, cols] = scaled.to(device=out.device, dtype=out.dtype)
    return out


@dataclass(eq=False)
class InjectionHook:
    """Forward hook for ``model.get_input_embeddings()`` that injects vectors at the markers.

    Register with ``handle = model.get_input_embeddings().register_forward_hook(hook)`` and
    remove with ``handle.remove()``. Every call that sees the marker tokens (a training or
    log-prob pass over full sequences, or the prefill of generation) is injected; a cached
    decode step (one new token per sequence, no marker) passes through untouched. A call of
    more than one token without valid markers, or with a number of markers other than the
    number of vectors, raises :class:`~nla_lens.errors.MarkerError` instead of silently
    feeding the AV the literal marker. Build it with :func:`make_injection_hook`.

    Attributes:
        vectors: Vectors to inject, shape ``[N, d]`` (``N`` markers per full pass).
        marker_id, left_id, right_id: The sidecar's marker and neighbour token ids.
        injection_scale: L2 norm each vector is rescaled to.
        prompt_length: If set, only a call of exactly this many tokens is injected.
        n_injections: Passes injected so far (0 after generation means it never happened).
        n_passthrough: Decode steps passed through untouched.
    """

    vectors: torch.Tensor
    marker_id: int
    left_id: int
    right_id: int
    injection_scale: float
    prompt_length: int | None = None
    n_injections: int = 0
    n_passthrough: int = 0

    def __post_init__(self) -> None:
        normalize(check_vectors(self.vectors), self.injection_scale)  # validate once, loudly

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        """Return the injected embeddings ``[B, T, d]``, or ``None`` to leave a decode step alone."""
        input_ids = args[0] if args else None
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
            raise MarkerError(
                "the injection hook needs the embedding module to be called with input_ids of "
                "shape [B, T] (positional argument); it cannot inject when inputs_embeds are "
                "passed directly."
            )
        seq = input_ids.shape[1]
        if self.prompt_length is not None and seq != self.prompt_length:
            self.n_passthrough += 1
            return None
        positions = find_marker_positions(input_ids, self.marker_id, self.left_id, self.right_id)
        if positions.shape[0] == 0 and seq == 1:
            self.n_passthrough += 1
            return None
        out = inject(output, positions, self.vectors, self.injection_scale)
        self.n_injections += 1
        return out


def make_injection_hook(
    vectors: torch.Tensor,
    *,
    marker_id: int,
    left_id: int,
    right_id: int,
    injection_scale: float,
    prompt_length: int | None = None,
) -> InjectionHook:
    """Build the forward hook that injects ``vectors`` at the marker rows.

    Args:
        vectors: Vectors to inject, shape ``[N, d]``; ``N`` equals the number of markers in the
            batch (one per prompt, in batch order).
        marker_id: ``tokens.injection_token_id``.
        left_id: ``tokens.injection_left_neighbor_id``.
        right_id: ``tokens.injection_right_neighbor_id``.
        injection_scale: ``extraction.injection_scale``.
        prompt_length: If given, inject only when the hook sees exactly this many tokens
            (the prefill) and pass every other call through.

    Returns:
        An :class:`InjectionHook` to pass to ``register_forward_hook``.
    """
    return InjectionHook(vectors, int(marker_id), int(left_id), int(right_id), float(injection_scale), prompt_length)
