"""The end-to-end recipe behind ``nla-lens train``: data -> teacher -> warm starts -> GRPO -> report.

A run folder holds ``config.json``, the activation dataset (and ``activations_av/``, the AV
warm-start split drawn with more positions per document), the teacher's explanations of each,
``history_{stage}.csv`` for each stage, trainer checkpoints, ``ar-teacher-sft/`` (the AR after its
warm start, so an interrupted AV warm start does not redo it), ``nla-teacher-sft/`` (AR and AV
warm-started on the teacher), ``av_explanations.parquet`` and ``nla-sft/`` (after the AR refit on
the AV's own explanations: the end of the warm start), ``nla/`` (after RL), ``report.json``
with the held-out figures of each, and ``stage_minutes.json`` (each stage's minutes). The run is a
list of :class:`Stage`, each done when its output exists (:func:`run_stages`).

Why the AR refit: on the embedded model, pairing the teacher-warm-started AV with the AR that GRPO
had adapted to the AV's outputs raised held-out fve_nrm from 0.103 to 0.218, while the RL'd AV with
the teacher-trained AR gave 0.168 (``runs/r6``): most of what RL first gains is the AR learning
to read the AV's (imperfect) explanations. A supervised refit on greedy AV explanations buys that
step for a fraction of the cost of GRPO steps, so GRPO starts from a reconstructor that already
reads its verbalizer.

Under ``accelerate launch`` every process runs the recipe: cached stages (activations, teacher
texts, the AV's explanations) are computed by the main process first and read by the others, the
trainers run data-parallel, and only the main process writes into the run folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nla_lens.atomic import atomic_folder
from nla_lens.data.dataset import ActivationDataset
from nla_lens.errors import InputError
from nla_lens.jsonable import from_fields
from nla_lens.metrics import current_token_control, held_out_metrics, predict_mean_control, score_round_trip
from nla_lens.models.nla import NLA
from nla_lens.models.reconstructor import ActivationReconstructor
from nla_lens.modes import evaluating
from nla_lens.precision import capability, resolve_precision
from nla_lens.schema import SIDECAR_NAME
from nla_lens.subjects.adapters import as_subject
from nla_lens.subjects.embedded import SMOLLM2
from nla_lens.training.base import process_state
from nla_lens.training.callbacks import StopFileCallback
from nla_lens.training.grpo import GRPOConfig, GRPOTrainer
from nla_lens.training.model_card import write_model_card
from nla_lens.training.sft import ARWarmStart, AVWarmStart, WarmStartConfig

AR_AUGMENT = 0.5
"""Share of the explanations the AR reads rewritten into another surface form (every AR stage):
half the teacher's layout, half other templates and prose, so a meaning-preserving rewrite
reconstructs about as well as the original (issue 19; held-out styles in the faithfulness report)."""

_Pairs = tuple[ActivationDataset, list[str]]
"""One split's activations and the teacher's explanation of each row."""


@dataclasses.dataclass
class Recipe:
    """Every setting of a training run (the presets are instances of it).

    ``av_base`` / ``ar_base`` start the AV / AR from another LM than the subject (a cross-architecture
    NLA, :meth:`NLA.untrained <nla_lens.models.NLA.untrained>`). ``injection_scale`` (``None``: chosen
    by :func:`injection_scale_for`) is the L2 norm of the injected row in the AV's embedding space.
    """

    name: str
    subject: str = SMOLLM2.name
    layer: int = 20
    av_base: str | None = None
    ar_base: str | None = None
    injection_scale: float | None = None
    documents: int = 800
    positions_per_doc: int = 6
    av_positions_per_doc: int | None = 24
    max_length: int = 128
    n_context_words: int = 6
    ar_steps: int = 500
    ar: WarmStartConfig = dataclasses.field(
        default_factory=lambda: WarmStartConfig(lr=3e-4, batch_size=16, lora_r=12, augment=AR_AUGMENT)
    )
    av_steps: int = 1000
    av: WarmStartConfig = dataclasses.field(default_factory=lambda: WarmStartConfig(lr=5e-4, batch_size=8, lora_r=24))
    ar_refit_steps: int = 150
    ar_refit: WarmStartConfig = dataclasses.field(
        default_factory=lambda: WarmStartConfig(lr=3e-4, batch_size=16, augment=AR_AUGMENT)
    )
    rl_steps: int = 100
    rl: GRPOConfig = dataclasses.field(
        default_factory=lambda: GRPOConfig(
            n_vectors=8,
            group_size=4,
            max_new_tokens=56,
            lr=1.5e-4,
            ar_lr=2e-4,
            # No KL to the reference AV (and no reference pass): decided by scripts/kl_ablation.py, the
            # shipped model card's KL table (kl_coef=0 read as well and scored no lower, 20% faster).
            kl_coef=0.0,
            ar_augment=AR_AUGMENT,
            micro_batch_size=32,
        )
    )
    eval_size: int = 64
    eval_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for stage, config_class in STAGES.items():
            config = getattr(self, stage)
            if isinstance(config, dict):  # as read back from a run's config.json
                config = config_class.from_dict(config)
                setattr(self, stage, config)
            defaults = type(config)()
            set_here = [name for name in RECIPE_OWNED if getattr(config, name) != getattr(defaults, name)]
            if set_here:
                raise InputError(
                    f"Recipe.{stage} sets {', '.join(set_here)}, which the recipe sets for every stage itself "
                    "(one seed, evaluation cadence and size for the run, and each stage's checkpoint folder). Set "
                    "Recipe.seed, Recipe.eval_every or Recipe.eval_size instead, and leave them at their defaults on "
                    f"the {type(config).__name__}."
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The recipe a run's ``config.json`` records (``to_dict``), to reproduce or resume the run."""
        return from_fields(cls, data)

    @classmethod
    def from_json(cls, path: str | Path) -> Recipe:
        """Read a recipe from a run folder (its ``config.json``) or a JSON file."""
        path = Path(path)
        return cls.from_dict(json.loads((path / "config.json" if path.is_dir() else path).read_text()))


