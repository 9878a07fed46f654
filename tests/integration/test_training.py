"""Training direction, injection paths, interrupt/resume and checkpoint safety on tiny models."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from nla_lens.errors import CheckpointError, InputError, NormRangeWarning, ShapeError
from nla_lens.models import NLA
from nla_lens.norm_range import HIGH, NormRange
from nla_lens.testing.models import tiny_nla
from nla_lens.testing.synthetic import concept_dataset
from nla_lens.training import ARWarmStart, AVWarmStart, GRPOConfig, GRPOTrainer, WarmStartConfig
from nla_lens.training.grpo import FastPaths

D = 64


def untrained():
    torch.manual_seed(0)
    return tiny_nla(d_model=D)


@pytest.fixture(scope="module")
def warm():
    """An NLA after short warm starts: formats right, not yet discriminating concepts."""
    nla = untrained()
    data, texts = concept_dataset(64, D)
    ar_run = ARWarmStart(
        nla.ar,
        data,
        texts,
        WarmStartConfig(lr=3e-3, batch_size=16, eval_every=20),
        eval_dataset=data,
        eval_explanations=texts,
    )
    ar_history = ar_run.train(40, progress=False)
    av_run = AVWarmStart(nla.av, data, texts, WarmStartConfig(lr=3e-3, batch_size=16))
    av_history = av_run.train(30, progress=False)
    return nla, data, ar_history, av_history


def test_trainers_record_the_norm_range_and_explain_warns_far_outside_it(tmp_path):
    data, texts = concept_dataset(64, D)
    want = NormRange.from_vectors(data.vectors)
    nla = untrained()
    assert nla.av.cfg.norm_range is None and nla.ar.cfg.norm_range is None
    AVWarmStart(nla.av, data, texts, WarmStartConfig(batch_size=16))
    ARWarmStart(nla.ar, data, texts, WarmStartConfig(batch_size=16))
    assert nla.av.cfg.norm_range == want and nla.ar.cfg.norm_range == want
    other = untrained()
    GRPOTrainer(other, data, grpo_config(kl_coef=0.0))
    assert other.av.cfg.norm_range == want and other.ar.cfg.norm_range == want

    nla.save_pretrained(tmp_path / "nla")
    loaded = NLA.from_pretrained(tmp_path / "nla")
    assert loaded.av.cfg.norm_range == want
    kwargs = dict(max_new_tokens=2, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded.explain(data.vectors[:2], **kwargs)  # training vectors: inside the range
    assert not [w for w in caught if issubclass(w.category, NormRangeWarning)]
    with pytest.warns(NormRangeWarning, match="1 of 2 vectors"):
        far = data.vectors[1] / data.vectors[1].norm() * want.p99 * HIGH * 1.5  # [d]
        loaded.explain(torch.stack([data.vectors[0], far]), **kwargs)


def grpo_config(**kw):
    return GRPOConfig(**{**dict(n_vectors=8, group_size=4, max_new_tokens=16, eval_size=32, lr=1e-3, ar_lr=1e-4), **kw})


def test_warm_starts_reduce_their_losses(warm):
    _, _, ar_history, av_history = warm
    assert ar_history.loss.tail(5).mean() < 0.5 * ar_history.loss.head(5).mean()
    assert ar_history.eval_fve_nrm.dropna().iloc[-1] > 0.5
    assert av_history.loss.tail(5).mean() < 0.5 * av_history.loss.head(5).mean()


def test_grpo_raises_reward_and_fve_on_a_fixed_batch(warm):
    nla, data, _, _ = warm
    nla = copy.deepcopy(nla)
    trainer = GRPOTrainer(nla, data, grpo_config(), eval_dataset=data)
    before = trainer.evaluate()
    history = trainer.train(30, progress=False)
    after = trainer.evaluate()
    assert after["eval_reward_mean"] > before["eval_reward_mean"] + 0.1
    assert after["eval_fve_nrm"] > before["eval_fve_nrm"] + 0.1
    for column in (
        "reward_mean",
        "reward_std",
        "kl",
        "failure_rate",
        "response_length",
        "ar_loss",
        "generate_seconds",
        "policy_seconds",
    ):
        assert column in history and history[column].notna().any()
    assert set(trainer.last_samples.columns) == {"vector", "explanation", "reward", "failed"}


def _first_layer(model):
    return model.model.layers[0]


def test_the_vector_reaches_generation_policy_and_reference(warm):
    """Spy on the input of block 0: the marker row must carry the rescaled vector in all three passes."""
    nla, data, _, _ = warm
    nla = copy.deepcopy(nla)
    trainer = GRPOTrainer(
        nla,
        data,
        grpo_config(n_vectors=2, group_size=2, train_ar=False),
        fast_paths=FastPaths(share_prefix=False),
    )
    prompt = nla.av.prompt_ids()
    marker = (prompt == nla.av.cfg.tokens.injection_token_id).nonzero().item()
    seen = {"policy": [], "reference": []}

    def spy(name):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[1] > marker:
                seen[name].append((hidden.shape[1], hidden[:, marker].norm(dim=-1)))

        return hook

    handles = [
        _first_layer(nla.av.model).register_forward_pre_hook(spy("policy"), with_kwargs=True),
        _first_layer(trainer.reference).register_forward_pre_hook(spy("reference"), with_kwargs=True),
    ]
    trainer.step()
    for handle in handles:
        handle.remove()
    scale = nla.av.cfg.injection_scale
    prefill = [norms for length, norms in seen["policy"] if length == len(prompt)]
    full = [norms for length, norms in seen["policy"] if length > len(prompt)]
    assert prefill and torch.allclose(prefill[0], torch.full_like(prefill[0], scale), rtol=1e-4)  # generation
    assert full and torch.allclose(full[0], torch.full_like(full[0], scale), rtol=1e-4)  # policy log-probs
    assert seen["reference"] and torch.allclose(
        seen["reference"][0][1], torch.full_like(seen["reference"][0][1], scale), rtol=1e-4
    )  # reference log-probs


def _weights(nla):
    return {
        k: v.clone()
        for k, v in {**nla.av.model.state_dict(), **{f"ar.{k}": v for k, v in nla.ar.state_dict().items()}}.items()
    }


def test_interrupt_and_resume_matches_an_uninterrupted_run(warm, tmp_path):
    nla, data, _, _ = warm
    config = grpo_config(seed=3)
    straight = GRPOTrainer(copy.deepcopy(nla), data, config)
    straight.train(4, progress=False)

    first = GRPOTrainer(copy.deepcopy(nla), data, config)
    first.train(2, progress=False)
    first.save_checkpoint(tmp_path / "ckpt")
    resumed = GRPOTrainer(copy.deepcopy(nla), data, config, resume_from=tmp_path / "ckpt")
    assert resumed.step_count == 2
    resumed.train(2, progress=False)

    columns = ["step", "reward_mean", "reward_std", "kl", "failure_rate", "ar_loss", "policy_loss"]
    a, b = straight.history[columns], resumed.history[columns]
    assert torch.allclose(torch.tensor(a.to_numpy(float)), torch.tensor(b.to_numpy(float)), atol=1e-5, equal_nan=True)
    wa, wb = _weights(straight.nla), _weights(resumed.nla)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_resume_with_a_different_config_is_refused(warm, tmp_path):
    nla, data, _, _ = warm
    trainer = GRPOTrainer(copy.deepcopy(nla), data, grpo_config())
    trainer.step()
    trainer.save_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"group_size \(checkpoint 4, now 2\).*kl_coef"):
        GRPOTrainer(copy.deepcopy(nla), data, grpo_config(group_size=2, kl_coef=0.5), resume_from=tmp_path / "ckpt")
    # fields such as checkpoint_every may change
    GRPOTrainer(copy.deepcopy(nla), data, grpo_config(eval_every=7), resume_from=tmp_path / "ckpt")


def test_dataset_of_another_width_is_refused(warm):
    nla, _, _, _ = warm
    other, texts = concept_dataset(8, D + 8)
    with pytest.raises(ShapeError, match="width 72"):
        GRPOTrainer(nla, other, grpo_config())
    with pytest.raises(ShapeError, match="width 72"):
        ARWarmStart(nla.ar, other, texts)


def test_keyboard_interrupt_stops_cleanly(warm, tmp_path):
    nla, data, _, _ = warm
    config = grpo_config(checkpoint_every=1, output_dir=str(tmp_path))
    trainer = GRPOTrainer(copy.deepcopy(nla), data, config)
    trainer.step()
    real_step = trainer._step

    def interrupted():
        raise KeyboardInterrupt

    trainer._step = interrupted
    with pytest.warns(UserWarning, match="interrupted during step 2"):
        history = trainer.train(5, progress=False)
    assert len(history) == 1 and trainer.step_count == 1
    trainer._step = real_step
    GRPOTrainer(copy.deepcopy(nla), data, config, resume_from=tmp_path / "checkpoint-1")


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path):
    """SIGKILL a process that writes checkpoints in a loop; every checkpoint left must load."""
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_training import untrained
        from nla_lens.testing.synthetic import concept_dataset
        from nla_lens.training import ARWarmStart, WarmStartConfig
        data, texts = concept_dataset(16, {D})
        trainer = ARWarmStart(untrained().ar, data, texts, WarmStartConfig(batch_size=4))
        trainer.save_checkpoint({str(tmp_path / "checkpoint-0")!r})
        print("ready", flush=True)
        step = 0
        while True:
            step += 1
            trainer.step()
            trainer.save_checkpoint({str(tmp_path)!r} + f"/checkpoint-{{step % 2}}")
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    import time

    time.sleep(3.0)
    process.kill()
    process.wait()
    data, texts = concept_dataset(16, D)
    checkpoints = sorted(tmp_path.glob("checkpoint-*"))
    assert checkpoints, "no checkpoint survived"
    for path in checkpoints:
        restored = ARWarmStart(untrained().ar, data, texts, WarmStartConfig(batch_size=4), resume_from=path)
        assert restored.step_count >= 0


def test_a_stop_file_ends_training_after_the_current_step(tmp_path):
    from nla_lens.training import StopFileCallback, TrainerCallback

    data, texts = concept_dataset(16, D)
    trainer = ARWarmStart(untrained().ar, data, texts, WarmStartConfig(batch_size=4))

    class TouchAfterTwo(TrainerCallback):
        def on_step(self, trainer, metrics):
            if metrics["step"] == 2:
                (tmp_path / "STOP").touch()

    history = trainer.train(10, progress=False, callbacks=[TouchAfterTwo(), StopFileCallback(tmp_path / "STOP")])
    assert len(history) == 2 and not (tmp_path / "STOP").exists()
    assert len(trainer.train(1, progress=False)) == 3  # the next stage (call) runs normally


def test_micro_batches_give_the_same_update(warm):
    nla, data, _, _ = warm
    results = []
    for micro in (32, 3):
        trainer = GRPOTrainer(copy.deepcopy(nla), data, grpo_config(seed=5, micro_batch_size=micro, train_ar=False))
        metrics = trainer.step()
        results.append((metrics, {k: v.clone() for k, v in trainer.nla.av.model.state_dict().items()}))
    (m_full, w_full), (m_micro, w_micro) = results
    assert abs(m_full["policy_loss"] - m_micro["policy_loss"]) < 1e-5 and abs(m_full["kl"] - m_micro["kl"]) < 1e-6
    assert all(torch.allclose(w_full[k], w_micro[k], atol=1e-5) for k in w_full)


def _teacher_texts(data):
    """Teacher-format explanations (three headed snippets) of the synthetic rows."""
    from nla_lens.data.teachers import ContextTeacher

    teacher = ContextTeacher(n_context_words=4)
    return [teacher.explain(f"we saw {t} today", f" {t}", [t, "and", "."]) for t in data.frame["token"]]


def _reads(ar):
    """Record what an AR's ``encode`` is given (the original still runs)."""
    seen, encode = [], ar.encode

    def spy(texts):
        seen.extend(texts)
        return encode(texts)

    ar.encode = spy
    return seen


