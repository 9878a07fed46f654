"""NLAs shipped inside the package (LoRA adapters + AR head over the embedded base model)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from nla_lens.errors import CheckpointError
from nla_lens.models.nla import NLA

SHIPPED = {"smollm2-135m-L20": "smollm2-135m-L20"}
DEFAULT = "smollm2-135m-L20"


def pretrained_dir(name: str = DEFAULT) -> Path:
    """Folder of a shipped NLA inside the installed package."""
    if name not in SHIPPED:
        raise CheckpointError(f"No shipped NLA named {name!r}; available: {sorted(SHIPPED)}.")
    return Path(str(resources.files("nla_lens") / "pretrained" / SHIPPED[name]))


def load_pretrained_nla(path_or_name: str | None = None, **kwargs: Any) -> NLA:
    """Load a shipped NLA by name (default: the embedded model's, layer 20) or any NLA folder."""
    if path_or_name is None or path_or_name in SHIPPED:
        folder = pretrained_dir(path_or_name or DEFAULT)
        if not (folder / "av").is_dir():
            raise CheckpointError(f"The shipped NLA is missing from this installation ({folder}).")
        return NLA.from_pretrained(folder, **kwargs)
    return NLA.from_pretrained(path_or_name, **kwargs)
