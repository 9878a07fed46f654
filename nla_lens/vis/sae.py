"""SAE features as HTML: a feature chip with its activation, and its top-activating contexts.

Owns :data:`HIGHLIGHT` (the marks around the max-activating token of a context snippet, written
by :func:`nla_lens.analysis.sae_features.top_feature_contexts`), :func:`highlight_context` and
:func:`feature_html`. Pure data -> HTML: no SAE or model is called here. Training an SAE lives in
:mod:`nla_lens.training.sae`, finding its top contexts in :mod:`nla_lens.analysis.sae_features`;
the old names still import from here, with a ``DeprecationWarning`` (:mod:`nla_lens.vis._moved`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from nla_lens.vis._moved import moved
from nla_lens.vis.html import esc

__all__ = ["HIGHLIGHT", "feature_html", "highlight_context"]

#: Marks around the max-activating token in a context snippet.
HIGHLIGHT: tuple[str, str] = ("«", "»")

_MARK_RE = re.compile(re.escape(esc(HIGHLIGHT[0])) + "(.*?)" + re.escape(esc(HIGHLIGHT[1])), re.DOTALL)

#: The names that moved out (deprecation aliases): ``{name: new module}``.
_MOVED = {
    "train_embedded_sae": "nla_lens.training.sae",
    "load_sae": "nla_lens.training.sae",
    "collect_activations": "nla_lens.training.sae",
    "top_feature_contexts": "nla_lens.analysis.sae_features",
    "check_sae": "nla_lens.sae",
    "sae_hook_name": "nla_lens.sae",
}


def __getattr__(name: str) -> Any:
    return moved(__name__, name, _MOVED)


def highlight_context(context: str) -> str:
    """Escape a context snippet and turn its ``«token»`` into ``<mark>token</mark>``."""
    return _MARK_RE.sub(r"<mark>\1</mark>", esc(context))


def feature_html(
    feature: int, activation: float, contexts: Sequence[str] | None = None, label: str | None = None
) -> str:
    """One SAE feature: ``#id``, its NLA label when known, and its activation, opening onto its top contexts.

    Args:
        feature: The feature id.
        activation: Its activation on the token shown.
        contexts: Its top-activating snippets (``«token»`` marked), or ``None``.
        label: Its label (e.g. the NLA's words from
            :func:`~nla_lens.analysis.feature_labels.nla_feature_labels`), or ``None``.

    Returns:
        An HTML fragment (a ``<details>`` with the contexts, or a plain ``<span>`` without).
    """
    named = f" <i>{esc(label)}</i>" if label else ""
    head = f'#{feature}{named} <span class="nla-num">{activation:.2f}</span>'
    if not contexts:
        return f'<span class="nla-feat nla-num" data-feature="{feature}">{head}</span>'
    items = "".join(f'<div class="nla-ctx">{highlight_context(c)}</div>' for c in contexts)
    return f'<details class="nla-feat" data-feature="{feature}"><summary>{head}</summary>{items}</details>'
