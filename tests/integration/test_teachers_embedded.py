"""Warm-start teachers on the embedded SmolLM2: the subject's predictions and a local HF teacher."""

from __future__ import annotations

import json
import re

import pytest
import torch

import nla_lens
from nla_lens.data.teachers import ContextTeacher, HFTeacher, label_dataset

pytestmark = pytest.mark.embedded

MAX_LENGTH = 64


@pytest.fixture(scope="module")
def dataset(bridge, documents):
    return nla_lens.extract_activations(
        bridge,
        documents[:3],
        "blocks.20.hook_resid_post",
        positions_per_doc=3,
        max_length=MAX_LENGTH,
        splits={"av_sft": 0.5, "ar_sft": 0.5},
        progress=False,
    )


def document_top_k(bridge, documents, row, k: int = 3) -> list[int]:
    """argsort of the bridge's logits over the whole (truncated) document, at the row's position."""
    ids = bridge.tokenizer(documents[row.doc_id], add_special_tokens=False)["input_ids"][:MAX_LENGTH]
    with torch.no_grad():
        logits = bridge(torch.tensor([ids]))
    return torch.argsort(logits[0, row.position], descending=True)[:k].tolist()


def test_predictions_equal_the_bridge_logits_at_the_position(bridge, documents, dataset):
    teacher = ContextTeacher(bridge, progress=False)
    frame = dataset.frame
    top = teacher.top_next_tokens(frame)
    picked = [0, len(frame) - 1]
    texts = teacher(frame.iloc[picked])
    for i, text in zip(picked, texts):
        row = frame.iloc[i]
        expected = document_top_k(bridge, documents, row)
        assert top[i] == expected
        lines = text.split("\n")
        assert len(lines) == 3 and lines[1].startswith("2. Likely next: ")
        listed = json.loads("[" + lines[1][len("2. Likely next: ") :] + "]")
        decoded = [bridge.tokenizer.decode([t]) for t in expected]
        assert listed == [w.strip() or w for w in decoded]
        assert lines[2] == "3. Current token: " + json.dumps(row.token, ensure_ascii=False)
    # rows of one document share a forward pass; running each prefix alone gives the same answer
    alone = teacher.top_next_tokens(frame.drop(columns=["doc_id"]))
    assert alone == top


def test_an_hf_model_pair_gives_the_same_predictions(bridge, embedded_hf, dataset):
    frame = dataset.frame.iloc[:4]
    from_bridge = ContextTeacher(bridge, progress=False).top_next_tokens(frame)
    from_hf = ContextTeacher(embedded_hf, progress=False).top_next_tokens(frame)
    assert from_hf == from_bridge


def test_explain_dataset_with_the_subject(bridge, dataset):
    explanations = label_dataset(dataset, ContextTeacher(bridge, batch_size=2, progress=False), split="av_sft")
    part = dataset.frame[dataset.frame["split"] == "av_sft"]
    assert list(explanations.index) == list(part.index)
    for text, prefix in zip(explanations, part["prefix"]):
        assert text.startswith("1. Recent context: ") and "2. Likely next: " in text
        assert " ".join(prefix.split()[-15:]) in text
    template = label_dataset(dataset, ContextTeacher(bridge, variant="template", progress=False), split="av_sft")
    assert all("Likely next" in t and "Recent context" not in t for t in template)


def test_hf_teacher_writes_english(embedded_hf, dataset):
    model, tokenizer = embedded_hf
    side = tokenizer.padding_side
    teacher = HFTeacher(model, tokenizer, max_new_tokens=24, batch_size=2, progress=False)
    texts = teacher(dataset.frame.iloc[:2])
    assert len(texts) == 2
    for text in texts:
        words = re.findall(r"[A-Za-z]+", text)
        assert len(words) >= 3, text
        common = {"the", "a", "of", "to", "and", "is", "in", "text", "model", "token"}
        assert sum(w.lower() in common for w in words) >= 1, text
        assert "<|im_start|>" not in text and "<|im_end|>" not in text
    assert tokenizer.padding_side == side  # the user's tokenizer is not modified
