"""``TextFrame``: a pandas DataFrame whose notebook view shows every text cell whole.

pandas cuts cells to ``display.max_colwidth`` (50 characters) in a notebook, which leaves an
explanation as its first line. A ``TextFrame`` is an ordinary DataFrame (same data, same methods;
slices and copies stay ``TextFrame``) whose ``_repr_html_`` lifts that limit for its own rendering
only, keeping line breaks and aligning text left; the global pandas options are never changed.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["TextFrame"]

_CLASS = "nla-lens-text-frame"
_STYLE = (
    f"<style>.{_CLASS} td {{white-space: pre-wrap; text-align: left; vertical-align: top;}}"
    f" .{_CLASS} th {{vertical-align: top;}}</style>"
)


class TextFrame(pd.DataFrame):
    """A DataFrame that shows long text cells (explanations) whole in a notebook."""

    @property
    def _constructor(self) -> type[TextFrame]:
        return TextFrame

    def _repr_html_(self) -> str:
        # Text cells pass through a plain formatter: pandas' own escapes line breaks as a literal
        # "\n"; here they stay, and the style's pre-wrap shows them. Rows and columns are cut as
        # the display options say, like any DataFrame.
        formatters = {
            column: _as_text
            for column, dtype in self.dtypes.items()
            if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
        }
        with pd.option_context("display.max_colwidth", None):
            html = self.to_html(
                notebook=True,
                formatters=formatters,
                max_rows=pd.get_option("display.max_rows"),
                max_cols=pd.get_option("display.max_columns"),
                show_dimensions=pd.get_option("display.show_dimensions"),
            )
        return f'<div class="{_CLASS}">{_STYLE}{html}</div>'


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)
