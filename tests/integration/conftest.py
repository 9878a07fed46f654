"""Shared integration fixtures.

Session-wide: the embedded model (loaded once: ~3 s from the cache, ~20 s the first time) and the corpus
(``smoke_run``, the ``nla-lens train --preset smoke`` run the recipe tests read, is in tests/conftest.py:
the documentation's train page reads it too). Per test: ``tiny_nla``, the
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
def same_grpo_update():
    """``same_grpo_update(nla, data, a, b, columns=...)``: two GRPO trainers, each on a deep copy of ``nla``,
    train two steps on the same batches (4 vectors x 4 samples, micro-batches of 6 that cut groups,
    ``kl_coef=0.5`` so the second step has a KL) with the settings ``a`` and ``b`` on top (config
    fields, and ``fast_paths=``: a :class:`~nla_lens.training.grpo.FastPaths`); asserts the
    same history ``columns`` and the same trained weights, and returns both trainers."""
    import copy

    from nla_lens.training import GRPOConfig, GRPOTrainer
    from nla_lens.training.grpo import FastPaths

    base = dict(n_vectors=4, group_size=4, max_new_tokens=16, micro_batch_size=6, lr=1e-3, kl_coef=0.5, seed=11)

    def run(nla, data, settings):
        settings = dict(settings)
        fast_paths = settings.pop("fast_paths", FastPaths())
        trainer = GRPOTrainer(copy.deepcopy(nla), data, GRPOConfig(**{**base, **settings}), fast_paths=fast_paths)
        trainer.train(2, progress=False)
        weights = {n: p.detach().clone() for n, p in trainer.nla.av.model.named_parameters() if p.requires_grad}
        return trainer, weights

    def compare(nla, data, a, b, columns=("policy_loss", "kl", "av_grad_norm", "reward_mean")):
        (ta, wa), (tb, wb) = run(nla, data, a), run(nla, data, b)
        for column in columns:
            torch.testing.assert_close(
                torch.tensor(ta.history[column].to_numpy()),
                torch.tensor(tb.history[column].to_numpy()),
                atol=1e-6,
                rtol=1e-4,
            )
        assert wa.keys() == wb.keys() and wa
        # Adam divides each gradient element by its own running scale, so float rounding in a near-zero
        # element can move that weight by ~1e-6; a wrong log-prob moves weights by the step size (~1e-3).
        for name in wa:
            torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-3, msg=name)
        return ta, tb

    return compare
