"""The ``nla_meta.yaml`` sidecar contract: one dataclass, YAML IO, validation against a tokenizer.

Every NLA checkpoint is a plain Hugging Face folder plus ``nla_meta.yaml``. :class:`NLAMeta`
is the only place its fields are defined. It reads the published format unchanged (``kind``,
``role`` with the older ``actor``/``critic`` spellings, ``d_model``, ``extraction``,
``tokens``, ``prompt_templates`` with ``av``/``ar`` or ``actor``/``critic``, and the
extraction layer K as top-level ``extraction_layer_index`` or ``critic.extraction_layer_index``
/ ``critic.num_hidden_layers``), adds our own optional fields (``subject_model``,
``extraction.layer``, ``extraction.hook_name``, ``extraction.norm_range``, ``provenance``) and keeps
every unknown key on a round trip. One field of ours changes behaviour: ``prompt_templates.av_prefill``, the text an AV
was trained to see after the chat template (nla_lens writes ``<explanation>``); absent means the
published behaviour, nothing after the template. :meth:`NLAMeta.validate` checks the sidecar against the live tokenizer and model
config before anything trusts it.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from nla_lens.errors import CheckpointError, MarkerError
from nla_lens.hooks import resolve_hook_name
from nla_lens.injection import choose_marker, marker_neighbors
from nla_lens.norm_range import NormRange

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_AR_TEMPLATE", "DEFAULT_AV_TEMPLATE", "SIDECAR_NAME", "VERBOSE_AV_TEMPLATE", "NLAMeta", "TokenMeta"]

SIDECAR_NAME = "nla_meta.yaml"

#: Default AV prompt (user turn of a chat): the marker inside ``<concept>…</concept>``, near the end.
#: Short on purpose: every log-prob pass of training reads the prompt, and with the marker late
#: only the few tokens after it differ between vectors (the part before it is computed once per
#: batch, :meth:`~nla_lens.models.verbalizer.ActivationVerbalizer.logprobs`). A trained AV writes
#: what its warm start taught it, so the instruction needs no detail.
DEFAULT_AV_TEMPLATE = "Explain the vector <concept>{injection_char}</concept> in short snippets."

#: The AV prompt of nla_lens 0.1 (the embedded NLA shipped before 0.2 was trained on it; its
#: sidecar carries it, so that AV is still driven with it).
VERBOSE_AV_TEMPLATE = (
    "Explain the residual-stream vector <concept>{injection_char}</concept> in two or three short "
    "snippets inside <explanation></explanation>: what the model would use to predict the next "
    "token, the last one about the current token."
)

#: Default AR prompt (raw string, read at its last token), as published.
DEFAULT_AR_TEMPLATE = "Summary of the following text: <text>{explanation}</text> <summary>"

_ROLE_ALIASES = {"av": "av", "actor": "av", "ar": "ar", "critic": "ar"}
_KINDS = ("nla_model", "nla_dataset")
_SQRT_D = "sqrt_d_model"
_TOKEN_KEYS = ("injection_char", "injection_token_id", "injection_left_neighbor_id", "injection_right_neighbor_id")
_RESID_POST_RE = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def _fail(where: str, problem: str) -> CheckpointError:
    return CheckpointError(f"nla_meta {where}: {problem}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is not None and not isinstance(value, dict):
        raise _fail(where, f"must be a mapping, got {type(value).__name__}.")
    return dict(value or {})


def _resolve_scale(raw: Any, d_model: int, name: str) -> float | None:
    """Published scale values: null (raw vectors), ``"sqrt_d_model"``, or a number."""
    if raw is None or raw in ("raw", "none"):
        return None
    if raw == _SQRT_D:
        return math.sqrt(d_model)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise _fail(f"extraction.{name}", f"must be null, {_SQRT_D!r} or a number, got {raw!r}.") from None
    if not (math.isfinite(value) and value > 0):
        raise _fail(f"extraction.{name}", f"must be a positive number, got {raw!r}.")
    return value


@dataclass
class TokenMeta:
    """The ``tokens:`` section: the marker and its neighbours in the AV prompt.

    Attributes:
        injection_char: Marker string written into the AV template.
        injection_token_id: Its single token id.
        injection_left_neighbor_id: Token id just before the marker in the rendered AV prompt.
        injection_right_neighbor_id: Token id just after it.
        critic_suffix_ids: Published optional sanity check of the AR prompt's last tokens.
        extra: Unknown keys of the section, kept on a round trip.
    """

    injection_char: str
    injection_token_id: int
    injection_left_neighbor_id: int
    injection_right_neighbor_id: int
    critic_suffix_ids: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _TOKEN_KEYS}
        if self.critic_suffix_ids is not None:
            out["critic_suffix_ids"] = list(self.critic_suffix_ids)
        return {**out, **copy.deepcopy(self.extra)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenMeta:
        data = _mapping(data, "tokens")
        missing = [k for k in _TOKEN_KEYS if data.get(k) is None]
        if missing:
            raise _fail(
                "tokens",
                f"missing {missing}. Re-create the sidecar with "
                "NLAMeta.for_tokenizer(...) or copy the fields from the training run.",
            )
        values = {k: data.pop(k) for k in _TOKEN_KEYS}
        suffix = data.pop("critic_suffix_ids", None)
        return cls(
            injection_char=str(values["injection_char"]),
            injection_token_id=int(values["injection_token_id"]),
            injection_left_neighbor_id=int(values["injection_left_neighbor_id"]),
            injection_right_neighbor_id=int(values["injection_right_neighbor_id"]),
            critic_suffix_ids=None if suffix is None else [int(i) for i in suffix],
            extra=data,
        )


@dataclass(frozen=True)
class NLAMeta:
    """One NLA checkpoint's sidecar (``nla_meta.yaml``), immutable (change a field with
    :func:`dataclasses.replace`, which checks the result again).

    Attributes:
        role: ``"av"`` (verbalizer) or ``"ar"`` (reconstructor); ``None`` only for dataset
            sidecars and old files that did not record it.
        d_model: Width of the explained vectors.
        tokens: The marker and its neighbours (:class:`TokenMeta`).
        injection_scale: L2 norm vectors are rescaled to before injection (AV; null for AR).
        mse_scale: L2 norm both vectors are rescaled to before the MSE (``sqrt(d)``; a value within
            0.1 % of it, such as a rounded one, is read as ``sqrt(d)``), or ``None`` for raw-magnitude MSE.
        layer: Extraction layer K (``blocks.K.hook_resid_post``); the AR keeps K+1 blocks. Read
            from ``hook_name`` when only that is given and it is a ``hook_resid_post``.
        hook_name: TransformerLens hook name the vectors come from. A sidecar that records only
            the layer (the published layout) gets ``blocks.{layer}.hook_resid_post`` here, resolved
            once when the meta is built (:func:`~nla_lens.hooks.resolve_hook_name`), so it is a
            string whenever ``layer`` or ``hook_name`` is recorded; ``None`` only when neither is
            (an AR folder whose layer comes from its config, before loading fills it in). To change
            ``layer`` with :func:`dataclasses.replace`, pass ``hook_name`` along (or ``None``).
        norm_range: L2-norm percentiles of the training vectors (:class:`~nla_lens.norm_range.NormRange`),
            recorded by nla_lens's trainers; ``None`` (released NLAs) checks no vector's norm.
        av_template: AV user-turn format string with ``{injection_char}``.
        ar_template: AR raw-prompt format string with ``{explanation}``.
        av_prefill: Text the AV reads after the chat-rendered template, before it writes (ours:
            ``"<explanation>"``); ``None`` = the published prompt, which has none.
        av_format: How the AV prompt is rendered (:func:`~nla_lens.injection.av_prompt_ids`):
            ``"chat"`` (the published layout: the tokenizer's chat template) or ``"plain"`` (the
            text after the tokenizer's BOS: a base model without a chat template, e.g. Gemma-3-270M).
            Written as ``prompt_templates.av_format`` only when ``"plain"``.
        subject_model: Id or path of the model the vectors come from.
        lm_d_model: Hidden size of this half's own LM when it differs from ``d_model``: a
            cross-architecture NLA, whose AV maps each vector into its embedding width with a learned
            input map and whose AR head maps its width back to ``d_model``. ``None`` (the published
            layout): the LM is as wide as the vectors, and there is no map. Written as
            ``cross_architecture.lm_d_model``.
        kept_blocks: Blocks an AR on another architecture keeps (its ``num_hidden_layers``), when
            not ``layer + 1``. Written as ``cross_architecture.kept_blocks``.
        provenance: Free-form training provenance (steps, data, versions).
        kind: ``"nla_model"`` (checkpoint) or ``"nla_dataset"`` (parquet sidecar).
        schema_version: Published schema version (2).
        extra: Unknown top-level keys, plus unknown keys of ``extraction`` /
            ``prompt_templates`` / ``critic`` under those names, kept on a round trip.
        hook_name_recorded: Whether the sidecar records ``extraction.hook_name`` itself; set to
            ``False`` when ``hook_name`` is resolved from ``layer``. :meth:`to_dict` writes the
            hook name only when it is recorded (or is not the layer's ``hook_resid_post``), so a
            layer-only sidecar is saved as it was read.
    """

    role: Literal["av", "ar"] | None
    d_model: int
    tokens: TokenMeta
    injection_scale: float | None = None
    mse_scale: float | None = _SQRT_D  # type: ignore[assignment]  # resolved to sqrt(d_model)
    layer: int | None = None
    hook_name: str | None = None
    norm_range: NormRange | None = None
    av_template: str | None = DEFAULT_AV_TEMPLATE
    ar_template: str | None = DEFAULT_AR_TEMPLATE
    av_prefill: str | None = None
    av_format: Literal["chat", "plain"] = "chat"
    subject_model: str | None = None
    lm_d_model: int | None = None
    kept_blocks: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    kind: str = "nla_model"
    schema_version: int = 2
    extra: dict[str, Any] = field(default_factory=dict)
    hook_name_recorded: bool = True

    def _set(self, name: str, value: Any) -> None:
        """Assign a field while the frozen meta is being built (``__post_init__`` only)."""
        object.__setattr__(self, name, value)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise _fail("kind", f"unknown kind {self.kind!r}; expected one of {_KINDS}.")
        if self.role is not None:
            if self.role not in _ROLE_ALIASES:
                raise _fail("role", f"unknown role {self.role!r}; expected 'av'/'ar' (or 'actor'/'critic').")
            self._set("role", _ROLE_ALIASES[self.role])
        if not isinstance(self.d_model, int) or isinstance(self.d_model, bool) or self.d_model <= 0:
            raise _fail("d_model", f"must be a positive integer, got {self.d_model!r}.")
        for name in ("injection_scale", "mse_scale"):
            self._set(name, _resolve_scale(getattr(self, name), self.d_model, name))
        if self.mse_scale is not None and math.isclose(self.mse_scale, math.sqrt(self.d_model), rel_tol=1e-3):
            # sqrt(d), written rounded as in the published docs (59.87 for d = 3584): read as sqrt(d).
            self._set("mse_scale", math.sqrt(self.d_model))
        if self.role == "av" and self.injection_scale is None:
            raise _fail(
                "extraction.injection_scale",
                "an AV sidecar needs the injection scale it "
                "was trained with (published 7B value: 150). Set it explicitly.",
            )
        if self.hook_name is not None:
            match = _RESID_POST_RE.match(self.hook_name)
            if match and self.layer is None:
                self._set("layer", int(match.group(1)))
            elif match and int(match.group(1)) != self.layer:
                raise _fail("extraction", f"hook_name {self.hook_name!r} is not at layer {self.layer}.")
        if self.norm_range is not None and not isinstance(self.norm_range, NormRange):
            self._set("norm_range", NormRange.from_dict(self.norm_range))
        if self.av_format not in ("chat", "plain"):
            raise _fail("prompt_templates.av_format", f"must be 'chat' or 'plain', got {self.av_format!r}.")
        if self.layer is not None and (not isinstance(self.layer, int) or self.layer < 0):
            raise _fail("extraction.layer", f"must be a non-negative integer, got {self.layer!r}.")
        if self.hook_name is None:
            # Only the layer recorded (the published layout): its hook_resid_post, resolved here once.
            self._set("hook_name_recorded", False)
            if self.layer is not None:
                self._set("hook_name", resolve_hook_name(layer=self.layer).name)
        for name in ("lm_d_model", "kept_blocks"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise _fail(f"cross_architecture.{name}", f"must be a positive integer, got {value!r}.")
        if self.lm_d_model == self.d_model:
            self._set("lm_d_model", None)  # as wide as the vectors: no map, the published layout

    @property
    def cross_architecture(self) -> bool:
        """Whether this half's LM is wider or narrower than the vectors it explains (a learned map between)."""
        return self.lm_d_model is not None

    @property
    def _resolved_hook(self) -> bool:
        """Whether ``hook_name`` is what ``layer`` alone resolves to (``blocks.{layer}.hook_resid_post``)."""
        return self.layer is not None and self.hook_name == resolve_hook_name(layer=self.layer).name

    @property
    def lm_width(self) -> int:
        """Hidden size of this half's own LM (``lm_d_model``, else ``d_model``)."""
        return self.lm_d_model or self.d_model

    @property
    def n_kept_blocks(self) -> int | None:
        """Blocks an AR keeps (its ``config.num_hidden_layers``): ``kept_blocks`` when recorded, else
        K+1; ``None`` if neither is known."""
        if self.kept_blocks is not None:
            return self.kept_blocks
        return None if self.layer is None else self.layer + 1

    # ---------------------------------------------------------------- prompts
    def av_prompt(self) -> str:
        """The AV's user-turn text: ``prompt_templates.av`` with the marker written in.

        Raises:
            CheckpointError: The sidecar has no AV template (:meth:`validate` refuses such an AV).
        """
        if self.av_template is None:
            raise _fail("prompt_templates", "av is missing; an AV needs the prompt it was trained on.")
        return self.av_template.format(injection_char=self.tokens.injection_char)

    def ar_prompt(self, explanation: str) -> str:
        """The AR's prompt around ``explanation``: ``prompt_templates.ar`` filled in.

        Raises:
            CheckpointError: The sidecar has no AR template (:meth:`validate` refuses such an AR).
        """
        if self.ar_template is None:
            raise _fail("prompt_templates", "ar is missing; an AR needs the prompt it was trained on.")
        return self.ar_template.format(explanation=explanation)

    # ---------------------------------------------------------------- dict / YAML
    def with_norm_range(self, vectors: torch.Tensor) -> NLAMeta:
        """This meta with the norm range of training ``vectors`` ``[n, d_model]`` recorded (``norm_range``).

        Every nla_lens trainer calls it for the halves it trains (``half.cfg =
        half.cfg.with_norm_range(vectors)``; the meta is frozen, so a new one is returned). The first
        training data a half sees fixes its range; a later stage (GRPO after the warm start, a resumed
        run) keeps it, since its vectors come from the same hook: then the meta itself is returned.
        """
        if self.norm_range is None and len(vectors):
            return replace(self, norm_range=NormRange.from_vectors(vectors))
        return self

    def to_dict(self) -> dict[str, Any]:
        """The sidecar as plain YAML-able data (published field names, ours added)."""
        extra = copy.deepcopy(self.extra)
        extraction: dict[str, Any] = {} if self.layer is None else {"layer": self.layer}
        if self.hook_name is not None and (self.hook_name_recorded or not self._resolved_hook):
            extraction["hook_name"] = self.hook_name
        extraction.update(injection_scale=self.injection_scale, mse_scale=self.mse_scale)
        if self.norm_range is not None:
            extraction["norm_range"] = self.norm_range.to_dict()
        if self.kind == "nla_dataset":
            extraction["d_model"] = self.d_model
        extraction.update(extra.pop("extraction", {}))
        templates = {
            k: v
            for k, v in (("av", self.av_template), ("ar", self.ar_template), ("av_prefill", self.av_prefill))
            if v is not None
        }
        if self.av_format != "chat":
            templates["av_format"] = self.av_format
        templates.update(extra.pop("prompt_templates", {}))
        out: dict[str, Any] = {"kind": self.kind, "schema_version": self.schema_version}
        if self.role is not None:
            out["role"] = self.role
        if self.kind == "nla_model":
            out["d_model"] = self.d_model
        out["extraction"] = extraction
        out["tokens"] = self.tokens.to_dict()
        out["prompt_templates"] = templates
        critic = extra.pop("critic", {})
        if self.layer is not None:
            out["extraction_layer_index"] = self.layer  # as in the released sidecars
            if self.role == "ar":
                critic = {"extraction_layer_index": self.layer, **critic}
        if critic:
            out["critic"] = critic
        if self.subject_model is not None:
            out["subject_model"] = self.subject_model
        cross = {k: v for k, v in (("lm_d_model", self.lm_d_model), ("kept_blocks", self.kept_blocks)) if v}
        if cross:
            out["cross_architecture"] = cross
        if self.provenance:
            out["provenance"] = copy.deepcopy(self.provenance)
        return {**out, **extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NLAMeta:
        """Parse published or nla_lens sidecar data.

        Raises:
            CheckpointError: Missing or malformed fields, with the field named.
        """
        if not isinstance(data, dict):
            raise CheckpointError(f"nla_meta must be a YAML mapping, got {type(data).__name__}.")
        data = copy.deepcopy(data)
        kind = data.pop("kind", None)
        if kind not in _KINDS:
            raise _fail(
                "kind", f"got {kind!r}; expected 'nla_model' (a checkpoint) or 'nla_dataset'. Is this an NLA sidecar?"
            )
        extraction = _mapping(data.pop("extraction", None), "extraction")
        d_model = (data if kind == "nla_model" else extraction).pop("d_model", None)
        extraction.pop("d_model", None)
        if d_model is None:
            raise _fail("d_model", "is missing; it must be the width of the explained vectors.")
        d_model = int(d_model)
        tokens = TokenMeta.from_dict(data.pop("tokens", None))
        templates = _mapping(data.pop("prompt_templates", None), "prompt_templates")
        av, actor = templates.pop("av", None), templates.pop("actor", None)
        ar, critic_template = templates.pop("ar", None), templates.pop("critic", None)
        av_prefill = templates.pop("av_prefill", None)
        av_format = templates.pop("av_format", "chat")
        critic = _mapping(data.pop("critic", None), "critic")
        layers = [
            extraction.pop("layer", None),
            extraction.pop("layer_index", None),
            data.pop("extraction_layer_index", None),
            critic.pop("extraction_layer_index", None),
            critic.pop("num_hidden_layers", None),  # schema v1: also K, not K+1
        ]
        found = {int(v) for v in layers if v is not None}
        if len(found) > 1:
            raise _fail("extraction", f"records conflicting extraction layers {sorted(found)}.")
        hook_name = extraction.pop("hook_name", None) or extraction.pop("hook", None) or data.pop("hook_name", None)
        norm_range = extraction.pop("norm_range", None)
        cross = _mapping(data.pop("cross_architecture", None), "cross_architecture")
        extra = data
        for name, rest in (("extraction", extraction), ("prompt_templates", templates), ("critic", critic)):
            rest = {k: v for k, v in rest.items() if k not in ("injection_scale", "mse_scale")}
            if rest:
                extra[name] = rest
        return cls(
            role=extra.pop("role", None),
            d_model=d_model,
            tokens=tokens,
            injection_scale=_resolve_scale(extraction.get("injection_scale"), d_model, "injection_scale"),
            mse_scale=_resolve_scale(extraction.get("mse_scale", _SQRT_D), d_model, "mse_scale"),
            layer=found.pop() if found else None,
            hook_name=hook_name,
            norm_range=None if norm_range is None else NormRange.from_dict(norm_range),
            av_template=av if av is not None else actor,
            ar_template=ar if ar is not None else critic_template,
            av_prefill=av_prefill,
            av_format=av_format,
            subject_model=extra.pop("subject_model", None),
            lm_d_model=cross.pop("lm_d_model", None),
            kept_blocks=cross.pop("kept_blocks", None),
            provenance=extra.pop("provenance", None) or {},
            kind=kind,
            schema_version=int(extra.pop("schema_version", 2)),
            extra=extra,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file, then ``os.replace``) to a checkpoint folder's
        ``nla_meta.yaml`` or to a ``.yaml`` file path; return the path written."""
        target = _sidecar_path(path, for_writing=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        fd, tmp = tempfile.mkstemp(prefix=".nla_meta.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NLAMeta:
        """Read a sidecar from a checkpoint folder or a YAML file path.

        Raises:
            CheckpointError: No sidecar there, unreadable YAML, or malformed fields.
        """
        target = _sidecar_path(path, for_writing=False)
        if not target.is_file():
            raise CheckpointError(
                f"no {SIDECAR_NAME} at {str(path)!r}. An NLA checkpoint is a Hugging "
                f"Face folder plus {SIDECAR_NAME} (marker, scales, templates); ask "
                "for the sidecar if the folder came without it."
            )
        try:
            data = yaml.safe_load(target.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise CheckpointError(f"{target} is not valid YAML: {err}") from err
        return cls.from_dict(data)

    def validate(self, tokenizer: Any, *, d_model: int | None = None, n_hidden_layers: int | None = None) -> None:
        """Check the sidecar against the live tokenizer (and model config, when given).

        Checks: the marker encodes to exactly ``[injection_token_id]``; the role's template is
        present and has its placeholder; the AV template, rendered with the tokenizer's chat
        template, contains the marker once, between the recorded neighbours; ``d_model``
        matches; for an AR, ``n_hidden_layers`` equals the K+1 kept blocks.

        Args:
            tokenizer: The Hugging Face tokenizer the checkpoint will be used with.
            d_model: The model's hidden size, to compare with ``d_model``.
            n_hidden_layers: The AR's ``config.num_hidden_layers``.

        Raises:
            CheckpointError: Every problem found, one per line, each with a fix.
        """
        problems = [
            msg
            for msg, bad in (
                (
                    "prompt_templates.av has no '{injection_char}' placeholder for the marker.",
                    self.av_template is not None and "{injection_char}" not in self.av_template,
                ),
                (
                    "prompt_templates.ar has no '{explanation}' placeholder.",
                    self.ar_template is not None and "{explanation}" not in self.ar_template,
                ),
                (
                    "prompt_templates.av is missing; an AV needs the prompt it was trained on.",
                    self.role == "av" and self.av_template is None,
                ),
                (
                    "prompt_templates.ar is missing; an AR needs the prompt it was trained on.",
                    self.role == "ar" and self.ar_template is None,
                ),
            )
            if bad
        ]
        problems = self._marker_problems(tokenizer, check_prompt=not problems) + problems
        problems += self._suffix_problems(tokenizer)
        if d_model is not None and int(d_model) != self.lm_width:
            problems.append(
                f"cross_architecture.lm_d_model is {self.lm_d_model} in the sidecar but the model has hidden size "
                f"{d_model}. The folder holds another LM than the one this half was trained on."
                if self.cross_architecture
                else f"d_model is {self.d_model} in the sidecar but the model has hidden size "
                f"{d_model}. This NLA explains vectors of another model or layer width."
            )
        if self.role == "ar" and n_hidden_layers is not None and self.n_kept_blocks != int(n_hidden_layers):
            problems.append(
                "the AR sidecar records no extraction layer K (extraction.layer or "
                "extraction_layer_index), so its kept blocks cannot be checked. Add it."
                if self.layer is None
                else f"the AR keeps K+1 = {self.n_kept_blocks} blocks for layer K = {self.layer}, but its "
                f"config has num_hidden_layers = {n_hidden_layers}. The folder holds a differently "
                "truncated model; re-save it or fix extraction.layer."
            )
        if problems:
            raise CheckpointError("nla_meta does not match the model/tokenizer:\n- " + "\n- ".join(problems))

    def _suffix_problems(self, tokenizer: Any) -> list[str]:
        """The published ``tokens.critic_suffix_ids``: the AR prompt must end in exactly these ids."""
        want = self.tokens.critic_suffix_ids
        if not want or self.ar_template is None or "{explanation}" not in self.ar_template:
            return []
        ids = list(tokenizer(self.ar_template.format(explanation="x"), add_special_tokens=True)["input_ids"])
        if ids[-len(want) :] == list(want):
            return []
        return [
            f"the AR prompt ends in token ids {ids[-len(want) :]} with this tokenizer, but the sidecar records "
            f"{list(want)} (tokens.critic_suffix_ids): the AR would read its summary at another token. Use the "
            "checkpoint's own tokenizer and prompt_templates.ar."
        ]

    def _marker_problems(self, tokenizer: Any, *, check_prompt: bool) -> list[str]:
        tok = self.tokens
        try:
            live: list[Any] = list(tokenizer.encode(tok.injection_char, add_special_tokens=False))
        except Exception as err:
            live = [f"error: {err}"]
        if live != [tok.injection_token_id] or live[0] == getattr(tokenizer, "unk_token_id", None):
            return [
                f"marker {tok.injection_char!r} encodes to {live} (unknown-token id: "
                f"{getattr(tokenizer, 'unk_token_id', None)}) with this tokenizer, but the "
                f"sidecar records [{tok.injection_token_id}] (tokens.injection_token_id). Load the "
                "tokenizer from the checkpoint folder; a different tokenizer or vocabulary makes "
                "the AV read the literal marker."
            ]
        # An AR's tokenizer need not render chats; the marker check above is all it can get.
        if (
            not check_prompt
            or self.av_template is None
            or (self.role == "ar" and self.av_format == "chat" and not getattr(tokenizer, "chat_template", None))
        ):
            return []
        try:
            left, right = marker_neighbors(
                tokenizer, self.av_template, tok.injection_char, tok.injection_token_id, self.av_format
            )
        except MarkerError as err:
            return [str(err)]
        if (left, right) == (tok.injection_left_neighbor_id, tok.injection_right_neighbor_id):
            return []
        return [
            f"the AV prompt tokenizes to neighbours ({left}, {right}) around the marker, but the "
            f"sidecar records ({tok.injection_left_neighbor_id}, {tok.injection_right_neighbor_id}) "
            "(tokens.injection_left/right_neighbor_id). The template or the tokenizer changed; "
            "use the checkpoint's own tokenizer and template, or re-record the neighbours with "
            "nla_lens.injection.marker_neighbors()."
        ]

    @classmethod
    def for_tokenizer(
        cls,
        tokenizer: Any,
        *,
        role: Literal["av", "ar"],
        d_model: int,
        injection_scale: float | None,
        marker: Any | None = None,
        **fields: Any,
    ) -> NLAMeta:
        """Build a sidecar for a new NLA: choose the marker and record its neighbours.

        Args:
            tokenizer: The AV/AR tokenizer.
            role: ``"av"`` or ``"ar"``.
            d_model: Width of the explained vectors.
            injection_scale: Injection L2 norm (required for an AV).
            marker: A :class:`~nla_lens.injection.MarkerChoice`; chosen with
                :func:`~nla_lens.injection.choose_marker` when ``None``.
            **fields: Other :class:`NLAMeta` fields (``layer``, ``hook_name``, templates, ...).
        """
        marker = marker if marker is not None else choose_marker(tokenizer)
        av_template = fields.setdefault("av_template", DEFAULT_AV_TEMPLATE)
        left, right = marker_neighbors(
            tokenizer, av_template, marker.char, marker.token_id, fields.get("av_format", "chat")
        )
        tokens = TokenMeta(marker.char, marker.token_id, left, right)
        return cls(role=role, d_model=d_model, tokens=tokens, injection_scale=injection_scale, **fields)


def _sidecar_path(path: str | os.PathLike[str], *, for_writing: bool) -> Path:
    p = Path(path)
    if p.is_dir() or (for_writing and not p.exists() and p.suffix not in (".yaml", ".yml")):
        return p / SIDECAR_NAME
    return p
