"""Extraction on the embedded SmolLM2 through every backend, checked against HF hidden states."""

from __future__ import annotations

import warnings

import pytest
import torch

import nla_lens
from nla_lens.errors import HookNameError, InputError
from nla_lens.optional import has_hooked_transformer, hooked_transformer
from nla_lens.subjects.adapters import as_subject

pytestmark = pytest.mark.embedded

HOOK = "blocks.20.hook_resid_post"


def hf_reference(hf_model, tokenizer, dataset, documents, index: int = 21, max_length: int = 256):
    """hidden_states[index] of the HF model at each dataset row's (document, position)."""
    expected = []
    for row in dataset.frame.itertuples():
        ids = tokenizer(documents[row.doc_id], add_special_tokens=False)["input_ids"][:max_length]
        with torch.no_grad():
            out = hf_model(torch.tensor([ids]), output_hidden_states=True)
        expected.append(out.hidden_states[index][0, row.position])
    return torch.stack(expected)


def test_bridge_extraction_equals_hf_hidden_states(bridge, embedded_hf, documents):
    hf_model, tokenizer = embedded_hf
    docs = documents[:4]
    ds = nla_lens.extract_activations(bridge, docs, HOOK, batch_size=1, max_length=96, progress=False)
    assert ds.vectors.shape == (len(ds), 576) and ds.vectors.dtype == torch.float32
    expected = hf_reference(hf_model, tokenizer, ds, docs, max_length=96)
    assert (ds.vectors - expected).abs().max().item() <= 1e-5
    # the recorded token and prefix describe the same position
    row = ds.frame.iloc[0]
    ids = tokenizer(docs[row.doc_id], add_special_tokens=False)["input_ids"]
    assert row.token_id == ids[row.position]
    assert row.prefix == tokenizer.decode(ids[: row.position + 1])
    assert row.prefix.endswith(row.token)


def test_batched_extraction_matches_unbatched(bridge, documents):
    single = nla_lens.extract_activations(bridge, documents[:6], HOOK, batch_size=1, max_length=96, progress=False)
    batched = nla_lens.extract_activations(bridge, documents[:6], HOOK, batch_size=6, max_length=96, progress=False)
    assert single.frame[["doc_id", "position"]].equals(batched.frame[["doc_id", "position"]])
    # right padding leaves causal outputs unchanged up to matmul rounding
    assert torch.allclose(single.vectors, batched.vectors, rtol=1e-4, atol=1e-3)


def test_nnsight_extraction_equals_hf_hidden_states(embedded_hf, documents):
    from nnsight.modeling.transformers import TransformersModel

    hf_model, tokenizer = embedded_hf
    model = TransformersModel(hf_model, tokenizer=tokenizer)
    docs = documents[:3]
    ds = nla_lens.extract_activations(model, docs, HOOK, batch_size=1, max_length=96, progress=False)
    assert ds.meta["backend"] == "nnsight"
    expected = hf_reference(hf_model, tokenizer, ds, docs, max_length=96)
    assert (ds.vectors - expected).abs().max().item() <= 1e-5
    pre = nla_lens.extract_activations(
        model, docs[:1], "blocks.20.hook_resid_pre", batch_size=1, max_length=96, progress=False
    )
    expected_pre = hf_reference(hf_model, tokenizer, pre, docs[:1], index=20, max_length=96)
    assert (pre.vectors - expected_pre).abs().max().item() <= 1e-5
    assert torch.equal(as_subject(model).token_embeddings(), hf_model.get_input_embeddings().weight.float())


@pytest.mark.skipif(
    not has_hooked_transformer(),
    reason="HookedTransformer is absent from transformer-lens 4.x "
    "(removed in 4.0); the bridge tests above cover extraction there",
)
def test_hooked_transformer_extraction_equals_full_run(embedded_hf, documents):
    HookedTransformer, HookedTransformerConfig = hooked_transformer()
    _, tokenizer = embedded_hf
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=4,
        d_model=32,
        n_ctx=128,
        d_head=8,
        n_heads=4,
        d_mlp=64,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        default_prepend_bos=False,
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    ds = nla_lens.extract_activations(model, documents[:3], "blocks.2.hook_resid_post", max_length=64, progress=False)
    for row, vec in zip(ds.frame.itertuples(), ds.vectors):
        ids = tokenizer(documents[row.doc_id], add_special_tokens=False)["input_ids"][:64]
        _, cache = model.run_with_cache(torch.tensor([ids]))
        assert torch.allclose(cache["blocks.2.hook_resid_post"][0, row.position], vec, atol=1e-5)
    assert ds.meta["layer"] == 2 and ds.d_model == 32


def _count_later_block_calls(subject_model, hf_blocks, run):
    calls = []
    # Count a block as run when its MLP starts: TransformerLens stops at block K+1's input hook
    # (the block is entered, nothing computed), nnsight inside block K's output.
    handles = [block.mlp.register_forward_pre_hook(lambda *_: calls.append(1)) for block in hf_blocks]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return len(calls)


