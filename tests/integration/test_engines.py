"""Engine choice and per-vector seeded sampling through the HF engine (tiny random models)."""

from __future__ import annotations

import pytest
import torch

from nla_lens.errors import InputError
from nla_lens.sampling import sample_seeds
from nla_lens.training import GRPOConfig


def _vectors(n: int, d: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1))


def test_a_seeded_row_samples_the_same_in_any_batch(tiny_nla):
    av = tiny_nla.av
    vectors = _vectors(4, av.d_model)
    seeds = sample_seeds(0, range(4))
    together, _ = av.generate(vectors, max_new_tokens=12, do_sample=True, seeds=seeds)
    reordered, _ = av.generate(vectors[[3, 1]], max_new_tokens=12, do_sample=True, seeds=[seeds[3], seeds[1]])
    alone, _ = av.generate(vectors[2:3], max_new_tokens=12, do_sample=True, seeds=seeds[2:3])

    def trim(row):
        return [t for t in row.tolist() if t != av.tokenizer.pad_token_id]

    assert trim(reordered[0]) == trim(together[3]) and trim(reordered[1]) == trim(together[1])
    assert trim(alone[0]) == trim(together[2])
    other, _ = av.generate(vectors, max_new_tokens=12, do_sample=True, seeds=sample_seeds(1, range(4)))
    assert other.tolist() != together.tolist()  # the seed matters


def test_verbalize_with_a_seed_does_not_depend_on_the_batch_size(tiny_nla):
    av = tiny_nla.av
    vectors = _vectors(3, av.d_model)
    kwargs = dict(max_new_tokens=10, do_sample=True, num_samples=2, seed=7, progress=False, warn=False)
    whole = av.verbalize(vectors, batch_size=6, **kwargs)
    pieces = av.verbalize(vectors, batch_size=1, **kwargs)
    assert whole["explanation"].tolist() == pieces["explanation"].tolist()
    assert whole["explanation"].nunique() > 1


def test_an_engine_object_is_used_and_unknown_names_are_refused(tiny_nla):
    av = tiny_nla.av
    vectors = _vectors(2, av.d_model)

    class Recording:
        calls = 0

        def generate(self, vectors, **kwargs):
            Recording.calls += 1
            return av.generate(vectors, **kwargs)

    by_object = av.verbalize(vectors, max_new_tokens=8, engine=Recording(), progress=False, warn=False)
    assert Recording.calls == 1
    assert (
        by_object["explanation"].tolist()
        == av.verbalize(vectors, max_new_tokens=8, progress=False, warn=False)["explanation"].tolist()
    )
    with pytest.raises(InputError, match="Unknown engine 'sglang'.*'hf'.*'vllm'"):
        av.verbalize(vectors, engine="sglang", progress=False)
    with pytest.raises(InputError, match="object with generate"):
        av.verbalize(vectors, engine=42, progress=False)
    with pytest.raises(InputError, match="Unknown engine 'sglang'"):
        GRPOConfig(engine="sglang")
    with pytest.raises(InputError, match="Unknown engine"):
        tiny_nla.explain(vectors, engine="sglang", progress=False)


def test_a_registered_engine_is_started_kept_sent_new_weights_and_closed(tiny_nla, monkeypatch):
    import nla_lens.engines as engines

    monkeypatch.setattr(engines, "_FACTORIES", dict(engines._FACTORIES))  # the registry, restored after
    av = tiny_nla.av
    events: list = []

    class Delegating:
        def __init__(self, served, **kwargs):
            events.append(("start", kwargs))
            self.served = served

        def generate(self, vectors, **kwargs):
            events.append("generate")
            return self.served.generate(vectors, **kwargs)

        def update_weights(self):
            events.append("update")

        def close(self):
            events.append("close")

    engines.register_engine("delegating", Delegating)
    vectors = _vectors(2, av.d_model)
    kwargs = dict(max_new_tokens=8, progress=False, warn=False)
    by_engine = av.verbalize(vectors, engine="delegating", **kwargs)
    assert by_engine["explanation"].tolist() == av.verbalize(vectors, **kwargs)["explanation"].tolist()
    av.verbalize(vectors, engine="delegating", **kwargs)  # kept, weights unchanged: no restart, no update
    weight = next(p for p in av.model.parameters() if p.requires_grad)
    with torch.no_grad():
        weight.add_(0.01)  # a training step
    av.verbalize(vectors, engine="delegating", **kwargs)
    av.close_engines()
    assert events == [("start", {}), "generate", "generate", "update", "generate", "close"]
    assert av.start_engine("delegating", option=1).served is av
    assert events[-1] == ("start", {"option": 1})
    av.close_engines()
    with pytest.raises(InputError, match="Engines to start: 'vllm', 'delegating' .*got 'hf'"):
        av.start_engine("hf")
