"""Train, cache and load a small SAELens SAE on a subject model's activations at one hook.

Owns :func:`train_embedded_sae` (a TopK SAE trained with SAELens's ``SAETrainer`` on activations
read from a subject model, cached on disk and reloaded instead of retrained), :func:`load_sae`,
:func:`collect_activations` (the rows an SAE trains on) and :func:`activation_batches` (a corpus
read batch by batch at one hook, with only its content positions marked usable by
:class:`~nla_lens.positions.ContentRule`, which keeps attention sinks out; the top feature contexts of
:mod:`nla_lens.analysis.sae_features` read the corpus with it too). The SAE checks
live in :mod:`nla_lens.sae`.

``sae_lens`` is imported inside the functions that need it (training and loading need SAELens,
so TransformerLens 3.9).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from nla_lens.atomic import atomic_folder
from nla_lens.errors import CacheError, InputError
from nla_lens.hooks import HookSite
from nla_lens.optional import sae_lens
from nla_lens.positions import CONTENT_RULE, ContentRule, token_content_mask
from nla_lens.subjects.adapters import SubjectAdapter, SubjectModel, as_subject

__all__ = ["activation_batches", "collect_activations", "load_sae", "train_embedded_sae"]

_WEIGHTS, _CONFIG = "sae_weights.safetensors", "cfg.json"


def activation_batches(
    adapter: SubjectAdapter,
    texts: Sequence[str],
    hook: HookSite,
    *,
    max_length: int,
    batch_size: int,
    rule: ContentRule | None = None,
) -> Iterator[tuple[list[list[int]], torch.Tensor, torch.Tensor]]:
    """Yield ``(ids, acts [B, T, d_model], mask [B, T])`` per batch of texts; ``mask`` marks content tokens.

    Texts are cut to ``max_length`` tokens (and the model's ``n_ctx``) and right-padded; texts that
    encode to no token are dropped. Padding, special tokens and attention sinks (position 0 and
    norm outliers, by ``rule``, default :data:`~nla_lens.positions.CONTENT_RULE`) are left out of ``mask``.

    Raises:
        InputError: ``texts`` is not a list of strings.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InputError("texts must be a list of strings.")
    n_ctx = adapter.n_ctx
    limit = min(max_length, n_ctx) if n_ctx else max_length
    special = adapter.special_token_ids()
    pad = adapter.tokenizer.pad_token_id if adapter.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(texts), batch_size):
        ids = [adapter.encode(t, limit) for t in texts[start : start + batch_size]]
        ids = [x for x in ids if x]
        if not ids:
            continue
        width = max(len(x) for x in ids)
        tokens = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        acts = adapter.activations(tokens, hook)  # [B, T, d_model]
        yield ids, acts, token_content_mask(acts, ids, special, rule)


