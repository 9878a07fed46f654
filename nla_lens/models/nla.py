"""``NLA``: the verbalizer and reconstructor pair, with round trips and checkpoints.

A saved NLA is a folder with two published-layout subfolders, ``av/`` and ``ar/``, each a
Hugging Face folder (or PEFT adapter folder) with its own ``nla_meta.yaml``; the pair is written
into a temporary folder and renamed into place, so an interrupted save leaves nothing partial.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nla_lens.errors import CheckpointError, InputError
from nla_lens.injection import choose_marker
from nla_lens.metrics import cosine, normalized_mse, reconstruction_report
from nla_lens.atomic import atomic_folder
from nla_lens.models.loading import load_base_lm
from nla_lens.models.reconstructor import ActivationReconstructor, ar_texts
from nla_lens.models.verbalizer import ActivationVerbalizer
from nla_lens.schema import NLAMeta

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
            raise CheckpointError(f"The AV explains d_model={av.d_model} vectors but the AR predicts {ar.d_model}.")
        if av.cfg.layer is not None and ar.cfg.layer is not None and av.cfg.layer != ar.cfg.layer:
            raise CheckpointError(f"The AV was trained at layer {av.cfg.layer}, the AR at {ar.cfg.layer}.")
        self.av = av
        self.ar = ar

    @property
    def d_model(self) -> int:
        return self.av.d_model

    @property
    def hook_name(self) -> str | None:
        return self.av.cfg.hook_name

    @property
    def layer(self) -> int | None:
        return self.ar.cfg.layer

    def __repr__(self) -> str:
        return (f"NLA(subject={self.av.cfg.subject_model!r}, hook_name={self.hook_name!r}, d_model={self.d_model}, "
                f"marker={self.av.cfg.tokens.injection_char!r}, injection_scale={self.av.cfg.injection_scale})")

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def untrained(
        cls,
        base: str = "smollm2-135m",
        *,
        layer: int = 20,
        injection_scale: float | None = None,
        subject_model: str | None = None,
        hook_name: str | None = None,
        base_models: tuple[Any, Any] | None = None,
    ) -> NLA:
        """A fresh NLA for vectors at ``blocks.{layer}.hook_resid_post``: the starting point of training.

        Both halves are copies of the instruct model ``base``: the AV unchanged, the AR truncated
        to ``layer + 1`` blocks with an identity head.

        Args:
            base: The instruct LM to start from (the embedded default needs no network).
            layer: Extraction layer K of the subject model.
            injection_scale: L2 norm of injected vectors; about the median activation norm
                (default: 240 for the embedded model; required otherwise).
            subject_model: Id of the subject model (default: ``base``).
            hook_name: TransformerLens hook name (default ``blocks.{layer}.hook_resid_post``).
            base_models: Two ``(model, tokenizer)`` pairs to use instead of loading ``base`` twice.
        """
        if injection_scale is None:
            if base != "smollm2-135m":
                raise InputError("Pass injection_scale= (about the median norm of your vectors, e.g. "
                                 "dataset.meta['norm_stats']['median']).")
            injection_scale = EMBEDDED_INJECTION_SCALE
        (av_model, av_tok), (ar_model, ar_tok) = base_models or (load_base_lm(base), load_base_lm(base))
        marker = choose_marker(av_tok)
        fields = dict(layer=layer, hook_name=hook_name or f"blocks.{layer}.hook_resid_post",
                      subject_model=subject_model or base, provenance={"base_model": base, "stage": "untrained"})
        d = av_model.config.hidden_size
        av_meta = NLAMeta.for_tokenizer(av_tok, role="av", d_model=d, injection_scale=injection_scale,
                                        marker=marker, **fields)
        ar_meta = NLAMeta.for_tokenizer(ar_tok, role="ar", d_model=d, injection_scale=None, marker=marker, **fields)
        av = ActivationVerbalizer(av_model, av_tok, av_meta)
        ar = ActivationReconstructor.from_base(ar_model, ar_tok, ar_meta)
        return cls(av, ar)

    # -- use ------------------------------------------------------------------------------------
    def explain(self, vectors: Any = None, *, text: str | None = None, positions: Any = None,
                subject: Any = None, **kwargs: Any) -> pd.DataFrame:
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
        if text is None:
            if vectors is None:
                raise InputError("Pass vectors, or text= with subject=.")
            return self.av.verbalize(vectors, **kwargs)
        acts, tokens, positions = self._text_activations(text, positions, subject)
        frame = self.av.verbalize(acts, **kwargs)
        frame.insert(0, "position", [positions[i] for i in frame["vector"]])
        frame.insert(1, "token", [tokens[positions[i]] for i in frame["vector"]])
        return frame

    def _text_activations(self, text: str, positions: Any, subject: Any):
        from nla_lens.subjects.adapters import as_subject

        if subject is None:
            raise InputError("explain(text=...) needs subject= (e.g. nla_lens.load_subject()).")
        adapter = as_subject(subject)
        hook = adapter.resolve_hook(self.hook_name or self.layer)
        if adapter.d_model != self.d_model:
            raise InputError(f"The subject's d_model is {adapter.d_model}, this NLA explains {self.d_model}.")
        ids = adapter.encode(text, adapter.n_ctx)
        acts = adapter.activations(torch.tensor([ids]), hook)[0]
        positions = list(range(1, len(ids))) if positions is None else [int(p) for p in positions]
        if any(not 0 <= p < len(ids) for p in positions):
            raise InputError(f"positions must lie in 0..{len(ids) - 1} for this text.")
        tokens = [adapter.tokenizer.decode([t]) for t in ids]
        return acts[positions], tokens, positions

    def reconstruct(self, explanations: list[str], **kwargs: Any) -> torch.Tensor:
        """Vectors ``[N, d_model]`` rebuilt from explanations by the AR."""
        return self.ar.reconstruct(explanations, **kwargs)

    def round_trip(self, vectors: Any = None, *, text: str | None = None, positions: Any = None,
                   subject: Any = None, **kwargs: Any) -> pd.DataFrame:
        """Explain, reconstruct, and score each vector (or each chosen token of ``text``).

        Args:
            vectors: ``[N, d_model]`` activations; or pass ``text`` + ``subject`` (+ ``positions``)
                to read them from the subject model at this NLA's hook.
            **kwargs: Passed to :meth:`ActivationVerbalizer.verbalize`.

        Returns:
            The verbalize DataFrame plus ``mse`` (normalised, 2(1-cos)) and ``cosine`` per row
            (and ``position``/``token`` for text); ``frame.attrs["report"]`` holds fve_nrm and its
            shuffled control over the batch when there are more than two rows.
        """
        tokens: list[str] | None = None
        if text is not None:
            vectors, tokens, positions = self._text_activations(text, positions, subject)
        elif vectors is None:
            raise InputError("Pass vectors, or text= with subject=.")
        vectors = self.av.check_vectors(vectors)
        frame = self.av.verbalize(vectors, **kwargs)
        predicted = self.ar.reconstruct(ar_texts(frame["explanation"]))
        targets = vectors[torch.tensor(frame["vector"].to_numpy())]
        frame["mse"] = normalized_mse(predicted, targets).numpy()
        frame["cosine"] = cosine(predicted, targets).numpy()
        if tokens is not None:
            frame.insert(0, "position", [positions[i] for i in frame["vector"]])
            frame.insert(1, "token", [tokens[positions[i]] for i in frame["vector"]])
        if len(frame) > 2:
            frame.attrs["report"] = reconstruction_report(predicted, targets)
        return frame

    # -- checkpoints ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``path/av`` and ``path/ar`` atomically (nothing is left behind on failure)."""
        with atomic_folder(path) as tmp:
            self.av.save_pretrained(tmp / "av")
            self.ar.save_pretrained(tmp / "ar")
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> NLA:
        """Load a folder written by :meth:`save_pretrained` (or any ``av/`` + ``ar/`` pair)."""
        path = Path(path)
        for role in ("av", "ar"):
            if not (path / role).is_dir():
                raise CheckpointError(f"{path} is not an NLA folder: {role}/ is missing. An NLA folder holds "
                                      "av/ and ar/, each an HF folder with nla_meta.yaml.")
        return cls(ActivationVerbalizer.from_pretrained(path / "av", **kwargs),
                   ActivationReconstructor.from_pretrained(path / "ar", **kwargs))


