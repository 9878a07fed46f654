"""Layer sweep: one token of a prompt explained at several hooks, by the NLAs trained there.

An NLA explains one hook; a stack of NLAs trained at several layers shows how the model's
representation of the same token changes with depth. :func:`layer_sweep` reads the token at
every NLA's hook and runs each NLA's round trip; :class:`LayerSweep` holds the DataFrame and a
self-contained HTML view (the prompt with the token marked, then one row per hook).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from nla_lens.errors import InputError
from nla_lens.hooks import parse_hook_name, resolve_hook_name
from nla_lens.subjects.activations import prompt_activations
from nla_lens.subjects.adapters import SubjectModel, as_subject
from nla_lens.subjects.hook_check import check_subject
from nla_lens.vis.html import BASE_CSS, HTMLView, esc, unique_id
from nla_lens.vis.side_by_side import cosine_colour

__all__ = ["SWEEP_COLUMNS", "LayerSweep", "layer_sweep"]

#: The leading columns of ``LayerSweep.frame``.
SWEEP_COLUMNS: tuple[str, ...] = ("hook_name", "layer", "position", "token", "explanation", "mse", "cosine", "norm")


def _keyed(nlas: Any) -> list[tuple[str, Any]]:
    """``[(hook name, NLA)]`` sorted by layer, from an NLA list or a dict keyed by layer or hook name."""
    if hasattr(nlas, "ar") and hasattr(nlas, "av"):
        nlas = [nlas]
    if isinstance(nlas, Mapping):
        items = []
        for key, nla in nlas.items():
            trained_at = nla.hook_name
            # A key is a hook name, or a layer K meaning blocks.K.hook_resid_post.
            is_layer = isinstance(key, int) and not isinstance(key, bool)
            asked = (resolve_hook_name(layer=key) if is_layer else resolve_hook_name(key)).name
            if asked != trained_at:
                raise InputError(
                    f"nlas[{key!r}] is an NLA trained on {trained_at!r}, not {asked!r}; key each NLA "
                    "by its own layer or hook name."
                )
            items.append((trained_at, nla))
    elif isinstance(nlas, Sequence) and not isinstance(nlas, str):
        items = [(nla.hook_name, nla) for nla in nlas]
    else:
        raise InputError(
            f"nlas must be an NLA, a list of NLAs or a dict {{layer or hook name: NLA}}, got {type(nlas).__name__}."
        )
    if not items:
        raise InputError("No NLAs given: pass a list of NLAs or a dict {layer or hook name: NLA}.")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise InputError(f"Two NLAs read the same hook ({names}); a sweep takes one NLA per hook.")
    return sorted(items, key=lambda item: (parse_hook_name(item[0]).layer or -1, item[0]))


class LayerSweep(HTMLView):
    """One token explained at several hooks.

    Attributes:
        frame: One row per hook (shallowest first): :data:`SWEEP_COLUMNS`, then the verbalizer's
            flags (``ok``, ...).
        tokens: The prompt's tokens.
        position: The explained position.
    """

    title = "nla_lens layer sweep"

    def __init__(self, frame: pd.DataFrame, tokens: Sequence[str], position: int, description: str = ""):
        super().__init__()
        self.frame, self.tokens, self.position, self.description = frame, list(tokens), int(position), description

    def __repr__(self) -> str:
        return f"LayerSweep(position={self.position}, token={self.tokens[self.position]!r}, hooks={list(self.frame.hook_name)})"

    def render(self) -> str:
        spans = []
        for i, token in enumerate(self.tokens):
            shown = esc(token.replace("\n", "↵\n"))
            if i == self.position:
                spans.append(
                    f'<span class="nla-tok nla-explained" data-pos="{i}" style="background:#ffd33d">{shown}</span>'
                )
            else:
                spans.append(f'<span class="nla-tok" data-pos="{i}">{shown}</span>')
        strip = "".join(spans)
        rows = "".join(
            f'<tr><td class="nla-num">{esc(r.hook_name)}</td><td>{esc(r.explanation)}</td>'
            f'<td class="nla-num" style="background:{cosine_colour(r.cosine)}">{r.cosine:.3f}</td>'
            f'<td class="nla-num">{r.mse:.3f}</td><td class="nla-num">{r.norm:.1f}</td></tr>'
            for r in self.frame.itertuples(index=False)
        )
        return (
            f'<div class="nla-vis nla-layer-sweep" data-nla-vis="layer-sweep" id="{unique_id()}">'
            f"<style>{BASE_CSS}</style><h2>Layer sweep</h2>"
            f'<div class="nla-meta">{esc(self.description)} · token #{self.position} '
            f"<code>{esc(repr(self.tokens[self.position]))}</code> · {len(self.frame)} hooks</div>"
            f'<div class="nla-strip">{strip}</div>'
            '<table class="nla-table"><tr><th>hook</th><th>explanation</th><th>cosine</th><th>mse</th>'
            f"<th>norm</th></tr>{rows}</table></div>"
        )


def layer_sweep(
    nlas: Any,
    subject: SubjectModel,
    prompt: str,
    position: int = -1,
    *,
    max_new_tokens: int = 64,
    progress: bool = True,
    **round_trip_kwargs: Any,
) -> LayerSweep:
    """Explain one token of ``prompt`` at every hook that has an NLA.

    Args:
        nlas: NLAs trained at several hooks of the same subject: a list, or a dict keyed by layer
            (``{6: nla6, 20: nla20}``) or hook name; each key must be its NLA's own hook.
        subject: The subject model (TransformerLens or nnsight) or its adapter.
        prompt: The text.
        position: The token to explain (negative counts from the end; default the last token).
        max_new_tokens: Explanation length cap.
        progress: Show a progress bar over the hooks.
        **round_trip_kwargs: Passed to each ``NLA.round_trip``.

    Returns:
        A :class:`LayerSweep` (``.frame`` and a self-contained HTML view).

    Raises:
        InputError: A key that is not its NLA's hook, two NLAs at one hook, an empty prompt, a
            position out of range, NLAs of another width than the subject.
        HookNameError: The subject lacks one of the hooks.
    """
    items = _keyed(nlas)
    adapter = as_subject(subject)
    checked = [(check_subject(nla, adapter)[1], nla) for _, nla in items]
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt must be a non-empty string.")
    read = prompt_activations(adapter, prompt, checked[0][0], positions=[], warn=False)  # tokens only, no forward
    if not -len(read.ids) <= position < len(read.ids):
        raise InputError(f"position {position} is out of range for a prompt of {len(read.ids)} tokens.")
    position = position % len(read.ids)
    round_trip_kwargs.setdefault("warn", False)
    round_trip_kwargs.setdefault("progress", False)
    rows = []
    for hook, nla in tqdm(checked, desc="layer sweep", unit="hook", disable=not progress):
        vector = prompt_activations(adapter, prompt, hook, positions=[position], warn=False).vectors[0]
        frame = nla.round_trip(vector[None], max_new_tokens=max_new_tokens, **round_trip_kwargs)
        for record in frame.to_dict("records"):
            rows.append(
                {
                    "hook_name": hook.name,
                    "layer": hook.layer,
                    "position": position,
                    "token": read.tokens[position],
                    "norm": float(vector.norm()),
                    **record,
                }
            )
    frame = pd.DataFrame(rows)
    frame = frame[list(SWEEP_COLUMNS) + [c for c in frame.columns if c not in SWEEP_COLUMNS]]
    return LayerSweep(frame, read.tokens, position, description=f"subject {adapter.name}")
