"""Streaming: explanations reach the caller, the explorer and the CLI while they are generated, and
what streams ends as exactly what the non-streamed call returns."""

from __future__ import annotations

import io
import re

import pytest
import torch

from nla_lens.testing.models import tiny_nla, tiny_subject
from nla_lens.testing.tokenizers import tiny_tokenizer

KW = dict(max_new_tokens=10, progress=False, warn=False)


@pytest.fixture(scope="module")
def nla():
    return tiny_nla(1, n_layers=2, seed=3)


@pytest.fixture(scope="module")
def vectors(nla):
    return torch.randn(5, nla.d_model, generator=torch.Generator().manual_seed(0))


def streamed(nla, vectors, **kwargs):
    events: list[tuple[int, str]] = []
    frame = nla.av.verbalize(vectors, stream=lambda row, text: events.append((row, text)), **KW, **kwargs)
    return frame, events


@pytest.mark.parametrize("batch_size", [32, 2])
def test_streamed_texts_grow_into_the_non_streamed_explanations(nla, vectors, batch_size):
    frame, events = streamed(nla, vectors, batch_size=batch_size)
    plain = nla.av.verbalize(vectors, batch_size=batch_size, **KW)
    assert frame["explanation"].tolist() == plain["explanation"].tolist()
    last = {row: text for row, text in events}
    assert [last.get(i, "") for i in range(len(frame))] == frame["explanation"].tolist()
    grew = [row for row in range(len(frame)) if len({t for r, t in events if r == row}) > 1]
    assert grew, "every row arrived whole: nothing was streamed before generation ended"
    for row in grew:  # the first text of a row came while it was still being written
        first = next(t for r, t in events if r == row)
        assert len(first) < len(frame["explanation"][row])


def test_sampled_rows_stream_under_their_own_index(nla, vectors):
    frame, events = streamed(nla, vectors[:2], do_sample=True, num_samples=3, seed=1)
    assert {row for row, _ in events} <= set(range(len(frame))) and len(frame) == 6
    last = {row: text for row, text in events}
    assert [last.get(i, "") for i in range(6)] == frame["explanation"].tolist()


def test_an_engine_without_token_streaming_reports_each_row_once(nla, vectors):
    class Engine:  # another generation engine: the same generate() contract, no streamer
        def generate(self, chunk, **kwargs):
            return nla.av.generate(chunk, max_new_tokens=kwargs["max_new_tokens"])

    events: list[tuple[int, str]] = []
    frame = nla.av.verbalize(vectors, engine=Engine(), stream=lambda r, t: events.append((r, t)), **KW)
    assert events == list(enumerate(frame["explanation"]))


def test_the_explorer_shows_unscored_explanations_before_the_scores(nla, monkeypatch):
    pytest.importorskip("anywidget", reason="needs anywidget (pip install 'nla_lens[widgets]')")
    from nla_lens.widgets import NLAExplorer, explorer

    monkeypatch.setattr(explorer, "STREAM_INTERVAL", 0.0)
    subject = tiny_subject(tiny_tokenizer(), n_ctx=64)
    ex = NLAExplorer(nla, subject, max_new_tokens=10)
    seen: list[list[dict]] = []
    ex.observe(lambda change: seen.append(change["new"]), names="tokens")
    ex.prompt = "The cat sat on the mat."
    final = ex.tokens
    expected = nla.round_trip(text=ex.prompt, subject=subject, **KW)
    assert [t["explanation"] for t in final] == expected["explanation"].tolist()
    assert all(t["gain"] is not None for t in final)
    partial = [rows for rows in seen[:-1] if any(r["explanation"] for r in rows)]
    assert partial, "no explanation reached the widget before the round trip finished"
    assert all(r["gain"] is None for rows in partial for r in rows)
    for rows in partial:
        for row, done in zip(rows, final):
            assert done["explanation"].startswith(row["explanation"].rstrip()) or not row["explanation"]


@pytest.mark.embedded
def test_the_cli_streams_on_a_terminal_and_prints_the_same_table(capsys):
    from nla_lens.cli import main

    args = ["explain", "The cat sat on the mat.", "--positions", "2", "3", "--max-new-tokens", "12", "--color", "never"]
    assert main([*args, "--stream", "never"]) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--stream", "always"]) == 0
    live = capsys.readouterr().out
    assert "\033[2K" not in plain
    block, _, table = live.rpartition("\033[J")  # the live block, erased, then the same table
    assert table == plain
    drawn = re.findall(r"\033\[2K\[  2\] [^\n]*", block)
    assert len(drawn) > 2, "the explanation of position 2 was drawn once: nothing streamed"
    final = next(line for line in plain.splitlines() if line.startswith("[  2]"))
    last = re.sub(r"^\033\[2K\[  2\] '.*?' +", "", drawn[-1])  # the explanation, after the token's label
    assert len(drawn[0]) < len(drawn[-1]) and last[:20] in final


def test_live_lines_redraw_in_place():
    from nla_lens.cli import LiveLines

    out = io.StringIO()
    live = LiveLines(["a", "b"], width=20, out=out)
    live.update(0, "Current token")
    live.update(1, "x\ny")
    live.clear()
    text = out.getvalue()
    assert text.count("\033[2F") == 2 and text.endswith("\033[2F\033[J")  # up over the 2 lines drawn
    assert "\033[2Kb x / y\n" in text and live.texts == ["Current token", "x\ny"]


def test_live_lines_stay_within_the_terminal():
    from nla_lens.cli import LiveLines

    out = io.StringIO()
    live = LiveLines(["[  1] 'cat'"], width=500, out=out)
    live.columns, live.rows = 30, 5
    live.update(0, "Current token: a long explanation that would wrap onto a second row")
    assert all(len(line.replace("\033[2K", "")) <= 29 for line in out.getvalue().splitlines())
    assert LiveLines(["x"] * 4, width=9).fits() and not LiveLines(["x"] * 200, width=9).fits()
