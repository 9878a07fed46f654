"""Must an NLA share its subject's architecture? A 2 x 2 at one reduced budget.

Subjects {SmolLM2-135M at layer 20, Gemma-3-270M at layer 12: about 70 % of the depth of each} x
NLA bases {SmolLM2-135M, Gemma-3-270M}: the diagonal cells are ordinary NLAs, the off-diagonal
ones read the other model through a learned input map (:meth:`NLA.untrained
<nla_lens.models.NLA.untrained>` with ``av_base``/``ar_base``). Every cell runs the same recipe
(:data:`BUDGET`, the embedded recipe cut down) from the same activations and teacher texts of its
subject, once per seed, and is scored on its subject's held-out split with the controls that say
what the words add: shuffled, predict-the-mean and current-token, plus paraphrase retention (rule
rewrites), explanation length and readability (one fixed judge for every cell: the embedded
SmolLM2-135M-Instruct's per-token perplexity of the explanations).

A cell whose ``report.json`` exists is read, not retrained, so an interrupted run continues; the
two bases of one subject and seed share the subject's data stages (copied, not recomputed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from nla_lens.subjects.embedded import GEMMA3, SMOLLM2
from nla_lens.training.recipe import PRESETS, STAGES, Recipe, run_recipe

SUBJECT_LAYERS: dict[str, int] = {SMOLLM2.name: 20, GEMMA3.name: 12}
"""Each subject and its extraction layer: 21/30 and 13/18 of the depth (both ~0.7)."""

BASES: tuple[str, ...] = (SMOLLM2.name, GEMMA3.name)
"""The LMs both NLA halves start from."""

_EMBEDDED = PRESETS[SMOLLM2.name]
BUDGET = dataclasses.replace(
    _EMBEDDED,
    name="cross-architecture",
    documents=300,
    av_positions_per_doc=None,
    ar_steps=200,
    av_steps=300,
    ar_refit_steps=60,
    rl_steps=20,
    # fp32 in every stage, not "auto": the cells run over several sessions on CPUs that differ (some
    # multiply in bf16, some not), and every cell must get the same arithmetic.
    **{stage: dataclasses.replace(getattr(_EMBEDDED, stage), precision="fp32") for stage in STAGES},
)
"""The reduced recipe every cell runs (the embedded recipe with fewer documents and steps, in fp32)."""

SMOKE = dataclasses.replace(PRESETS["smoke"], name="cross-architecture-smoke")
"""The same experiment at smoke size (minutes on a CPU): for tests and notebooks, not for conclusions."""

_DATA_STAGES = ("activations", "teacher_explanations.parquet")
_SUMMARY_KEYS = (
    "fve_nrm",
    "fve_nrm_shuffled",
    "predict_mean",
    "current_token_control",
    "paraphrase_retention",
    "failure_rate",
)


def cell_recipe(subject: str, base: str, seed: int, budget: Recipe = BUDGET) -> Recipe:
    """The recipe of one cell: ``budget`` on ``subject`` at its layer, both halves on ``base``."""
    if subject not in SUBJECT_LAYERS:
        raise KeyError(f"Unknown subject {subject!r}; the experiment's subjects are {sorted(SUBJECT_LAYERS)}.")
    other = base if base != subject else None
    return dataclasses.replace(
        budget, subject=subject, layer=SUBJECT_LAYERS[subject], av_base=other, ar_base=other, seed=seed
    )


def cell_folder(out: Path, subject: str, base: str, seed: int) -> Path:
    return Path(out) / f"{subject}__{base}__seed{seed}"


def run_cell(out: str | Path, subject: str, base: str, seed: int, budget: Recipe = BUDGET) -> dict[str, Any]:
    """Train (or resume, or read) one cell and score it; return its row of the table."""
    folder = cell_folder(Path(out), subject, base, seed)
    scores = folder / "cross_architecture.json"
    if scores.is_file():
        return json.loads(scores.read_text())
    for sibling in BASES:  # the subject's data stages, from a cell that already has them
        donor = cell_folder(Path(out), subject, sibling, seed)
        for name in _DATA_STAGES:
            if donor != folder and (donor / name).exists() and not (folder / name).exists():
                folder.mkdir(parents=True, exist_ok=True)
                copy = shutil.copytree if (donor / name).is_dir() else shutil.copy2
                copy(donor / name, folder / name)
    recipe = cell_recipe(subject, base, seed, budget)
    report = run_recipe(recipe, folder)
    row = {"subject": subject, "base": base, "seed": seed, **score_cell(folder, recipe)}
    row["cpu_minutes"] = sum(report.get("cpu_minutes", {}).values())
    scores.write_text(json.dumps(row, indent=2))
    return row


def score_cell(folder: Path, recipe: Recipe) -> dict[str, float]:
    """Held-out scores of a finished cell's NLA (``folder/nla``) on its subject's eval split.

    ``fve_nrm_low`` / ``fve_nrm_high`` are a 90 % bootstrap interval over the held-out vectors
    (:func:`~nla_lens.metrics.fve_nrm_interval`): the spread of one trained NLA across evaluation
    samples, which the table shows beside the spread across seeds.
    """
    import nla_lens
    from nla_lens.analysis.faithfulness import faithfulness_report
    from nla_lens.analysis.fluency import perplexity, text_logprobs
    from nla_lens.metrics import fve_nrm_interval, score_round_trip
    from nla_lens.subjects.adapters import as_subject
    from nla_lens.subjects.embedded import load_embedded_hf

    nla = nla_lens.NLA.from_pretrained(folder / "nla")
    data = nla_lens.ActivationDataset.load(folder / "activations")
    trained_on = data.frame["split"].isin(["av_sft", "ar_sft", "rl"]).to_numpy()
    report = faithfulness_report(
        nla,
        data,
        split="eval",
        n=recipe.eval_size,
        train_vectors=data.vectors[trained_on],
        token_embeddings=as_subject(nla_lens.load_subject(recipe.subject)).token_embeddings(),
        train_token_ids=data.frame.loc[trained_on, "token_id"].tolist(),
        max_new_tokens=recipe.rl.max_new_tokens,
        seed=recipe.seed,
        n_random=0,
        progress=False,
    )
    explanations = report.frame["explanation"].tolist()
    # Deterministic: the same reconstructions the report scored, kept here for the bootstrap.
    predicted = score_round_trip(nla.ar, explanations, report.vectors).predicted
    low, high = fve_nrm_interval(predicted, report.vectors, seed=recipe.seed)
    judge, tokenizer = load_embedded_hf()
    logprobs = [x for x in text_logprobs(judge.eval(), tokenizer, explanations) if not math.isnan(x)]
    return {
        **{key: float(report.summary[key]) for key in _SUMMARY_KEYS},
        "fve_nrm_low": low,
        "fve_nrm_high": high,
        "words": float(sum(len(e.split()) for e in explanations) / max(1, len(explanations))),
        "perplexity": perplexity(sum(logprobs) / len(logprobs)) if logprobs else math.nan,
        "n": int(report.summary["n"]),
    }


def cross_architecture_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell: each score's mean over seeds and its spread (max - min), and the seeds.

    ``over_current_token`` is fve_nrm minus the current-token control: what the explanation
    carries beyond naming the current token.
    """
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["over_current_token"] = frame["fve_nrm"] - frame["current_token_control"]
    metrics = [c for c in frame.columns if c not in ("subject", "base", "seed")]
    grouped = frame.groupby(["subject", "base"], sort=False)
    table = grouped[metrics].mean()
    spread = grouped[["fve_nrm", "over_current_token"]].agg(lambda x: x.max() - x.min())
    table["fve_nrm_spread"] = spread["fve_nrm"]
    table["over_current_token_spread"] = spread["over_current_token"]
    table["seeds"] = grouped["seed"].apply(lambda s: ",".join(map(str, sorted(s))))
    table.insert(0, "same_architecture", [s == b for s, b in table.index])
    return table.reset_index()


