"""Tests of the embedded prose corpus (nla_lens/data/corpus) and its loader."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from nla_lens.data.corpus import SOURCES, corpus_records, load_corpus
from nla_lens.errors import InputError

CORPUS_DIR = resources.files("nla_lens.data") / "corpus"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    with (CORPUS_DIR / "corpus.jsonl").open("r", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_every_document_has_at_least_80_words(records):
    short = [(r["id"], len(r["text"].split())) for r in records if len(r["text"].split()) < 80]
    assert not short, f"documents under 80 words: {short[:10]}"


def test_records_have_exact_keys_and_clean_text(records):
    for r in records:
        assert set(r) == {"id", "source", "text"}
        assert r["text"] == r["text"].strip()
        assert "\t" not in r["text"] and "\r" not in r["text"]
        assert not re.search(r"</?(p|div|span|a|code|pre|em|strong)\b[^>]*>", r["text"]), r["id"]


def test_ids_unique_and_match_source(records):
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    for r in records:
        assert re.fullmatch(rf"{r['source']}-\d+", r["id"]), r["id"]


def test_all_sources_present_and_each_contributes(records):
    present = {r["source"] for r in records}
    assert present == set(SOURCES)
    total = sum(len(r["text"].encode()) for r in records)
    for source in SOURCES:
        share = sum(len(r["text"].encode()) for r in records if r["source"] == source) / total
        assert share >= 0.10, f"{source} is only {share:.1%} of the corpus"


def test_total_size_within_bounds():
    size = len((CORPUS_DIR / "corpus.jsonl").read_bytes())
    assert 800_000 <= size <= 1_800_000, size


def test_load_corpus_all_and_filtered(records):
    texts = load_corpus()
    assert texts == [r["text"] for r in records]
    for source in SOURCES:
        expected = [r["text"] for r in records if r["source"] == source]
        assert load_corpus([source]) == expected
        assert load_corpus(source) == expected  # a bare string is one source name
    both = load_corpus(["wordnet", "devil"])
    assert both == [r["text"] for r in records if r["source"] in {"wordnet", "devil"}]


def test_max_documents(records):
    assert load_corpus(max_documents=7) == [r["text"] for r in records[:7]]
    assert len(load_corpus(["fortunes"], max_documents=3)) == 3
    assert load_corpus(max_documents=0) == []
    with pytest.raises(InputError):
        load_corpus(max_documents=-1)


def test_unknown_source_raises_input_error_naming_valid_ones():
    with pytest.raises(InputError) as info:
        load_corpus(["devil", "shakespeare"])
    message = str(info.value)
    assert "shakespeare" in message
    for source in SOURCES:
        assert source in message
    assert isinstance(info.value, ValueError)


def test_corpus_records_frame(records):
    frame = corpus_records()
    assert list(frame.columns) == ["id", "source", "text", "n_words"]
    assert len(frame) == len(records)
    assert frame["id"].is_unique
    assert (frame["n_words"] >= 80).all()
    assert frame["n_words"].tolist() == [len(r["text"].split()) for r in records]


def test_notice_names_every_source_and_rebuild_command(records):
    notice = (CORPUS_DIR / "NOTICE.md").read_text(encoding="utf-8")
    for source in sorted({r["source"] for r in records}):
        assert f"`{source}`" in notice, f"NOTICE.md does not mention source {source!r}"
    assert "scripts/build_corpus.py" in notice
    for marker in ("Princeton University", "PSF", "Regents of the University of California"):
        assert marker in notice
