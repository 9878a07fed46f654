"""Joint RL: GRPO on the verbalizer with the live reconstructor's reward, the AR trained alongside.

One step, as in the published method (Fraser-Taliente, Kantamneni, Ong et al., "Natural Language
Autoencoders Produce Unsupervised Explanations of LLM Activations", Transformer Circuits, 2026):

1. draw ``n_vectors`` vectors; the AV samples ``group_size`` explanations of each
   (temperature 1.0, at most ``max_new_tokens``; the vector injected on the prefill);
2. reward = ``-normalised MSE`` of the *current* AR's reconstruction; a sample without
   ``</explanation>``, truncated, or empty gets the worst reward (mse 2.0) and is not used to
   train the AR;
3. advantages standardised within each group; PPO-clipped surrogate on the AV's log-probs plus
   ``kl_coef`` times a KL estimate to the reference (warm-started) AV, the vector injected in the
   reference pass too (``kl_coef=0``: no reference model and no reference pass);
4. in the same step the AR takes a regression step on the fresh, successful explanations.

Samples are seeded per vector (``sample_seeds((seed, step), dataset row, sample)``), so a vector's
group is the same whichever process or batch position it lands in: a run under ``accelerate
launch --num_processes N`` makes the same update as one process. ``engine="vllm"`` samples with
vLLM (the AV's weights are sent to it after every optimizer step); log-probs, the PPO ratio, the
KL and every gradient stay in torch.

HF rollouts run with the AV's LoRA adapters merged into its weights (``FastPaths.merge_adapters``): one
matrix product per adapted layer instead of three, the same samples.

Why not TRL's ``GRPOTrainer``: it drives generation and log-probs from prompt token ids and scores
finished texts with reward functions, while an NLA's policy input is a vector injected as one
embedding row (every rollout, policy and reference pass goes through the injection hook), and its
reward comes from a reconstructor that trains in the same step on the same samples. TRL would
need both replaced, so the loop is written here; its loss is TRL's default GRPO surrogate
(PPO clipping, ``beta`` = ``kl_coef`` with the k3 estimator, group-standardised advantages), and
``trl`` is not a dependency.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch

from nla_lens.data.dataset import ActivationDataset
from nla_lens.engines import ENGINES, unknown_engine_message
from nla_lens.errors import InputError, ShapeError
from nla_lens.metrics import held_out_metrics, normalized_mse
from nla_lens.models.nla import NLA
from nla_lens.modes import evaluating
from nla_lens.precision import InferenceCopy
from nla_lens.rewrites import augment
from nla_lens.sampling import sample_seeds
from nla_lens.training.base import Trainer, TrainerConfig
from nla_lens.training.lora import apply_lora
from nla_lens.training.losses import WORST_MSE, clipped_surrogate, group_advantages, kl_penalty, rewards_from_mse


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the block's wall time to ``timings[key]`` (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


@dataclasses.dataclass
class Rollout:
    """One step's samples on this process: ``N = n_vectors / processes * group_size`` rows.

    Attributes:
        responses: ``N`` response token id lists (the stop token included).
        texts: ``N`` parsed explanations.
        failed: ``[N]`` bool: no ``</explanation>``, truncated or empty (worst reward, not used
            to train the AR).
        lengths: ``[N]`` response lengths in tokens.
        rewards: ``[N]`` ``-normalised MSE`` of the current AR's reconstruction.
        mse: ``[N]`` that MSE (``WORST_MSE`` for failed samples).
        advantages: ``[N]`` rewards standardised within each group.
        sample_ids: ``N`` ids (dataset row x group size + sample) seeding the AR's augmentation.
    """

    responses: list[list[int]]
    texts: list[str]
    failed: torch.Tensor
    lengths: torch.Tensor
    rewards: torch.Tensor
    mse: torch.Tensor
    advantages: torch.Tensor
    sample_ids: list[int]

    @property
    def ok(self) -> torch.Tensor:
        """``[n_ok]`` indices of the successful samples."""
        return (~self.failed).nonzero().flatten()


@dataclasses.dataclass
class GRPOConfig(TrainerConfig):
    """GRPO settings (published 7B values in brackets).

    Attributes:
        n_vectors: Vectors per step [64].
        group_size: Explanations sampled per vector [8].
        max_new_tokens: Response cap [~150].
        temperature: Sampling temperature [1.0].
        lr: The policy's (the AV's) learning rate [1e-5 full; use ~1e-4 with LoRA]: ``lr`` is always
            the learning rate of the model a stage trains, as in :class:`~nla_lens.training.WarmStartConfig`.
        ar_lr: The learning rate of the AR trained alongside [5e-5].
        clip: PPO clip range [0.2].
        kl_coef: Weight of the KL penalty to the reference AV [0.01]. ``0``: no penalty, and so
            no reference model (one copy of the AV less in memory) and no reference pass.
        train_ar: Also update the AR each step.
        ar_augment: The share of the AR update's explanations rewritten into another surface
            form first (:func:`nla_lens.rewrites.augment`), as in the AR warm start; rewards
            always score the AV's own text.
        lora_r: Wrap the AV and AR with LoRA adapters of this rank (``None``: full fine-tune,
            or keep the adapters they already have).
        micro_batch_size: Sequences per policy forward/backward; gradients are accumulated, so
            the update is the same and only peak memory changes.
        engine: What samples the rollouts: ``"hf"`` (transformers ``generate``), ``"vllm"``
            (one process only; ``pip install 'nla_lens[vllm]'``) or another name in
            :data:`nla_lens.engines.ENGINES` (:func:`~nla_lens.engines.register_engine`).
    """

    n_vectors: int = 8
    group_size: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    lr: float = 1e-5
    ar_lr: float = 5e-5
    clip: float = 0.2
    kl_coef: float = 0.01
    train_ar: bool = True
    ar_augment: float = 0.0
    lora_r: int | None = None
    micro_batch_size: int = 8
    engine: str = "hf"

    RESUMABLE = (*TrainerConfig.RESUMABLE, "engine")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 2:
            raise InputError("group_size must be >= 2: advantages compare samples within a group.")
        if not 0.0 <= self.ar_augment <= 1.0:
            raise InputError(f"ar_augment is a share of explanations in [0, 1], got {self.ar_augment!r}.")
        if self.engine not in ENGINES:
            raise InputError(unknown_engine_message(self.engine))


@dataclasses.dataclass(frozen=True)
class FastPaths:
    """The GRPO step's loss-preserving shortcuts, all on; a benchmark or test turns one off to
    measure what it saves or to check it changes nothing (``benchmarks/bench_grpo.py``). Not
    training settings, so not in :class:`GRPOConfig` or a run's ``config.json``.

    Attributes:
        share_prefix: Compute the AV prompt once per micro-batch in the log-prob passes (the part
            before the marker once, the rest once per vector, every sample of a group continuing
            from it) instead of once per sample, and the part before the marker once per batch of
            HF rollouts; the same loss and samples up to float rounding
            (``ActivationVerbalizer.logprobs(share_prefix=)``, ``generate(share_prefix=)``).
        merge_adapters: HF rollouts fold the AV's LoRA adapters into its weights while sampling
            (:func:`~nla_lens.models.adapters.merged_adapters`): the same samples, one matrix product
            per adapted layer instead of three.
        frozen_cast: In bf16, the frozen weights under the LoRA adapters are held in bf16 for the
            policy and AR passes (:class:`~nla_lens.precision.FrozenWeightCast`) instead of autocast
            casting them on every call: the same products.
    """

    share_prefix: bool = True
    merge_adapters: bool = True
    frozen_cast: bool = True


class GRPOTrainer(Trainer):
    """Joint GRPO training of an :class:`~nla_lens.models.NLA`.

    Args:
        nla: The (warm-started) NLA; trained in place.
        dataset: Vectors to train on (the RL split).
        config: :class:`GRPOConfig`.
        eval_dataset: Held-out vectors: ``evaluate`` round-trips them greedily and reports
            fve_nrm, its shuffled control, failure rate and response length.
        reference: The AV model to keep close to (default: a frozen copy of ``nla.av.model`` now;
            none when ``kl_coef`` is 0).
        resume_from: A checkpoint of this run to continue from.
        fast_paths: :class:`FastPaths` (all on by default; off only to measure or compare).
    """

    config_class = GRPOConfig
    config: GRPOConfig
    progress_keys = ("reward_mean", "kl", "eval_fve_nrm")

    def __init__(
        self,
        nla: NLA,
        dataset: ActivationDataset,
        config: GRPOConfig | None = None,
        *,
        eval_dataset: ActivationDataset | None = None,
        reference: Any = None,
        callbacks=(),
        resume_from=None,
        fast_paths: FastPaths = FastPaths(),
    ):
        super().__init__(config, callbacks)
        self.fast_paths = fast_paths
        for name, data in (("training", dataset), ("eval", eval_dataset)):
            if data is not None and data.d_model != nla.d_model:
                raise ShapeError(
                    f"The {name} dataset holds vectors of width {data.d_model}, but this NLA explains "
                    f"d_model={nla.d_model}. Extract activations at {nla.hook_name} of its subject."
                )
        self.nla, self.dataset, self.eval_dataset = nla, dataset, eval_dataset
        for part in (nla.av, nla.ar):
            part.cfg = part.cfg.with_norm_range(dataset.vectors)
        self._check_divides(self.config.n_vectors, "n_vectors")
        if self.config.engine != "hf" and self.world_size > 1:
            raise InputError(
                f"engine={self.config.engine!r} samples in one process; under accelerate launch "
                f"({self.world_size} processes) use engine='hf'."
            )
        if self.config.lora_r:
            nla.av.model = apply_lora(nla.av.model, self.config.lora_r)
            nla.ar.backbone = apply_lora(nla.ar.backbone, self.config.lora_r)
            nla.ar.value_head.weight.requires_grad_(True)
        if reference is None and self.config.kl_coef > 0:
            # Frozen: in bf16 a bf16 copy with the adapters folded in (no per-call casts, one
            # product per layer); in fp32 a plain copy.
            reference = (
                InferenceCopy(nla.av.model, torch.bfloat16).model
                if self.precision == "bf16"
                else copy.deepcopy(nla.av.model)
            )
        self.reference = reference
        if self.reference is not None:
            self.reference.eval().requires_grad_(False)
        nla.av.model.train()
        nla.ar.train()
        self._check_av_replicas(nla.av)
        self.av_optimizer = torch.optim.AdamW(nla.av.trainable_parameters(), lr=self.config.lr, weight_decay=0.0)
        self.ar_optimizer = torch.optim.AdamW(
            [p for p in nla.ar.parameters() if p.requires_grad], lr=self.config.ar_lr, weight_decay=0.0
        )
        # The NLA keeps its plain modules (generation, reconstruct, the injection hook); the
        # training forwards run through what accelerate made of them (DDP under accelerate launch).
        self._av_train, self._ar_train, self.av_optimizer, self.ar_optimizer = self.accelerator.prepare(
            nla.av.model, nla.ar, self.av_optimizer, self.ar_optimizer
        )
        self.last_samples: pd.DataFrame | None = None
        if resume_from is not None:
            self.load_checkpoint(resume_from)

    def _modules(self) -> dict[str, torch.nn.Module]:
        modules = {"av": self.nla.av.model, "ar": self.nla.ar}
        if self.nla.av.input_map is not None:  # a cross-architecture AV's map trains with it
            modules["av_input_map"] = self.nla.av.input_map
        return modules if self.reference is None else {**modules, "reference": self.reference}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"av": self.av_optimizer, "ar": self.ar_optimizer}

    # -- one step ------------------------------------------------------------------------------
    def _sample(
        self, vectors: torch.Tensor, seeds: list[int]
    ) -> tuple[list[list[int]], list[str], torch.Tensor, torch.Tensor]:
        """Sample one response per row of ``vectors [N, d]`` (row ``i`` seeded with ``seeds[i]``).

        Returns:
            ``(responses, texts, failed [N] bool, lengths [N])``: token ids (the stop token
            included), parsed explanations, which failed, and response lengths.
        """
        av = self.nla.av
        hf: dict[str, Any] = (
            {
                "merge_adapters": self.fast_paths.merge_adapters,
                "precision": self.precision,
                "share_prefix": self.fast_paths.share_prefix,
            }
            if self.config.engine == "hf"
            else {}
        )
        with evaluating(av.model):
            tokens, _ = av.engine(self.config.engine).generate(
                vectors,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=True,
                temperature=self.config.temperature,
                seeds=seeds,
                **hf,
            )
        responses, texts, failed = [], [], []
        for ids in tokens.tolist():
            row = av.describe(ids)
            responses.append(ids if row["truncated"] else ids[: row["n_tokens"] + 1])  # the stop token included
            texts.append(row["explanation"])
            failed.append(not row["ok"] or not row["explanation"].strip())
        return responses, texts, torch.tensor(failed), torch.tensor([float(len(r)) for r in responses])

    def _frozen_cast(self, *modules: torch.nn.Module) -> contextlib.AbstractContextManager:
        """:meth:`Trainer._frozen_weights_cast` unless :attr:`FastPaths.frozen_cast` is off."""
        return self._frozen_weights_cast(*modules) if self.fast_paths.frozen_cast else contextlib.nullcontext()

    def _step(self) -> dict[str, Any]:
        """Rollout, policy update, (engine sync), AR update; the metrics of all three."""
        cfg = self.config
        idx = self._shard(self._sample_indices(len(self.dataset), cfg.n_vectors))
        group = self.dataset.vectors[idx].repeat_interleave(cfg.group_size, dim=0)
        timings: dict[str, float] = {}
        rollout = self._rollout(idx, group, timings)
        with _timed(timings, "policy_seconds"):
            policy_loss, kl, av_grad = self._policy_update(group, rollout)
        if cfg.engine != "hf":  # the next rollouts sample from the updated weights
            with _timed(timings, "sync_seconds"):
                self.nla.av.engine(cfg.engine)
        with _timed(timings, "ar_seconds"):
            ar_loss = self._ar_update(group, rollout.texts, rollout.ok, rollout.sample_ids)

        all_rewards, all_mse, all_failed = (self._gather(t) for t in (rollout.rewards, rollout.mse, rollout.failed))
        all_ok = (~all_failed).nonzero().flatten()
        self.last_samples = pd.DataFrame(
            {
                "vector": self._gather(idx.repeat_interleave(cfg.group_size)).tolist(),
                "explanation": self._gather_objects(rollout.texts),
                "reward": all_rewards.tolist(),
                "failed": all_failed.tolist(),
            }
        )
        return {
            "reward_mean": float(all_rewards.mean()),
            "reward_std": float(all_rewards.std()),
            "mse_ok": float(all_mse[all_ok].mean()) if len(all_ok) else float("nan"),
            "policy_loss": self._mean_over_processes(policy_loss),
            "kl": self._mean_over_processes(kl),
            "av_grad_norm": av_grad,
            "ar_loss": ar_loss,
            "response_length": float(self._gather(rollout.lengths).mean()),
            "failure_rate": float(all_failed.float().mean()),
            **timings,
        }

    def _rollout(self, idx: torch.Tensor, group: torch.Tensor, timings: dict[str, float]) -> Rollout:
        """Sample ``group_size`` explanations of each vector of this process's shard ``idx`` (``group``:
        its vectors repeated, ``[n * group_size, d]``), reward them with the current AR, and
        standardise the rewards within each group. Times the sampling as ``generate_seconds``."""
        cfg = self.config
        seeds = sample_seeds((cfg.seed, self.step_count), idx.tolist(), cfg.group_size)
        with _timed(timings, "generate_seconds"):
            responses, texts, failed, lengths = self._sample(group, seeds)
        rewards, mse = self._rewards(group, texts, failed)
        return Rollout(
            responses=responses,
            texts=texts,
            failed=failed,
            lengths=lengths,
            rewards=rewards,
            mse=mse,
            advantages=group_advantages(rewards.view(len(idx), cfg.group_size)).flatten(),
            sample_ids=[row * cfg.group_size + k for row in idx.tolist() for k in range(cfg.group_size)],
        )

    def _policy_update(self, group: torch.Tensor, rollout: Rollout) -> tuple[float, float, float]:
        """One on-policy PPO epoch on the AV (old log-probs = current, detached), accumulated over
        micro-batches; each chunk's loss is weighted by its share of this process's sequences
        (shards are equal, so the processes' averaged gradient is the whole batch's).

        Returns:
            ``(policy_loss, kl, grad_norm)`` of this process (``kl`` NaN without a KL penalty).
        """
        cfg, av = self.config, self.nla.av
        share_prefix = self.fast_paths.share_prefix
        policy_total, kl_total = 0.0, 0.0
        chunks = list(range(0, len(group), cfg.micro_batch_size))
        penalised = cfg.kl_coef > 0  # kl_coef 0: no reference pass, no KL to report
        with self._frozen_cast(av.model):
            for lo in chunks:
                hi = min(lo + cfg.micro_batch_size, len(group))
                vectors, responses = group[lo:hi], rollout.responses[lo:hi]
                if penalised:
                    with torch.no_grad():
                        ref_logp, _ = av.logprobs(vectors, responses, model=self.reference, share_prefix=share_prefix)
                # Gradients are averaged across processes once, on the last micro-batch.
                sync = contextlib.nullcontext() if lo == chunks[-1] else self.accelerator.no_sync(self._av_train)
                with sync:
                    logp, mask = av.logprobs(vectors, responses, model=self._av_train, share_prefix=share_prefix)
                    advantages = rollout.advantages[lo:hi].to(logp.device)
                    policy_loss = clipped_surrogate(logp, logp.detach(), advantages, mask, cfg.clip)
                    kl = kl_penalty(logp, ref_logp.to(logp.device), mask) if penalised else None
                    share = (hi - lo) / len(group)
                    loss = policy_loss if kl is None else policy_loss + cfg.kl_coef * kl
                    self.accelerator.backward(loss * share)
                policy_total += policy_loss.item() * share
                kl_total += float("nan") if kl is None else kl.item() * share
        return policy_total, kl_total, self._apply_gradients(self._av_train, self.av_optimizer)

    def _ar_update(self, group: torch.Tensor, texts: list[str], ok: torch.Tensor, sample_ids: list[int]) -> float:
        """One AR regression step on this step's successful explanations; returns their mean loss.

        ``sample_ids`` (one per row of ``group``: dataset row x group size + sample) seed the
        surface-form augmentation (``ar_augment``), so a sample gets the same rewrite in any process.

        The loss is the mean over every process's successful samples (:meth:`_global_mean`). A
        process with none still runs a zero-weighted pass, so the processes' gradient reduction
        stays in step.
        """
        total = float(self._sum_over_processes(float(len(ok))))
        if not self.config.train_ar or total == 0:
            return float("nan")
        rows = ok.tolist() or [0]
        read = augment(
            [texts[i] for i in rows],
            [sample_ids[i] for i in rows],
            self.config.ar_augment,
            (self.config.seed, self.step_count),
        )
        ids, attention = self.nla.ar.encode(read)
        with self._frozen_cast(self.nla.ar):
            predicted = self._ar_train(ids, attention)
            local_sum = normalized_mse(predicted, group[rows].to(predicted.device)).sum() * (1.0 if len(ok) else 0.0)
            loss, mean = self._global_mean(local_sum, total)
            self._optimizer_step(loss, self._ar_train, self.ar_optimizer)
        return mean

    def _rewards(
        self, group: torch.Tensor, texts: list[str], failed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rewards [N], mse [N])`` from the current AR; failed samples are never reconstructed."""
        ok = (~failed).nonzero().flatten()
        mse = torch.full((len(group),), WORST_MSE)
        if len(ok):
            with torch.no_grad(), self._frozen_cast(self.nla.ar):
                predicted = self.nla.ar.reconstruct([texts[i] for i in ok.tolist()])
            mse[ok] = normalized_mse(predicted, group[ok])
        return rewards_from_mse(mse, failed), mse

    def sampled_reward(self, vectors: torch.Tensor, seed: int = 0) -> float:
        """Mean reward of ``group_size`` sampled explanations per vector, with a fixed seed.

        Each (vector, sample) has its own seed and training's random state is untouched, so
        calling it on the same vectors before and after training compares like with like.
        """
        group = vectors.repeat_interleave(self.config.group_size, dim=0)
        with torch.no_grad():
            _, texts, failed, _ = self._sample(
                group, sample_seeds(("sampled_reward", seed), range(len(vectors)), self.config.group_size)
            )
            rewards, _ = self._rewards(group, texts, failed)
        return float(rewards.mean())

    def _evaluate(self) -> dict[str, Any]:
        if self.eval_dataset is None:
            return {}
        n = min(self.config.eval_size, len(self.eval_dataset))
        vectors = self.eval_dataset.vectors[:n]
        with evaluating(self.nla.av.model):
            frame = self.nla.av.verbalize(
                vectors,
                max_new_tokens=self.config.max_new_tokens,
                engine=self.config.engine,
                progress=False,
                warn=False,
            )
        return {**held_out_metrics(frame, vectors, self.nla.ar), "reward_mean": self.sampled_reward(vectors)}
