"""The registry of pretrained NLAs: names -> where the AV and AR live, and how a source resolves.

Like SAELens's pretrained list, the registry is package data (``nla_lens/pretrained/registry.yaml``):
the NLA shipped for the embedded model and the four pairs the paper's authors released. A source
is ``package:<folder>`` (inside nla_lens), a local folder, or a Hugging Face hub id; hub ids go
through ``huggingface_hub.snapshot_download``, which honours ``HF_HUB_OFFLINE`` and the local cache,
so a user who downloaded once works offline. :func:`register_pretrained` adds entries at run time
(a lab's own NLAs, or a test's).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nla_lens.errors import CheckpointError

DEFAULT_PRETRAINED = "smollm2-135m-L20"
"""The NLA shipped inside the package for the embedded SmolLM2 (what ``NLA.from_pretrained()`` loads)."""

__all__ = ["PretrainedEntry", "get_pretrained", "list_pretrained", "register_pretrained", "resolve_source"]

_PACKAGE_PREFIX = "package:"
_RUNTIME: dict[str, PretrainedEntry] = {}


@dataclass(frozen=True)
class PretrainedEntry:
    """One registry row.

    Attributes:
        name: The registry name.
        av: Source of the verbalizer (``package:...``, a hub id or a folder).
        ar: Source of the reconstructor.
        subject_model: The model whose activations it explains (a hub id, or ``smollm2-135m``).
        hook_name: TransformerLens hook of those activations.
        layer: Extraction layer K.
        d_model: Width of the explained vectors.
        gated: Whether the hub asks for an accepted licence (for the NLA or its subject).
        notes: Free text (origin, licence, numbers).
    """

    name: str
    av: str
    ar: str
    subject_model: str | None = None
    hook_name: str | None = None
    layer: int | None = None
    d_model: int | None = None
    gated: bool = False
    notes: str = ""


def _shipped() -> dict[str, PretrainedEntry]:
    text = (resources.files("nla_lens") / "pretrained" / "registry.yaml").read_text(encoding="utf-8")
    return {name: PretrainedEntry(name=name, **fields) for name, fields in (yaml.safe_load(text) or {}).items()}


def _entries() -> dict[str, PretrainedEntry]:
    return {**_shipped(), **_RUNTIME}


def register_pretrained(name: str, *, av: str, ar: str, **fields: Any) -> PretrainedEntry:
    """Add (or replace) a registry entry for this process.

    Args:
        name: The name ``NLA.from_pretrained(name)`` will take.
        av: Source of the verbalizer: a hub id or a local folder.
        ar: Source of the reconstructor.
        **fields: Other :class:`PretrainedEntry` fields (``subject_model``, ``layer``, ...).
    """
    entry = PretrainedEntry(name=name, av=str(av), ar=str(ar), **fields)
    _RUNTIME[name] = entry
    return entry


def get_pretrained(name: str) -> PretrainedEntry:
    """The registry entry called ``name``.

    Raises:
        CheckpointError: No such name; the message lists the names there are.
    """
    entries = _entries()
    if name not in entries:
        raise CheckpointError(
            f"No pretrained NLA named {name!r} in the registry. Known names: "
            f"{', '.join(sorted(entries))} (nla_lens.list_pretrained() shows them). A hub id "
            "looks like 'org/repo'; a local folder must exist."
        )
    return entries[name]


def is_registry_name(name: str) -> bool:
    return name in _entries()


def list_pretrained() -> Any:
    """The registry as a pandas DataFrame, one row per NLA (name, sources, subject, hook, width, notes)."""
    import pandas as pd

    return pd.DataFrame([asdict(entry) for entry in _entries().values()]).set_index("name")


def resolve_source(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder for one AV/AR source: ``package:<folder>``, an existing folder, or a hub id.

    Hub ids are fetched with ``huggingface_hub.snapshot_download`` (safetensors, configs, the
    tokenizer and the sidecar; never pickles), which reads the local cache first and, with
    ``HF_HUB_OFFLINE=1``, only the cache.

    Raises:
        CheckpointError: A missing packaged folder, or a hub id that cannot be had: gated (with
            what to do), unknown, or not in the cache while offline.
    """
    text = os.fspath(source)
    if text.startswith(_PACKAGE_PREFIX):
        folder = Path(str(resources.files("nla_lens") / "pretrained" / text[len(_PACKAGE_PREFIX) :]))
        if not folder.is_dir():
            raise CheckpointError(
                f"The packaged NLA folder {folder} is missing from this installation; reinstall nla_lens."
            )
        return folder
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if text.count("/") != 1 or text.startswith((".", "/", "~")) or path.suffix in (".yaml", ".json"):
        raise CheckpointError(f"No folder at {text!r}, and it is not a hub id ('org/repo').")
    return _snapshot(text, cache_dir=cache_dir, revision=revision, token=token)


def _snapshot(repo_id: str, *, cache_dir: Any, revision: str | None, token: Any) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = ["*.safetensors", "*.json", "*.yaml", "*.txt", "*.model", "*.jinja", "tokenizer*"]
    try:
        return Path(
            snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=patterns)
        )
    except GatedRepoError:  # before RepositoryNotFoundError: it is a subclass
        raise CheckpointError(
            f"The hub repo {repo_id!r} is gated: accept its licence on its hub page while logged in, then give "
            "this machine a token (huggingface-cli login, or HF_TOKEN, or token=...)."
        ) from None  # the hub's own traceback adds nothing to this
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise CheckpointError(
            f"The hub has no repo {repo_id!r}{f' at revision {revision!r}' if revision else ''} "
            "(or it is private and this machine has no token for it)."
        ) from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and as a hub id it is not in the local Hugging Face cache while the "
            "hub cannot be reached (HF_HUB_OFFLINE is set, or there is no network). Check the path, or download it "
            "once where the hub is reachable; later loads read the cache."
        ) from None
