"""``ActivationVerbalizer`` (AV): an HF causal LM that reads one injected vector and explains it.

The AV sees a fixed chat prompt (the sidecar's AV template) whose marker token's input
embedding is replaced by the vector, rescaled to ``injection_scale``. The assistant turn starts
with the sidecar's ``av_prefill`` (nla_lens writes ``<explanation>``; the published AVs have none
and open the tag themselves), and the AV writes the explanation and closes the tag. Each AV is
driven with the prompt it was trained on, so its output parses either way. The
injection is a forward hook on the input-embedding module (``nla_lens.injection``), so the same
code serves generation (prefill only) and every log-prob pass (policy and reference).

Because every prompt is the same token sequence, a batch of vectors needs no padding: the prompt
is repeated and only the injected row differs. Log-probs use that too: the prompt before the
marker is computed once per batch and the rest once per distinct vector, and every response
continues from that KV cache (``logprobs(share_prefix=True)``).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers.generation.streamers import BaseStreamer

# ENGINES (the live list of engine names) stays importable from here, where it was defined before the registry.
from nla_lens.engines import (
    ENGINES,
    HF_ENGINE,
    GenerationEngine,
    ManagedEngine,
    engine_factory,
    engine_names,
    unknown_engine_message,
)
from nla_lens.errors import CheckpointError, InputError, MarkerError, ShapeError
from nla_lens.frames import TextFrame
from nla_lens.injection import av_prompt_ids, find_marker_positions, make_injection_hook
from nla_lens.metrics import check_vectors
from nla_lens.models.adapters import merged_adapters
from nla_lens.models.loading import check_model_folder, load_lm_folder, text_config
from nla_lens.models.width_map import width_map
from nla_lens.norm_range import warn_if_outside
from nla_lens.precision import InferenceCopy, resolve_precision
from nla_lens.sampling import SeededGumbelSampler, sample_seeds
from nla_lens.schema import SIDECAR_NAME, NLAMeta
from nla_lens.streaming import ExplanationStreamer, StreamCallback

RESPONSE_PREFIX = "<explanation>"
RESPONSE_SUFFIX = "</explanation>"
EXPLANATION_RE = re.compile(r"<explanation>\s*(.*?)\s*</explanation>", re.DOTALL)
_CJK_RE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3000-\u303f]")


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Token ids that end a chat response: the EOS and, for ChatML, ``<|im_end|>`` (sorted)."""
    ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return sorted(i for i in ids if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id)


def parse_explanation(text: str) -> tuple[str, bool]:
    """Split a generated response into ``(explanation, missing_tag)``.

    ``text`` is the full response including any pre-filled part. Without a closing tag the
    explanation is whatever follows the opening tag and ``missing_tag`` is True.
    """
    match = EXPLANATION_RE.search(text)
    if match:
        return match.group(1).strip(), False
    return text.split(RESPONSE_PREFIX, 1)[-1].strip(), True


def looks_non_english(text: str, marker: str | None = None) -> bool:
    """Heuristic for a failed injection: CJK characters, the literal marker, or mostly non-ASCII.

    When the injection silently fails the AV reads the marker itself (a CJK character or a rare
    token) and writes about it, or writes gibberish in its script.
    """
    if marker and marker in text:
        return True
    if _CJK_RE.search(text):
        return True
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(not c.isascii() for c in letters) / len(letters) > 0.3