def cross_architecture_markdown(table: pd.DataFrame) -> str:
    """The table of :func:`cross_architecture_table` as the Markdown table the README shows."""
    lines = [
        "| subject | NLA base | held-out fve_nrm [90 % interval] | current-token baseline | words add | shuffled "
        "| paraphrase retention | words | perplexity | CPU min | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        interval = f" [{row['fve_nrm_low']:.3f}, {row['fve_nrm_high']:.3f}]" if "fve_nrm_low" in row else ""
        lines.append(
            f"| {row['subject']} | {row['base']}{'' if row['same_architecture'] else ' (across)'} "
            f"| {row['fve_nrm']:.3f}{interval} | {row['current_token_control']:.3f} "
            f"| {row['over_current_token']:+.3f} | {row['fve_nrm_shuffled']:.3f} | {row['paraphrase_retention']:.2f} "
            f"| {row['words']:.0f} | {row['perplexity']:.0f} | {row['cpu_minutes']:.0f} | {row['seeds']} |"
        )
    return "\n".join(lines) + "\n"


def run_cross_architecture(
    out: str | Path,
    *,
    seeds: tuple[int, ...] = (0, 1),
    budget: Recipe = BUDGET,
    subjects: tuple[str, ...] = tuple(SUBJECT_LAYERS),
    bases: tuple[str, ...] = BASES,
    finished: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
) -> pd.DataFrame:
    """Run (or resume) every cell and seed; return :func:`cross_architecture_table` of them.

    ``finished``: rows of cells scored in an earlier run (a ``rows.json`` kept when the run folder
    was not, say); each is written into its cell folder first, so that cell is read, not retrained.
    The rows are also written to ``out/rows.json`` and the table to ``out/table.csv``.
    """
    out = Path(out)
    for row in finished:
        scores = cell_folder(out, row["subject"], row["base"], int(row["seed"])) / "cross_architecture.json"
        if not scores.is_file():
            scores.parent.mkdir(parents=True, exist_ok=True)
            scores.write_text(json.dumps(row, indent=2))
    rows = [run_cell(out, subject, base, seed, budget) for seed in seeds for subject in subjects for base in bases]
    table = cross_architecture_table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    table.to_csv(out / "table.csv", index=False)
    return table
