"""Hook-name grammar: the one place that maps layers, TransformerLens hook names and HF indices.

For a residual-stream hook of block ``K``::

    layer K  <->  "blocks.K.hook_resid_post"  <->  HF hidden_states[K + 1]
                  "blocks.K.hook_resid_pre"   <->  HF hidden_states[K]
                  "hook_embed" (no positional embedding, e.g. llama) = hidden_states[0]

Any other TransformerLens hook name (``blocks.K.attn.hook_z``, ``blocks.K.hook_mlp_out``...) is
accepted by the TransformerLens extraction path as long as the model has it; it just has no HF
``hidden_states`` twin, which the nnsight path needs.

Public functions take a hook as ``hook_name=`` (a string) or, for the residual stream after block
``K``, ``layer=K``; :func:`resolve_hook_name` is the one place that turns either into a
:class:`HookSite`. An int passed as a hook name is refused with a pointer to ``layer=``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nla_lens.errors import HookNameError

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
RESID_POST = "hook_resid_post"
RESID_PRE = "hook_resid_pre"


@dataclass(frozen=True)
class HookSite:
    """Where a hook sits in the model: a parsed TransformerLens hook name with its block index.

    Made by :func:`resolve_hook_name` (or :func:`parse_hook_name`), and by a subject adapter's
    ``resolve_hook``, which also checks the model has it.

    Attributes:
        name: The full hook name, e.g. ``"blocks.20.hook_resid_post"``.
        layer: The block index ``K``, or ``None`` for hooks outside the blocks (``hook_embed``).
        suffix: What follows ``blocks.K.`` (or the whole name outside the blocks).
    """

    name: str
    layer: int | None
    suffix: str

    @property
    def block(self) -> int:
        """The block index ``K`` of a hook inside the blocks.

        Raises:
            HookNameError: For a hook outside the blocks (``hook_embed``, ``ln_final.hook_normalized``).
        """
        if self.layer is None:
            raise HookNameError(
                f"{self.name!r} is not a hook inside a block; this reader needs 'blocks.<K>.<hook>', "
                "e.g. 'blocks.20.hook_resid_post'."
            )
        return self.layer

    @property
    def hidden_states_index(self) -> int | None:
        """Index into HF ``output_hidden_states`` that equals this hook, or ``None``."""
        if self.layer is not None and self.suffix == RESID_POST:
            return self.layer + 1
        if self.layer is not None and self.suffix == RESID_PRE:
            return self.layer
        if self.name == "hook_embed":
            return 0
        return None

    @property
    def stop_at_layer(self) -> int | None:
        """The ``stop_at_layer`` that runs just enough blocks to reach this hook.

        Blocks ``0..K`` must run for a hook inside block ``K`` (``K + 1`` blocks); hooks before
        the blocks need none; hooks after them (``ln_final``, ``unembed``) need all (``None``).
        """
        if self.layer is not None:
            return self.layer + 1
        if self.name.startswith(("hook_embed", "hook_pos_embed", "hook_tokens")):
            return 0
        return None


def resid_post(layer: int, n_layers: int | None = None) -> str:
    """Name of the residual stream after block ``layer``: ``blocks.{layer}.hook_resid_post``.

    Args:
        layer: Block index; negative values count from the end (needs ``n_layers``).
        n_layers: Number of blocks of the model, to validate the range.
    """
    return f"blocks.{check_layer(layer, n_layers)}.{RESID_POST}"


def check_layer(layer: int, n_layers: int | None = None) -> int:
    """Validate a block index (negative counts from the end) and return it as non-negative."""
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise HookNameError(f"layer must be an int, got {type(layer).__name__} {layer!r}.")
    if n_layers is not None:
        if layer < 0:
            layer += n_layers
        if not 0 <= layer < n_layers:
            raise HookNameError(
                f"Layer {layer} is out of range: this model has {n_layers} blocks, "
                f"so valid layers are 0..{n_layers - 1} (or -1..-{n_layers} from the end)."
            )
    elif layer < 0:
        raise HookNameError(f"Negative layer {layer} needs the model's n_layers to resolve.")
    return layer


def _int_refused(value: object) -> HookNameError:
    return HookNameError(
        f"hook_name must be a hook name string like 'blocks.{value}.hook_resid_post', got the int {value!r}; "
        f"for the residual stream after block {value}, pass layer={value} instead."
    )


def parse_hook_name(name: str, n_layers: int | None = None) -> HookSite:
    """Parse a hook name string (the grammar only; :func:`resolve_hook_name` also takes a layer).

    Args:
        name: ``"blocks.K.<suffix>"`` or a top-level hook such as ``"hook_embed"``.
        n_layers: If given, the block index is checked against it.

    Raises:
        HookNameError: For a malformed name, a layer out of range, or an int (pass ``layer=``
            to :func:`resolve_hook_name` for that).
    """
    if isinstance(name, int) and not isinstance(name, bool):
        raise _int_refused(name)
    if not isinstance(name, str) or not name:
        raise HookNameError(f"A hook name must be a non-empty string like 'blocks.20.hook_resid_post', got {name!r}.")
    match = _BLOCK_RE.match(name)
    if match is None:
        if name.startswith("blocks."):
            raise HookNameError(
                f"Malformed hook name {name!r}: expected 'blocks.<layer>.<hook>', e.g. 'blocks.20.hook_resid_post'."
            )
        return HookSite(name=name, layer=None, suffix=name)
    layer = check_layer(int(match.group(1)), n_layers)
    return HookSite(name=name, layer=layer, suffix=match.group(2))


def validate_hook_name(name: str, valid_names: Iterable[str], n_layers: int | None = None) -> HookSite:
    """Parse the hook name ``name`` and check the model really has it.

    Args:
        name: Hook name string.
        valid_names: The model's hook names (``model.hook_dict.keys()``).
        n_layers: Number of blocks, for the range check.

    Raises:
        HookNameError: Naming the closest valid hooks and the valid suffixes of one block.
    """
    site = parse_hook_name(name, n_layers)
    valid = set(valid_names)
    if site.name in valid:
        return site
    close = difflib.get_close_matches(site.name, sorted(valid), n=3)
    block0 = sorted(v.split(".", 2)[2] for v in valid if v.startswith("blocks.0."))
    top = sorted(v for v in valid if not v.startswith("blocks."))
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise HookNameError(
        f"Unknown hook name {site.name!r}.{hint} Valid names are 'blocks.<K>.<hook>' for K in "
        f"0..{(n_layers or 1) - 1} with <hook> one of {block0}, or one of {top}."
    )


def resolve_hook_name(
    hook_name: str | None = None,
    *,
    layer: int | None = None,
    n_layers: int | None = None,
    valid_names: Iterable[str] | None = None,
) -> HookSite:
    """The one resolver of "a hook name or a layer" to a :class:`HookSite`.

    ``layer=K`` is the shortcut for ``hook_name="blocks.K.hook_resid_post"`` (the residual stream
    after block K, where the published NLAs read). Every public function taking ``hook_name=`` /
    ``layer=`` (a subject adapter's ``resolve_hook``, :func:`~nla_lens.extract_activations`, the
    steering verbs, :class:`~nla_lens.schema.NLAMeta` for a sidecar that records only the layer)
    comes through here.

    Args:
        hook_name: A TransformerLens hook name string.
        layer: Block index K instead (negative counts from the end; needs ``n_layers``).
        n_layers: Number of blocks of the model, for the range check.
        valid_names: The model's hook names; when given, the hook must be one of them.

    Raises:
        HookNameError: Both or neither of ``hook_name`` and ``layer``, an int as ``hook_name``
            (pass ``layer=``), a malformed name, a layer out of range, or a hook the model lacks.
    """
    if hook_name is not None and layer is not None:
        raise HookNameError(f"Pass hook_name or layer, not both (got hook_name={hook_name!r}, layer={layer!r}).")
    if hook_name is None:
        if layer is None:
            raise HookNameError("Pass hook_name='blocks.<K>.<hook>' or layer=K (meaning 'blocks.K.hook_resid_post').")
        hook_name = resid_post(layer, n_layers)
    if valid_names is None:
        return parse_hook_name(hook_name, n_layers)
    return validate_hook_name(hook_name, valid_names, n_layers)
