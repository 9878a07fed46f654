"""Warm starts: the AR regresses vectors from teacher explanations, the AV learns to write them.

- :class:`ARWarmStart`: ``(explanation -> vector)`` with the normalised MSE (= 2(1 - cos)).
- :class:`AVWarmStart`: next-token loss on the teacher's explanation with the vector injected at
  the marker, on the response tokens only (the prompt is fixed and never scored).

Both are :class:`~nla_lens.training.base.Trainer` subclasses, so they have ``step()``,
``train(n)``, callbacks, history, evaluation and checkpoints, and run data-parallel under
``accelerate launch`` (each process its shard of every batch, the same update as one process). TRL's ``SFTTrainer`` can do the AV
half through a custom collator, but it owns the loop (no ``step()``) and cannot regress vectors,
so both warm starts share our loop instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from nla_lens.data.dataset import ActivationDataset
from nla_lens.errors import InputError, ShapeError
from nla_lens.metrics import held_out_metrics, score_round_trip
from nla_lens.models.reconstructor import ActivationReconstructor
from nla_lens.models.verbalizer import ActivationVerbalizer
from nla_lens.modes import evaluating
from nla_lens.rewrites import augment
from nla_lens.training.base import Trainer, TrainerConfig
from nla_lens.training.lora import apply_lora
from nla_lens.training.losses import reconstruction_loss


@dataclasses.dataclass
class WarmStartConfig(TrainerConfig):
    """Settings of a warm start.

    Attributes:
        lr: AdamW learning rate (5e-5 suits a full AR fine-tune; ~3e-4 for LoRA).
        batch_size: Pairs per step.
        weight_decay: AdamW weight decay.
        lora_r: LoRA rank; ``None`` fine-tunes every weight.
        lora_alpha: LoRA alpha (default ``2 * lora_r``).
        augment: AR only: the share of each batch's explanations rewritten into another surface
            form (:func:`nla_lens.rewrites.augment`: other headings, snippet orders, list formats,
            prose), so the AR learns what an explanation says rather than its layout.
    """

    lr: float = 5e-5
    batch_size: int = 16
    weight_decay: float = 0.0
    lora_r: int | None = None
    lora_alpha: int | None = None
    augment: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.augment <= 1.0:
            raise InputError(f"augment is a share of explanations in [0, 1], got {self.augment!r}.")


def _check_pairs(dataset: ActivationDataset, explanations: Sequence[str], d_model: int, what: str) -> list[str]:
    if not isinstance(dataset, ActivationDataset):
        raise InputError(f"{what} needs an ActivationDataset, got {type(dataset).__name__}.")
    if dataset.d_model != d_model:
        raise ShapeError(
            f"The {what} dataset holds vectors of width {dataset.d_model}, but this NLA explains "
            f"d_model={d_model}. Extract activations at the NLA's hook from its subject model."
        )
    explanations = list(explanations)
    if len(explanations) != len(dataset):
        raise InputError(f"{len(dataset)} vectors but {len(explanations)} explanations for the {what}.")
    return explanations


class _WarmStart(Trainer):
    """What both warm starts share: (vector, explanation) pairs and optional held-out pairs."""

    config_class = WarmStartConfig
    config: WarmStartConfig

    def _set_pairs(
        self,
        d_model: int,
        dataset: ActivationDataset,
        explanations: Sequence[str],
        eval_dataset: ActivationDataset | None,
        eval_explanations: Sequence[str] | None,
        what: str,
    ) -> None:
        self._check_divides(self.config.batch_size, "batch_size")
        self.explanations = _check_pairs(dataset, explanations, d_model, what)
        self.dataset = dataset
        self.eval_pairs = None
        if eval_dataset is not None:
            self.eval_pairs = (eval_dataset, _check_pairs(eval_dataset, eval_explanations or [], d_model, "eval"))


class ARWarmStart(_WarmStart):
    """Supervised AR training on (teacher explanation, vector) pairs.

    Args:
        ar: The reconstructor to train (wrapped with LoRA when ``config.lora_r`` is set).
        dataset: Training vectors.
        explanations: One teacher explanation per vector.
        config: :class:`WarmStartConfig`.
        eval_dataset, eval_explanations: Held-out pairs for ``evaluate`` (fve_nrm, shuffled control).
        resume_from: A checkpoint of this run to continue from.
    """

    progress_keys = ("loss", "eval_fve_nrm")

    def __init__(
        self,
        ar: ActivationReconstructor,
        dataset: ActivationDataset,
        explanations: Sequence[str],
        config: WarmStartConfig | None = None,
        *,
        eval_dataset: ActivationDataset | None = None,
        eval_explanations: Sequence[str] | None = None,
        callbacks=(),
        resume_from=None,
    ):
        super().__init__(config, callbacks)
        self._set_pairs(ar.d_model, dataset, explanations, eval_dataset, eval_explanations, "AR warm start")
        ar.cfg = ar.cfg.with_norm_range(dataset.vectors)
        if self.config.lora_r:
            ar.backbone = apply_lora(ar.backbone, self.config.lora_r, alpha=self.config.lora_alpha)
        ar.value_head.weight.requires_grad_(True)  # also when continuing an AR loaded with its adapters
        self.ar = ar.train()
        params = [p for p in ar.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        # ``self.ar`` stays the plain module; ``self._ar_train`` is what accelerate made of it (a
        # DistributedDataParallel wrapper under accelerate launch) and runs the training forward.
        self._ar_train, self.optimizer = self.accelerator.prepare(self.ar, self.optimizer)
        if resume_from is not None:
            self.load_checkpoint(resume_from)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"ar": self.ar}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ar": self.optimizer}

    def _step(self) -> dict[str, Any]:
        idx = self._shard(self._sample_indices(len(self.dataset), self.config.batch_size))
        rows = idx.tolist()
        texts = augment(
            [self.explanations[i] for i in rows], rows, self.config.augment, (self.config.seed, self.step_count)
        )
        ids, mask = self.ar.encode(texts)
        with self._frozen_weights_cast(self.ar):
            predicted = self._ar_train(ids, mask)
            # The mean over this shard; shards are equal, so the processes' average is the batch mean.
            loss = reconstruction_loss(predicted, self.dataset.vectors[idx].to(predicted.device))
            grad_norm = self._optimizer_step(loss, self._ar_train, self.optimizer)
        return {"loss": self._mean_over_processes(loss.detach()), "grad_norm": grad_norm}

    def _evaluate(self) -> dict[str, Any]:
        if self.eval_pairs is None:
            return {}
        dataset, texts = self.eval_pairs
        n = min(self.config.eval_size, len(dataset))
        summary = score_round_trip(self.ar, texts[:n], dataset.vectors[:n]).summary()
        return {key: summary[key] for key in ("fve_nrm", "fve_nrm_shuffled")}


class AVWarmStart(_WarmStart):
    """Supervised AV training: write the teacher's explanation given the injected vector.

    Args:
        av: The verbalizer to train (wrapped with LoRA when ``config.lora_r`` is set).
        dataset: Training vectors.
        explanations: One teacher explanation per vector.
        config: :class:`WarmStartConfig`.
        eval_dataset, eval_explanations: Held-out pairs: ``evaluate`` reports their token loss.
        eval_ar: If given, ``evaluate`` also round-trips the held-out vectors (greedy AV ->
            ``eval_ar``) and reports fve_nrm, its shuffled control and the failure rate.
        max_new_tokens: Generation cap for that round trip.
    """

    progress_keys = ("loss", "eval_loss", "eval_fve_nrm")

    def __init__(
        self,
        av: ActivationVerbalizer,
        dataset: ActivationDataset,
        explanations: Sequence[str],
        config: WarmStartConfig | None = None,
        *,
        eval_dataset: ActivationDataset | None = None,
        eval_explanations: Sequence[str] | None = None,
        eval_ar: ActivationReconstructor | None = None,
        max_new_tokens: int = 96,
        callbacks=(),
        resume_from=None,
    ):
        super().__init__(config, callbacks)
        self._set_pairs(av.d_model, dataset, explanations, eval_dataset, eval_explanations, "AV warm start")
        av.cfg = av.cfg.with_norm_range(dataset.vectors)
        if self.config.augment:
            raise InputError(
                "augment rewrites what the AR reads; the AV learns to write one form. Leave it 0 for the AV warm start."
            )
        self.eval_ar = eval_ar
        self.max_new_tokens = max_new_tokens
        if self.config.lora_r:
            av.model = apply_lora(av.model, self.config.lora_r, alpha=self.config.lora_alpha)
        self.av = av
        av.model.train()
        self._check_av_replicas(av)
        params = av.trainable_parameters()
        self.optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        # ``av.model`` stays the plain model (generation, the injection hook); ``self._av_train`` is
        # what accelerate made of it (DistributedDataParallel under accelerate launch).
        self._av_train, self.optimizer = self.accelerator.prepare(av.model, self.optimizer)
        if resume_from is not None:
            self.load_checkpoint(resume_from)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"av": self.av.model, **({"av_input_map": self.av.input_map} if self.av.input_map is not None else {})}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"av": self.optimizer}

    def _nll(self, vectors: torch.Tensor, texts: list[str]) -> torch.Tensor:
        logp, mask = self.av.logprobs(vectors, self.av.response_ids(texts))
        return -(logp * mask).sum() / mask.sum()

    def _step(self) -> dict[str, Any]:
        idx = self._shard(self._sample_indices(len(self.dataset), self.config.batch_size))
        texts = [self.explanations[i] for i in idx.tolist()]
        with self._frozen_weights_cast(self.av.model):
            logp, mask = self.av.logprobs(self.dataset.vectors[idx], self.av.response_ids(texts), model=self._av_train)
            # The batch's loss is a mean over all its tokens, and shards hold different numbers of tokens.
            loss, mean = self._global_mean(-(logp * mask).sum(), self._sum_over_processes(mask.sum().detach()))
            grad_norm = self._optimizer_step(loss, self._av_train, self.optimizer)
        return {"loss": mean, "grad_norm": grad_norm}

    def _evaluate(self) -> dict[str, Any]:
        if self.eval_pairs is None:
            return {}
        dataset, texts = self.eval_pairs
        n = min(self.config.eval_size, len(dataset))
        with evaluating(self.av.model):
            metrics: dict[str, Any] = {"loss": float(self._nll(dataset.vectors[:n], texts[:n]))}
            if self.eval_ar is not None:
                frame = self.av.verbalize(
                    dataset.vectors[:n], max_new_tokens=self.max_new_tokens, progress=False, warn=False
                )
                metrics.update(held_out_metrics(frame, dataset.vectors[:n], self.eval_ar))
        return metrics
