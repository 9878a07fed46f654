"""The widgets' JavaScript and CSS, read from the package's data files."""

from __future__ import annotations

from importlib import resources

__all__ = ["asset"]


def asset(name: str) -> str:
    """The text of ``nla_lens/widgets/{name}`` (a widget's ``.js`` or ``.css``)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
