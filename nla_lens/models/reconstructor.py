"""``ActivationReconstructor`` (AR): text -> vector, a truncated LM plus a linear head.

The base LM keeps blocks ``0..K`` (``K + 1`` blocks); its final norm is replaced by the identity
(the head sees the raw residual stream after block K, like ``blocks.K.hook_resid_post``) and its
LM head is dropped. ``value_head = Linear(d, d, bias=False)`` starts as the identity, so an
untrained AR predicts the truncated backbone's own last-token residual. It reads the sidecar's
AR template, tokenized as a raw string with the tokenizer's special tokens, at the last real
token (right padding handled).

Checkpoint layout, as published: an HF causal-LM folder whose ``config.json`` already has
``num_hidden_layers = K + 1``, the head in ``value_head.safetensors`` (one ``weight`` [d, d]),
the tokenizer and ``nla_meta.yaml``. A PEFT adapter folder in place of the weights also loads; its
``adapter_config.json`` names no loadable base (the sidecar's ``provenance.base_model`` does), so no
other reader builds it as the whole base model.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nla_lens.errors import CheckpointError, InputError
from nla_lens.models.loading import (
    check_model_folder,
    decoder_stack,
    load_lm_folder,
    recorded_blocks,
    seal_adapter_base,
    text_config,
    truncate_causal_lm,
)
from nla_lens.models.width_map import width_map
from nla_lens.schema import SIDECAR_NAME, NLAMeta

VALUE_HEAD_FILE = "value_head.safetensors"
_FINAL_NORMS = ("norm", "final_layernorm", "ln_f")


EMPTY_EXPLANATION = "(empty)"
"""What the AR reads in place of an empty (or missing) explanation."""


def _readable(explanations: Sequence[str]) -> list[str]:
    """Explanations as the AR reads them: an empty (or missing) one becomes :data:`EMPTY_EXPLANATION`."""
    return [e if isinstance(e, str) and e.strip() else EMPTY_EXPLANATION for e in explanations]


class ActivationReconstructor(nn.Module):
    """Explanation -> vector.

    Args:
        causal_lm: An HF causal LM already truncated to ``K + 1`` blocks (optionally a PEFT model); typed
            ``Any``, as its HF and peft methods read as ``Tensor | Module`` on a ``torch.nn.Module``.
        tokenizer: Its tokenizer.
        cfg: The config (an :class:`~nla_lens.schema.NLAMeta` with ``role="ar"``, saved as the sidecar file
            ``nla_meta.yaml``), validated here against the tokenizer and the model config.
        value_head: The ``Linear(d, d, bias=False)`` head; identity-initialised when ``None``.
        max_length: Longest AR prompt in tokens; longer explanations are cut with a warning.
    """

    def __init__(
        self,
        causal_lm: Any,
        tokenizer: Any,
        cfg: NLAMeta,
        value_head: nn.Linear | None = None,
        *,
        max_length: int = 512,
    ):
        super().__init__()
        if cfg.role != "ar":
            raise CheckpointError(f"ActivationReconstructor needs an AR sidecar (role 'ar'), got {cfg.role!r}.")
        config = text_config(causal_lm)
        cfg.validate(tokenizer, d_model=config.hidden_size, n_hidden_layers=config.num_hidden_layers)
        if cfg.mse_scale is None or abs(cfg.mse_scale - math.sqrt(cfg.d_model)) > 1e-6 * math.sqrt(cfg.d_model):
            # nla_lens scores on unit vectors (normalised MSE = 2(1 - cos)), which equals the
            # published per-dimension MSE at norm sqrt(d) exactly; any other scale would change the loss.
            raise CheckpointError(
                f"extraction.mse_scale is {cfg.mse_scale!r}, but nla_lens trains and scores the AR on vectors "
                f"normalised to sqrt(d_model) = {math.sqrt(cfg.d_model):g} (the published setting). Set it to "
                "sqrt_d_model if the AR was trained that way; other scales are not supported."
            )
        base = causal_lm.get_base_model() if hasattr(causal_lm, "get_base_model") else causal_lm
        inner = decoder_stack(base)
        # Keep the original final norm aside so save_pretrained writes a complete folder.
        self._final_norm_state: dict[str, torch.Tensor] = {}
        for attr in _FINAL_NORMS:
            norm = getattr(inner, attr, None)
            if isinstance(norm, nn.Module) and not isinstance(norm, nn.Identity):
                self._final_norm_state = {f"{attr}.{k}": v.detach().clone() for k, v in norm.state_dict().items()}
                setattr(inner, attr, nn.Identity())
                break
        if hasattr(base, "lm_head"):
            base.lm_head = nn.Identity()  # never used: the head reads hidden states
        self.backbone = causal_lm
        d = config.hidden_size
        if value_head is None and cfg.cross_architecture:  # the AR's width back to the subject's
            value_head = width_map(d, cfg.d_model)
        elif value_head is None:
            value_head = nn.Linear(d, d, bias=False)
            with torch.no_grad():
                value_head.weight.copy_(torch.eye(d))
        if tuple(value_head.weight.shape) != (cfg.d_model, d):
            raise CheckpointError(
                f"value_head must map the AR's width {d} to d_model {cfg.d_model} (weight [{cfg.d_model}, {d}]), "
                f"got weight {list(value_head.weight.shape)}."
            )
        self.value_head = value_head.to(next(causal_lm.parameters()).dtype)
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.max_length = max_length

    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    @property
    def _inner(self) -> nn.Module:
        """The decoder stack (norm replaced by identity), not registered twice as a submodule."""
        base = self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone
        return decoder_stack(base)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def from_base(cls, causal_lm: Any, tokenizer: Any, cfg: NLAMeta, **kwargs: Any) -> ActivationReconstructor:
        """Build an untrained AR from a full base LM: truncate to ``cfg.n_kept_blocks`` blocks (K + 1,
        or ``kept_blocks`` on another architecture), identity head (a semi-orthogonal one from the
        AR's width to ``d_model`` when they differ)."""
        if cfg.n_kept_blocks is None:
            raise InputError("The AR sidecar needs the extraction layer K (cfg.layer).")
        return cls(truncate_causal_lm(causal_lm, cfg.n_kept_blocks), tokenizer, cfg, **kwargs)

    # -- text -> tokens ---------------------------------------------------------------------
    def encode(self, explanations: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize AR prompts, right-padded.

        Returns:
            ``(input_ids [B, T], attention_mask [B, T])``.

        Raises:
            InputError: An empty or non-string explanation.
        """
        if isinstance(explanations, str):
            raise InputError("explanations must be a list of strings; wrap a single one in a list.")
        rows = []
        cut = 0
        for index, text in enumerate(explanations):
            if not isinstance(text, str) or not text.strip():
                raise InputError(
                    f"explanations[{index}] is empty or not a string ({text!r:.40}); "
                    "an AR needs text to reconstruct from."
                )
            ids = self.tokenizer(self.cfg.ar_prompt(text), add_special_tokens=True)["input_ids"]
            if len(ids) > self.max_length:
                ids = self._truncate(text)
                cut += 1
            rows.append(ids)
        if cut:
            warnings.warn(
                f"{cut} explanation(s) longer than the AR's {self.max_length}-token context were "
                "truncated (the template's closing tokens are kept).",
                stacklevel=3,
            )
        width = max(map(len, rows))
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        return input_ids, mask

    def _truncate(self, text: str) -> list[int]:
        """Shorten the explanation (not the template) until the prompt fits ``max_length``."""
        frame = self.tokenizer(self.cfg.ar_prompt(""), add_special_tokens=True)["input_ids"]
        budget = max(1, self.max_length - len(frame) - 2)
        words = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        while True:
            short = self.tokenizer.decode(words[:budget], skip_special_tokens=True)
            ids = self.tokenizer(self.cfg.ar_prompt(short), add_special_tokens=True)["input_ids"]
            if len(ids) <= self.max_length or budget <= 1:
                return ids[-self.max_length :]
            budget -= len(ids) - self.max_length

    def suffix_ids(self) -> list[int] | None:
        """Token ids every AR prompt ends in: the template after ``{explanation}`` (plus any special
        token the tokenizer appends), as the published sidecars record them (``tokens.critic_suffix_ids``).

        Found as the common tail of prompts around explanations that end differently, so it never
        reaches into an explanation's own tokens; ``None`` if they share no tail.
        """
        probes = ("a", "The cat sat.", "x = 1)", "über 42!", "\n")
        rows = [self.tokenizer(self.cfg.ar_prompt(p), add_special_tokens=True)["input_ids"] for p in probes]
        n = 0
        while n < min(map(len, rows)) and len({row[-n - 1] for row in rows}) == 1:
            n += 1
        return [int(i) for i in rows[0][len(rows[0]) - n :]] or None

    # -- forward ----------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Predict vectors ``[B, d]`` from right-padded prompts ``[B, T]`` (read at the last real token)."""
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        hidden = self._inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        last = attention_mask.sum(dim=1) - 1
        return self.value_head(hidden[torch.arange(len(hidden), device=hidden.device), last])

    def reconstruct(self, explanations: Sequence[str], *, batch_size: int = 16) -> torch.Tensor:
        """Vectors ``[N, d]`` (fp32, CPU) predicted from explanations, without gradients.

        An empty (or missing) explanation is read as :data:`EMPTY_EXPLANATION`, so every round trip
        (``NLA.round_trip``, the held-out metrics, the explorer, the analyses) scores it the same way.
        """
        if isinstance(explanations, str):
            raise InputError("explanations must be a list of strings; wrap a single one in a list.")
        explanations = _readable(explanations)
        outputs = []
        with torch.no_grad():
            for start in range(0, len(explanations), batch_size):
                ids, mask = self.encode(list(explanations[start : start + batch_size]))
                outputs.append(self(ids, mask).float().cpu())
        if not outputs:
            raise InputError("No explanations given.")
        return torch.cat(outputs)

    # -- checkpoints --------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the published AR layout (or a PEFT adapter folder) plus ``value_head.safetensors``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg
        if hasattr(self.backbone, "peft_config"):
            self.backbone.save_pretrained(path)
            # The truncated base's config (K+1 blocks) beside the adapters says what they apply to, and
            # the adapter config names no loadable base: transformers and peft (4.57 and 5.x) would
            # otherwise build the whole base by that name, silently. The base is the sidecar's.
            # Full folders come from `nla-lens export`.
            self.backbone.get_base_model().config.save_pretrained(path)
            base = seal_adapter_base(path, cfg.n_kept_blocks)
            if base and not cfg.provenance.get("base_model"):
                cfg = dataclasses.replace(cfg, provenance={**cfg.provenance, "base_model": base})
        else:
            prefix = "model." if hasattr(self.backbone, "model") else "transformer."
            state = {prefix + k: v.detach().contiguous() for k, v in self._inner.state_dict().items()}
            state.update({prefix + k: v for k, v in self._final_norm_state.items()})
            save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
            config = copy.deepcopy(self.backbone.config)
            config.tie_word_embeddings = True  # no lm_head is stored: the embeddings stand in
            config.save_pretrained(path)
        save_file({"weight": self.value_head.weight.detach().float().contiguous()}, str(path / VALUE_HEAD_FILE))
        self.tokenizer.save_pretrained(path)
        cfg.save(path / SIDECAR_NAME)
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
        **kwargs: Any,
    ) -> ActivationReconstructor:
        """Load an AR folder (published layout or PEFT adapter) with its sidecar, validated.

        Only the K+1 kept blocks are ever built: a full folder holds just those, and the base of
        an adapter folder is loaded with ``num_hidden_layers = K+1``.

        Args:
            path: The folder.
            dtype: Parameter dtype (default: the dtype it was saved in).
            device: Move the model here (default: where it loads, the CPU without ``device_map``).
            device_map: accelerate placement (``"auto"`` or a map).
            is_trainable: Load LoRA adapters trainable.
            **kwargs: Passed to the constructor (``max_length``).
        """
        path = Path(path)
        check_model_folder(path, role="AR")
        meta = NLAMeta.load(path)
        kept = recorded_blocks(path) if meta.layer is None else None
        if kept:
            # The published docs' form: an AR folder whose config keeps K+1 blocks (a full model,
            # or LoRA adapters beside their truncated base's config).
            meta = dataclasses.replace(meta, layer=kept - 1)
        head_file = path / VALUE_HEAD_FILE
        if not head_file.is_file():
            raise CheckpointError(f"{path} has no {VALUE_HEAD_FILE}: the AR's trained head is missing.")
        model, tokenizer = load_lm_folder(
            path,
            meta.provenance,
            dtype=dtype,
            device_map=device_map,
            is_trainable=is_trainable,
            n_blocks=meta.n_kept_blocks,
        )
        weight = load_file(str(head_file)).get("weight")
        d = text_config(model).hidden_size
        if weight is None or tuple(weight.shape) != (meta.d_model, d):
            raise CheckpointError(
                f"{head_file} must hold one 'weight' of shape [d_model, the model's hidden size] = "
                f"[{meta.d_model}, {d}] (d_model from the sidecar), got {None if weight is None else tuple(weight.shape)}. "
                "Check that the sidecar's d_model is the width of the explained vectors."
            )
        head = nn.Linear(d, meta.d_model, bias=False)
        with torch.no_grad():
            head.weight.copy_(weight)
        head = head.to(next(model.parameters()).device)
        ar = cls(model, tokenizer, meta, head, **kwargs)
        return (ar.to(device) if device is not None and device_map is None else ar).eval()