def test_ar_warm_start_reads_other_surface_forms_of_the_same_content():
    data, _ = concept_dataset(16, D)
    texts = _teacher_texts(data)

    def run(share, seed=0):
        ar = untrained().ar
        seen = _reads(ar)
        config = WarmStartConfig(batch_size=8, augment=share, seed=seed)
        ARWarmStart(ar, data, texts, config).train(3, progress=False)
        return seen

    plain, augmented = run(0.0), run(1.0)
    assert set(plain) <= set(texts)
    rewritten = [t for t in augmented if t not in texts]
    assert len(rewritten) == len(augmented)  # share 1: every teacher text is read in another form
    for text in augmented:  # the content (the synthetic token) survives every rewrite
        assert any(token in text for token in data.frame["token"])
    assert run(1.0) == augmented and run(1.0, seed=1) != augmented  # drawn from (seed, step, row)
    with pytest.raises(InputError, match="augment"):
        WarmStartConfig(augment=1.5)
    with pytest.raises(InputError, match="AV warm start"):  # the AV learns to write one form
        AVWarmStart(untrained().av, data, texts, WarmStartConfig(augment=0.5))


def test_grpo_ar_update_reads_rewrites_but_rewards_score_the_av_text(warm):
    nla, data, _, _ = warm
    nla = copy.deepcopy(nla)
    seen = _reads(nla.ar)
    trainer = GRPOTrainer(nla, data, grpo_config(ar_augment=1.0, n_vectors=4))
    trainer.train(1, progress=False)
    sampled = trainer.last_samples
    ok = sampled.loc[~sampled["failed"], "explanation"].tolist()
    assert ok, "the warm-started AV should write parseable explanations"
    rewarded, updated = seen[: len(ok)], seen[len(ok) :]
    assert rewarded == ok  # the rewards read the AV's own text ...
    assert len(updated) == len(ok) and updated != ok  # ... the AR update rewrites of it
    for original, rewrite in zip(ok, updated):
        assert original.split()[-1].lower() in rewrite.lower()
    with pytest.raises(Exception, match="ar_augment"):
        grpo_config(ar_augment=1.5)