def load_sae(path: str | Path, *, device: str = "cpu") -> Any:
    """Load an SAE folder written by ``sae.save_model`` / :func:`train_embedded_sae`.

    Raises:
        CacheError: The folder lacks ``cfg.json`` or ``sae_weights.safetensors``.
    """
    SAE = sae_lens("load_sae").SAE
    path = Path(path).expanduser()
    missing = [name for name in (_CONFIG, _WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise CacheError(
            f"{path} is not an SAE folder: {', '.join(missing)} missing. An SAE folder is what "
            "sae.save_model(path) writes."
        )
    return SAE.load_from_disk(path, device=device)


def _cache_folder(root: Path, adapter: SubjectAdapter, texts: list[str], settings: dict[str, Any]) -> Path:
    digest = hashlib.sha256()
    digest.update(json.dumps({"subject": adapter.name, **settings}, sort_keys=True).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{adapter.name}-{settings['hook_name']}")
    return root / f"sae-{slug}-{settings['d_sae']}-{digest.hexdigest()[:12]}"


def collect_activations(
    adapter: SubjectAdapter, texts: list[str], hook: HookSite, *, limit: int, max_length: int, batch_size: int
) -> torch.Tensor:
    """Up to ``limit`` activation rows ``[N, d_model]`` at ``hook``, content positions only (no sink, no special token).

    What an SAE trains on; ``scripts/embedded_sae.py`` reads its held-out rows with it too.
    """
    from tqdm.auto import tqdm

    rows, total = [], 0
    with tqdm(total=limit, desc="Reading activations", unit="tok") as bar:
        for _, acts, mask in activation_batches(adapter, texts, hook, max_length=max_length, batch_size=batch_size):
            rows.append(acts[mask])
            total += rows[-1].shape[0]
            bar.update(min(rows[-1].shape[0], limit - bar.n))
            if total >= limit:
                break
        bar.total = bar.n  # the texts may hold fewer rows than the limit: the bar ends full, not stopped short
        bar.refresh()
    if total == 0:
        raise InputError("texts hold no usable tokens to train an SAE on.")
    return torch.cat(rows)[:limit]


def _train_sae(
    acts: torch.Tensor, cfg: Any, *, training_tokens: int, batch_size_tokens: int, lr: float, seed: int
) -> Any:
    """Fit a ``TopKTrainingSAE`` with SAELens's ``SAETrainer`` over shuffled epochs of ``acts``."""
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE  # checked by train_embedded_sae
    from sae_lens.config import SAETrainerConfig

    generator = torch.Generator().manual_seed(seed)
    batch = min(batch_size_tokens, acts.shape[0])

    def provider() -> Iterator[torch.Tensor]:
        while True:
            order = torch.randperm(acts.shape[0], generator=generator)
            for start in range(0, acts.shape[0] - batch + 1, batch):
                yield acts[order[start : start + batch]]

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sae = TopKTrainingSAE(cfg)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=training_tokens,
        train_batch_size_samples=batch,
        lr=lr,
        lr_end=lr,
        device=str(acts.device),
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=max(1, min(100, acts.shape[0] // batch)),
        dead_feature_window=max(1, training_tokens // batch // 4),
    )

    class Trainer(SAETrainer):
        """SAELens's trainer with a progress bar that moves every step.

        SAELens moves its bar every 100 steps only, so a run of 1,950 steps closes it at 1,900 of
        1,950 samples, which a notebook draws as a failed (red) bar on a cell that succeeded.
        """

        def _update_pbar(self, step_output: Any, pbar: Any, update_interval: int = 100) -> None:
            pbar.update(self.cfg.train_batch_size_samples)
            if self.n_training_steps % update_interval == 0:
                losses = " | ".join(f"{name}: {float(value):.5f}" for name, value in step_output.losses.items())
                pbar.set_description(f"{self.n_training_steps}| {losses}")

    return Trainer(cfg=trainer_cfg, sae=sae, data_provider=provider()).fit()


def train_embedded_sae(
    subject: SubjectModel,
    texts: Sequence[str],
    *,
    hook_name: str = "blocks.20.hook_resid_post",
    d_sae: int = 2048,
    k: int = 32,
    training_tokens: int = 1_000_000,
    max_activations: int = 200_000,
    batch_size_tokens: int = 512,
    lr: float = 1e-3,
    max_length: int = 128,
    batch_size: int = 8,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
) -> Any:
    """Train (or load from the cache) a TopK SAE on a subject model's activations at one hook.

    Activations of ``texts`` (content positions only: attention sinks and special tokens left out by
    :data:`~nla_lens.positions.CONTENT_RULE`, recorded in the cache key; at most ``max_activations``
    rows kept in memory) feed SAELens's ``SAETrainer``, reshuffled every epoch until
    ``training_tokens`` samples have been seen. The defaults are measured on the embedded model
    (``scripts/embedded_sae.py``): with fewer steps or a lower learning rate most features never
    fire (4,096 features after 200k samples at lr 4e-4 in batches of 1,024: 84 % never active on
    held-out tokens, variance explained 0.50). Inputs are normalised to mean norm ``sqrt(d_in)``
    during training and the factor is folded into the weights, so the SAE takes raw activations.
    The inference SAE is written with ``save_inference_model`` into a cache folder keyed by the
    subject, hook, settings and a hash of ``texts``, atomically; a later call with the same
    arguments loads it instead of training.

    Args:
        subject: The subject model (e.g. ``nla_lens.load_subject()``) or its adapter.
        texts: Training corpus, a list of strings (e.g. ``nla_lens.load_corpus()``).
        hook_name: Hook to read; use the NLA's ``hook_name``.
        d_sae: Number of features.
        k: Active features per token (TopK).
        training_tokens: Activation samples to train on (epochs repeat when the corpus is smaller).
        max_activations: Activation rows read and kept in memory (``[rows, d_model]`` float32:
            200k rows of width 576 take 0.46 GB).
        batch_size_tokens: Activation rows per SAE step.
        lr: Adam learning rate (constant).
        max_length: Tokens read per text.
        batch_size: Texts per subject forward pass.
        seed: Seeds the SAE initialisation and the shuffling.
        cache_dir: Root of the cache (default ``~/.cache/nla_lens/saes``).
        rebuild: Retrain even when a cached SAE exists.

    Returns:
        A SAELens ``SAE`` (``TopKSAE``) with ``cfg.d_in == subject d_model`` and
        ``cfg.metadata.hook_name == hook_name``, loaded from its cache folder.
    """
    from nla_lens.subjects.embedded import default_cache_dir

    TopKTrainingSAEConfig = sae_lens("train_embedded_sae").TopKTrainingSAEConfig
    adapter = as_subject(subject)
    hook = adapter.resolve_hook(hook_name)
    texts = list(texts)
    if training_tokens < 1 or max_activations < 1 or d_sae < 1 or not 0 < k <= d_sae:
        raise InputError(
            f"Need training_tokens >= 1, max_activations >= 1, d_sae >= 1 and 0 < k <= d_sae (got "
            f"{training_tokens}, {max_activations}, {d_sae}, {k})."
        )
    settings = dict(
        hook_name=hook.name,
        d_sae=d_sae,
        k=k,
        training_tokens=training_tokens,
        max_activations=max_activations,
        batch_size_tokens=batch_size_tokens,
        lr=lr,
        max_length=max_length,
        seed=seed,
        content_rule=CONTENT_RULE.to_dict(),
    )
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "saes"
    folder = _cache_folder(root, adapter, texts, settings)
    if not rebuild and (folder / _CONFIG).is_file():
        try:
            return load_sae(folder)
        except Exception as exc:  # a corrupted cache is rebuilt, never crashed on
            warnings.warn(f"The SAE cache at {folder} is unreadable ({exc}); retraining.", stacklevel=2)

    acts = collect_activations(
        adapter, texts, hook, limit=min(max_activations, training_tokens), max_length=max_length, batch_size=batch_size
    )
    cfg = TopKTrainingSAEConfig(
        d_in=adapter.d_model, d_sae=d_sae, k=k, normalize_activations="expected_average_only_in"
    )
    cfg.metadata.model_name = adapter.name
    cfg.metadata.hook_name = hook.name
    cfg.metadata.context_size = max_length
    cfg.metadata.prepend_bos = adapter.prepend_bos
    sae = _train_sae(acts, cfg, training_tokens=training_tokens, batch_size_tokens=batch_size_tokens, lr=lr, seed=seed)
    try:
        with atomic_folder(folder) as tmp:
            sae.save_inference_model(tmp)
            (tmp / "nla_lens_sae.json").write_text(json.dumps(settings, indent=2))
    except OSError as exc:
        raise CacheError(
            f"Could not write the SAE cache under {folder.parent}: {exc}. "
            "Pass cache_dir= pointing to a writable folder."
        ) from exc
    return load_sae(folder)
