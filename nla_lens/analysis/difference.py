"""Explain a difference, and a direction: two explanations side by side, what changes, and a control.

Owns :func:`compare` (two activations, or two prompts' tokens), :func:`explain_direction` (a
steering vector, an SAE decoder row, a probe direction: added to typical activations at their
typical norm by :func:`~nla_lens.analysis.direction.direction_vectors`, the same function the SAE
feature labels use), their result :class:`Comparison` (a DataFrame per side and per snippet, and
a :class:`~nla_lens.vis.difference.DifferenceView` in a notebook), and the word measures
:func:`change_level` and :func:`snippet_changes`.

A difference in words means little without its control: the same change measured for a random
direction of the same norm (how much the words move for *any* push that size), or each
explanation's reconstruction scored against the swapped input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nla_lens.analysis.direction import (
    default_strengths,
    direction_vectors,
    random_directions,
    typical_activation,
)
from nla_lens.analysis.text import content_words, heading_of, split_snippets
from nla_lens.errors import InputError, ShapeError
from nla_lens.metrics import check_vectors, cosine, normalized_mse, score_round_trip
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.hook_check import check_subject
from nla_lens.vis.difference import DifferenceView

__all__ = ["CONTROLS", "Comparison", "change_level", "compare", "explain_direction", "snippet_changes"]

#: The controls of a comparison: ``"random"`` explains a random direction of the same norm as the
#: change (its change level is the one to beat); ``"swap"`` scores each explanation's
#: reconstruction against the other input (no extra explanation, no control change level).
CONTROLS = ("random", "swap")

SNIPPET_COLUMNS = ("heading", "before", "after", "changed", "added", "removed", "change_level")


def change_level(before: str, after: str) -> float:
    """Share of content words that differ between two explanations: ``|A △ B| / |A ∪ B|`` over their
    sets of :func:`~nla_lens.analysis.text.content_words` (headings left out). 0: the same words
    (0 too when neither has any), 1: no word in common."""
    a, b = set(content_words(before)), set(content_words(after))
    union = a | b
    return len(a ^ b) / len(union) if union else 0.0


def _keyed_snippets(text: str) -> dict[str, str]:
    """``{heading: snippet}`` of an explanation; a snippet without heading is ``"snippet i"``."""
    out: dict[str, str] = {}
    for i, snippet in enumerate(split_snippets(text), start=1):
        key = heading_of(snippet) or f"snippet {i}"
        while key in out:  # a heading twice: the second keeps its place as its own row
            key += f" ({i})"
        out[key] = snippet
    return out


def snippet_changes(before: str, after: str) -> pd.DataFrame:
    """Two explanations matched snippet by snippet (by heading, else by place).

    Returns:
        One row per heading of either (``before``'s order, then ``after``'s new ones): ``heading``,
        ``before`` and ``after`` (the snippets, ``""`` where one has none), ``changed`` (the
        snippets differ), ``added`` and ``removed`` (content words only ``after``, only
        ``before`` has in that snippet, in order), ``change_level`` (:func:`change_level` of the
        two snippets).
    """
    a, b = _keyed_snippets(before), _keyed_snippets(after)
    rows = []
    for heading in list(a) + [h for h in b if h not in a]:
        sa, sb = a.get(heading, ""), b.get(heading, "")
        wa, wb = content_words(sa), content_words(sb)
        rows.append(
            {
                "heading": heading,
                "before": sa,
                "after": sb,
                "changed": sa.strip() != sb.strip(),
                "added": [w for w in dict.fromkeys(wb) if w not in set(wa)],
                "removed": [w for w in dict.fromkeys(wa) if w not in set(wb)],
                "change_level": change_level(sa, sb),
            }
        )
    return pd.DataFrame(rows, columns=list(SNIPPET_COLUMNS))


@dataclass
class Comparison:
    """The result of :func:`compare` and :func:`explain_direction`: two explanations and a control.

    Attributes:
        frame: One row per side, ``"A"``, ``"B"`` and (with the random control) ``"control"``:
            ``side``, ``label``, ``position`` and ``token`` (for a text; missing otherwise),
            ``explanation``, ``snippets`` (list), ``cosine`` and ``mse`` (the AR's reconstruction
            of the explanation against its own input), ``cosine_other`` and ``mse_other`` (against
            the other side's input; the control's against A's), ``change_level`` (its words
            against A's: 0 for A), ``ok`` (the verbalizer's flag).
        snippets: A against B, one row per snippet heading (:func:`snippet_changes`).
        control_snippets: A against the control, the same table (``None`` without a random control).
        summary: ``change_level`` and ``control_change_level`` (NaN for the ``"swap"`` control),
            ``control`` (``"random"``/``"swap"``), ``control_kind`` (the control in words),
            ``changed_headings`` and ``control_changed_headings``, ``description``.
        vectors: ``[n_sides, d_model]`` the vectors explained, in the order of ``frame``.
    """

    frame: pd.DataFrame
    snippets: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    vectors: torch.Tensor | None = None
    control_snippets: pd.DataFrame | None = None

    @property
    def change_level(self) -> float:
        """Share of content words that differ between A and B (:func:`change_level`)."""
        return float(self.summary["change_level"])

    @property
    def control_change_level(self) -> float:
        """The same share between A and the control (NaN for the ``"swap"`` control)."""
        return float(self.summary["control_change_level"])

    @property
    def changed(self) -> pd.DataFrame:
        """The snippets that differ between A and B (rows of :attr:`snippets`)."""
        return self.snippets[self.snippets["changed"]].reset_index(drop=True)

    @property
    def explanations(self) -> list[str]:
        """The explanations, in the order of :attr:`frame` (A, B, then the control if any)."""
        return [str(e) for e in self.frame["explanation"]]

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"Comparison(change level {s['change_level']:.2f} vs control {s['control_change_level']:.2f} "
            f"({s['control']}); snippets changed: {s['changed_headings']})"
        )

    def view(self) -> DifferenceView:
        """The :class:`~nla_lens.vis.difference.DifferenceView` (what a notebook shows)."""
        rows = self.frame.set_index("side")
        sides = [
            {k: rows.loc[side, k] for k in ("label", "explanation", "cosine", "mse", "cosine_other")}
            for side in ("A", "B")
        ]
        control: dict[str, Any] = {"kind": self.summary["control_kind"], "change_level": self.control_change_level}
        if "control" in rows.index:
            control.update(
                explanation=rows.loc["control", "explanation"],
                changed_headings=self.summary["control_changed_headings"],
                cosine=rows.loc["control", "cosine"],
                mse=rows.loc["control", "mse"],
            )
        return DifferenceView(
            sides,
            self.snippets.to_dict("records"),
            change_level=self.change_level,
            control=control,
            description=self.summary.get("description", ""),
        )

    def _repr_html_(self) -> str:
        return self.view().html

    def save(self, path: str | Path) -> Path:
        """Write the view as a standalone HTML page; returns the path."""
        return self.view().save(path)


# -- input ------------------------------------------------------------------------------------
def _one_vector(x: Any, d_model: int, name: str) -> torch.Tensor:
    """``x`` as one float32 vector ``[d_model]`` (``[1, d_model]`` accepted), checked."""
    try:
        t = torch.as_tensor(x).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(
            f"{name} must be one activation [d_model={d_model}] (a tensor or array) or a text, got {type(x).__name__}."
        ) from err
    if t.ndim == 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 1:
        raise ShapeError(
            f"{name} must be one activation of shape [{d_model}], got shape {tuple(t.shape)}; pick one row "
            "(vectors[i]) or pass a text with subject=."
        )
    t = t.float()
    if name == "direction" and t.shape[0] == d_model and bool(torch.isfinite(t).all()) and float(t.norm()) == 0:
        raise InputError("direction is zero: it has no direction to add; pass a non-zero [d_model] vector.")
    source = "Pass an activation read at the NLA's hook (nla.hook_name) of its subject model."
    return check_vectors(t[None], d_model, name=name, source=source)[0].float()


def _positions(positions: Any) -> tuple[int, int]:
    """``(position in A, position in B)``: one int for both, two ints, or ``None`` (the last token)."""
    if positions is None:
        return -1, -1
    if isinstance(positions, Integral):
        return int(positions), int(positions)
    if isinstance(positions, Sequence) and len(positions) == 2 and all(isinstance(p, Integral) for p in positions):
        return int(positions[0]), int(positions[1])
    raise InputError(
        f"positions must be one token index for both texts or a pair (position in A, position in B), got "
        f"{positions!r}; negative indices count from the end (default -1: the last token)."
    )


def _read(nla: Any, x: Any, name: str, subject: Any, position: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """One side's vector ``[d_model]`` and what it is (``position``/``token`` for a text)."""
    if not isinstance(x, str):
        return _one_vector(x, nla.d_model, name), {"position": None, "token": None}
    if subject is None:
        raise InputError(
            f"{name} is a text: pass subject= (e.g. nla_lens.load_subject()) to read its activation at "
            "the NLA's hook, or pass the activation itself ([d_model])."
        )
    if not x:
        raise InputError(f"{name} is an empty text; pass a prompt with at least one token.")
    adapter, hook = check_subject(nla, subject)
    n = len(adapter.encode(x))
    n = min(n, adapter.n_ctx) if adapter.n_ctx else n
    index = position + n if position < 0 else position
    if not 0 <= index < n:
        raise InputError(
            f"position {position} is out of range for {name} ({n} tokens): pass an index in {-n}..{n - 1}."
        )
    read = prompt_activations(adapter, x, hook, [index], stacklevel=4)
    return read.vectors[0].float(), {"position": index, "token": read.tokens[index]}


