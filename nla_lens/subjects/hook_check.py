"""The check every analysis runs before reading or steering a subject: is this the NLA's hook?

An NLA explains vectors of one hook of one subject model; read at another hook (or from a model
of another width) its explanations and reconstructions mean nothing, so a mismatch is refused
loudly here, once, for every analysis.
"""

from __future__ import annotations

import warnings
from typing import Any

from nla_lens.errors import InputError
from nla_lens.hooks import HookSite, resolve_hook_name
from nla_lens.subjects.adapters import SubjectAdapter, as_subject

__all__ = ["check_subject"]


def check_subject(
    nla: Any, subject: Any, hook_name: str | None = None, *, layer: int | None = None
) -> tuple[SubjectAdapter, HookSite]:
    """Wrap ``subject`` and return it with the NLA's hook site, refusing any mismatch.

    Args:
        nla: An :class:`~nla_lens.models.nla.NLA` (its ``hook_name`` is the hook it reads).
        subject: The subject model (TransformerBridge/HookedTransformer, nnsight model) or adapter.
        hook_name: A hook the caller asked for; it must be the NLA's own.
        layer: Instead of ``hook_name``: a layer K the caller asked for, meaning
            ``blocks.K.hook_resid_post``; it must be the NLA's hook.

    Returns:
        ``(adapter, hook site)``.

    Raises:
        InputError: The hook asked for differs from the hook the NLA was trained on, or the
            subject's width differs from the NLA's ``d_model``.
        HookNameError: The subject has no such hook (e.g. fewer blocks than the NLA's layer), or
            ``hook_name`` is an int (pass ``layer=``).
    """
    trained_at: str = nla.hook_name
    adapter = as_subject(subject)
    if hook_name is not None or layer is not None:
        asked = resolve_hook_name(hook_name, layer=layer, n_layers=adapter.n_layers).name
        if asked != trained_at:
            raise InputError(
                f"This NLA was trained on {trained_at!r}, not {asked!r}: its explanations only mean "
                f"something for vectors of its own hook. Use an NLA trained at {asked!r} (or pass "
                f"hook_name={trained_at!r})."
            )
    hook = adapter.resolve_hook(trained_at)  # HookNameError when the subject lacks the hook
    if adapter.d_model != nla.d_model:
        raise InputError(
            f"The subject's d_model is {adapter.d_model} but this NLA explains {nla.d_model}-wide "
            f"vectors: it was trained on another model ({_subject_name(nla)!r})."
        )
    expected = _subject_name(nla)
    if expected and expected != adapter.name and expected not in adapter.name:
        warnings.warn(
            f"This NLA was trained on subject {expected!r}; the subject given is {adapter.name!r}. "
            "Same width and hook, so it runs, but explanations may not transfer.",
            stacklevel=3,
        )
    return adapter, hook


def _subject_name(nla: Any) -> str | None:
    av = getattr(nla, "av", None)
    return getattr(getattr(av, "cfg", None), "subject_model", None)
