"""On the embedded model: no attention sink feeds an SAE, a feature context or an agreement measure,
and a feature that fires on every token is marked and left out of the top features.

Some of the corpus's dictionary entries (``ACADEME``, ``PHILISTINE``, ...) put a second attention
sink at position 1, with a layer-20 norm 40-60× the rest of the entry; ``nla_lens.positions`` keeps
such positions out everywhere by one rule.
"""

from __future__ import annotations

import pytest
import torch

import nla_lens
from nla_lens.analysis import side_by_side, top_feature_contexts
from nla_lens.data.extraction import extract_activations
from nla_lens.positions import CONTENT_RULE, ContentRule
from nla_lens.testing import TinySAE
from nla_lens.training.sae import activation_batches, collect_activations

pytestmark = pytest.mark.embedded
HOOK = "blocks.20.hook_resid_post"


@pytest.fixture(scope="module")
def sink_documents(bridge):
    """Corpus entries whose position 1 is a sink (norm > 10× the entry's median), found with the rule off."""
    adapter = nla_lens.as_subject(bridge)
    texts = nla_lens.load_corpus()[:120]
    everything = ContentRule(min_position=0, max_norm_ratio=float("inf"))
    found, sinks = [], []
    for ids, acts, _usable in activation_batches(
        adapter, texts, adapter.resolve_hook(HOOK), max_length=64, batch_size=8, rule=everything
    ):
        norms = acts.norm(dim=-1)
        for row, x in enumerate(ids):
            if norms[row, 1] > 10 * norms[row, 2 : len(x)].median():
                found.append(adapter.tokenizer.decode(x))
                sinks.append(acts[row, 1])
    assert len(found) >= 2, "the corpus should hold dictionary entries with a sink at position 1"
    return found, torch.stack(sinks)


def test_sae_training_rows_hold_no_sink(bridge, sink_documents):
    texts, sinks = sink_documents
    adapter = nla_lens.as_subject(bridge)
    rows = collect_activations(adapter, texts, adapter.resolve_hook(HOOK), limit=10_000, max_length=64, batch_size=8)
    norms = rows.norm(dim=-1)
    assert norms.max() < CONTENT_RULE.max_norm_ratio * norms.median()
    assert norms.max() < sinks.norm(dim=-1).min() / 10


def test_feature_contexts_never_mark_a_sink(bridge, sink_documents):
    texts, sinks = sink_documents
    adapter = nla_lens.as_subject(bridge)
    # Feature 0 reads the sink direction: over all positions its strongest token is the sink itself.
    direction = sinks.mean(0) / sinks.mean(0).norm()
    W_dec = torch.cat([direction[None], torch.randn(7, adapter.d_model)])
    sae = TinySAE(adapter.d_model, 8, 2, HOOK, W_dec=W_dec / W_dec.norm(dim=-1, keepdim=True))
    contexts = top_feature_contexts(sae, bridge, texts, HOOK, k=len(texts), left=8, right=2)
    first_two = [adapter.tokenizer.decode(adapter.encode(t, 64)[:1]) + "«" for t in texts]
    assert contexts[0], "feature 0 fires on content tokens too"
    assert not [c for c in contexts[0] if any(c.startswith(p) for p in first_two)]


def test_extraction_for_nlas_and_agreement_keeps_sinks_out(bridge, sink_documents):
    texts, _ = sink_documents
    data = extract_activations(bridge, texts, HOOK, positions_per_doc=64, min_position=1, progress=False)
    assert 1 not in set(data.frame["position"])
    assert data.meta["sink_positions_dropped"] >= len(texts)
    assert data.meta["settings"]["content_rule"] == CONTENT_RULE.to_dict()
    assert data.frame["norm"].max() < CONTENT_RULE.max_norm_ratio * data.frame["norm"].median()


@pytest.fixture(scope="module")
def shipped():
    return nla_lens.NLA.from_pretrained("smollm2-135m-L20")


def test_a_feature_firing_on_every_token_is_marked_dense_and_left_out_of_top_features(shipped, bridge):
    adapter = nla_lens.as_subject(bridge)
    sae = TinySAE(adapter.d_model, 32, 4, HOOK, seed=1)
    with torch.no_grad():
        sae.b_enc[7] = 1e4  # feature 7 fires everywhere, stronger than any other
    contexts = top_feature_contexts(sae, bridge, nla_lens.load_corpus()[:6], HOOK, k=2)
    assert contexts.dense()[7] == 1.0 and contexts.n_tokens > 100
    prompt = "The old sailor tied the rope to the mast"
    view = side_by_side(shipped, bridge, prompt, sae=sae, feature_contexts=contexts, max_new_tokens=4, progress=False)
    assert all(7 not in [f for f, _ in row] and row for row in view.frame["sae_features"])
    assert any("dense SAE feature" in n and "#7" in n for n in view.notices)
    shown = side_by_side(
        shipped, bridge, prompt, positions=[2], sae=sae, feature_contexts=contexts, include_dense=True,
        max_new_tokens=4, progress=False,
    )  # fmt: skip
    assert shown.frame["sae_features"].iat[0][0][0] == 7
    assert "dense 100%" in shown.html
