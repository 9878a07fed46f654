"""The generation-engine interface, as ``typing.Protocol`` classes: what the verbalizer calls on an
engine, and what an engine reads from the verbalizer it serves.

Kept in a module of their own, which imports nothing of nla_lens at run time, so that both sides
(:mod:`nla_lens.models.verbalizer`, which calls engines, and :mod:`nla_lens.engines.vllm`, which is
given the AV) import the types from here and neither imports the other's module.

- :class:`GenerationEngine`: anything with ``generate`` (``verbalize(engine=obj)``; the AV itself).
- :class:`ManagedEngine`: a named engine the AV starts, keeps, updates and stops (``"vllm"``).
- :class:`VerbalizerLike`: what an engine reads from the AV (:class:`~nla_lens.ActivationVerbalizer`
  has all of it).
- :class:`EngineFactory`: how a named engine is built from the AV (a class like ``VLLMEngine``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from nla_lens.schema import NLAMeta

__all__ = ["EngineFactory", "GenerationEngine", "ManagedEngine", "VerbalizerLike"]


class GenerationEngine(Protocol):
    """Anything that generates the AV's responses: the AV itself (``"hf"``), a started named engine,
    or an object passed as ``verbalize(engine=obj)``."""

    def generate(
        self,
        vectors: torch.Tensor,
        *,
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        seeds: Sequence[int] | None,
        top_p: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate one response per vector, the vector injected as the HF path injects it.

        Args:
            vectors: ``[N, d_model]`` raw vectors (an engine validates and rescales them).
            max_new_tokens: Response cap.
            do_sample: Sample instead of greedy decoding (greedy should equal HF ``generate``'s
                tokens, token for token).
            temperature: Sampling temperature.
            seeds: With ``do_sample``, one seed per row, so that a row's sample does not depend on
                the batch it is in; ``None`` for the engine's own random stream.
            top_p: Nucleus threshold.

        Returns:
            ``(tokens [N, L], finished [N])``: the new tokens (the first stop token included when a
            row finished), right-padded with the tokenizer's pad id, ``L`` the longest response; and
            whether each row ended with a stop token before ``max_new_tokens``.
        """
        ...


class ManagedEngine(GenerationEngine, Protocol):
    """A named engine (``"vllm"``): started by ``ActivationVerbalizer.engine`` / ``start_engine`` on
    first use, kept, sent the AV's weights again when they changed, and stopped by ``close_engines``."""

    def update_weights(self) -> None:
        """Serve the AV's current weights (called when its trainable weights changed since the last call)."""
        ...

    def close(self) -> None:
        """Stop the engine and free what it holds (safe to call twice)."""
        ...


class VerbalizerLike(Protocol):
    """What an engine reads from the activation verbalizer it serves."""

    @property
    def model(self) -> Any:
        """The HF causal LM (a ``peft`` model or not)."""
        ...

    @property
    def tokenizer(self) -> Any:
        """Its HF tokenizer (``pad_token_id``, ``save_pretrained``)."""
        ...

    @property
    def cfg(self) -> NLAMeta:
        """The AV's sidecar (marker token ids, injection scale)."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        ...

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end a response."""
        ...

    def prompt_ids(self) -> torch.Tensor:
        """The AV prompt ``[T]``, the same for every vector."""
        ...

    def check_vectors(self, vectors: Any) -> torch.Tensor:
        """``[N, d_model]`` (or ``[d_model]``) vectors validated, as float32 ``[N, d_model]``."""
        ...

    def injecting(
        self, vectors: torch.Tensor, prompt_length: int | None = None, model: Any = None
    ) -> AbstractContextManager[Any]:
        """A context in which the model's forward passes inject ``vectors [N, d_model]`` at the marker;
        it yields the hook (``n_injections`` counts the passes that injected)."""
        ...


class EngineFactory(Protocol):
    """Builds a named engine from the AV: ``factory(av, **engine_kwargs)`` (a class like
    :class:`~nla_lens.engines.vllm.VLLMEngine`, whose constructor is the factory).

    ``*args: Any, **engine_kwargs: Any`` after ``av`` is how mypy reads "any further arguments", so a
    factory with typed keywords of its own (``gpu_memory_utilization: float | None``) satisfies it.
    """

    def __call__(self, av: VerbalizerLike, /, *args: Any, **engine_kwargs: Any) -> ManagedEngine: ...
