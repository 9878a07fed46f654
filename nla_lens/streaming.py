"""Explanations as they are generated: a transformers streamer over a batch of rows.

transformers' own ``TextStreamer`` handles one sequence; ``ActivationVerbalizer.verbalize`` generates
a batch, so :class:`ExplanationStreamer` keeps one token list per row and parses each with the AV's
own parser, so every text it reports is a prefix of what ``verbalize`` returns at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.generation.streamers import BaseStreamer

__all__ = ["ExplanationStreamer", "StreamCallback"]

StreamCallback = Callable[[int, str], None]
"""``stream(row, text)``: the explanation of output row ``row`` so far (called again as it grows)."""


class ExplanationStreamer(BaseStreamer):
    """Reports each row's explanation so far, after every generation step of a batch.

    Args:
        parse: Token ids ``[L]`` of one row's response so far -> its explanation text (the AV's
            parser: cut at the stop token, the pre-fill and tags removed).
        stream: Called as ``stream(offset + row, text)`` whenever a row's text changes.
        offset: The output row of this batch's first row.
    """

    def __init__(self, parse: Callable[[list[int]], str], stream: StreamCallback, offset: int = 0):
        self.parse, self.stream, self.offset = parse, stream, offset
        self._rows: list[list[int]] = []
        self._texts: dict[int, str] = {}
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        """One step's new tokens ``[B]`` (``generate`` first pushes the prompt ids, skipped here)."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        if not self._rows:
            self._rows = [[] for _ in tokens]
        for row, token in enumerate(tokens):
            self._rows[row].append(int(token))
            text = self.parse(self._rows[row])
            if text != self._texts.get(row):
                self._texts[row] = text
                self.stream(self.offset + row, text)

    def end(self) -> None:
        """Nothing to flush: every change was reported as it came."""