STAGES: dict[str, type[WarmStartConfig] | type[GRPOConfig]] = {
    "ar": WarmStartConfig,
    "av": WarmStartConfig,
    "ar_refit": WarmStartConfig,
    "rl": GRPOConfig,
}
"""The recipe's trainer stages and the config class of each (the fields of :class:`Recipe` of those names)."""

RECIPE_OWNED: tuple[str, ...] = ("seed", "eval_every", "eval_size", "checkpoint_every", "output_dir")
"""Fields of the stages' configs that the recipe sets itself: a stage config must leave them at their defaults."""

PRESETS: dict[str, Recipe] = {
    "smoke": Recipe(
        name="smoke",
        documents=12,
        positions_per_doc=4,
        av_positions_per_doc=6,
        max_length=48,
        ar_steps=4,
        ar=WarmStartConfig(lr=3e-4, batch_size=4, lora_r=4, augment=AR_AUGMENT),
        av_steps=3,
        av=WarmStartConfig(lr=3e-4, batch_size=2, lora_r=4),
        ar_refit_steps=2,
        ar_refit=WarmStartConfig(lr=3e-4, batch_size=4, augment=AR_AUGMENT),
        rl_steps=2,
        rl=GRPOConfig(n_vectors=2, group_size=2, max_new_tokens=16, ar_augment=AR_AUGMENT),
        eval_size=4,
        eval_every=2,
    ),
    SMOLLM2.name: Recipe(name=SMOLLM2.name),
}


def _on_main(write: Callable[[], Any]) -> None:
    """Run ``write`` in the main process only; every process waits until it is done."""
    state = process_state()
    if state.is_main_process:
        write()
    state.wait_for_everyone()


def _log(message: str) -> None:
    if not process_state().is_main_process:
        return
    print(f"[nla-lens {time.strftime('%H:%M:%S')}] {message}", flush=True)


