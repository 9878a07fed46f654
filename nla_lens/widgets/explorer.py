"""The interactive explorer: :class:`NLAExplorer`, an anywidget to read a prompt token by token.

Owns the explorer's synced state (the prompt, the hook choice, one round-trip row per token, the
selected token and its sampled alternative explanations, a notice line and a busy flag) and the
observers that recompute it: a new prompt or hook reruns ``NLA.round_trip`` on every token but the
first, each explanation shown as it is generated (unscored) until the scores arrive; a new selection samples alternative explanations for that token and scores each against
its activation. The view is the inline ES module ``explorer.js`` with ``explorer.css``: token
chips coloured by their gain over the mean direction, a details panel, nothing fetched from the network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from nla_lens.errors import InputError, NLALensError
from nla_lens.jsonable import json_safe
from nla_lens.metrics import score_round_trip
from nla_lens.optional import require
from nla_lens.streaming import StreamCallback
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.adapters import SubjectModel, as_subject
from nla_lens.subjects.hook_check import check_subject
from nla_lens.widgets.assets import asset

if TYPE_CHECKING:  # the real module, so that the class below has a base class mypy knows
    import anywidget
else:
    anywidget = require("anywidget", "NLAExplorer")
traitlets = require("traitlets", "NLAExplorer")

#: Keys of each entry of ``NLAExplorer.tokens`` (and the columns of ``NLAExplorer.frame``).
TOKEN_KEYS: tuple[str, ...] = ("position", "token", "explanation", "mse", "cosine", "gain", "ok")
#: Keys of each entry of ``NLAExplorer.alternatives``.
ALTERNATIVE_KEYS: tuple[str, ...] = ("explanation", "mse", "cosine", "gain", "ok")

STREAM_INTERVAL = 0.1
"""Seconds between two streamed updates of the explanations while they are generated."""


def _as_nlas(nlas: Any) -> dict[str, Any]:
    """``{hook name: NLA}`` from one NLA or a mapping, checking each key against its NLA's hook."""
    if not isinstance(nlas, Mapping):
        if not hasattr(nlas, "round_trip"):
            raise InputError(f"nlas is a {type(nlas).__name__}; pass an NLA or {{hook_name: NLA}}.")
        return {nlas.hook_name: nlas}
    if not nlas:
        raise InputError("nlas is an empty mapping; pass an NLA or {hook_name: NLA}.")
    out = {}
    for key, nla in nlas.items():
        if not hasattr(nla, "round_trip"):
            raise InputError(f"nlas[{key!r}] is a {type(nla).__name__}, not an NLA.")
        trained_at = nla.hook_name
        if str(key) != trained_at:
            raise InputError(f"nlas[{key!r}] was trained at {trained_at!r}; key each NLA by its own hook name.")
        out[str(key)] = nla
    return out


