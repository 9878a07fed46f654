"""Tests of the computing behind the views: the side-by-side table, SAE training and top contexts.

Moved from ``tests/unit/test_vis.py`` when ``nla_lens.vis`` became render-only: these build and
run tiny random models (a 2-block tiny-llama TransformerBridge subject, a tiny-llama NLA, a
64-feature SAE); the whole file runs in seconds on a CPU. The views run with a SAELens SAE (on
TransformerLens 3.9) and with the hand-made ``TinySAE`` of the documented interface (both lines).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import nla_lens
from nla_lens.analysis.compare import side_by_side
from nla_lens.analysis.sae_features import top_feature_contexts
from nla_lens.errors import InputError, SAEInterfaceError
from nla_lens.metrics import mean_direction
from nla_lens.subjects.activations import prompt_activations
from nla_lens.testing import TinySAE
from nla_lens.testing.models import tiny_subject
from nla_lens.testing.tokenizers import TINY_CORPUS, tiny_tokenizer
from nla_lens.training import sae as training_sae
from nla_lens.training.sae import train_embedded_sae
from nla_lens.vis import Section, page
from nla_lens.vis.side_by_side import FRAME_COLUMNS, score_colour

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*explanations are flagged",
    "ignore:The 'utils' module has been deprecated:DeprecationWarning",  # sae_lens importing transformer_lens
)

HOOK = "blocks.1.hook_resid_post"
EXTERNAL = re.compile(r"https?://|//cdn|@import\s+url\(", re.IGNORECASE)
MOUNT = re.compile(r'<div id="(circuits-vis-[^"]+)"[^>]*></div>')
CORPUS = [*TINY_CORPUS, "The cat and the dog sat in the park.", "A bird sang a song to the cat."]


@pytest.fixture(scope="module")
def subject():
    return tiny_subject(tiny_tokenizer())


@pytest.fixture(scope="module")
def nla():
    from nla_lens.models import NLA
    from nla_lens.testing.models import tiny_llama

    av_tok, ar_tok = tiny_tokenizer(), tiny_tokenizer()
    return NLA.untrained(
        "tiny",
        layer=1,
        injection_scale=5.0,
        base_models=((tiny_llama(av_tok), av_tok), (tiny_llama(ar_tok, seed=1), ar_tok)),
    )


@pytest.fixture(scope="module")
def sae_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("saes")


@pytest.fixture(scope="module")
def sae(subject, sae_cache):
    return train_embedded_sae(
        subject,
        CORPUS,
        hook_name=HOOK,
        d_sae=64,
        k=4,
        training_tokens=2048,
        batch_size_tokens=64,
        lr=1e-2,
        cache_dir=sae_cache,
    )


#: Both kinds of SAE the views accept: SAELens's (3.9 only) and the documented interface.
SAE_KINDS = [pytest.param("sae_lens", marks=pytest.mark.sae_lens), "interface"]


@pytest.fixture()
def any_sae(request, subject, sae_cache):
    if request.param == "sae_lens":
        return request.getfixturevalue("sae")
    return TinySAE(32, 64, 4, HOOK, seed=3)


def _sbs(nla, subject, prompt="The cat sat on the mat.", **kwargs):
    return side_by_side(nla, subject, prompt, max_new_tokens=3, progress=False, **kwargs)


def _make_sae(d_in: int, hook_name: str | None):
    return TinySAE(d_in, 8, 2, hook_name)


# -- self-contained pages ----------------------------------------------------------------------
@pytest.mark.parametrize("any_sae", SAE_KINDS, indirect=True)
def test_page_with_two_side_by_sides_and_an_attention_view(nla, subject, any_sae):
    sae = any_sae
    import circuitsvis as cv

    contexts = top_feature_contexts(sae, subject, CORPUS, HOOK, k=2)
    url = "see https://cdn.example.com/«x».js or //cdn.example.com"  # user text holding URLs
    contexts = {feature: [*found, url] for feature, found in contexts.items()}
    first = _sbs(nla, subject, sae=sae, feature_contexts=contexts)
    second = _sbs(nla, subject, "A bird sang </script><b>x</b> in the tree.", positions=[2, 3], heads=[0, 2])
    attention = cv.attention.attention_heads(attention=torch.rand(4, 5, 5), tokens=list("abcde"))
    html = page(Section(first, "first"), second, Section(attention, "raw attention"), title="three views")

    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert EXTERNAL.findall(html) == []
    assert html.count('data-nla-vis="side-by-side"') == 2
    assert html.count('data-nla-vis="circuitsvis"') == 3 and html.count("CircuitsVis.render(") == 3
    mounts = MOUNT.findall(html)
    assert len(mounts) == 3 and len(set(mounts)) == 3  # closed, distinct mount points
    assert not re.search(r'<div id="circuits-vis-[^"]+"[^>]*/>', html)
    assert html.count("<section") == 3 and html.count("</section>") == 3
    assert html.count('<script crossorigin type="module">') == html.count("</script>") == 3  # "</" escaped
    assert '" <\\/"' in second.html  # "</" inside the circuitsvis props cannot end the script
    assert ">&lt;&#47;</span>" in second.html and ">&lt;</span>" in second.html  # token strip escaped
    assert "cdn.example.com" in first.html and "<mark>x</mark>" in first.html  # shown, but as text
    assert "<mark>" in html and "L1H2" in html and "L1H1" not in second.html
    assert "sourceMappingURL" not in html


def test_view_displays_and_saves(nla, subject, tmp_path):
    view = _sbs(nla, subject, positions=[1])
    assert view._repr_html_() == view.html and 'data-nla-vis="side-by-side"' in view.html
    path = view.save(tmp_path / "out" / "view.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and view.html in text and not EXTERNAL.search(text)


# -- the side-by-side view ---------------------------------------------------------------------
@pytest.mark.parametrize("any_sae", SAE_KINDS, indirect=True)
def test_frame_columns_and_features(nla, subject, any_sae):
    sae = any_sae
    view = _sbs(nla, subject, sae=sae, sae_top_k=3)
    frame = view.frame
    assert list(frame.columns[: len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    assert frame["position"].tolist() == list(range(1, len(view.tokens)))
    assert frame["token"].tolist() == view.tokens[1:]
    assert frame["cosine"].between(-1, 1).all() and (frame["mse"] >= 0).all()
    assert any(frame["sae_features"].map(len))
    for features in frame["sae_features"]:
        assert len(features) <= 3
        assert all(isinstance(f, int) and 0 <= f < 64 and a > 0 for f, a in features)
        assert [a for _, a in features] == sorted((a for _, a in features), reverse=True)
    assert view.attention.shape == (4, len(view.tokens), len(view.tokens))
    no_sae = _sbs(nla, subject, positions=[2])
    assert no_sae.frame["sae_features"].tolist() == [[]] and no_sae.frame["position"].tolist() == [2]


def test_sae_of_another_width_is_refused(nla, subject):
    with pytest.raises(InputError, match=r"d_in=16.*d_model=32"):
        _sbs(nla, subject, sae=_make_sae(16, HOOK))


def test_sae_of_another_hook_is_refused(nla, subject):
    with pytest.raises(InputError) as info:
        _sbs(nla, subject, sae=_make_sae(32, "blocks.0.hook_resid_post"))
    assert "blocks.0.hook_resid_post" in str(info.value) and HOOK in str(info.value)
    with pytest.raises(InputError, match="records no hook name"):
        _sbs(nla, subject, sae=_make_sae(32, None))


def test_object_without_the_sae_interface_is_refused(nla, subject):
    with pytest.raises(SAEInterfaceError, match=r"encode.*W_dec.*cfg.d_in"):
        _sbs(nla, subject, sae=object())
    broken = TinySAE(32, 8, 2, HOOK)
    broken.W_dec = torch.nn.Parameter(torch.zeros(8, 16), requires_grad=False)
    with pytest.raises(SAEInterfaceError, match=r"W_dec has shape \(8, 16\) but cfg.d_in=32"):
        top_feature_contexts(broken, subject, CORPUS, HOOK)


def test_long_prompt_is_truncated_with_a_notice(nla, subject):
    prompt = "The cat sat on the mat. " * 60
    assert len(subject.tokenizer(prompt)["input_ids"]) > 128
    with pytest.warns(UserWarning, match="more than the model context"):
        view = _sbs(nla, subject, prompt, positions=[1, 127])
    assert len(view.tokens) == 128 and view.frame.attrs["truncated"]
    assert re.search(r'class="nla-notice"[^>]*>[^<]*more than the model context \(128\)', view.html)
    short = _sbs(nla, subject, positions=[1])
    assert "nla-notice" not in short.html.split("</style>", 1)[1]
    with pytest.raises(InputError, match="positions"), pytest.warns(UserWarning, match="model context"):
        _sbs(nla, subject, prompt, positions=[128])


# -- SAE helpers -------------------------------------------------------------------------------
@pytest.mark.sae_lens
def test_train_embedded_sae_trains_once_then_loads_the_cache(subject, sae, sae_cache, monkeypatch):
    assert sae.cfg.d_in == 32 and sae.cfg.d_sae == 64 and sae.cfg.metadata.hook_name == HOOK
    folders = list(sae_cache.glob("sae-*"))
    assert len(folders) == 1 and (folders[0] / "cfg.json").is_file()

    # Training reconstructs the activations better than the zero vector (direction, not numbers).
    acts = subject.run_with_cache(torch.tensor([subject.tokenizer(CORPUS[0])["input_ids"]]), names_filter=HOOK)[1][
        HOOK
    ][0, 1:]
    with torch.no_grad():
        err = (sae.decode(sae.encode(acts)) - acts).pow(2).sum()
    assert err < acts.pow(2).sum()

    def refuse(*args, **kwargs):
        raise AssertionError("retrained or re-extracted although a cached SAE exists")

    monkeypatch.setattr(training_sae, "_train_sae", refuse)
    monkeypatch.setattr(training_sae, "collect_activations", refuse)
    again = train_embedded_sae(
        subject,
        CORPUS,
        hook_name=HOOK,
        d_sae=64,
        k=4,
        training_tokens=2048,
        batch_size_tokens=64,
        lr=1e-2,
        cache_dir=sae_cache,
    )
    for name, tensor in sae.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert torch.equal(training_sae.load_sae(folders[0]).W_enc, sae.W_enc)
    with pytest.raises(AssertionError, match="retrained"):  # other settings -> another cache folder
        train_embedded_sae(
            subject,
            CORPUS,
            hook_name=HOOK,
            d_sae=32,
            k=4,
            training_tokens=2048,
            batch_size_tokens=64,
            cache_dir=sae_cache,
        )


@pytest.mark.sae_lens
def test_train_embedded_sae_keeps_max_activations_rows_and_trains_over_epochs(subject, tmp_path, monkeypatch):
    read, collect = [], training_sae.collect_activations

    def spy(*args, **kwargs):  # the real reader, counting the rows it returns
        rows = collect(*args, **kwargs)
        read.append(rows.shape[0])
        return rows

    monkeypatch.setattr(training_sae, "collect_activations", spy)
    sae = train_embedded_sae(
        subject,
        CORPUS,
        hook_name=HOOK,
        d_sae=32,
        k=4,
        training_tokens=1024,
        max_activations=40,
        batch_size_tokens=16,
        lr=1e-2,
        cache_dir=tmp_path,
    )
    assert read == [40]  # 1,024 samples drawn from a 40-row buffer: about 25 epochs
    acts = subject.run_with_cache(torch.tensor([subject.tokenizer(CORPUS[0])["input_ids"]]), names_filter=HOOK)[1][
        HOOK
    ][0, 1:]
    with torch.no_grad():
        assert (sae.decode(sae.encode(acts)) - acts).pow(2).sum() < acts.pow(2).sum()
    with pytest.raises(InputError, match="max_activations >= 1"):
        train_embedded_sae(subject, CORPUS, hook_name=HOOK, max_activations=0, cache_dir=tmp_path)


@pytest.mark.sae_lens
def test_load_sae_of_a_folder_without_files(tmp_path):
    with pytest.raises(nla_lens.errors.CacheError, match="cfg.json"):
        training_sae.load_sae(tmp_path)


@pytest.mark.parametrize("any_sae", SAE_KINDS, indirect=True)
def test_top_feature_contexts_mark_the_max_activating_token(subject, any_sae):
    sae = any_sae
    contexts = top_feature_contexts(sae, subject, CORPUS, HOOK, k=3)
    assert contexts and all(1 <= len(c) <= 3 for c in contexts.values())

    # Independent recomputation: the strongest (text, position) of each feature, position 0 excluded.
    tok = subject.tokenizer
    best: dict[int, tuple[float, str]] = {}
    for text in CORPUS:
        ids = tok(text)["input_ids"]
        acts = subject.run_with_cache(torch.tensor([ids]), names_filter=HOOK)[1][HOOK][0]
        with torch.no_grad():
            feats = sae.encode(acts)[1:]  # [seq - 1, d_sae]
        values, positions = feats.max(dim=0)
        for f in torch.nonzero(values > 0).flatten().tolist():
            if f not in best or values[f] > best[f][0]:
                best[f] = (float(values[f]), tok.decode([ids[int(positions[f]) + 1]]))
    assert set(best) == set(contexts)
    for feature, (_, token) in best.items():
        top = contexts[feature][0]
        assert f"«{token}»" in top.replace("↵", "\n"), (feature, token, top)
        assert all(c.count("«") == 1 and c.count("»") == 1 for c in contexts[feature])


def test_a_token_explained_no_better_than_the_mean_direction_is_not_coloured_good(nla, subject, monkeypatch):
    """Honest colours: reconstructions equal to the mean direction of the prompt's tokens have gain 0
    and are painted red, whatever their raw cosine (kept as a column)."""
    prompt = "The cat sat on the mat."
    read = prompt_activations(subject, prompt, nla.hook_name)
    mean = mean_direction(read.vectors)
    monkeypatch.setattr(nla.ar, "reconstruct", lambda texts, batch_size=16: mean.expand(len(texts), -1).clone())
    view = _sbs(nla, subject, prompt)
    assert view.frame["gain"].tolist() == pytest.approx([0.0] * len(view.frame), abs=1e-5)
    assert view.frame["cosine"].max() > 0.1  # a cosine-coloured strip would not be red
    spans = re.findall(r'class="nla-tok nla-explained"[^>]*style="background:([^"]+)"', view.html)
    assert len(spans) == len(view.frame) and set(spans) == {score_colour(0.0)} == {"hsl(0, 75%, 82%)"}
    assert "no better than the mean direction" in view.html  # the legend says what the colour means


@pytest.mark.sae_lens
def test_sae_training_progress_bars_end_full(subject, tmp_path, monkeypatch):
    import tqdm.std

    closed, close = [], tqdm.std.tqdm.close

    def record(bar):  # the real close, remembering where each bar stood
        if not bar.disable:
            closed.append((bar.desc, bar.n, bar.total))
        close(bar)

    monkeypatch.setattr(tqdm.std.tqdm, "close", record)
    # 95 steps of 16 samples: SAELens alone moves its bar every 100 steps, so it would close at 0 of
    # 1,520; the corpus holds fewer rows than max_activations, so the reading bar would stop short.
    train_embedded_sae(
        subject, CORPUS, hook_name=HOOK, d_sae=32, k=4, training_tokens=1520, batch_size_tokens=16, cache_dir=tmp_path
    )
    bars = {desc.split("|")[-1].strip()[:20]: (n, total) for desc, n, total in closed}
    assert len(bars) >= 2, closed
    assert all(n >= total for n, total in bars.values()), closed