def held_out_report(
    nla: NLA, vectors: torch.Tensor, train_vectors: torch.Tensor, *, max_new_tokens: int
) -> dict[str, Any]:
    """fve_nrm of greedy round trips on held-out vectors, with both controls and the failure rate."""
    frame = nla.av.verbalize(vectors, max_new_tokens=max_new_tokens, progress=False, warn=False)
    return {
        "n": len(vectors),
        **held_out_metrics(frame, vectors, nla.ar),
        "predict_mean": predict_mean_control(train_vectors, vectors),
        "examples": frame["explanation"].head(5).tolist(),
    }


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of :func:`run_recipe`.

    Attributes:
        name: Its key in the report's ``cpu_minutes`` (and in ``stage_minutes.json``).
        output: What exists once the stage has finished (its last write); a stage whose output
            exists is not run again.
        run: Makes ``output``. Every process runs it: trainers train data-parallel, and the cached
            data stages let the main process compute while the others wait and then read its copy.
    """

    name: str
    output: Path
    run: Callable[[], Any]


def run_stages(stages: list[Stage], minutes_file: Path) -> dict[str, float]:
    """Run each stage whose output is missing, in order; the one place resume and timing live.

    Every process decides together, after a barrier, whether a stage is done, so none skips a stage
    the others run. Each finished stage's minutes are added to ``minutes_file`` (JSON, written by
    the main process), so a run resumed over several invocations still reports every stage's time
    (that of the invocation that finished it).

    Returns:
        ``{stage name: minutes}`` of every stage finished so far.
    """
    state = process_state()
    for stage in stages:
        state.wait_for_everyone()
        if stage.output.exists():
            continue
        start = time.perf_counter()
        stage.run()
        minutes = round((time.perf_counter() - start) / 60, 1)
        if state.is_main_process:
            done = json.loads(minutes_file.read_text()) if minutes_file.is_file() else {}
            minutes_file.write_text(json.dumps({**done, stage.name: minutes}, indent=2))
    state.wait_for_everyone()
    return json.loads(minutes_file.read_text()) if minutes_file.is_file() else {}


def run_recipe(recipe: Recipe, output_dir: str | Path, *, cache_dir: Any = None) -> dict[str, Any]:
    """Train an NLA on the embedded (or any) subject from scratch; return the report.

    The run is a list of :class:`Stage` (data, teacher texts, AR and AV warm starts, AR refit,
    GRPO, report), each finished when its output exists, so an interrupted run continues where it
    stopped (the AV warm start and GRPO from their last checkpoints) and a finished one returns
    its ``report.json``. Creating the file ``{output_dir}/STOP`` ends the running stage cleanly
    after its current step.
    """
    import nla_lens

    out = Path(output_dir)

    def start_folder() -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(recipe.to_dict(), indent=2))

    _on_main(start_folder)
    torch.manual_seed(recipe.seed)
    run = _Run(recipe, out, nla_lens.load_subject(recipe.subject, cache_dir=cache_dir))
    run_stages(run.stages(), out / "stage_minutes.json")
    return json.loads((out / "report.json").read_text())


class _Run:
    """One run folder of :func:`run_recipe`: its stages, and what they read back from the folder."""

    def __init__(self, recipe: Recipe, out: Path, subject: Any):
        self.recipe, self.out, self.subject = recipe, out, subject
        self.stop = StopFileCallback(out / "STOP")  # `touch {out}/STOP` ends the running stage cleanly
        self.acts_dir, self.av_acts_dir = out / "activations", out / "activations_av"
        self.teacher_dir, self.sft_dir, self.nla_dir = out / "nla-teacher-sft", out / "nla-sft", out / "nla"

    def stages(self) -> list[Stage]:
        out = self.out
        stages = [
            Stage("activations", self.acts_dir / "dataset_meta.json", self._extract),
            Stage("teacher_texts", out / "teacher_explanations.parquet", lambda: self.explanations),
        ]
        if self._separate_av_split:
            stages += [
                Stage("av_activations", self.av_acts_dir / "dataset_meta.json", lambda: self.av_dataset),
                Stage("av_teacher_texts", out / "teacher_explanations_av.parquet", lambda: self.av_explanations),
            ]
        return [
            *stages,
            Stage("ar_sft", out / "ar-teacher-sft" / SIDECAR_NAME, self._ar_warm_start),
            Stage("av_sft", self.teacher_dir / "ar", self._av_warm_start),
            Stage("ar_refit", self.sft_dir / "ar", self._refit),
            Stage("rl", self.nla_dir / "ar", self._rl),
            Stage("report", out / "report.json", self._report),
        ]

    # -- what the stages read --------------------------------------------------------------------
    @functools.cached_property
    def dataset(self) -> ActivationDataset:
        dataset = ActivationDataset.load(self.acts_dir)
        if set(dataset.splits) < {"av_sft", "ar_sft", "rl", "eval"}:
            raise InputError(f"Too few documents for all four splits: {dataset.splits}. Raise documents.")
        return dataset

    @functools.cached_property
    def explanations(self) -> pd.Series:
        return _teacher_texts(self.recipe, self.subject, self.dataset, self.out / "teacher_explanations.parquet")

    @property
    def _separate_av_split(self) -> bool:
        r = self.recipe
        return bool(r.av_positions_per_doc and r.av_positions_per_doc > r.positions_per_doc)

    @functools.cached_property
    def av_dataset(self) -> ActivationDataset:
        if not self._separate_av_split:
            return self.dataset
        return _av_split_dataset(
            self.recipe,
            self.subject,
            self.dataset,
            self.av_acts_dir,
            positions_per_doc=self.recipe.av_positions_per_doc or self.recipe.positions_per_doc,
        )

    @functools.cached_property
    def av_explanations(self) -> pd.Series:
        if not self._separate_av_split:
            return self.explanations
        cache = self.out / "teacher_explanations_av.parquet"
        return _teacher_texts(self.recipe, self.subject, self.av_dataset, cache)

    def pairs(self, split: str, av: bool = False) -> _Pairs:
        data, texts = (self.av_dataset, self.av_explanations) if av else (self.dataset, self.explanations)
        mask = (data.frame["split"] == split).to_numpy()
        return data.split(split), texts[mask].tolist()

    @functools.cached_property
    def eval_pairs(self) -> _Pairs:
        return self.pairs("eval")

    @property
    def eval_vectors(self) -> torch.Tensor:
        return self.eval_pairs[0].vectors[: self.recipe.eval_size]

    @functools.cached_property
    def train_vectors(self) -> torch.Tensor:
        return torch.cat([self.pairs(split, av=split == "av_sft")[0].vectors for split in ("av_sft", "ar_sft", "rl")])

    def held_out(self, nla: NLA) -> dict[str, Any]:
        return held_out_report(nla, self.eval_vectors, self.train_vectors, max_new_tokens=self.recipe.rl.max_new_tokens)

    # -- the stages --------------------------------------------------------------------------------
    def _extract(self) -> None:
        import nla_lens

        r = self.recipe
        with process_state().main_process_first():  # the main process extracts, the others read its copy
            if (self.acts_dir / "dataset_meta.json").is_file():
                return
            _log(f"extracting activations from {r.documents} documents")
            dataset = nla_lens.extract_activations(
                self.subject,
                nla_lens.load_corpus(max_documents=r.documents),
                layer=r.layer,
                positions_per_doc=r.positions_per_doc,
                max_length=r.max_length,
                seed=r.seed,
            )
            dataset.save(self.acts_dir)

    def _ar_warm_start(self) -> None:
        r = self.recipe
        nla = _untrained(r, self.dataset)
        _log(f"AR warm start: {r.ar_steps} steps")
        ar_cfg = dataclasses.replace(r.ar, eval_every=r.eval_every, eval_size=r.eval_size, seed=r.seed)
        eval_data, eval_texts = self.eval_pairs
        ar_run = ARWarmStart(
            nla.ar, *self.pairs("ar_sft"), ar_cfg, eval_dataset=eval_data, eval_explanations=eval_texts
        )
        ar_run.train(r.ar_steps, callbacks=[self.stop])

        def save() -> None:
            ar_run.history.to_csv(self.out / "history_ar_sft.csv", index=False)
            with atomic_folder(self.out / "ar-teacher-sft") as tmp:
                nla.ar.save_pretrained(tmp)

        _on_main(save)

    def _av_warm_start(self) -> None:
        r = self.recipe
        nla = _untrained(r, self.dataset)
        nla.ar = ActivationReconstructor.from_pretrained(self.out / "ar-teacher-sft", is_trainable=True)
        av_checkpoints = self.out / "av-checkpoints"  # a warm start of an hour resumes from its last checkpoint
        last = _last_checkpoint(av_checkpoints)
        _log(f"AV warm start: {r.av_steps} steps" + (f", resuming from {last.name}" if last else ""))
        av_cfg = dataclasses.replace(
            r.av,
            eval_every=r.eval_every,
            eval_size=min(16, r.eval_size),
            seed=r.seed,
            checkpoint_every=r.eval_every or 50,
            output_dir=str(av_checkpoints),
            keep_checkpoints=1,
        )
        eval_data, eval_texts = self.eval_pairs
        av_run = AVWarmStart(
            nla.av,
            *self.pairs("av_sft", av=True),
            av_cfg,
            eval_dataset=eval_data,
            eval_explanations=eval_texts,
            eval_ar=nla.ar,
            max_new_tokens=r.rl.max_new_tokens,
            resume_from=last,
        )
        av_run.train(max(0, r.av_steps - av_run.step_count), callbacks=[self.stop])
        _on_main(
            lambda: (
                av_run.history.to_csv(self.out / "history_av_sft.csv", index=False),
                nla.save_pretrained(self.teacher_dir),
            )
        )

    def _refit(self) -> None:
        """Score the teacher warm start, refit the AR on the AV's explanations, score the result."""
        r = self.recipe
        nla = NLA.from_pretrained(self.teacher_dir, is_trainable=True)
        _log("held-out evaluation of the teacher-warm-started NLA")
        report: dict[str, Any] = {"teacher_sft": self.held_out(nla), "teacher_oracle_fve_nrm": self._oracle(nla)}
        _log(f"teacher warm start: {report['teacher_sft']['fve_nrm']:.3f} fve_nrm")
        if r.ar_refit_steps:
            report["ar_refit_generate_minutes"] = _ar_refit(
                r, nla, self.out, self.stop, self.pairs("ar_sft")[0], self.eval_pairs[0]
            )
        _stamp(nla, "sft", r)
        _log("held-out evaluation of the warm-started NLA")
        report["sft"] = self.held_out(nla)
        report["current_token_control"] = self._current_token_control()
        _log(f"SFT: {report['sft']['fve_nrm']:.3f} fve_nrm (shuffled {report['sft']['fve_nrm_shuffled']:.3f})")
        _on_main(
            lambda: (
                (self.out / "report_sft.json").write_text(json.dumps(report, indent=2)),
                nla.save_pretrained(self.sft_dir),
            )
        )

    def _rl(self) -> None:
        r = self.recipe
        nla = NLA.from_pretrained(self.sft_dir, is_trainable=True)
        _log(f"GRPO: {r.rl_steps} steps")
        rl_cfg = dataclasses.replace(
            r.rl,
            eval_every=r.eval_every,
            eval_size=min(16, r.eval_size),
            checkpoint_every=max(1, r.eval_every // 2),
            output_dir=str(self.out / "checkpoints"),
            seed=r.seed,
        )
        rl_run = GRPOTrainer(
            nla,
            self.pairs("rl")[0],
            rl_cfg,
            eval_dataset=self.eval_pairs[0],
            resume_from=_last_checkpoint(self.out / "checkpoints"),
        )
        rl_run.train(max(0, r.rl_steps - rl_run.step_count), callbacks=[self.stop])
        _stamp(nla, "rl", r, rl_steps=rl_run.step_count)
        _on_main(
            lambda: (
                rl_run.history.to_csv(self.out / "history_rl.csv", index=False),
                nla.save_pretrained(self.nla_dir),
            )
        )

    def _report(self) -> None:
        r = self.recipe
        nla = NLA.from_pretrained(self.nla_dir)
        report: dict[str, Any] = {"recipe": r.name, **json.loads((self.out / "report_sft.json").read_text())}
        report["rl"] = self.held_out(nla)
        minutes_file = self.out / "stage_minutes.json"
        report["cpu_minutes"] = json.loads(minutes_file.read_text()) if minutes_file.is_file() else {}
        report["precision"] = {stage: resolve_precision(getattr(r, stage).precision) for stage in STAGES}
        report["machine"] = capability()
        report["rl_steps"] = int(nla.av.cfg.provenance.get("rl_steps", r.rl_steps))
        _on_main(
            lambda: (
                (self.out / "report.json").write_text(json.dumps(report, indent=2)),
                write_model_card(self.nla_dir, report, r.to_dict()),
            )
        )
        _log(
            f"RL: {report['rl']['fve_nrm']:.3f} fve_nrm (shuffled {report['rl']['fve_nrm_shuffled']:.3f}); "
            f"report in {self.out / 'report.json'}"
        )

    def _oracle(self, nla: NLA) -> float:
        """fve_nrm of the AR reading the teacher's own held-out explanations (its ceiling with this teacher)."""
        texts = self.eval_pairs[1][: self.recipe.eval_size]
        return score_round_trip(nla.ar, texts, self.eval_vectors).summary()["fve_nrm"]

    def _current_token_control(self) -> float:
        """What naming the current token alone can give (:func:`~nla_lens.metrics.current_token_control`)."""
        parts = [self.pairs(split, av=split == "av_sft")[0] for split in ("av_sft", "ar_sft", "rl")]
        train_tokens = pd.concat([part.frame["token_id"] for part in parts]).tolist()
        eval_tokens = self.eval_pairs[0].frame["token_id"][: self.recipe.eval_size].tolist()
        return current_token_control(
            self.train_vectors,
            train_tokens,
            self.eval_vectors,
            eval_tokens,
            as_subject(self.subject).token_embeddings(),
        )


def _untrained(recipe: Recipe, dataset: ActivationDataset) -> NLA:
    """The recipe's untrained NLA for the vectors of ``dataset``."""
    return NLA.untrained(
        recipe.subject,
        layer=recipe.layer,
        subject_model=dataset.meta.get("subject"),
        hook_name=dataset.hook_name,
        av_base=recipe.av_base,
        ar_base=recipe.ar_base,
        injection_scale=injection_scale_for(recipe, dataset),
    )


def injection_scale_for(recipe: Recipe, dataset: ActivationDataset | None = None) -> float | None:
    """The L2 norm the recipe's AV injects at: ``recipe.injection_scale`` when set, else

    - an AV on the subject's own LM: the median norm of the subject's vectors (``None`` for the
      embedded SmolLM2, whose AV default, 240, is that median rounded);
    - an AV on another LM: the median norm of *that LM's own* residual stream at the same relative
      depth, over the first 16 corpus documents, so the injected row is as large as the activations
      its architecture reads at that depth (a Gemma-3 layer-12 vector is ~60x a SmolLM2 layer-20 one).

    ``dataset`` (the subject's activations) is needed only in the first case.
    """
    if recipe.injection_scale is not None:
        return recipe.injection_scale
    av_base = recipe.av_base or recipe.subject
    if av_base == recipe.subject:
        if recipe.subject == SMOLLM2.name:
            return None
        if dataset is None:
            raise InputError(
                "An AV on the subject's own LM injects at the median norm of the subject's vectors: pass dataset=."
            )
        return float(dataset.meta["norm_stats"]["median"])
    import nla_lens
    from nla_lens.models.loading import lm_shape

    (_, n_subject), (_, n_av) = lm_shape(recipe.subject), lm_shape(av_base)
    layer = max(0, round((recipe.layer + 1) * n_av / n_subject) - 1)
    own = nla_lens.extract_activations(
        nla_lens.load_subject(av_base),
        nla_lens.load_corpus(max_documents=16),
        layer=layer,
        positions_per_doc=8,
        max_length=recipe.max_length,
        seed=recipe.seed,
        progress=False,
    )
    scale = float(own.vectors.norm(dim=-1).median())
    _log(f"injection scale {scale:.1f}: {av_base}'s median norm at layer {layer} (the subject's layer {recipe.layer})")
    return scale


def _last_checkpoint(folder: Path) -> Path | None:
    """The highest-step ``checkpoint-N`` a trainer wrote in ``folder``, or None."""
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _teacher_texts(recipe: Recipe, subject: Any, dataset: ActivationDataset, cache: Path) -> pd.Series:
    """The offline ContextTeacher's explanation of every row of ``dataset``, cached in ``cache``."""
    with process_state().main_process_first():  # the main process writes the cache, the others read it
        return _cached_teacher_texts(recipe, subject, dataset, cache)


def _cached_teacher_texts(recipe: Recipe, subject: Any, dataset: ActivationDataset, cache: Path) -> pd.Series:
    from nla_lens.data.teachers import ContextTeacher

    if cache.is_file():
        explanations = pd.read_parquet(cache)["explanation"]
        if len(explanations) == len(dataset):
            return pd.Series(explanations.to_numpy(), index=dataset.frame.index, name="explanation")
        _log(f"{cache.name} has {len(explanations)} rows for {len(dataset)} vectors; writing it again")
    _log(f"writing warm-start explanations of {len(dataset)} vectors with the offline ContextTeacher")
    teacher = ContextTeacher(subject, n_context_words=recipe.n_context_words)
    explanations = pd.Series(teacher(dataset.frame), index=dataset.frame.index, name="explanation")
    explanations.to_frame().to_parquet(cache)
    return explanations


def _av_split_dataset(
    recipe: Recipe, subject: Any, dataset: ActivationDataset, folder: Path, *, positions_per_doc: int
) -> ActivationDataset:
    """The AV warm-start split drawn with ``positions_per_doc`` (the recipe's ``av_positions_per_doc``)
    positions per document.

    The AV warm start is the stage that learns to read vectors, and it is short of examples at
    6 per document; extraction is cheap (one forward pass per document), so its documents give
    more. The other splits keep ``positions_per_doc``. Same documents, same split assignment:
    ``only_splits`` assigns splits over all documents and runs only the AV split's.
    """
    with process_state().main_process_first():  # the main process extracts, the others read its copy
        return _cached_av_split(recipe, subject, dataset, folder, positions_per_doc)


def _cached_av_split(
    recipe: Recipe, subject: Any, dataset: ActivationDataset, folder: Path, positions_per_doc: int
) -> ActivationDataset:
    import nla_lens

    if (folder / "dataset_meta.json").is_file():
        return nla_lens.ActivationDataset.load(folder)
    _log(f"extracting {positions_per_doc} positions per document for the AV warm start")
    docs = nla_lens.load_corpus(max_documents=recipe.documents)
    part = nla_lens.extract_activations(
        subject,
        docs,
        layer=recipe.layer,
        positions_per_doc=positions_per_doc,
        max_length=recipe.max_length,
        seed=recipe.seed,
        only_splits=["av_sft"],
    )
    wanted = set(dataset.split("av_sft").frame["doc_id"])
    if set(part.frame["doc_id"]) != wanted:
        raise InputError(
            "The AV-split documents differ between the two extractions; delete "
            f"{folder.parent / 'activations'} and {folder} and run again."
        )
    part.save(folder)
    return part


def _ar_refit(recipe: Recipe, nla: NLA, out: Path, stop: Any, ar_data: Any, eval_data: Any) -> float:
    """Refit the AR on the AV's greedy explanations of the AR split; return generation minutes.

    The explanations are cached in ``av_explanations.parquet``, so a resumed run does not pay
    for them twice. Held-out pairs for the evaluation are the AV's explanations too.
    """
    cache = out / "av_explanations.parquet"
    eval_vectors = eval_data.vectors[: recipe.eval_size]
    start = time.perf_counter()
    with process_state().main_process_first():  # the main process explains and caches, the others read
        if cache.is_file():
            frame = pd.read_parquet(cache)
        else:
            _log(f"AR refit: the AV explains {len(ar_data)} AR-split vectors")
            with evaluating(nla.av.model):
                frame = nla.av.verbalize(
                    torch.cat([ar_data.vectors, eval_vectors]),
                    max_new_tokens=recipe.rl.max_new_tokens,
                    precision=recipe.ar_refit.precision,
                    warn=False,
                )[["explanation", "ok"]]
            frame.to_parquet(cache)
    minutes = round((time.perf_counter() - start) / 60, 1)
    texts = frame["explanation"].tolist()
    # Truncated explanations stay: the held-out round trip scores whatever the AV writes, so the
    # AR learns to read that. Only empty ones (nothing to read) are left out.
    keep = [i for i in range(len(ar_data)) if texts[i].strip()]
    if not keep:
        _log("AR refit skipped: the AV wrote no text for any AR-split vector; the teacher-trained AR is kept")
        return minutes
    train = ActivationDataset(ar_data.vectors[keep], ar_data.frame.iloc[keep], dict(ar_data.meta))
    eval_set = ActivationDataset(eval_vectors, eval_data.frame.iloc[: len(eval_vectors)], dict(eval_data.meta))
    _log(f"AR refit: {recipe.ar_refit_steps} steps on {len(keep)} AV explanations")
    cfg = dataclasses.replace(
        recipe.ar_refit, lora_r=None, eval_every=recipe.eval_every, eval_size=recipe.eval_size, seed=recipe.seed
    )
    run = ARWarmStart(
        nla.ar, train, [texts[i] for i in keep], cfg, eval_dataset=eval_set, eval_explanations=texts[len(ar_data) :]
    )
    run.train(recipe.ar_refit_steps, callbacks=[stop])
    _on_main(lambda: run.history.to_csv(out / "history_ar_refit.csv", index=False))
    return minutes


def _stamp(nla: NLA, stage: str, recipe: Recipe, **extra: Any) -> None:
    import nla_lens

    for part in (nla.av, nla.ar):
        part.cfg.provenance.update({"stage": stage, "recipe": recipe.name, "nla_lens": nla_lens.__version__, **extra})