def unique_rows(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of ``vectors [N, d]``: ``(unique [U, d], inverse [N])`` with
    ``unique[inverse] == vectors``, in any order of duplicates. ``unique`` is indexed from
    ``vectors`` itself, so gradients flow through it."""
    _, inverse = torch.unique(vectors, dim=0, return_inverse=True)
    rows = torch.arange(len(vectors), device=vectors.device)
    first = torch.full((int(inverse.max()) + 1,), len(vectors), device=vectors.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return vectors[first], inverse


# Rotary embeddings whose frequencies depend on the length of the pass, so a cached pass would
# rotate differently from a full one.
_LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")


def _new_shared_cache(model: Any) -> tuple[Any, str] | None:
    """An empty ``DynamicCache`` for ``model`` and the forward argument that takes it, or ``None``
    when a prompt computed in cached pieces might differ from one full pass: another cache class
    (anything but plain and sliding-window layers), prompt-learning PEFT adapters (virtual
    tokens), rotary embeddings scaled by the pass length, or no cache argument."""
    try:
        from transformers.cache_utils import DynamicCache
    except ImportError:
        return None
    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    parameters = inspect.signature(base.forward).parameters
    cache_arg = next((name for name in ("cache", "past_key_values") if name in parameters), None)
    if cache_arg is None:
        return None
    for module in base.modules():
        rope = getattr(module, "rope_type", None)
        if any(t in _LENGTH_DEPENDENT_ROPE for t in (rope.values() if isinstance(rope, dict) else [rope])):
            return None
    try:
        cache = DynamicCache(config=base.config)
    except (TypeError, ValueError):
        return None
    return (cache, cache_arg) if _cache_holds(cache, 0) else None


def _cached_forward(module: Any, ids: torch.Tensor, cache: Any, cache_arg: str, **kwargs: Any) -> Any:
    """``module`` on ``ids [B, T]`` continuing ``cache`` (all-ones attention over cache and ids)."""
    attention = torch.ones(len(ids), cache.get_seq_length() + ids.shape[1], dtype=torch.long, device=ids.device)
    return module(input_ids=ids, attention_mask=attention, use_cache=True, **{cache_arg: cache}, **kwargs)


def _last(length: int, device: torch.device) -> torch.Tensor:
    """``logits_to_keep`` for the last of ``length`` positions. An index tensor makes HF gather it
    into a contiguous ``[B, 1, d]``; an int slices a strided view (see :func:`contiguous_head`)."""
    return torch.tensor([length - 1], device=device)


@contextlib.contextmanager
def contiguous_head(model: Any) -> Iterator[None]:
    """Inside the block, ``model``'s output head reads a contiguous copy of its input.

    HF generation's prefill keeps only the last position (``hidden[:, -1:, :]``, a strided view);
    ``torch.matmul`` does not fold such a 3-D view into one matrix product but broadcasts the
    vocabulary-wide weight over the batch and copies it (batch x vocab x width: 1.8 GB for 32
    rows of the embedded AV in bf16), which took a quarter of a greedy ``verbalize``. A contiguous
    input folds into one product.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def _cache_holds(cache: Any, length: int) -> bool:
    """Whether ``cache`` is a plain ``DynamicCache`` whose every layer holds ``length`` positions
    (plain or sliding-window layers, which reorder by batch row; other layers: a fallback)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    if type(cache) is not DynamicCache:
        return False
    if getattr(cache, "layer_class_to_replicate", None) not in (None, DynamicLayer):
        return False
    layers = cache.layers
    plain = [layer for layer in layers if type(layer) is DynamicLayer or type(layer) is DynamicSlidingWindowLayer]
    return len(plain) == len(layers) and (
        length == 0 or (len(plain) > 0 and all(layer.get_seq_length() == length for layer in plain))
    )


INPUT_MAP_FILE = "input_map.safetensors"
"""A cross-architecture AV's learned input map (one ``weight`` ``[lm_d_model, d_model]``)."""


class ActivationVerbalizer:
    """Vector -> explanation.

    Args:
        model: An HF causal LM (optionally a ``peft`` model).
        tokenizer: Its tokenizer (chat template required).
        cfg: The config (an :class:`~nla_lens.schema.NLAMeta` with ``role="av"``, saved as the sidecar file
            ``nla_meta.yaml``), validated against ``tokenizer`` here.
        input_map: For a cross-architecture AV (``cfg.lm_d_model`` set), the learned
            ``Linear(d_model, lm_d_model, bias=False)`` from the subject's width to the AV's embedding
            width; made semi-orthogonal when ``None``. Absent (``None``) when the widths match.

    Attributes:
        cfg: The validated :class:`~nla_lens.schema.NLAMeta`.
        input_map: The map, or ``None`` (a same-width AV injects the vector itself, as published).
    """

    def __init__(self, model: Any, tokenizer: Any, cfg: NLAMeta, input_map: torch.nn.Linear | None = None):
        if cfg.role != "av":
            raise CheckpointError(f"ActivationVerbalizer needs an AV sidecar (role 'av'), got role {cfg.role!r}.")
        cfg.validate(tokenizer, d_model=text_config(model).hidden_size)
        if input_map is not None and not cfg.cross_architecture:
            raise InputError("input_map is only for an AV whose width differs from the vectors' (cfg.lm_d_model).")
        if cfg.cross_architecture:
            input_map = width_map(cfg.d_model, cfg.lm_width) if input_map is None else input_map
            if tuple(input_map.weight.shape) != (cfg.lm_width, cfg.d_model):
                raise ShapeError(
                    f"input_map must map d_model {cfg.d_model} to the AV's width {cfg.lm_width} (weight "
                    f"[{cfg.lm_width}, {cfg.d_model}]), got weight {list(input_map.weight.shape)}."
                )
            input_map = input_map.float().to(next(model.parameters()).device)
        self.input_map = input_map
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self._prompt: torch.Tensor | None = None
        self._engines: dict[str, ManagedEngine] = {}
        self._engine_weights: dict[str, tuple[int, float]] = {}
        self._copies: dict[torch.dtype, tuple[tuple[int, float], InferenceCopy]] = {}

    # -- facts --------------------------------------------------------------------------------
    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end a response: the tokenizer's EOS (``<|im_end|>`` for ChatML)."""
        return stop_token_ids(self.tokenizer)

    @property
    def prefill(self) -> str:
        """What the prompt holds after the chat template (the sidecar's ``av_prefill``; ``""`` if none)."""
        return self.cfg.av_prefill or ""

    def prompt_ids(self) -> torch.Tensor:
        """The AV prompt ``[T]``: the rendered template (chat, or plain text for a base model:
        ``cfg.av_format``), then the sidecar's pre-fill (if any).

        An exported AV's chat template already ends its generation prompt with the pre-fill
        (:func:`~nla_lens.models.export.export_merged`); it is not added twice.
        """
        if self._prompt is None:
            content = self.cfg.av_prompt()
            ids = av_prompt_ids(self.tokenizer, content, self.cfg.av_format)
            prefill = self.tokenizer.encode(self.prefill, add_special_tokens=False) if self.prefill else []
            if prefill and ids[-len(prefill) :] != prefill:
                ids += prefill
            self._prompt = torch.tensor(ids, dtype=torch.long)
        return self._prompt

    def check_vectors(self, vectors: Any) -> torch.Tensor:
        """Validate ``[N, d_model]`` (or ``[d_model]``) vectors: width, finite, non-zero."""
        vectors = torch.as_tensor(vectors)
        vectors = check_vectors(
            vectors[None] if vectors.ndim == 1 else vectors,
            self.d_model,
            source=f"Extract them at the hook the NLA was trained on ({self.cfg.hook_name}).",
        )
        return vectors.float()

    @contextlib.contextmanager
    def injecting(self, vectors: torch.Tensor, prompt_length: int | None = None, model: Any = None) -> Iterator[Any]:
        """Context in which every forward pass of ``model`` injects ``vectors`` at the markers.

        Args:
            vectors: ``[N, d]``, one per marker in the batch (one per row).
            prompt_length: Inject only on calls of exactly this length (the generation prefill).
            model: Another model sharing this AV's prompt (a reference copy); default ``self.model``.
        """
        model = self.model if model is None else model
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):  # a trainer's wrapped copy
            model = model.module
        tok = self.cfg.tokens
        if self.cfg.injection_scale is None:  # NLAMeta refuses an AV sidecar without one
            raise CheckpointError(
                "nla_meta extraction.injection_scale: missing; an AV needs the injection scale it was trained with."
            )
        hook = make_injection_hook(
            self.map_vectors(vectors.to(self.device)),
            marker_id=tok.injection_token_id,
            left_id=tok.injection_left_neighbor_id,
            right_id=tok.injection_right_neighbor_id,
            injection_scale=self.cfg.injection_scale,
            prompt_length=prompt_length,
        )
        handle = model.get_input_embeddings().register_forward_hook(hook)
        try:
            yield hook
        finally:
            handle.remove()

    def map_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[N, d_model]`` vectors in the AV's embedding width: through the input map of a
        cross-architecture AV (differentiable, so trainers train it), unchanged otherwise."""
        if self.input_map is None:
            return vectors
        self.input_map.to(vectors.device)
        return self.input_map(vectors.float())

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What a trainer updates: the model's parameters that require grad, then the input map's."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return params + (list(self.input_map.parameters()) if self.input_map is not None else [])

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
        merge_adapters: bool = True,
        precision: str = "fp32",
        share_prefix: bool = True,
        streamer: BaseStreamer | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate one response per vector (KV cache; injection on the prefill only).

        Args:
            vectors: ``[N, d_model]`` validated vectors.
            seeds: With ``do_sample``, one seed per row (:func:`~nla_lens.sampling.sample_seeds`):
                each row then samples from its own random stream, so its response does not depend
                on the rest of the batch. ``None``: the global torch random stream.
            merge_adapters: Fold LoRA adapters into their weights while generating
                (:func:`~nla_lens.models.adapters.merged_adapters`; the same tokens, one matrix
                product per adapted layer instead of three). ``False`` only to compare.
            precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (:mod:`nla_lens.precision`): bf16
                generates from a bf16 copy of the weights (adapters folded in), refreshed when the
                weights change; faster where the hardware multiplies bf16 natively, and greedy
                tokens can differ from fp32's once two candidates are close.
            share_prefix: Run the prompt before the marker once for the whole batch and start
                every row's generation from that cache (:meth:`prompt_prefix_cache`); the same
                tokens up to float rounding. ``False`` only to compare.
            streamer: A transformers streamer that receives each step's tokens ``[N]`` (after the
                prompt ids), e.g. :class:`~nla_lens.streaming.ExplanationStreamer`.

        Returns:
            ``(tokens [N, L], finished [N])``: the new tokens (right-padded with the pad id) and
            whether each response ended with a stop token before ``max_new_tokens``.
        """
        prompt = self.prompt_ids().to(self.device)
        input_ids = prompt[None].repeat(len(vectors), 1)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.stop_ids,
            streamer=streamer,
        )
        if do_sample and seeds is not None:
            if len(seeds) != len(vectors):
                raise ShapeError(f"{len(vectors)} vectors but {len(seeds)} seeds.")
            kwargs.update(
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                logits_processor=[SeededGumbelSampler(seeds, temperature, top_p)],
            )
        elif do_sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        held_in_bf16 = next(self.model.parameters()).dtype == torch.bfloat16  # loaded in bf16: no copy needed
        merging: contextlib.AbstractContextManager[Any]
        if resolve_precision(precision, self.device) == "bf16" and not held_in_bf16:
            model, merging = self.inference_copy(torch.bfloat16).model, contextlib.nullcontext()
        else:
            model = self.model
            merging = merged_adapters(self.model) if merge_adapters else contextlib.nullcontext()
        with merging, contiguous_head(model):
            prefix = self.prompt_prefix_cache(model, len(vectors)) if share_prefix else None
            prefill = len(prompt)
            if prefix is not None:
                cache, cache_arg, split = prefix
                kwargs[cache_arg] = cache
                prefill -= split  # generate runs only the part of the prompt the cache lacks
            with self.injecting(vectors, prompt_length=prefill, model=model) as hook:
                out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        if hook.n_injections != 1:
            raise RuntimeError(f"The vector was injected {hook.n_injections} times during generation, expected once.")
        new = out[:, len(prompt) :]
        finished = torch.isin(new, torch.tensor(self.stop_ids, device=new.device)).any(dim=1)
        return new.cpu(), finished.cpu()

    def verbalize(
        self,
        vectors: Any,
        *,
        max_new_tokens: int = 150,
        do_sample: bool = False,
        temperature: float = 1.0,
        num_samples: int = 1,
        batch_size: int = 32,
        seed: int | None = None,
        engine: str | GenerationEngine = "hf",
        precision: str = "fp32",
        stream: StreamCallback | None = None,
        progress: bool = True,
        warn: bool = True,
    ) -> pd.DataFrame:
        """Explain vectors in words.

        Args:
            vectors: ``[N, d_model]`` raw activations (any norm; rescaled to ``injection_scale``).
            max_new_tokens: Response cap; a response that hits it is flagged ``truncated``.
            do_sample: Sample (``temperature``) instead of greedy decoding.
            num_samples: Explanations per vector (use with ``do_sample``).
            batch_size: Sequences generated together.
            seed: Seeds sampling, for reproducible explanations: each (vector, sample) gets its own
                seed, so a vector's samples do not depend on the batch it lands in.
            engine: ``"hf"`` (default), ``"vllm"`` or another registered name
                (:func:`~nla_lens.engines.register_engine`; started on first use and kept; it always
                serves this AV's current weights), or an engine object with the same ``generate``
                (:class:`~nla_lens.engines.GenerationEngine`).
            precision: HF engine: ``"fp32"`` (default), ``"bf16"`` or ``"auto"`` (bf16 where the
                hardware multiplies it natively; :mod:`nla_lens.precision`). bf16 generates from a
                bf16 copy of the weights: faster there, and a greedy explanation can differ from
                fp32's where two next tokens are nearly tied. Other engines set their dtype when
                they start.
            stream: ``stream(row, text)``, called with each explanation so far as it is generated
                (``row`` indexes the returned frame; the last text of a row is its ``explanation``).
                The HF engine calls it after every generated token; another engine once per row,
                when its batch is done.
            progress: Show a progress bar.
            warn: Warn when some explanations are flagged, and
                (:class:`~nla_lens.errors.NormRangeWarning`) when a vector's L2 norm is far outside
                the norms this AV was trained on (its sidecar's ``extraction.norm_range``, when
                recorded; :mod:`nla_lens.norm_range`): a vector of another layer is explained
                fluently and flagged ``ok`` all the same.

        Returns:
            A :class:`~nla_lens.frames.TextFrame` (a DataFrame that shows explanations whole in a
            notebook) with one row per (vector, sample): ``vector``, ``sample``, ``explanation``,
            ``n_tokens``, and the flags ``missing_tag``, ``truncated``, ``non_english`` and ``ok``
            (none of the three).
        """
        vectors = self.check_vectors(vectors)
        if warn:
            warn_if_outside(self.cfg.norm_range, vectors, self.cfg.hook_name, stacklevel=2)
        generator = self.engine(engine)
        hf: dict[str, Any] = {"precision": precision} if generator is self else {}
        if generator is not self and precision != "fp32":
            raise InputError(
                f"precision={precision!r} applies to the HF engine; a {type(generator).__name__} sets its dtype "
                "when it starts (e.g. start_engine('vllm', dtype=...))."
            )
        repeated = vectors.repeat_interleave(num_samples, dim=0)
        seeds = sample_seeds(seed, range(len(vectors)), num_samples) if do_sample and seed is not None else None
        rows: list[dict[str, Any]] = []
        bar = tqdm(total=len(repeated), desc="verbalize", unit="vec", disable=not progress)
        for start in range(0, len(repeated), batch_size):
            chunk = repeated[start : start + batch_size]
            if stream is not None and generator is self:
                hf["streamer"] = ExplanationStreamer(lambda ids: self.describe(ids)["explanation"], stream, start)
            tokens, _ = generator.generate(
                chunk,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                temperature=temperature,
                seeds=None if seeds is None else seeds[start : start + batch_size],
                **hf,
            )
            for offset, ids in enumerate(tokens):
                index = start + offset
                rows.append(self.describe(ids, index // num_samples, index % num_samples))
                if stream is not None and generator is not self:
                    stream(index, rows[-1]["explanation"])
            bar.update(len(chunk))
        bar.close()
        frame = TextFrame(rows)
        failed = int((~frame["ok"]).sum())
        if failed and warn:
            warnings.warn(
                f"{failed} of {len(frame)} explanations are flagged (missing tag, truncated or "
                "non-English); see the flag columns.",
                stacklevel=2,
            )
        return frame

    def engine(self, engine: str | GenerationEngine = "hf") -> GenerationEngine:
        """The generation engine ``engine`` names, holding this AV's current weights.

        ``"hf"`` is this AV itself; ``"vllm"`` (or another name in :data:`~nla_lens.engines.ENGINES`,
        see :func:`~nla_lens.engines.register_engine`) starts that engine (a
        :class:`~nla_lens.engines.vllm.VLLMEngine`) on first use and keeps it; when the AV's trainable
        weights have changed since the engine last received them (a training step), they are sent
        again first, so an engine never explains with stale weights. An object with ``generate`` is
        returned as is.
        """
        if isinstance(engine, str):
            if engine == HF_ENGINE:
                return self
            if engine not in engine_names():
                raise InputError(unknown_engine_message(engine))
            fingerprint = self._weights_fingerprint()
            if engine not in self._engines:
                self.start_engine(engine)
            elif self._engine_weights.get(engine) != fingerprint:
                self._engines[engine].update_weights()
            self._engine_weights[engine] = fingerprint
            return self._engines[engine]
        if not callable(getattr(engine, "generate", None)):
            raise InputError(
                f"engine must be one of {ENGINES} or an object with generate(), got {type(engine).__name__}."
            )
        return engine

    def start_engine(self, engine: str = "vllm", **engine_kwargs: Any) -> ManagedEngine:
        """Start (or restart) the engine ``engine`` names with these settings and keep it for
        :meth:`engine`, ``verbalize(engine=...)`` and GRPO rollouts.

        Args:
            engine: ``"vllm"``, or another name given to :func:`~nla_lens.engines.register_engine`.
            **engine_kwargs: Passed to the engine's factory: for ``"vllm"``
                :class:`~nla_lens.engines.vllm.VLLMEngine` (and so ``vllm.LLM``), e.g.
                ``enforce_eager=True`` (starts in ~20 s on a CPU instead of compiling for ~80 s) or
                ``gpu_memory_utilization=0.5``.
        """
        startable = engine_names()[1:]
        if engine not in startable:
            raise InputError(
                f"Engines to start: {', '.join(map(repr, startable))} ('{HF_ENGINE}' is this AV itself); got {engine!r}."
            )
        factory = engine_factory(engine)  # imports the engine's module now (vllm: the optional dependency)
        if engine in self._engines:
            self._engines.pop(engine).close()
        self._engines[engine] = factory(self, **engine_kwargs)
        self._engine_weights[engine] = self._weights_fingerprint()
        return self._engines[engine]

    def close_engines(self) -> None:
        """Stop the engines :meth:`engine` started (vLLM's processes, their weight folders)."""
        engines, self._engines = self._engines, {}
        self._engine_weights.clear()
        for engine in engines.values():
            engine.close()

    def inference_copy(self, dtype: torch.dtype) -> InferenceCopy:
        """A frozen ``dtype`` copy of this AV's model with its adapters folded in
        (:class:`~nla_lens.precision.InferenceCopy`), kept and refreshed when the weights change."""
        fingerprint = self._weights_fingerprint()
        held = self._copies.get(dtype)
        if held is None or held[0][0] != fingerprint[0]:
            held = (fingerprint, InferenceCopy(self.model, dtype))
        elif held[0] != fingerprint:
            held[1].refresh(self.model)
            held = (fingerprint, held[1])
        self._copies[dtype] = held
        return held[1]

    def _weights_fingerprint(self) -> tuple[int, float]:
        """Which model this AV holds and a cheap checksum of its trainable weights (LoRA adapters, or
        every weight being trained): what changes when training steps or a new adapter is applied."""
        with torch.no_grad():
            checksum = sum(float(p.sum()) + float(p.norm()) for p in self.model.parameters() if p.requires_grad)
        return id(self.model), checksum

    def describe(self, ids: torch.Tensor | Sequence[int], vector: int = 0, sample: int = 0) -> dict[str, Any]:
        """Parse one generated response: ids ``[L]`` cut at the first stop token.

        Returns the row ``verbalize`` reports: the explanation, ``n_tokens`` (before the stop
        token), the flags ``missing_tag`` / ``truncated`` / ``non_english`` and ``ok``
        (none of them). The GRPO trainer parses its samples with it too.
        """
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        kept = [int(t) for t in ids]
        stops = set(self.stop_ids)
        cut = next((i for i, t in enumerate(kept) if t in stops), None)
        finished = cut is not None
        kept = kept[:cut] if finished else kept
        raw = self.prefill + self.tokenizer.decode(kept, skip_special_tokens=True)
        explanation, missing = parse_explanation(raw)
        non_english = looks_non_english(explanation, self.cfg.tokens.injection_char)
        return {
            "vector": vector,
            "sample": sample,
            "explanation": explanation,
            "n_tokens": len(kept),
            "missing_tag": missing,
            "truncated": not finished,
            "non_english": non_english,
            "ok": not (missing or non_english or not finished),
        }

    # -- log-probs ----------------------------------------------------------------------------
    def response_ids(self, explanations: Sequence[str]) -> list[list[int]]:
        """Token ids of complete responses: ``<explanation>{e}</explanation>`` less the pre-fill, then
        the stop token."""
        stop = self.stop_ids[0]
        texts = [f"{RESPONSE_PREFIX}{e}{RESPONSE_SUFFIX}" for e in explanations]
        if self.prefill:
            if not all(t.startswith(self.prefill) for t in texts):
                raise CheckpointError(
                    f"av_prefill {self.prefill!r} is not the start of a response "
                    f"'{RESPONSE_PREFIX}...{RESPONSE_SUFFIX}'; nla_lens cannot train this AV."
                )
            texts = [t[len(self.prefill) :] for t in texts]
        return [self.tokenizer.encode(t, add_special_tokens=False) + [stop] for t in texts]

    def logprobs(
        self,
        vectors: torch.Tensor,
        responses: Sequence[Sequence[int]],
        model: Any = None,
        *,
        share_prefix: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probabilities of given responses under the injected vectors.

        Differentiable (call under ``torch.no_grad()`` for a reference pass).

        Args:
            vectors: ``[N, d_model]``.
            responses: ``N`` lists of response token ids (e.g. from :meth:`response_ids`).
            model: Score with another model of the same prompt format (e.g. the RL reference
                policy); the vectors are injected into it too. Default ``self.model``.
            share_prefix: Run the prompt once per batch instead of once per row: the part before
                the marker once, the rest once per distinct vector, then the responses from that
                KV cache (:meth:`_shared_prefix_logits`). The same numbers up to float rounding;
                a model whose cache cannot be shared this way takes the full pass. ``False``: one
                full prompt + response pass per row.

        Returns:
            ``(logp [N, L], mask [N, L])``: log-probs of each response token (0 where padded) and
            a float mask of real tokens, ``L`` the longest response.
        """
        if len(responses) != len(vectors):
            raise ShapeError(f"{len(vectors)} vectors but {len(responses)} responses.")
        model = self.model if model is None else model
        targets, mask = self._padded_responses(responses)
        logits = self._shared_prefix_logits(vectors, targets, model) if share_prefix else None
        if logits is None:
            logits = self._full_logits(vectors, targets, model)
        # cross_entropy = fused log-softmax and gather; its backward is one fused kernel too, where
        # gather - logsumexp took two passes over the [N, L, vocab] logits.
        logp = -torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        logp = logp.view(targets.shape)
        mask = mask.to(logp.device)
        return logp * mask, mask

    def _padded_responses(self, responses: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(targets [N, L], mask [N, L])``: the responses right-padded with the pad id (on the AV's
        device), and a float mask of real tokens (on the CPU)."""
        width = max(len(r) for r in responses)
        targets = torch.full((len(responses), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(responses), width)
        for row, response in enumerate(responses):
            targets[row, : len(response)] = torch.tensor(list(response), dtype=torch.long)
            mask[row, : len(response)] = 1.0
        return targets.to(self.device), mask

    def _full_logits(self, vectors: torch.Tensor, targets: torch.Tensor, model: Any) -> torch.Tensor:
        """Logits ``[N, L, V]`` (float32) predicting each response token: one prompt + response pass per row."""
        prompt = self.prompt_ids().to(targets.device)
        ids = torch.cat([prompt[None].expand(len(targets), -1), targets], dim=1)
        with self.injecting(vectors, model=model):
            # Right padding: causal positions never see it. Only the response positions need the
            # (vocabulary-wide) projection.
            out = model(
                input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, logits_to_keep=targets.shape[1] + 1
            )
        return out.logits[:, :-1].float()

    def _shared_prefix_logits(self, vectors: torch.Tensor, targets: torch.Tensor, model: Any) -> torch.Tensor | None:
        """:meth:`_full_logits` from one KV cache grown in three passes; ``None`` if the model cannot share one.

        1. The prompt up to the marker's left neighbour, the same for every row: once (batch 1).
        2. The rest of the prompt, from the left neighbour (the injection hook checks both
           neighbours in the ids it sees), once per distinct vector, injected; its last position
           predicts the first response token.
        3. Every row's response (all but its last token), from the cache of its vector, not injected.

        Only pass 3 goes through a ``DistributedDataParallel`` wrapper (DDP allows one forward per
        backward); passes 1 and 2 run on the module inside, and their gradients reach the same
        parameters through the cached keys and values.

        Returns:
            Logits ``[N, L, V]`` (float32), or ``None`` when the model's cache is not a plain
            ``DynamicCache`` (then nothing was changed and the caller takes the full pass).
        """
        inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        shared = _new_shared_cache(inner)
        if shared is None:
            return None
        cache, cache_arg = shared
        prompt = self.prompt_ids().to(targets.device)
        split = self._marker_position() - 1

        def forward(module: Any, ids: torch.Tensor, **kwargs: Any) -> Any:
            return _cached_forward(module, ids, cache, cache_arg, **kwargs)

        if split > 0 and not self._fill_prefix(inner, cache, cache_arg, split):
            return None
        unique, inverse = unique_rows(vectors)
        inverse = inverse.to(targets.device)
        cache.reorder_cache(torch.zeros(len(unique), dtype=torch.long, device=targets.device))
        with self.injecting(unique, model=inner):
            rest = prompt[None, split:].expand(len(unique), -1)
            first = forward(inner, rest, logits_to_keep=_last(rest.shape[1], rest.device)).logits
        if not _cache_holds(cache, len(prompt)):
            return None
        logits = [first.float()[inverse]]
        if targets.shape[1] > 1:
            cache.reorder_cache(inverse)
            logits.append(forward(model, targets[:, :-1]).logits.float())
        return torch.cat(logits, dim=1)

    def _fill_prefix(self, model: Any, cache: Any, cache_arg: str, split: int) -> bool:
        """Run the prompt's first ``split`` tokens (before the marker's left neighbour) into
        ``cache`` with batch 1; whether the cache then holds exactly them."""
        prompt = self.prompt_ids().to(self.device)
        _cached_forward(model, prompt[None, :split], cache, cache_arg, logits_to_keep=_last(split, prompt.device))
        return _cache_holds(cache, split)

    @torch.no_grad()
    def prompt_prefix_cache(self, model: Any, rows: int) -> tuple[Any, str, int] | None:
        """A KV cache of the AV prompt up to the marker's left neighbour, for ``rows`` rows.

        Returns:
            ``(cache, cache_arg, split)``: the cache (``split`` positions, every row the same),
            the forward argument that takes it, and ``split``; ``None`` when ``model``'s cache
            cannot be shared this way (:func:`_new_shared_cache`) or the marker sits at the start.
        """
        split = self._marker_position() - 1
        shared = _new_shared_cache(model) if split > 0 else None
        if shared is None:
            return None
        cache, cache_arg = shared
        if not self._fill_prefix(model, cache, cache_arg, split):
            return None
        cache.reorder_cache(torch.zeros(rows, dtype=torch.long, device=self.device))
        return cache, cache_arg, split

    def _marker_position(self) -> int:
        """Index of the marker in :meth:`prompt_ids` (where the sidecar's neighbours surround it)."""
        tok = self.cfg.tokens
        hits = find_marker_positions(
            self.prompt_ids()[None],
            tok.injection_token_id,
            tok.injection_left_neighbor_id,
            tok.injection_right_neighbor_id,
        )
        if len(hits) != 1:
            raise MarkerError(
                f"the AV prompt holds {len(hits)} markers with the sidecar's neighbours, expected one; "
                "validate the sidecar against this tokenizer (NLAMeta.validate)."
            )
        return int(hits[0, 1])

    # -- checkpoints --------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the HF folder (or PEFT adapter folder), tokenizer and ``nla_meta.yaml`` into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        if self.input_map is not None:
            save_file({"weight": self.input_map.weight.detach().float().cpu().contiguous()}, str(path / INPUT_MAP_FILE))
        self.tokenizer.save_pretrained(path)
        self.cfg.save(path / SIDECAR_NAME)
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        device_map: Any = None,
        is_trainable: bool = False,
    ) -> ActivationVerbalizer:
        """Load an AV folder (full HF model or PEFT adapter) with its sidecar, validated.

        Args:
            path: The folder.
            dtype: Parameter dtype (default: the dtype it was saved in).
            device: Move the model here (default: where it loads, the CPU without ``device_map``).
            device_map: accelerate placement (``"auto"`` or a map) for models larger than one device.
            is_trainable: Load LoRA adapters trainable.
        """
        path = Path(path)
        check_model_folder(path, role="AV")
        meta = NLAMeta.load(path)
        model, tokenizer = load_lm_folder(
            path, meta.provenance, dtype=dtype, device_map=device_map, is_trainable=is_trainable
        )
        if device is not None and device_map is None:
            model = model.to(device)
        input_map = None
        if meta.cross_architecture:
            map_file = path / INPUT_MAP_FILE
            if not map_file.is_file():
                raise CheckpointError(
                    f"{path} is a cross-architecture AV (cross_architecture.lm_d_model {meta.lm_d_model} in its "
                    f"sidecar, d_model {meta.d_model}) but has no {INPUT_MAP_FILE}: the learned map from the "
                    "subject's width is missing. Copy it from the folder the AV was saved to."
                )
            weight = load_file(str(map_file)).get("weight")
            input_map = width_map(meta.d_model, meta.lm_width)
            if weight is None or weight.shape != input_map.weight.shape:
                raise CheckpointError(
                    f"{map_file} must hold one 'weight' of shape {list(input_map.weight.shape)}, got "
                    f"{None if weight is None else list(weight.shape)}."
                )
            with torch.no_grad():
                input_map.weight.copy_(weight)
        return cls(model.eval(), tokenizer, meta, input_map)