class NLAExplorer(anywidget.AnyWidget):
    """Type a prompt, read each token's explanation, click a token for alternative explanations.

    Every token but the first is explained (greedy decoding) and reconstructed by the NLA of the
    selected hook; the view colours each token by its ``gain`` over the mean direction of the prompt's
    explained tokens (:func:`~nla_lens.metrics.gain_over_mean`: red when no better than that mean
    direction, green when perfect), with the raw cosine beside it. Selecting a token samples
    ``n_alternatives`` further explanations of the same activation and scores each one. A prompt
    longer than the subject's context is cut to its first ``n_ctx`` tokens, with a notice.

    Args:
        nlas: An :class:`~nla_lens.models.nla.NLA`, or ``{hook_name: NLA}`` for NLAs trained at
            several hooks of the same subject (each keyed by its own ``hook_name``).
        subject: The subject model (TransformerBridge/HookedTransformer, nnsight) or its adapter.
        prompt: The first prompt to explain ("" shows an empty explorer).
        max_new_tokens: Explanation length cap.
        n_alternatives: Explanations sampled for the selected token.
        seed: Seed of that sampling, so the same token always shows the same alternatives.
        engine: What generates the explanations: ``"hf"`` (default) or ``"vllm"`` (see
            :meth:`~nla_lens.models.verbalizer.ActivationVerbalizer.verbalize`).

    Raises:
        InputError: An empty mapping, a key that is not its NLA's hook name, a hook the subject
            lacks, or an NLA of another width than the subject.

    Example::

        explorer = NLAExplorer({"blocks.6.hook_resid_post": nla6, "blocks.20.hook_resid_post": nla20},
                               subject, prompt="The cat sat on the mat.")
        explorer            # display it; or from Python:
        explorer.explore("Paris is the capital of France.")
    """

    _esm = asset("explorer.js")
    _css = asset("explorer.css")

    prompt = traitlets.Unicode("", help="The text explained (set by the view's Explain button).").tag(sync=True)
    run_requested = traitlets.Int(0, help="Incremented by the view to recompute an unchanged prompt.").tag(sync=True)
    hooks = traitlets.List(traitlets.Unicode(), help="Hook names with an NLA.").tag(sync=True)
    hook = traitlets.Unicode("", help="The hook whose NLA explains the prompt.").tag(sync=True)
    first_token = traitlets.Unicode("", help="The prompt's first token (shown, never explained).").tag(sync=True)
    tokens = traitlets.List(traitlets.Dict(), help="One row of TOKEN_KEYS per position >= 1.").tag(sync=True)
    selected = traitlets.Int(-1, help="Position of the selected token, or -1.").tag(sync=True)
    alternatives = traitlets.List(traitlets.Dict(), help="Sampled rows of ALTERNATIVE_KEYS.").tag(sync=True)
    notice = traitlets.Unicode("", help="Truncation notice or error message ('' when none).").tag(sync=True)
    busy = traitlets.Bool(False, help="True while the kernel computes.").tag(sync=True)

    def __init__(
        self,
        nlas: Any,
        subject: SubjectModel,
        *,
        prompt: str = "",
        max_new_tokens: int = 48,
        n_alternatives: int = 3,
        seed: int = 0,
        engine: str = "hf",
        **kwargs: Any,
    ):
        if n_alternatives < 1:
            raise InputError(f"n_alternatives must be >= 1, got {n_alternatives}.")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
        self._ready = False
        super().__init__(**kwargs)
        self.nlas = _as_nlas(nlas)
        self.subject = as_subject(subject)
        for nla in self.nlas.values():
            check_subject(nla, self.subject)  # the hook exists (close matches named) and the widths agree
        self.max_new_tokens = int(max_new_tokens)
        self.n_alternatives = int(n_alternatives)
        self.seed = int(seed)
        for nla in self.nlas.values():
            nla.av.engine(engine)  # an unknown name or a missing vllm fails here, not on the first keystroke
        self.engine = engine
        with self.hold_sync():
            self.hooks = list(self.nlas)
            self.hook = self.hooks[0]
            self.prompt = prompt
        self._ready = True
        self._refresh()

    def __repr__(self) -> str:
        return (
            f"NLAExplorer(hook={self.hook!r}, hooks={len(self.hooks)}, tokens={len(self.tokens)}, "
            f"selected={self.selected}, prompt={self.prompt[:40]!r})"
        )

    @property
    def nla(self) -> Any:
        """The NLA of the selected hook."""
        return self.nlas[self.hook]

    @property
    def frame(self) -> pd.DataFrame:
        """``tokens`` as a DataFrame with the columns ``TOKEN_KEYS``."""
        return pd.DataFrame(list(self.tokens), columns=list(TOKEN_KEYS))

    def explore(self, text: str) -> pd.DataFrame:
        """Explain ``text`` (as if typed in the view) and return :attr:`frame`."""
        if self.prompt == text:
            self._refresh()
        else:
            self.prompt = text
        return self.frame

    # -- observers ------------------------------------------------------------------------------
    @traitlets.validate("hook")
    def _check_hook(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if self.hooks and value not in self.hooks:
            raise traitlets.TraitError(f"hook must be one of {self.hooks}, got {value!r}.")
        return value

    @traitlets.observe("prompt", "hook", "run_requested")
    def _on_input(self, change: dict[str, Any]) -> None:
        if self._ready:
            self._refresh()

    @traitlets.observe("selected")
    def _on_selected(self, change: dict[str, Any]) -> None:
        if self._ready:
            self._sample_alternatives()

    # -- computation ----------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Recompute ``tokens`` (and the alternatives of a still-valid selection)."""
        self.busy = True
        try:
            rows, first, notice = self._explain_prompt()
        except NLALensError as exc:
            rows, first, notice = [], "", str(exc)
        finally:
            self.busy = False
        with self.hold_sync():
            self.tokens, self.first_token, self.notice = rows, first, notice
        if self.selected != -1 and self.selected not in {r["position"] for r in rows}:
            self.selected = -1  # the observer clears the alternatives
        else:
            self._sample_alternatives()

    def _explain_prompt(self) -> tuple[list[dict[str, Any]], str, str]:
        """Round-trip rows of every position but the first, the first token, and the notice."""
        if not self.prompt:
            return [], "", ""
        read = prompt_activations(self.subject, self.prompt, self.hook, warn=False)  # the notice says it
        notice = " ".join(read.notices)
        if not read.tokens:
            return [], "", "The prompt encodes to no tokens."
        if len(read.tokens) < 2:
            return [], read.tokens[0], "The prompt has one token; every token but the first is explained, so type more."
        first = read.tokens[0]
        frame = read.label(
            self.nla.round_trip(
                read.vectors,
                max_new_tokens=self.max_new_tokens,
                engine=self.engine,
                stream=self._streaming_rows(read.positions, read.tokens),
                progress=False,
                warn=False,
            )
        )
        rows = [
            {
                "position": int(r["position"]),
                "token": str(r["token"]),
                "explanation": str(r["explanation"]),
                "mse": json_safe(r["mse"]),
                "cosine": json_safe(r["cosine"]),
                "gain": json_safe(r["gain"]),
                "ok": bool(r["ok"]),
            }
            for r in frame.to_dict("records")
        ]
        return rows, first, notice

    def _streaming_rows(self, positions: list[int], tokens: list[str]) -> StreamCallback:
        """A ``stream=`` callback that shows each explanation in ``tokens`` as it is generated.

        The rows carry no scores yet (``gain`` null: the view draws the chip grey) until the round
        trip returns and :meth:`_refresh` sets the scored rows. Updates go out at most every
        ``STREAM_INTERVAL`` seconds, the first one at once.
        """
        rows = [
            {
                "position": p,
                "token": tokens[p],
                "explanation": "",
                "mse": None,
                "cosine": None,
                "gain": None,
                "ok": True,
            }
            for p in positions
        ]
        self.first_token = tokens[0]
        last = [-math.inf]

        def show(row: int, text: str) -> None:
            rows[row] = {**rows[row], "explanation": text}
            if time.monotonic() - last[0] >= STREAM_INTERVAL:
                self.tokens, last[0] = [dict(r) for r in rows], time.monotonic()

        return show

    def _sample_alternatives(self) -> None:
        """Fill ``alternatives`` for ``selected`` (empty when nothing is selected)."""
        position = self.selected
        if position < 0 or not self.prompt or position not in {r["position"] for r in self.tokens}:
            self.alternatives = []
            return
        self.busy = True
        try:
            rows = self._alternatives_of(position)
        except NLALensError as exc:
            rows = []
            self.notice = str(exc)
        finally:
            self.busy = False
        self.alternatives = rows

    @torch.no_grad()
    def _alternatives_of(self, position: int) -> list[dict[str, Any]]:
        """``n_alternatives`` sampled explanations of one token, each reconstructed and scored."""
        nla = self.nla
        # Every explained token of the prompt: their mean direction is the baseline of ``gain``,
        # as in the token strip.
        read = prompt_activations(self.subject, self.prompt, self.hook, warn=False)
        target = read.vectors[read.positions.index(position)][None]  # [1, d_model]; verbalize validates it
        frame = nla.av.verbalize(
            target,
            num_samples=self.n_alternatives,
            do_sample=True,
            seed=self.seed,
            max_new_tokens=self.max_new_tokens,
            engine=self.engine,
            progress=False,
            warn=False,
        )
        scores = score_round_trip(nla.ar, frame["explanation"], target[0])
        mse, cos, gain = scores.mse.tolist(), scores.cosine.tolist(), scores.gain(read.vectors).tolist()
        return [
            {"explanation": str(e), "mse": json_safe(m), "cosine": json_safe(c), "gain": json_safe(g), "ok": bool(ok)}
            for e, m, c, g, ok in zip(frame["explanation"], mse, cos, gain, frame["ok"])
        ]
