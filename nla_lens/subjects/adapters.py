"""One small interface over the subject-model backends nla_lens reads activations from.

``as_subject(model)`` wraps a TransformerLens ``TransformerBridge`` or ``HookedTransformer``, or an
``nnsight`` language model, in a ``SubjectAdapter`` with the few verbs extraction needs: tokenize
a document, list and validate hook names, and read one hook's activations while running only the
blocks needed to reach it (``stop_at_layer`` in TransformerLens, ``tracer.stop()`` in nnsight).

What ``as_subject`` accepts, and so every ``subject=`` parameter, is :data:`SubjectModel`: an adapter,
or a model of either backend as ``as_subject`` recognises it (:class:`TransformerLensModel`,
:class:`NNsightModel`, ``typing.Protocol`` classes for annotations).
"""

from __future__ import annotations

import dataclasses
import weakref
from abc import ABC, abstractmethod
from typing import Any, Protocol, TypeAlias

import torch

from nla_lens.errors import HookNameError, InputError
from nla_lens.hooks import HookSite, resolve_hook_name

_LOADED_AS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""The name each subject model was loaded under (``load_subject``): kept here, beside the model, so
nla_lens never writes attributes onto a TransformerBridge, HookedTransformer or nnsight object."""


def remember_name(model: Any, name: str) -> None:
    """Record the name ``model`` was loaded under; :attr:`SubjectAdapter.name` reports it."""
    _LOADED_AS[model] = name


def _loaded_as(model: Any) -> str | None:
    try:
        return _LOADED_AS.get(model)
    except TypeError:  # an object that cannot be weakly referenced was never recorded
        return None


@dataclasses.dataclass(frozen=True)
class ResidualEdit:
    """An intervention for :meth:`SubjectAdapter.logits` and :meth:`SubjectAdapter.generate`:
    ``delta`` added at every position of one hook (steering).

    Attributes:
        hook_name: A hook the subject lists (an nnsight subject edits ``blocks.K.hook_resid_post``,
            decoder-layer outputs, only).
        delta: ``[d_model]``.
    """

    hook_name: str
    delta: torch.Tensor


class SubjectAdapter(ABC):
    """What extraction needs from a subject model, whatever the backend.

    Attributes:
        model: The wrapped model object, unchanged.
        tokenizer: Its HF tokenizer.
        backend: ``"transformer_lens"`` or ``"nnsight"``.
    """

    backend: str

    def __init__(self, model: Any, tokenizer: Any):
        if tokenizer is None:
            raise InputError(f"The {type(model).__name__} has no tokenizer. Pass tokenizer=... (an HF tokenizer).")
        self.model = model
        self.tokenizer = tokenizer

    # -- facts about the model -------------------------------------------------------------
    @property
    @abstractmethod
    def n_layers(self) -> int:
        """Number of transformer blocks."""

    @property
    @abstractmethod
    def d_model(self) -> int:
        """Width of the residual stream."""

    @property
    @abstractmethod
    def name(self) -> str:
        """An identifier of the subject model for metadata."""

    @property
    @abstractmethod
    def prepend_bos(self) -> bool:
        """Whether documents start with the tokenizer's BOS token."""

    @abstractmethod
    def hook_names(self) -> list[str]:
        """Every hook name this backend can read."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_ctx(self) -> int | None:
        """Longest context the model accepts, if known."""
        return None

    def special_token_ids(self) -> set[int]:
        """Ids of special tokens (BOS/EOS/PAD/chat markers), never sampled as positions."""
        return set(getattr(self.tokenizer, "all_special_ids", []) or [])

    def resolve_hook(self, hook_name: str | None = None, *, layer: int | None = None) -> HookSite:
        """The :class:`~nla_lens.hooks.HookSite` of a hook this model has.

        Args:
            hook_name: A hook name, e.g. ``"blocks.20.hook_resid_post"``.
            layer: Instead: block index K (negative counts from the end), meaning
                ``blocks.K.hook_resid_post``.

        Raises:
            HookNameError: The model has no such hook (close matches named), a layer out of
                range, or an int as ``hook_name`` (pass ``layer=``).
        """
        return resolve_hook_name(hook_name, layer=layer, n_layers=self.n_layers, valid_names=self.hook_names())

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids of one document, with BOS when the model expects it, truncated."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if self.prepend_bos and bos is not None:
            ids = [bos, *ids]
        return ids[:max_length] if max_length else ids

    @abstractmethod
    def token_embeddings(self) -> torch.Tensor:
        """The input embedding matrix ``W_E``, ``[d_vocab, d_model]``, float32 on the CPU."""

    @abstractmethod
    def activations(self, tokens: torch.Tensor, hook: HookSite) -> torch.Tensor:
        """Activations at one hook, running no block after it.

        Args:
            tokens: ``[batch, seq]`` token ids, right-padded (causal models need no mask then).
            hook: A hook site from ``resolve_hook``.

        Returns:
            ``[batch, seq, d_model]`` float tensor on the CPU.
        """

    @abstractmethod
    def logits(self, tokens: torch.Tensor, *, edit: ResidualEdit | None = None) -> torch.Tensor:
        """Next-token logits ``[B, T, vocab]`` (float32, CPU) of ``tokens [B, T]``; rows may be
        right-padded (causal: a row's logits never see its padding). ``edit`` adds its delta at every
        position of its hook."""

    @abstractmethod
    def generate(self, tokens: torch.Tensor, max_new_tokens: int, *, edit: ResidualEdit | None = None) -> torch.Tensor:
        """``[max_new_tokens]`` greedy tokens after ``tokens [T]`` (exactly that many: stop tokens do
        not end it), with ``edit``'s delta added at every position of every pass."""


class TransformerLensSubject(SubjectAdapter):
    """A ``TransformerBridge`` or ``HookedTransformer``, read with ``run_with_cache``."""

    backend = "transformer_lens"

    def __init__(self, model: Any, tokenizer: Any = None):
        super().__init__(model, tokenizer if tokenizer is not None else model.tokenizer)

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.cfg.d_model)

    @property
    def n_ctx(self) -> int | None:
        return int(self.model.cfg.n_ctx)

    @property
    def name(self) -> str:
        return str(_loaded_as(self.model) or self.model.cfg.model_name)

    @property
    def prepend_bos(self) -> bool:
        return bool(self.model.cfg.default_prepend_bos)

    def hook_names(self) -> list[str]:
        # hook_dict already lists the bridge's block aliases (blocks.K.hook_resid_post, ...).
        names = set(self.model.hook_dict)
        names.update(getattr(self.model, "hook_aliases", None) or {})
        return sorted(names)

    def token_embeddings(self) -> torch.Tensor:
        return self.model.W_E.detach().float().cpu()

    @torch.no_grad()
    def activations(self, tokens: torch.Tensor, hook: HookSite) -> torch.Tensor:
        # Read by the name asked for: a bridge's hook point for blocks.K.hook_resid_post is named
        # blocks.K.hook_out (its `hook.name` in a hook function), but its cache answers to the alias.
        _, cache = self.model.run_with_cache(
            tokens.to(self.device),
            names_filter=hook.name,
            stop_at_layer=hook.stop_at_layer,
            return_cache_object=False,
        )
        if hook.name not in cache:
            raise HookNameError(f"The model ran but hook {hook.name!r} produced no activation.")
        return cache[hook.name].float().cpu()

    def _fwd_hooks(self, edit: ResidualEdit | None) -> list[tuple[str, Any]]:
        if edit is None:
            return []
        hook, delta = self.resolve_hook(edit.hook_name), edit.delta

        def add(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            return activation + delta.to(device=activation.device, dtype=activation.dtype)

        return [(hook.name, add)]

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor, *, edit: ResidualEdit | None = None) -> torch.Tensor:
        out = self.model.run_with_hooks(tokens.to(self.device), fwd_hooks=self._fwd_hooks(edit), return_type="logits")
        return out.float().cpu()

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, max_new_tokens: int, *, edit: ResidualEdit | None = None) -> torch.Tensor:
        # Our own greedy loop, one full forward per new token, instead of TransformerLens's
        # generate: its bridge reads the KV cache under the argument name transformers used before
        # 5.24 (`past_key_values`), so from 5.24 on (`cache=`) it keeps an empty cache and every step
        # attends to itself alone -- garbage after the first token, no error. Without a cache an
        # edit adds its delta at every position of every pass, exactly once per position.
        out = tokens.cpu()
        for _ in range(max_new_tokens):
            next_token = self.logits(out[None], edit=edit)[0, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, next_token.to(out.dtype)])
        return out[len(tokens) :]


