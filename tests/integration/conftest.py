"""Shared integration fixtures.

Session-wide: the embedded model (loaded once: ~3 s from the cache, ~20 s the first time), the corpus,
and one ``nla-lens train --preset smoke`` run that the recipe tests read. Per test: ``tiny_nla``, the
default tiny random NLA (:func:`nla_lens.testing.models.tiny_nla`). Tests that use an embedded-model
fixture carry the ``embedded`` marker.
"""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def embedded_hf():
    from nla_lens.subjects.embedded import load_embedded_hf

    # Eager attention, as the TransformerBridge computes it: hidden states then agree bit for bit
    # (sdpa kernels round differently, ~2e-4 absolute at layer 20).
    return load_embedded_hf(attn_implementation="eager")


@pytest.fixture(scope="session")
def bridge():
    from nla_lens import load_subject

    return load_subject("smollm2-135m")


@pytest.fixture(scope="session")
def documents():
    from nla_lens import load_corpus

    return load_corpus(max_documents=12)


@pytest.fixture()
def tiny_nla():
    """The default test NLA, fresh per test: :func:`nla_lens.testing.models.tiny_nla` (two random 3-block
    tiny llamas, AR truncated at K=1). Tests that need another layer, width or seed call the factory."""
    from nla_lens.testing import models

    return models.tiny_nla()


@pytest.fixture(scope="session")
def warm_av_nla():
    """``(nla, dataset)``: a tiny NLA whose AV had a short warm start, so some samples close their tag,
    rewards differ within groups and a GRPO step makes a non-zero update. Shared: deep-copy before training."""
    from nla_lens.testing import models
    from nla_lens.testing.synthetic import concept_dataset
    from nla_lens.training import AVWarmStart, WarmStartConfig

    nla = models.tiny_nla()
    data, texts = concept_dataset(48, nla.d_model)
    AVWarmStart(nla.av, data, texts, WarmStartConfig(lr=1e-2, batch_size=16)).train(15, progress=False)
    return nla, data


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One ``nla-lens train --preset smoke`` run on the embedded model (about a minute on 2 cores), shared by the
    ``test_recipe_*`` files: ``(run folder, what it printed)``. Tests read it; tests that change a run
    folder work on a copy."""
    import contextlib
    import io

    from nla_lens.cli import main

    out = tmp_path_factory.mktemp("recipe") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--preset", "smoke", "--out", str(out)])
    assert code == 0, printed.getvalue()[-4000:]
    return out, printed.getvalue()
