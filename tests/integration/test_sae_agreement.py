"""NLA ⇄ SAE comparison on constructed cases: per-position agreement, feature labels, bad input.

The vectors mix two of sixteen concept directions (``x = c_i + 0.5 c_j + noise``) that live in
the first half of the dimensions; the explanation names only the main concept, and the feature
contexts are drawn from other documents. An SAE whose features are exactly the concept
directions must agree with the NLA well above the shuffled pairing on both measures; an SAE whose
features are random with respect to the content (its encoder reads only the dimensions that
carry no concept, its decoder is random) must sit at its shuffled control.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from nla_lens.analysis import dataset_feature_contexts, nla_feature_labels, sae_agreement
from nla_lens.analysis.feature_labels import direction_vectors
from nla_lens.data.dataset import ActivationDataset, norm_stats
from nla_lens.errors import InputError
from nla_lens.testing import TinySAE
from nla_lens.testing.models import tiny_nla
from nla_lens.training import ARWarmStart, WarmStartConfig
from nla_lens.vis import FeatureCard, SideBySide

D = 64
HOOK = "blocks.1.hook_resid_post"
WORDS = (
    "cat", "dog", "bird", "park", "tree", "mat", "vector", "model",
    "text", "word", "language", "summary", "english", "stream", "token", "dictionary",
)  # fmt: skip
CONTENT_DIMS = 32


def concepts() -> torch.Tensor:
    """``[16, D]`` concept directions, zero outside the first ``CONTENT_DIMS`` dimensions."""
    c = 2 * torch.randn(len(WORDS), D, generator=torch.Generator().manual_seed(0))
    c[:, CONTENT_DIMS:] = 0
    return c


def mixture(n: int, seed: int, noise: float = 0.3) -> tuple[ActivationDataset, list[str]]:
    """``n`` vectors ``c_i + 0.5 c_j + noise`` with the explanation ``"the {word_i}"``."""
    g = torch.Generator().manual_seed(seed)
    c = concepts()
    main = torch.randint(len(WORDS), (n,), generator=g)
    other = (main + 1 + torch.randint(len(WORDS) - 1, (n,), generator=g)) % len(WORDS)
    x = c[main] + 0.5 * c[other] + noise * torch.randn(n, D, generator=g)
    words = [WORDS[i] for i in main.tolist()]
    frame = pd.DataFrame(
        {
            "doc_id": [f"{seed}-{i}" for i in range(n)],
            "split": "eval",
            "position": 5,
            "token_id": main.tolist(),
            "token": words,
            "prefix": [f"a picture of the {w}" for w in words],
            "norm": x.norm(dim=-1).numpy(),
        }
    )
    meta = {"subject": "synthetic", "hook_name": HOOK, "norm_stats": norm_stats(x)}
    return ActivationDataset(x, frame, meta), [f"the {w}" for w in words]


@pytest.fixture(scope="module")
def nla():
    """A tiny NLA whose AR has learnt to rebuild the main concept from its name."""
    torch.manual_seed(0)
    nla = tiny_nla(d_model=D)
    train, texts = mixture(256, 1)
    ARWarmStart(nla.ar, train, texts, WarmStartConfig(lr=3e-3, batch_size=16)).train(60, progress=False)
    return nla


def exact_sae(kind: str = "interface"):
    """Features = the concept directions (top-2: the main and the mixed-in concept)."""
    c = concepts()
    return _as_kind(c / c.norm(dim=-1, keepdim=True), None, kind)


def content_blind_sae(kind: str = "interface"):
    """32 random features that read only the dimensions without concepts and decode randomly."""
    g = torch.Generator().manual_seed(9)
    w_enc = torch.randn(D, 32, generator=g)
    w_enc[:CONTENT_DIMS] = 0
    w_dec = torch.randn(32, D, generator=g)
    return _as_kind(w_dec / w_dec.norm(dim=-1, keepdim=True), w_enc, kind)


def _as_kind(w_dec: torch.Tensor, w_enc: torch.Tensor | None, kind: str):
    """A TopK-2 SAE with these weights: :class:`TinySAE` or a SAELens ``TopKSAE``."""
    w_enc = w_dec.T.clone() if w_enc is None else w_enc
    if kind == "interface":
        sae = TinySAE(D, len(w_dec), 2, HOOK, W_dec=w_dec)
        sae.W_enc.data = w_enc.clone()
        return sae
    from sae_lens import TopKSAE, TopKSAEConfig

    sae = TopKSAE(TopKSAEConfig(d_in=D, d_sae=len(w_dec), k=2))
    with torch.no_grad():
        sae.W_dec.copy_(w_dec)
        sae.W_enc.copy_(w_enc)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.cfg.metadata.hook_name = HOOK
    return sae


def _agreement(nla, sae):
    held, texts = mixture(128, 2)
    contexts = dataset_feature_contexts(sae, mixture(128, 3)[0], 3)
    return sae_agreement(nla, sae, held, feature_contexts=contexts, explanations=texts, top_k=2)


SAE_KINDS = [pytest.param("sae_lens", marks=pytest.mark.sae_lens), "interface"]


@pytest.mark.parametrize("kind", SAE_KINDS)
def test_an_sae_of_the_directions_the_nla_reads_agrees_above_its_shuffled_control(nla, kind):
    result = _agreement(nla, exact_sae(kind))
    s = result.summary
    assert s["n"] == 128 and s["fve_nrm"] > 0.3  # the NLA does read the main concept
    assert s["word_overlap"] > s["word_overlap_shuffled"] + 0.5
    assert s["error_in_features"] > s["error_in_features_shuffled"] + 0.15
    assert {"explanation", "features", "word_overlap", "error_in_features_shuffled"} <= set(result.frame.columns)
    assert result.table().loc["word_overlap", "lift"] == pytest.approx(s["word_overlap_lift"])


@pytest.mark.parametrize("kind", SAE_KINDS)
def test_an_sae_blind_to_the_content_sits_at_its_shuffled_control(nla, kind):
    s = _agreement(nla, content_blind_sae(kind)).summary
    assert abs(s["word_overlap_lift"]) < 0.1
    assert abs(s["error_in_features_lift"]) < 0.05


@pytest.mark.sae_lens
def test_saelens_and_interface_saes_with_the_same_weights_give_the_same_frame(nla):
    ours, theirs = _agreement(nla, exact_sae("interface")), _agreement(nla, exact_sae("sae_lens"))
    assert ours.frame["features"].tolist() == theirs.frame["features"].tolist()
    pd.testing.assert_series_equal(ours.frame["error_in_features"], theirs.frame["error_in_features"], atol=1e-5)


def test_feature_labels_name_each_concept_and_are_grounded_above_a_shuffled_feature(nla):
    sae = exact_sae()
    data, texts = mixture(256, 4)
    contexts = dataset_feature_contexts(sae, mixture(128, 3)[0], 3)
    labels = nla_feature_labels(
        nla,
        sae,
        data,
        range(len(WORDS)),
        feature_contexts=contexts,
        explanations=texts,
        max_new_tokens=4,
        progress=False,
    )
    assert labels.frame["label_words"].map(lambda w: w[:1]).tolist() == [[w] for w in WORDS]
    assert labels.summary["label_grounding"] > labels.summary["label_grounding_shuffled"] + 0.5
    assert labels.direction_vectors.shape == (len(WORDS), D)
    assert labels.frame["direction_explanation"].map(type).eq(str).all()
    first = labels.of(0)
    assert list(first.columns) == ["rank", "row", "activation", "token", "explanation"]
    assert (first["token"] == WORDS[0]).all() and first["activation"].is_monotonic_decreasing
    html = labels.card(3).html
    assert "Feature #3" in html and "<mark>park</mark>" in html and WORDS[3] in html


def test_side_by_side_shows_each_feature_with_its_nla_label(nla):
    sae = exact_sae()
    data, texts = mixture(64, 4)
    labels = nla_feature_labels(
        nla, sae, data, [0, 1], feature_contexts={0: ["the «cat»"], 1: ["a «dog»"]}, explanations=texts,
        max_new_tokens=4, progress=False,
    )  # fmt: skip
    frame = pd.DataFrame(
        {
            "position": [1],
            "token": ["cat"],
            "explanation": ["the cat"],
            "mse": [0.1],
            "cosine": [0.9],
            "gain": [0.5],
            "sae_features": [[(0, 2.0), (1, 1.0)]],
        }
    )
    shown = labels.labels()
    assert shown[0].grounded and shown[1].grounded
    html = SideBySide(frame, ["a", "cat"], hook_name=HOOK, feature_labels=shown).html
    for f in (0, 1):
        score = f"grounding {shown[f].grounding:.2f} vs shuffled {shown[f].shuffled:.2f}"
        assert f'#{f} <i class="nla-label">{shown[f].text}</i> <span class="nla-meta">({score})' in html
    assert "(ungrounded" not in html


def test_an_ungrounded_label_is_shown_as_such_in_the_side_by_side_view_and_the_feature_card(nla):
    sae = exact_sae()
    data, texts = mixture(64, 4)
    # Feature 1's contexts hold no word of its label (the concept "dog"): its label is ungrounded.
    labels = nla_feature_labels(
        nla, sae, data, [0, 1], feature_contexts={0: ["the «cat»"], 1: ["the «mat»"], 2: ["a «bird»"]},
        explanations=texts, max_new_tokens=4, progress=False,
    )  # fmt: skip
    frame = labels.frame.set_index("feature")
    assert frame.loc[0, "grounded"] and not frame.loc[1, "grounded"]
    table = pd.DataFrame(
        {"position": [1], "token": ["dog"], "explanation": ["the dog"], "mse": [0.1], "cosine": [0.9],
         "gain": [0.5], "sae_features": [[(1, 2.0), (0, 1.0), (5, 0.5)]]}
    )  # fmt: skip
    html = SideBySide(table, ["a", "dog"], hook_name=HOOK, feature_labels={**labels.labels(), 5: "bare words"}).html
    assert '<s class="nla-label nla-ungrounded"' in html and f"{labels.labels()[1].text}</s>" in html
    assert "(ungrounded: grounding 0.00 vs shuffled" in html
    assert 'bare words</s> <span class="nla-meta">(ungrounded: grounding — vs shuffled —)' in html  # never bare
    card = labels.card(1).html
    assert 'data-ungrounded="1"' in card and "ungrounded" in card
    assert 'data-ungrounded="1"' not in labels.card(0).html


def test_feature_card_renders_a_hand_made_row():
    row = {
        "feature": 7,
        "label_words": ["cat", "mat"],
        "direction_explanation": "a <pet>",
        "label_grounding": 0.8,
        "label_grounding_shuffled": 0.1,
        "direction_grounding": float("nan"),
        "direction_grounding_shuffled": float("nan"),
        "top_contexts": ["the «cat» sat"],
        "top_explanations": ["the cat"],
        "reference_label": "cats",
    }
    html = FeatureCard([row]).html
    assert "<mark>cat</mark>" in html and "a &lt;pet&gt;" in html and "0.80" in html and "Reference label" in html


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("empty", ["dataset", "texts"])
def test_an_empty_dataset_gives_an_empty_result(nla, empty):
    held, _ = mixture(4, 2)
    data = ActivationDataset(held.vectors[:0], held.frame.iloc[:0], held.meta) if empty == "dataset" else []
    result = sae_agreement(nla, exact_sae(), data, feature_contexts={}, top_k=2)
    assert result.summary["n"] == 0 and len(result.frame) == 0
    assert "word_overlap" in result.frame.columns and result.table().shape == (2, 3)
    labels = nla_feature_labels(nla, exact_sae(), data, [0, 1], feature_contexts={}, max_new_tokens=3, progress=False)
    assert labels.frame["n_active"].tolist() == [0, 0] and labels.frame["label"].tolist() == ["", ""]


def test_features_out_of_range_are_refused_naming_the_range(nla):
    held, texts = mixture(8, 2)
    with pytest.raises(InputError, match=r"\[16, -1\].*0\.\.15"):
        nla_feature_labels(nla, exact_sae(), held, [0, 16, -1], feature_contexts={}, explanations=texts)


@pytest.mark.parametrize("change", ["width", "hook"])
def test_an_sae_of_another_width_or_hook_is_refused(nla, change):
    held, texts = mixture(8, 2)
    sae = TinySAE(D + 1, 8, 2, HOOK) if change == "width" else TinySAE(D, 8, 2, "blocks.0.hook_resid_post")
    with pytest.raises(InputError, match="d_in=65" if change == "width" else "blocks.0.hook_resid_post"):
        sae_agreement(nla, sae, held, feature_contexts={}, explanations=texts)
    with pytest.raises(InputError, match="d_in=65" if change == "width" else "blocks.0.hook_resid_post"):
        nla_feature_labels(nla, sae, held, [0], feature_contexts={}, explanations=texts)


def test_explanations_of_another_length_are_refused(nla):
    held, texts = mixture(8, 2)
    with pytest.raises(InputError, match="7 explanations for 8 positions"):
        sae_agreement(nla, exact_sae(), held, feature_contexts={}, explanations=texts[:7])


def test_a_direction_vector_leans_towards_its_feature_as_the_strength_grows():
    data, _ = mixture(64, 5)
    decoder = exact_sae().W_dec.detach()[:2]
    weak = direction_vectors(data.vectors, decoder, torch.tensor([0.1, 0.1]))
    strong = direction_vectors(data.vectors, decoder, torch.tensor([100.0, 100.0]))
    median = data.vectors.norm(dim=-1).median()
    assert torch.allclose(strong.norm(dim=-1), median.expand(2)) and torch.allclose(weak.norm(dim=-1), median.expand(2))
    cos = torch.nn.functional.cosine_similarity
    assert (cos(strong, decoder) > 0.99).all() and (cos(weak, decoder) < cos(strong, decoder)).all()