class NNsightSubject(SubjectAdapter):
    """An ``nnsight`` language model; ``remote=True`` runs the trace on NDIF.

    Only residual-stream hooks are readable here (they map to decoder-layer outputs/inputs);
    other TransformerLens hook names have no generic nnsight equivalent.
    """

    backend = "nnsight"

    def __init__(self, model: Any, tokenizer: Any = None, *, remote: bool = False):
        super().__init__(model, tokenizer if tokenizer is not None else getattr(model, "tokenizer", None))
        self.remote = remote
        self._layers_path = _find_layers_path(self.hf_model, self.n_layers)

    @property
    def hf_model(self) -> Any:
        """The Hugging Face model the nnsight model wraps (its weights, config and embeddings): a
        ``PreTrainedModel``, typed ``Any`` as its ``nn.Module`` attributes read as ``Tensor | Module``."""
        # nnsight 0.8 keeps the wrapped module in the Envoy's ``_module`` and offers no public
        # accessor; this is the one place in nla_lens that reads it.
        return self.model._module

    @property
    def _config(self) -> Any:
        return self.hf_model.config

    @property
    def n_layers(self) -> int:
        config = self._config
        return int(getattr(config, "num_hidden_layers", None) or config.n_layer)

    @property
    def d_model(self) -> int:
        config = self._config
        return int(getattr(config, "hidden_size", None) or config.n_embd)

    @property
    def n_ctx(self) -> int | None:
        return getattr(self._config, "max_position_embeddings", None)

    @property
    def name(self) -> str:
        return str(_loaded_as(self.model) or self._config._name_or_path)

    @property
    def prepend_bos(self) -> bool:
        return False  # HF tokenizers decide themselves; we add no extra BOS

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids[:max_length] if max_length else ids

    def hook_names(self) -> list[str]:
        return [
            f"blocks.{k}.{suffix}" for k in range(self.n_layers) for suffix in ("hook_resid_pre", "hook_resid_post")
        ]

    @property
    def device(self) -> torch.device:
        device = self.hf_model.device if not self.remote else torch.device("cpu")
        # Loaded by name, nnsight keeps meta weights until the first trace dispatches them:
        # inputs go to the CPU and nnsight moves them where the weights land.
        return torch.device("cpu") if device.type == "meta" else device

    def token_embeddings(self) -> torch.Tensor:
        if self.remote:
            raise InputError(
                "The input embeddings of a remote (NDIF) model are not read here; load the model "
                "locally (remote=False) for the current-token baseline."
            )
        return self.hf_model.get_input_embeddings().weight.detach().float().cpu()

    def layer_envoy(self, index: int) -> Any:
        """The nnsight Envoy of decoder block ``index`` (its ``.output`` is the block's residual stream)."""
        envoy = self.model
        for part in self._layers_path.split("."):
            envoy = getattr(envoy, part)
        return envoy[index]

    @torch.no_grad()
    def activations(self, tokens: torch.Tensor, hook: HookSite) -> torch.Tensor:
        layer = self.layer_envoy(hook.block)
        with self.model.trace(tokens.to(self.device), remote=self.remote) as tracer:
            if hook.suffix == "hook_resid_post":
                saved = layer.output.save()
            else:
                saved = layer.inputs.save()
            tracer.stop()  # run no block past the hook
        value = saved
        while isinstance(value, (tuple, list)):
            value = value[0]
        if isinstance(value, dict):  # ``inputs`` is (args, kwargs)
            value = value["hidden_states"]
        return value.float().cpu()

    def _edited_layer(self, edit: ResidualEdit) -> Any:
        hook = self.resolve_hook(edit.hook_name)
        if hook.suffix != "hook_resid_post":
            raise InputError(
                f"An nnsight subject is edited at decoder-layer outputs, i.e. blocks.K.hook_resid_post; "
                f"{hook.name!r} is not one. Use a TransformerLens subject for other hooks."
            )
        return self.layer_envoy(hook.block)

    @staticmethod
    def _add(layer: Any, delta: torch.Tensor) -> None:
        """Inside a trace: add ``delta`` to ``layer``'s output (a tensor, or ``(hidden, ...)``)."""
        output = layer.output
        if isinstance(output, tuple):  # older transformers return (hidden, ...)
            layer.output = (output[0] + delta.to(output[0].device, output[0].dtype), *output[1:])
        else:
            layer.output = output + delta.to(output.device, output.dtype)

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor, *, edit: ResidualEdit | None = None) -> torch.Tensor:
        if edit is None and not self.remote and self.hf_model.device.type != "meta":
            # No intervention: the wrapped module itself, without building a trace.
            return self.hf_model(input_ids=tokens.to(self.device)).logits.float().cpu()
        layer = None if edit is None else self._edited_layer(edit)
        with self.model.trace(tokens.to(self.device), remote=self.remote):
            if layer is not None and edit is not None:
                self._add(layer, edit.delta)
            logits = self.model.output.logits.save()
        return logits.float().cpu()

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, max_new_tokens: int, *, edit: ResidualEdit | None = None) -> torch.Tensor:
        layer = None if edit is None else self._edited_layer(edit)
        pad = self.tokenizer.pad_token_id
        # min_new_tokens: every one of the max_new_tokens steps the loop below edits must happen.
        with self.model.generate(
            tokens[None].to(self.device),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad if pad is not None else 0,
            remote=self.remote,
        ) as tracer:
            if layer is not None and edit is not None:
                for _ in tracer.iter[:max_new_tokens]:
                    self._add(layer, edit.delta)
            result = tracer.result.save()
        return result[0, len(tokens) :].cpu()