def _greedy(kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("do_sample") or kwargs.get("num_samples", 1) != 1:
        raise InputError(
            "compare and explain_direction compare greedy explanations, one per vector: drop do_sample= and "
            "num_samples= (two samples of the same vector differ, and that would count as change)."
        )
    return kwargs


def _control_name(control: str) -> str:
    if control not in CONTROLS:
        raise InputError(f"control must be one of {CONTROLS}, got {control!r}.")
    return control


# -- the comparison ---------------------------------------------------------------------------
def _compare_vectors(
    nla: Any,
    vectors: torch.Tensor,
    sides: list[dict[str, Any]],
    *,
    control: str,
    control_kind: str,
    description: str,
    verbalize_kwargs: dict[str, Any],
) -> Comparison:
    """Explain ``vectors`` ``[2 or 3, d_model]`` (A, B, then the random control), reconstruct, compare."""
    made = nla.av.verbalize(vectors, **verbalize_kwargs).sort_values("vector")
    texts = [str(e) for e in made["explanation"]]
    scores = score_round_trip(nla.ar, texts, vectors)
    others = vectors[[1, 0] + [0] * (len(vectors) - 2)]  # [n, d]: B for A, A for B and the control
    with torch.no_grad():
        cos_other = cosine(scores.predicted, others)
        mse_other = normalized_mse(scores.predicted, others)
    names = ["A", "B", "control"][: len(vectors)]
    frame = pd.DataFrame(
        {
            "side": names,
            "label": [s["label"] for s in sides],
            "position": pd.array([s.get("position") for s in sides], dtype="Int64"),
            "token": [s.get("token") for s in sides],
            "explanation": texts,
            "snippets": [split_snippets(t) for t in texts],
            "cosine": scores.cosine.numpy(),
            "mse": scores.mse.numpy(),
            "cosine_other": cos_other.numpy(),
            "mse_other": mse_other.numpy(),
            "change_level": [change_level(texts[0], t) for t in texts],
            "ok": made["ok"].to_numpy(),
        }
    )
    snippets = snippet_changes(texts[0], texts[1])
    control_snippets = snippet_changes(texts[0], texts[2]) if len(texts) > 2 else None
    if control == "swap":
        a, b = frame.iloc[0], frame.iloc[1]
        control_kind += (
            f": A's explanation rebuilds B's input at cos {a.cosine_other:.3f} (its own: {a.cosine:.3f}), "
            f"B's rebuilds A's at cos {b.cosine_other:.3f} (its own: {b.cosine:.3f})"
        )
    summary: dict[str, Any] = {
        "change_level": float(frame["change_level"].iloc[1]),
        "control": control,
        "control_change_level": float(frame["change_level"].iloc[2]) if len(texts) > 2 else math.nan,
        "control_kind": control_kind,
        "changed_headings": snippets.loc[snippets["changed"], "heading"].tolist(),
        "control_changed_headings": (
            control_snippets.loc[control_snippets["changed"], "heading"].tolist()
            if control_snippets is not None
            else []
        ),
        "description": description,
    }
    return Comparison(frame, snippets, summary, vectors, control_snippets)


def compare(
    nla: Any,
    a: Any,
    b: Any,
    *,
    subject: Any = None,
    positions: int | tuple[int, int] | None = None,
    control: str = "random",
    labels: tuple[str, str] | None = None,
    seed: int = 0,
    **verbalize_kwargs: Any,
) -> Comparison:
    """Explain two activations side by side: the snippets and words that change, and a control.

    Args:
        nla: An :class:`~nla_lens.models.nla.NLA`.
        a: One activation ``[d_model]`` at the NLA's hook, or a text (read with ``subject``).
        b: The other, the same way.
        subject: The subject model, to read texts (e.g. ``nla_lens.load_subject()``).
        positions: The token explained in each text: one index for both, or ``(in a, in b)``;
            negative counts from the end (default: the last token).
        control: ``"random"`` (default): also explain A plus a random direction of the same norm
            as ``B - A`` (rescaled to A's norm, :func:`~nla_lens.analysis.direction.direction_vectors`),
            whose change level is what any push that size does; ``"swap"``: score each
            explanation's reconstruction against the other input instead (no extra explanation).
        labels: Names of A and B in the table and view (default: the texts, or ``"A"``/``"B"``).
        seed: Seed of the random direction.
        **verbalize_kwargs: Passed to :meth:`~nla_lens.models.verbalizer.ActivationVerbalizer.verbalize`
            (``max_new_tokens``, ``progress``, ``precision``, ...); decoding is greedy.

    Returns:
        A :class:`Comparison` (renders as a :class:`~nla_lens.vis.difference.DifferenceView`).

    Raises:
        InputError: A text without ``subject``, a position out of range, a NaN or zero vector,
            an unknown ``control``, sampling asked for.
        ShapeError: A vector that is not ``[d_model]`` of this NLA.
    """
    control = _control_name(control)
    _greedy(verbalize_kwargs)
    pa, pb = _positions(positions)
    va, side_a = _read(nla, a, "a", subject, pa)
    vb, side_b = _read(nla, b, "b", subject, pb)
    for side, x, default in ((side_a, a, "A"), (side_b, b, "B")):
        side["label"] = x if isinstance(x, str) else default
    if labels is not None:
        side_a["label"], side_b["label"] = labels
    vectors, sides = torch.stack([va, vb]), [side_a, side_b]  # [2, d_model]
    if control == "random":
        kind = "a random direction of the same norm as B − A, added to A (at A's norm)"
        noise = random_directions((vb - va)[None], seed)  # [1, d_model]
        vectors = torch.cat([vectors, direction_vectors(va[None], noise, torch.ones(1))])
        sides.append({"label": "A + random direction"})
    else:
        kind = "swapped inputs"

    def named(side: dict[str, Any], name: str) -> str:
        return name if side["position"] is None else f"{name} = {side['token']!r} (position {side['position']})"

    description = f"{named(side_a, 'A')}; {named(side_b, 'B')}; |B − A| = {float((vb - va).norm()):.1f}"
    return _compare_vectors(
        nla,
        vectors,
        sides,
        control=control,
        control_kind=kind,
        description=description,
        verbalize_kwargs=verbalize_kwargs,
    )


def explain_direction(
    nla: Any,
    direction: Any,
    *,
    vectors: Any = None,
    strength: float | None = None,
    control: str = "random",
    labels: tuple[str, str] | None = None,
    seed: int = 0,
    **verbalize_kwargs: Any,
) -> Comparison:
    """Explain a direction: a typical activation with and without it, side by side, and a control.

    A is the typical activation (the mean of ``vectors`` at their median norm); B is that mean plus
    ``strength * direction``, rescaled to the same norm
    (:func:`~nla_lens.analysis.direction.direction_vectors`, as the SAE feature labels explain a
    decoder direction). The control adds a random direction of the same norm at the same strength.

    Args:
        nla: An :class:`~nla_lens.models.nla.NLA`.
        direction: ``[d_model]``: a steering vector, an SAE decoder row (``sae.W_dec[f]``), a probe
            direction, the difference of two activations.
        vectors: Typical activations at the NLA's hook: ``[n, d_model]`` (or one ``[d_model]``,
            with ``strength``) or an :class:`~nla_lens.data.dataset.ActivationDataset`.
        strength: How much of ``direction`` to add (1.0 adds it as it is; a feature's typical
            activation for a decoder row). Default: the median distance of ``vectors`` from their
            mean, over the direction's norm (the push of a typical difference between activations).
        control: ``"random"`` (default) or ``"swap"``, as in :func:`compare`.
        labels: Names of A and B (default ``"typical activation"``, ``"+ direction"``).
        seed: Seed of the random direction.
        **verbalize_kwargs: Passed to ``verbalize``; decoding is greedy.

    Returns:
        A :class:`Comparison` (its ``vectors`` ``[2 or 3, d_model]``: typical, steered, control).

    Raises:
        InputError: No ``vectors`` (they are required), a zero or NaN direction, a non-positive
            ``strength``, one vector without ``strength`` (it has no spread to size the push by).
        ShapeError: A direction or vectors of another width than the NLA's.
    """
    control = _control_name(control)
    _greedy(verbalize_kwargs)
    if isinstance(direction, str):
        raise InputError(
            "direction must be a [d_model] vector; to explain a text, use compare(...) or explain(text=...)."
        )
    d = _one_vector(direction, nla.d_model, "direction")  # [d_model]
    if vectors is None:
        raise InputError(
            "explain_direction needs vectors=: typical activations at the NLA's hook ([n, d_model] or an "
            "ActivationDataset, e.g. nla_lens.extract_activations(subject, texts, nla.hook_name)); the "
            "direction is added to their mean at their median norm."
        )
    base_set = torch.as_tensor(getattr(vectors, "vectors", vectors)).detach().cpu()
    base_set = check_vectors(base_set[None] if base_set.ndim == 1 else base_set, nla.d_model, name="vectors").float()
    if strength is None:
        s = float(default_strengths(base_set, d[None])[0])
        if not s > 0:
            raise InputError(
                "The vectors have no spread to size the direction by (one vector, or all the same): pass "
                "strength= (how much of the direction to add, e.g. 1.0 for a steering vector) or more vectors."
            )
    else:
        s = float(strength)
        if not (math.isfinite(s) and s > 0):
            raise InputError(
                f"strength must be a positive finite number, got {strength!r}; to subtract, pass -direction."
            )
    strengths = torch.tensor([s])
    base = typical_activation(base_set)  # [d_model]
    steered = direction_vectors(base_set, d[None], strengths)[0]  # [d_model]
    vectors_out = torch.stack([base, steered])  # [2, d_model]
    sides: list[dict[str, Any]] = [{}, {}]
    sides[0]["label"], sides[1]["label"] = labels or ("typical activation", "+ direction")
    if control == "random":
        kind = "a random direction of the same norm, added at the same strength"
        noise = random_directions(d[None], seed)  # [1, d_model]
        vectors_out = torch.cat([vectors_out, direction_vectors(base_set, noise, strengths)])
        sides.append({"label": "+ random direction"})
    else:
        kind = "swapped inputs"
    description = (
        f"direction of norm {float(d.norm()):.2f} added at strength {s:.3g} to the mean of {len(base_set)} "
        f"activation(s), rescaled to their median norm {float(base_set.norm(dim=-1).median()):.1f}"
    )
    return _compare_vectors(
        nla,
        vectors_out,
        sides,
        control=control,
        control_kind=kind,
        description=description,
        verbalize_kwargs=verbalize_kwargs,
    )
