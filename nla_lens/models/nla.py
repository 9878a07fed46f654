"""``NLA``: the verbalizer and reconstructor pair, with round trips and checkpoints.

A saved NLA is a folder with two published-layout subfolders, ``av/`` and ``ar/``, each a
Hugging Face folder (or PEFT adapter folder) with its own ``nla_meta.yaml``; the pair is written
into a temporary folder and renamed into place, so an interrupted save leaves nothing partial.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from nla_lens.atomic import atomic_folder
from nla_lens.errors import CheckpointError, InputError
from nla_lens.hooks import resolve_hook_name
from nla_lens.injection import choose_marker
from nla_lens.metrics import score_round_trip
from nla_lens.models.loading import lm_shape, load_base_lm
from nla_lens.models.reconstructor import ActivationReconstructor
from nla_lens.models.verbalizer import RESPONSE_PREFIX, ActivationVerbalizer
from nla_lens.schema import NLAMeta
from nla_lens.subjects.activations import PromptActivations, prompt_activations
from nla_lens.subjects.embedded import SMOLLM2
from nla_lens.subjects.hook_check import check_subject

if TYPE_CHECKING:
    from nla_lens.analysis.difference import Comparison
    from nla_lens.subjects.adapters import SubjectModel

EMBEDDED_INJECTION_SCALE = 240.0
"""Median L2 norm of SmolLM2-135M ``blocks.20.hook_resid_post`` on the embedded corpus (~237)."""


class NLA:
    """A Natural Language Autoencoder: ``av`` (vector -> text) and ``ar`` (text -> vector).

    Args:
        av: The activation verbalizer.
        ar: The activation reconstructor.
    """

    def __init__(self, av: ActivationVerbalizer, ar: ActivationReconstructor):
        if av.d_model != ar.d_model:
            raise CheckpointError(
                f"The AV explains d_model={av.d_model} vectors but the AR predicts d_model={ar.d_model}: "
                "the halves come from different NLAs; load a matching av/ar pair."
            )
        if av.cfg.layer is not None and ar.cfg.layer is not None and av.cfg.layer != ar.cfg.layer:
            raise CheckpointError(
                f"The AV was trained at layer {av.cfg.layer} but the AR at layer {ar.cfg.layer}: the "
                "halves come from different NLAs; load a matching av/ar pair."
            )
        self.av = av
        self.ar = ar

    @property
    def d_model(self) -> int:
        return self.av.d_model

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook it explains: the AV sidecar's ``hook_name``, else the AR's.

        Each sidecar resolves it when loaded (``blocks.K.hook_resid_post`` for one that records
        only the extraction layer K, as the published ones do; :class:`~nla_lens.schema.NLAMeta`),
        and an AR always knows K, so this is always a hook name.
        """
        name = self.av.cfg.hook_name or self.ar.cfg.hook_name
        if name is None:  # unreachable for a loaded AR (it needs K); kept for the type
            raise CheckpointError(
                "The NLA records neither a hook name nor a layer; its checkpoint metadata is incomplete. "
                "Set extraction.hook_name in its nla_meta.yaml."
            )
        return name

    @property
    def layer(self) -> int | None:
        return self.ar.cfg.layer

    def __repr__(self) -> str:
        return (
            f"NLA(subject={self.av.cfg.subject_model!r}, hook_name={self.hook_name!r}, d_model={self.d_model}, "
            f"marker={self.av.cfg.tokens.injection_char!r}, injection_scale={self.av.cfg.injection_scale})"
        )

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def untrained(
        cls,
        base: str = SMOLLM2.name,
        *,
        layer: int = 20,
        injection_scale: float | None = None,
        subject_model: str | None = None,
        hook_name: str | None = None,
        base_models: tuple[Any, Any] | None = None,
        av_base: str | None = None,
        ar_base: str | None = None,
    ) -> NLA:
        """A fresh NLA for vectors at ``blocks.{layer}.hook_resid_post``: the starting point of training.

        Both halves are copies of an LM: the AV unchanged, the AR truncated to ``layer + 1`` blocks
        with an identity head. An instruct model reads the AV prompt through its chat template; a
        base model without one (the embedded ``"gemma3-270m"``) reads it as plain text after its BOS
        (``av_format="plain"`` in the sidecar).

        Across architectures (``av_base`` or ``ar_base`` other than the subject, with another
        width), the AV gets a learned input map from the subject's width to its own
        (:func:`~nla_lens.models.width_map.width_map`, semi-orthogonal at the start), and the AR
        keeps the blocks at the same relative depth (``round((layer + 1) * n_ar / n_subject)``) and a
        head from its width to the subject's. The sidecars record both widths
        (``cross_architecture``). Trainers train the map with the adapters.

        Args:
            base: The subject model and, unless ``av_base``/``ar_base`` say otherwise, the LM both
                halves start from (the embedded ``"smollm2-135m"`` and ``"gemma3-270m"`` need no network).
            layer: Extraction layer K of the subject model.
            injection_scale: L2 norm of injected vectors, in the AV's embedding space; about the
                median activation norm (default: 240 for the embedded SmolLM2 AV; required otherwise).
            subject_model: Id of the subject model recorded in the sidecars (default: ``base``).
            hook_name: TransformerLens hook name (default ``blocks.{layer}.hook_resid_post``).
            base_models: Two ``(model, tokenizer)`` pairs to use instead of loading the bases.
            av_base: The LM the AV starts from (default: ``base``).
            ar_base: The LM the AR starts from (default: ``base``).
        """
        av_base, ar_base = av_base or base, ar_base or base
        if injection_scale is None:
            if av_base != SMOLLM2.name or base != SMOLLM2.name:
                raise InputError(
                    "Pass injection_scale= (about the median norm of your vectors, e.g. "
                    "dataset.meta['norm_stats']['median'])."
                )
            injection_scale = EMBEDDED_INJECTION_SCALE
        (av_model, av_tok), (ar_model, ar_tok) = base_models or (load_base_lm(av_base), load_base_lm(ar_base))
        # The subject's width and depth: from a half built on it, else its config (registry or hub).
        d_subject, n_subject = lm_shape(av_model if base == av_base else ar_model if base == ar_base else base)
        fields = dict(
            layer=layer,
            hook_name=hook_name or resolve_hook_name(layer=layer).name,
            subject_model=subject_model or base,
            # A base model without a chat template (Gemma-3-270M) reads the prompt as plain text.
            av_format="chat" if getattr(av_tok, "chat_template", None) else "plain",
        )
        d_av, _ = lm_shape(av_model)
        av_meta = NLAMeta.for_tokenizer(
            av_tok,
            role="av",
            d_model=d_subject,
            injection_scale=injection_scale,
            marker=choose_marker(av_tok),
            av_prefill=RESPONSE_PREFIX,
            lm_d_model=d_av,
            provenance={"base_model": av_base, "stage": "untrained"},
            **fields,
        )
        d_ar, n_ar = lm_shape(ar_model)
        # An AR on another LM keeps the blocks at the subject layer's relative depth; on the subject's, K + 1.
        kept = max(1, round((layer + 1) * n_ar / n_subject)) if ar_base != base else layer + 1
        ar_meta = NLAMeta.for_tokenizer(
            ar_tok,
            role="ar",
            d_model=d_subject,
            injection_scale=None,
            marker=choose_marker(ar_tok),
            lm_d_model=d_ar,
            kept_blocks=kept if kept != layer + 1 else None,
            provenance={"base_model": ar_base, "stage": "untrained"},
            **fields,
        )
        av = ActivationVerbalizer(av_model, av_tok, av_meta)
        ar = ActivationReconstructor.from_base(ar_model, ar_tok, ar_meta)
        return cls(av, ar)

    # -- use ------------------------------------------------------------------------------------
    def explain(
        self,
        vectors: Any = None,
        *,
        text: str | None = None,
        positions: Any = None,
        subject: SubjectModel | None = None,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """Explanations of vectors, or of a text's tokens via the subject model.

        Args:
            vectors: ``[N, d_model]`` activations.
            text: A prompt to read activations from instead (needs ``subject``).
            positions: Token positions of ``text`` to explain (default: all but the first).
            subject: The subject model (a TransformerBridge/HookedTransformer/nnsight model).
            **kwargs: Passed to :meth:`ActivationVerbalizer.verbalize`.

        Returns:
            The :meth:`~ActivationVerbalizer.verbalize` DataFrame; for text, with ``position``
            and ``token`` columns.
        """
        read = self._read_text(text, positions, subject) if text is not None else None
        if read is None and vectors is None:
            raise InputError("Pass vectors, or text= with subject=.")
        frame = self.av.verbalize(vectors if read is None else read.vectors, **kwargs)
        return frame if read is None else read.label(frame)

    def _read_text(self, text: str, positions: Any, subject: SubjectModel | None) -> PromptActivations:
        """``text``'s activations at this NLA's hook (the subject checked against the NLA)."""
        if subject is None:
            raise InputError("explain(text=...) and round_trip(text=...) need subject= (e.g. nla_lens.load_subject()).")
        adapter, hook = check_subject(self, subject)
        return prompt_activations(adapter, text, hook, positions, stacklevel=3)

    def reconstruct(self, explanations: list[str], **kwargs: Any) -> torch.Tensor:
        """Vectors ``[N, d_model]`` rebuilt from explanations by the AR."""
        return self.ar.reconstruct(explanations, **kwargs)

    def round_trip(
        self,
        vectors: Any = None,
        *,
        text: str | None = None,
        positions: Any = None,
        subject: SubjectModel | None = None,
        reference: Any = None,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """Explain, reconstruct, and score each vector (or each chosen token of ``text``).

        Args:
            vectors: ``[N, d_model]`` activations; or pass ``text`` + ``subject`` (+ ``positions``)
                to read them from the subject model at this NLA's hook.
            reference: Whose mean direction ``gain`` is measured against: vectors ``[m, d_model]``,
                an ``ActivationDataset``, or the mean vector ``[d_model]`` (default: the vectors
                of this round trip; with a single vector ``gain`` is NaN).
            **kwargs: Passed to :meth:`ActivationVerbalizer.verbalize`.

        Returns:
            The verbalize DataFrame plus, per row, ``mse`` (normalised, 2(1-cos)), ``cosine`` and
            ``gain`` (:func:`~nla_lens.metrics.gain_over_mean`: 1 perfect, 0 no better than the mean
            direction) (and ``position``/``token`` for text); ``frame.attrs["report"]`` holds fve_nrm
            and its shuffled control over the batch when there are more than two rows.
        """
        read = self._read_text(text, positions, subject) if text is not None else None
        if read is None and vectors is None:
            raise InputError("Pass vectors, or text= with subject=.")
        vectors = vectors if read is None else read.vectors
        frame = self.av.verbalize(vectors, **kwargs)  # validates the vectors (width, finite, non-zero)
        targets = torch.as_tensor(vectors).float().reshape(-1, self.d_model)  # [N, d_model], as verbalize read them
        scores = score_round_trip(self.ar, frame["explanation"], targets[torch.tensor(frame["vector"].to_numpy())])
        frame["mse"], frame["cosine"] = scores.mse.numpy(), scores.cosine.numpy()
        frame["gain"] = scores.gain(reference).numpy()
        if len(frame) > 2:
            frame.attrs["report"] = scores.summary(generator=None)
        return frame if read is None else read.label(frame)

    def compare(self, a: Any, b: Any, **kwargs: Any) -> Comparison:
        """Two activations (``[d_model]`` each, or two texts with ``subject=``) explained side by side:
        the snippets and words that change, both reconstructions, and a control.

        See :func:`nla_lens.analysis.difference.compare` for the arguments (``subject``,
        ``positions``, ``control``, ``labels``, ``seed``, verbalize options).
        """
        from nla_lens.analysis.difference import compare

        return compare(self, a, b, **kwargs)

    def explain_direction(self, direction: Any, **kwargs: Any) -> Comparison:
        """A direction ``[d_model]`` (steering vector, SAE decoder row, probe) explained: typical
        activations (``vectors=``, ``[n, d_model]`` or an ``ActivationDataset``) with and without it,
        and a random direction of the same norm as the control.

        See :func:`nla_lens.analysis.difference.explain_direction` for the arguments (``vectors``,
        ``strength``, ``control``, ``seed``, verbalize options).
        """
        from nla_lens.analysis.difference import explain_direction

        return explain_direction(self, direction, **kwargs)

    # -- checkpoints ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, *, merged: bool = False, overwrite: bool = True) -> Path:
        """Write ``path/av`` and ``path/ar`` atomically (nothing is left behind on failure).

        Args:
            path: The folder (replaced as a whole if it exists).
            merged: Write full folders in the published layout, LoRA adapters merged into copies
                (the live NLA keeps them): the files ``nla-lens export`` writes, which the published
                tools and transformers 4.57 and 5.x read (:func:`~nla_lens.models.export.export_merged`).
                Default: nla_lens's own checkpoint (adapter folders stay adapters, to keep training).
            overwrite: With ``merged=True``, replace a non-empty ``path`` (else refused, as by
                ``nla-lens export`` without ``--overwrite``).

        Returns:
            ``path``.
        """
        if merged:
            from nla_lens.models.export import export_merged

            return export_merged(self, path, overwrite=overwrite)
        with atomic_folder(path) as tmp:
            self.av.save_pretrained(tmp / "av")
            self.ar.save_pretrained(tmp / "ar")
        return Path(path)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        av: str | Path | None = None,
        ar: str | Path | None = None,
        cache_dir: str | Path | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> NLA:
        """Load an NLA: by registry name, hub id, local folder, or its two halves separately.

        Args:
            name_or_path: A registry name (``nla_lens.list_pretrained()``, e.g. ``"smollm2-135m-L20"``,
                ``"qwen2.5-7b-L20"``), a hub id of an NLA repo holding ``av/`` and ``ar/``, or a local
                folder written by :meth:`save_pretrained`. ``None`` with neither ``av`` nor ``ar``:
                the NLA shipped for the embedded model.
            av: Source of the verbalizer alone (a hub id or a folder); released pairs are two repos.
            ar: Source of the reconstructor alone.
            cache_dir: Hugging Face cache folder for hub ids (default: the hub's own).
            revision: Hub revision of hub ids.
            token: Hub token for gated or private repos (default: the logged-in one).
            **kwargs: Passed to both halves' ``from_pretrained`` (``dtype``, ``device``, ...).

        Raises:
            CheckpointError: An unknown name (the known ones listed), a folder that is not an NLA,
                a gated or missing hub repo, or halves that do not pair (``d_model`` or layer).
        """
        from nla_lens.models.registry import DEFAULT_PRETRAINED, get_pretrained, is_registry_name, resolve_source

        def fetch(source: str | Path) -> Path:
            return resolve_source(source, cache_dir=cache_dir, revision=revision, token=token)

        if (av is None) != (ar is None):
            raise InputError("Pass both av= and ar= (the two halves), or neither.")
        if av is not None and ar is not None:
            if name_or_path is not None:
                raise InputError("Pass either a name/path or av= and ar=, not both.")
            av_dir, ar_dir = fetch(av), fetch(ar)
        else:
            name = DEFAULT_PRETRAINED if name_or_path is None else str(name_or_path)
            # A folder wins over a registry name; a name that is neither a folder nor a hub id
            # ("org/repo") goes to the registry, which lists the known names when it is unknown.
            if not Path(name).expanduser().is_dir() and (is_registry_name(name) or "/" not in name):
                entry = get_pretrained(name)  # an unknown name is refused here, the known ones listed
                av_dir, ar_dir = fetch(entry.av), fetch(entry.ar)
            else:
                folder = fetch(name)
                av_dir, ar_dir = folder / "av", folder / "ar"
                if (folder / "nla_meta.yaml").is_file() and not av_dir.is_dir():
                    role = NLAMeta.load(folder).role or "one half"
                    raise CheckpointError(
                        f"{name} holds one half of an NLA ({role}), not the pair: pass both "
                        "halves as NLA.from_pretrained(av=..., ar=...) (released pairs are two "
                        "repos), or use a registry name (nla_lens.list_pretrained())."
                    )
                for role, sub in (("av", av_dir), ("ar", ar_dir)):
                    if not sub.is_dir():
                        raise CheckpointError(
                            f"{name} is not an NLA folder: {role}/ is missing. An NLA folder holds av/ and ar/, each "
                            "an HF folder with nla_meta.yaml; for a pair kept in two places pass av=... and ar=..., "
                            "or use a registry name (nla_lens.list_pretrained())."
                        )
        return cls(
            ActivationVerbalizer.from_pretrained(av_dir, **kwargs),
            ActivationReconstructor.from_pretrained(ar_dir, **kwargs),
        )