@pytest.mark.parametrize("backend", ["bridge", "nnsight"])
def test_extraction_stops_at_the_hook_layer(backend, bridge, embedded_hf, documents):
    hf_model, tokenizer = embedded_hf
    if backend == "bridge":
        model, layers = bridge, bridge.original_model.model.layers
    else:
        from nnsight.modeling.transformers import TransformersModel

        model, layers = TransformersModel(hf_model, tokenizer=tokenizer), hf_model.model.layers

    def run(hook):
        return lambda: nla_lens.extract_activations(model, documents[:2], hook, max_length=48, progress=False)

    assert _count_later_block_calls(model, layers[21:], run(HOOK)) == 0
    assert _count_later_block_calls(model, layers[20:21], run(HOOK)) > 0
    # the check itself can fail: a hook late in the model does run the later blocks
    assert _count_later_block_calls(model, layers[21:], run("blocks.29.hook_resid_post")) > 0


def test_bad_input_errors(bridge, documents):
    with pytest.raises(HookNameError, match="Unknown hook name"):
        nla_lens.extract_activations(bridge, documents[:1], "blocks.20.hook_resid_psot", progress=False)
    with pytest.raises(HookNameError, match="out of range"):
        nla_lens.extract_activations(bridge, documents[:1], layer=30, progress=False)
    with pytest.raises(InputError, match="empty"):
        nla_lens.extract_activations(bridge, [], HOOK, progress=False)
    with pytest.raises(InputError, match=r"texts\[1\]"):
        nla_lens.extract_activations(bridge, ["ok text", b"bytes"], HOOK, progress=False)
    with pytest.raises(InputError, match="shorter than min_position"):
        nla_lens.extract_activations(bridge, ["Too short."], HOOK, progress=False)
    with pytest.raises(InputError, match="Unsupported subject model"):
        nla_lens.extract_activations(object(), documents[:1], HOOK, progress=False)


def test_short_documents_are_skipped_and_counted(bridge, documents):
    texts = [documents[0], "Tiny.", documents[1], "Also short."]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = nla_lens.extract_activations(bridge, texts, HOOK, max_length=64, progress=False)
    assert ds.meta["skipped_documents"] == 2
    assert set(ds.frame["doc_id"]) == {0, 2}
    assert any("Skipped 2 of 4" in str(w.message) for w in caught)


def test_dataset_metadata_and_parquet_round_trip(bridge, documents, tmp_path):
    ds = nla_lens.extract_activations(bridge, documents, HOOK, max_length=64, progress=False)
    assert ds.meta["subject"] == "smollm2-135m" and ds.meta["hook_name"] == HOOK
    assert ds.frame["position"].min() >= 10
    assert 100 < ds.meta["norm_stats"]["median"] < 1000  # not the position-0 sink (~20,000)
    assert set(ds.splits) <= {"av_sft", "ar_sft", "rl", "eval"}
    assert ds.frame.groupby("doc_id")["split"].nunique().max() == 1
    back = nla_lens.ActivationDataset.load(ds.save(tmp_path / "acts"))
    assert torch.equal(back.vectors, ds.vectors) and back.meta["norm_stats"] == ds.meta["norm_stats"]


def test_seeded_positions_are_stable_when_documents_are_added(bridge, documents):
    a = nla_lens.extract_activations(bridge, documents[:3], HOOK, max_length=64, progress=False, seed=1)
    b = nla_lens.extract_activations(bridge, documents[:5], HOOK, max_length=64, progress=False, seed=1)
    first = b.frame[b.frame.doc_id < 3][["doc_id", "position"]].reset_index(drop=True)
    assert first.equals(a.frame[["doc_id", "position"]])


def test_adapter_reports_model_facts(bridge):
    subject = as_subject(bridge)
    assert (subject.n_layers, subject.d_model, subject.prepend_bos) == (30, 576, False)
    assert HOOK in subject.hook_names()


def test_bridge_token_embeddings_equal_the_hf_input_embeddings(bridge, embedded_hf):
    hf_model, _ = embedded_hf
    assert torch.allclose(as_subject(bridge).token_embeddings(), hf_model.get_input_embeddings().weight.float())


def test_only_splits_equals_the_full_extraction_filtered(bridge, documents):
    full = nla_lens.extract_activations(bridge, documents, HOOK, max_length=64, progress=False, seed=2)
    split = full.frame["split"].iloc[0]
    part = nla_lens.extract_activations(
        bridge, documents, HOOK, max_length=64, progress=False, seed=2, only_splits=[split]
    )
    expected = full.split(split)
    assert len(part) == len(expected) < len(full)
    columns = ["doc_id", "split", "position", "token_id", "prefix"]
    assert part.frame[columns].reset_index(drop=True).equals(expected.frame[columns].reset_index(drop=True))
    assert torch.allclose(part.vectors, expected.vectors, rtol=1e-4, atol=1e-3)  # other padding partners
    with pytest.raises(InputError, match="only_splits must name splits"):
        nla_lens.extract_activations(bridge, documents, HOOK, max_length=64, progress=False, only_splits=["train"])