def _find_layers_path(module: torch.nn.Module, n_layers: int) -> str:
    """Dotted path of the ``ModuleList`` of decoder blocks (``model.layers``, ``transformer.h``)."""
    for path, child in module.named_modules():
        if isinstance(child, torch.nn.ModuleList) and len(child) == n_layers:
            return path
    raise InputError(f"Could not find the list of {n_layers} decoder blocks in {type(module).__name__}.")


class TransformerLensModel(Protocol):
    """A TransformerLens ``TransformerBridge`` or ``HookedTransformer``, as :func:`as_subject` recognises
    one (``run_with_cache`` and ``cfg``); :class:`TransformerLensSubject` reads ``cfg.n_layers``,
    ``cfg.d_model``, ``cfg.n_ctx``, ``cfg.default_prepend_bos``, ``hook_dict``, ``W_E`` and ``tokenizer``."""

    @property
    def cfg(self) -> Any:
        """The model's config."""
        ...

    def run_with_cache(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model and return ``(output, cache)``."""
        ...


class NNsightModel(Protocol):
    """An ``nnsight`` language model, as :func:`as_subject` recognises one (``trace`` and the wrapped
    Hugging Face module in ``_module``: nnsight offers no public accessor)."""

    @property
    def _module(self) -> Any: ...

    def trace(self, *args: Any, **kwargs: Any) -> Any:
        """Open a tracing context over one forward pass."""
        ...


SubjectModel: TypeAlias = SubjectAdapter | TransformerLensModel | NNsightModel
"""What a ``subject=`` parameter takes: an adapter, or a model :func:`as_subject` wraps in one."""


def as_subject(model: SubjectModel, tokenizer: Any = None, *, remote: bool = False) -> SubjectAdapter:
    """Wrap a subject model in the adapter for its backend.

    Args:
        model: A ``TransformerBridge``, ``HookedTransformer``, nnsight model, or an existing adapter.
        tokenizer: Overrides the model's own tokenizer.
        remote: nnsight only: run on NDIF.

    Raises:
        InputError: For an unsupported object (e.g. a bare HF model: wrap it with ``load_subject``).
    """
    if isinstance(model, SubjectAdapter):
        return model
    if hasattr(model, "run_with_cache") and hasattr(model, "cfg"):
        return TransformerLensSubject(model, tokenizer)
    if hasattr(model, "trace") and hasattr(model, "_module"):
        return NNsightSubject(model, tokenizer, remote=remote)
    raise InputError(
        f"Unsupported subject model {type(model).__name__}. Pass a TransformerLens TransformerBridge "
        "or HookedTransformer, or an nnsight model; wrap a Hugging Face model with "
        "nla_lens.load_subject(model, tokenizer=...)."
    )
