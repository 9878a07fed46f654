"""The ``nla-lens`` command line.

``nla-lens explain TEXT`` explains every token of a text with an NLA (the shipped one by default)
and scores each reconstruction (``--compare TEXT_A TEXT_B``: two texts' last tokens side by side,
the words that change and a control); ``extract`` saves activations at a hook point as parquet; ``train``
runs the training recipe; ``export`` writes an NLA as full folders in the published layout;
``prepare-course`` fills the caches the course reads, before class.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

from nla_lens.errors import NLALensError
from nla_lens.models.registry import DEFAULT_PRETRAINED
from nla_lens.subjects.embedded import SMOLLM2


def _extract(args: argparse.Namespace) -> int:
    import nla_lens

    start = time.perf_counter()
    subject = nla_lens.load_subject(args.model, backend=args.backend, cache_dir=args.cache_dir)
    loaded = time.perf_counter()
    if args.texts:
        with open(args.texts, encoding="utf-8") as fh:
            texts = [block.strip() for block in fh.read().split("\n\n") if block.strip()]
    else:
        texts = nla_lens.load_corpus(max_documents=args.max_documents)
    layer = int(args.hook) if args.hook and args.hook.lstrip("-").isdigit() else None  # --hook 20: a layer
    dataset = nla_lens.extract_activations(
        subject,
        texts,
        None if layer is not None else args.hook,
        layer=layer,
        positions_per_doc=args.positions_per_doc,
        min_position=args.min_position,
        max_length=args.max_length,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    done = time.perf_counter()
    path = dataset.save(args.out)
    stats = dataset.meta["norm_stats"]
    print(f"subject      {dataset.meta['subject']} ({dataset.meta['n_layers']} blocks, d_model {dataset.d_model})")
    print(f"hook         {dataset.hook_name}")
    print(f"documents    {dataset.meta['documents']} ({dataset.meta['skipped_documents']} skipped as too short)")
    print(f"vectors      {len(dataset)}  splits {dataset.splits}")
    print(f"norms        median {stats['median']:.1f}, min {stats['min']:.1f}, max {stats['max']:.1f}")
    print(f"time         load {loaded - start:.1f} s, extract {done - loaded:.1f} s")
    print(f"saved        {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from nla_lens.training.base import process_state
    from nla_lens.training.recipe import PRESETS, STAGES, run_recipe

    recipe = PRESETS[args.preset]
    overrides = {
        k: v
        for k, v in (
            ("ar_steps", args.ar_steps),
            ("av_steps", args.av_steps),
            ("rl_steps", args.rl_steps),
            ("documents", args.documents),
            ("subject", args.subject),
            ("layer", args.layer),
            ("av_base", args.av_base),
            ("ar_base", args.ar_base),
            ("seed", args.seed),
        )
        if v is not None
    }
    if args.precision is not None:  # every stage's trainer
        overrides.update(
            {stage: dataclasses.replace(getattr(recipe, stage), precision=args.precision) for stage in STAGES}
        )
    if args.kl_coef is not None:  # GRPO's KL to the reference AV
        overrides["rl"] = dataclasses.replace(overrides.get("rl", recipe.rl), kl_coef=args.kl_coef)
    recipe = dataclasses.replace(recipe, **overrides)
    out = args.out or f"runs/{recipe.name}"
    report = run_recipe(recipe, out, cache_dir=args.cache_dir)
    if not process_state().is_main_process:  # under accelerate launch the main process reports
        return 0
    for stage in ("teacher_sft", "sft", "rl"):
        if stage not in report:  # a resumed run whose warm start was finished before
            continue
        r = report[stage]
        print(
            f"{stage:11s} held-out fve_nrm {r['fve_nrm']:.3f}  shuffled {r['fve_nrm_shuffled']:.3f}  "
            f"predict-mean {r['predict_mean']:.3f}  failure rate {r['failure_rate']:.2f}"
        )
    print(f"run folder: {out}")
    return 0


#: ANSI colours of a token's gain over the mean direction (the views' red -> yellow -> green ramp).
_RED, _YELLOW, _GREEN, _RESET = "\033[31m", "\033[33m", "\033[32m", "\033[0m"

GAIN_LEGEND = (
    "gain: 1 - mse / (mse of predicting the mean direction of these tokens); <= 0 is no better than the mean "
    "direction (red), 1 is perfect (green). cos is the raw cosine, which the mean direction alone scores highly."
)


def gain_colour(gain: float) -> str:
    """The ANSI colour of a gain: red at <= 0 (no better than the mean direction), yellow below 0.5,
    green from 0.5; ``""`` for NaN (no mean direction to beat)."""
    if math.isnan(gain):
        return ""
    return _RED if gain <= 0 else _YELLOW if gain < 0.5 else _GREEN


def format_row(row: Any, width: int, colour: bool) -> str:
    """One token's line of ``nla-lens explain``: position, token, gain (coloured), cosine, mse, explanation."""
    explanation = one_line(str(row.explanation))
    start = gain_colour(float(row.gain)) if colour else ""
    token = f"{start}{row.token!r:14s}{_RESET if start else ''}"
    gain = f"{start}gain {float(row.gain):6.3f}{_RESET if start else ''}"
    return f"[{row.position:3d}] {token} {gain}  cos {row.cosine:.3f}  mse {row.mse:.3f}  {explanation[:width]}"


def one_line(explanation: str) -> str:
    """An explanation's snippets on one line, separated by slashes."""
    return " / ".join(line.strip() for line in explanation.splitlines() if line.strip())


class LiveLines:
    """A block of lines redrawn in place on a terminal: each token's explanation as it is generated.

    Every update rewrites the block with ANSI cursor movement (``ESC[nF`` up ``n`` lines, ``ESC[2K``
    erase a line); :meth:`clear` removes it, so the final table prints where it stood. Each line is
    cut to the terminal's width (a wrapped line would take two rows and break the count), and a
    block taller than the terminal is not drawn (:meth:`fits`).

    Args:
        labels: One label per explained row (``[position] 'token'``).
        width: Characters of each explanation shown.
        out: The terminal stream.
    """

    def __init__(self, labels: Sequence[str], width: int, out: Any = None):
        self.labels, self.width, self.out = list(labels), width, out or sys.stdout
        self.texts = [""] * len(self.labels)
        self.drawn = 0
        self.columns, self.rows = shutil.get_terminal_size((160, 48))

    def fits(self) -> bool:
        """Whether the block fits on the screen (the cursor cannot move above its top line)."""
        return len(self.labels) < self.rows

    def update(self, row: int, text: str) -> None:
        """``row``'s explanation so far (a ``stream=`` callback of ``verbalize``)."""
        self.texts[row] = text
        up = f"\033[{self.drawn}F" if self.drawn else ""
        lines = [
            "\033[2K" + f"{label} {one_line(text)[: self.width]}"[: self.columns - 1]
            for label, text in zip(self.labels, self.texts)
        ]
        self.out.write(up + "\n".join(lines) + "\n")
        self.out.flush()
        self.drawn = len(lines)

    def clear(self) -> None:
        """Erase the block (cursor back to where it started)."""
        if self.drawn:
            self.out.write(f"\033[{self.drawn}F\033[J")
            self.out.flush()
            self.drawn = 0


def format_comparison(result: Any, width: int) -> list[str]:
    """The lines of ``nla-lens explain --compare``: both explanations with their reconstruction scores,
    the snippets that change (with the words added and removed), and the change level beside its control."""

    def clipped(text: Any) -> str:
        return one_line(str(text))[:width]

    lines = []
    for row in result.frame.itertuples():
        if row.side == "control":
            continue
        where = f"  token {row.token!r} (position {row.position})" if isinstance(row.token, str) else ""
        lines.append(f"{row.side}  {row.label!r}{where}  cos {row.cosine:.3f}  mse {row.mse:.3f}")
        lines.append(f"   {clipped(row.explanation)}")
    changed = result.changed
    lines.append(f"changed snippets: {len(changed)} of {len(result.snippets)}")
    for row in changed.itertuples():
        words = " ".join([f"-{w}" for w in row.removed] + [f"+{w}" for w in row.added])
        lines.append(f"  {row.heading}")
        lines.append(f"    A: {clipped(row.before) or '(none)'}")
        lines.append(f"    B: {clipped(row.after) or '(none)'}")
        if words:
            lines.append(f"    words: {words}")
    s = result.summary
    level = f"change level {s['change_level']:.2f} (share of content words that differ)"
    if math.isnan(s["control_change_level"]):
        lines.append(f"{level}; control ({s['control_kind']})")
    else:
        changed_there = ", ".join(s["control_changed_headings"]) or "none"
        lines.append(
            f"{level}; control {s['control_change_level']:.2f}: {s['control_kind']} (snippets changed: {changed_there})"
        )
    return lines


def _explain(args: argparse.Namespace) -> int:
    import nla_lens
    from nla_lens.errors import InputError
    from nla_lens.subjects.activations import prompt_activations
    from nla_lens.subjects.hook_check import check_subject

    if (args.text is None) == (args.compare is None):
        raise InputError('Pass one text to explain, or --compare "text A" "text B" (not both).')
    positions = args.positions or None
    if args.compare is not None and positions is not None and len(positions) not in (1, 2):
        raise InputError("With --compare, --positions takes one position for both texts or two (A's, B's).")
    nla = nla_lens.NLA.from_pretrained(args.nla)
    subject = nla_lens.load_subject(nla.av.cfg.subject_model or SMOLLM2.name, cache_dir=args.cache_dir)
    if args.compare is not None:
        result = nla.compare(
            *args.compare,
            subject=subject,
            positions=None if positions is None else positions[0] if len(positions) == 1 else tuple(positions),
            control=args.control,
            max_new_tokens=args.max_new_tokens,
            precision=args.precision,
            progress=False,
            warn=False,
        )
        for line in format_comparison(result, args.width):
            print(line)
        return 0
    adapter, hook = check_subject(nla, subject)
    read = prompt_activations(adapter, args.text, hook, args.positions)
    stream = args.stream == "always" or (args.stream == "auto" and sys.stdout.isatty())
    live = LiveLines([f"[{p:3d}] {read.tokens[p]!r:14s}" for p in read.positions], args.width) if stream else None
    live = live if live is not None and live.fits() else None
    try:
        frame = nla.round_trip(
            read.vectors,
            max_new_tokens=args.max_new_tokens,
            precision=args.precision,
            stream=None if live is None else live.update,
            progress=False,
            warn=False,
        )
    finally:
        if live is not None:
            live.clear()  # the table below replaces the block, now with the reconstructions' scores
    read.label(frame)
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    for row in frame.itertuples():
        print(format_row(row, args.width, colour))
    print(GAIN_LEGEND)
    ranked = frame.dropna(subset=["gain"]).sort_values("gain", ascending=False)
    if len(ranked) > 1:

        def listed(rows: Any) -> str:
            return ", ".join(f"{r.token!r} ({r.gain:.2f})" for r in rows.itertuples())

        print(f"best explained: {listed(ranked.head(3))}; worst: {listed(ranked.tail(3).iloc[::-1])}")
    report = frame.attrs.get("report")
    if report:
        print(f"fve_nrm over these tokens {report['fve_nrm']:.3f} (shuffled control {report['fve_nrm_shuffled']:.3f})")
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    import nla_lens
    from nla_lens.models.export import export_merged

    nla = nla_lens.NLA.from_pretrained(args.nla, dtype=getattr(torch, args.dtype))
    path = export_merged(nla, args.out, overwrite=args.overwrite)
    for role in ("av", "ar"):
        files = sorted(p for p in (path / role).iterdir() if p.is_file())
        mib = sum(p.stat().st_size for p in files) / 2**20
        print(f"{role}  {path / role}  {mib:.1f} MiB: {', '.join(p.name for p in files)}")
    print(
        f"exported {args.nla} to {path}: full published-layout folders (any LoRA merged), "
        f"the AR with {nla.ar.cfg.n_kept_blocks} blocks"
    )
    return 0


def _prepare_course(args: argparse.Namespace) -> int:
    from nla_lens.tutorials.prepare import prepare_course

    seconds = prepare_course(smoke=args.smoke, cache_dir=args.cache_dir)
    print(f"the course's caches are ready ({sum(seconds.values()) / 60:.1f} min); every notebook now loads them")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nla-lens", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ex = commands.add_parser("extract", help="extract activations from a corpus into a parquet dataset")
    ex.add_argument("--model", default=SMOLLM2.name, help="subject model name (default: the embedded SmolLM2)")
    ex.add_argument("--backend", default="bridge", choices=("bridge", "hooked", "nnsight"))
    ex.add_argument("--hook", default=None, help="hook name or layer (default: about 2/3 of the depth)")
    ex.add_argument(
        "--texts",
        default=None,
        help="a UTF-8 file of documents separated by blank lines (default: the embedded corpus)",
    )
    ex.add_argument("--max-documents", type=int, default=200)
    ex.add_argument("--positions-per-doc", type=int, default=6)
    ex.add_argument("--min-position", type=int, default=10)
    ex.add_argument("--max-length", type=int, default=128)
    ex.add_argument("--batch-size", type=int, default=8)
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--cache-dir", default=None, help="cache root for the embedded model")
    ex.add_argument("--out", default="runs/activations", help="output folder")
    ex.set_defaults(func=_extract)

    pc = commands.add_parser(
        "prepare-course",
        help="fill the caches the course reads (embedded model, shipped NLA, the notebooks' SAEs) before class",
    )
    pc.add_argument("--smoke", action="store_true", help="toy SAEs on 8 documents: a check that it works")
    pc.add_argument("--cache-dir", default=None, help="cache root for the embedded model")
    pc.set_defaults(func=_prepare_course)

    tr = commands.add_parser("train", help="train an NLA: data, teacher, warm starts, GRPO, held-out report")
    tr.add_argument("--preset", default="smoke", choices=("smoke", SMOLLM2.name))
    tr.add_argument("--out", default=None, help="run folder (default runs/<preset>); an existing run is resumed")
    tr.add_argument("--documents", type=int, default=None)
    tr.add_argument("--ar-steps", type=int, default=None)
    tr.add_argument("--av-steps", type=int, default=None)
    tr.add_argument("--rl-steps", type=int, default=None)
    tr.add_argument("--subject", default=None, help="subject model (default: the preset's, the embedded SmolLM2)")
    tr.add_argument("--layer", type=int, default=None, help="extraction layer K (blocks.K.hook_resid_post)")
    tr.add_argument("--av-base", default=None, help="LM the AV starts from, if not the subject (cross-architecture)")
    tr.add_argument("--ar-base", default=None, help="LM the AR starts from, if not the subject (cross-architecture)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument(
        "--kl-coef", type=float, default=None, help="GRPO's KL to the reference AV (default: the preset's, 0)"
    )
    tr.add_argument("--cache-dir", default=None, help="cache root for the embedded model")
    tr.add_argument(
        "--precision",
        default=None,
        help="auto, fp32 or bf16: every stage's training precision (default: the preset's, auto = bf16 where "
        "the CPU or GPU multiplies it natively)",
    )
    tr.set_defaults(func=_train)

    xp = commands.add_parser("explain", help="explain every token of a text with an NLA, with reconstruction scores")
    xp.add_argument("text", nargs="?", default=None)
    xp.add_argument(
        "--compare",
        nargs=2,
        metavar=("TEXT_A", "TEXT_B"),
        default=None,
        help="explain two texts' tokens (the last by default) side by side: the snippets and words that "
        "change, and the change level beside a control",
    )
    xp.add_argument(
        "--control",
        default="random",
        choices=("random", "swap"),
        help="with --compare: a random direction of the same norm as B - A added to A (default), or each "
        "explanation's reconstruction scored against the other input",
    )
    xp.add_argument("--nla", default=None, help="NLA folder (default: the one shipped for the embedded model)")
    xp.add_argument(
        "--positions",
        type=int,
        nargs="*",
        default=None,
        help="token positions (default: all but the first; with --compare: one for both texts or A's and B's, "
        "default the last token, negative from the end)",
    )
    xp.add_argument("--max-new-tokens", type=int, default=64)
    xp.add_argument("--width", type=int, default=160, help="characters of each explanation shown")
    xp.add_argument(
        "--stream",
        default="auto",
        choices=("auto", "always", "never"),
        help="show each explanation as it is generated, then the scored table (auto: on a terminal)",
    )
    xp.add_argument("--cache-dir", default=None)
    xp.add_argument(
        "--precision", default="fp32", help="fp32, bf16 or auto (bf16 where the CPU or GPU multiplies it natively)"
    )
    xp.add_argument(
        "--color",
        default="auto",
        choices=("auto", "always", "never"),
        help="colour tokens by gain (auto: on a terminal)",
    )
    xp.set_defaults(func=_explain)

    et = commands.add_parser("export", help="export an NLA as full folders in the published layout (LoRA merged)")
    et.add_argument(
        "--nla",
        default=DEFAULT_PRETRAINED,
        help="registry name, hub id or NLA folder (default: the one shipped for the embedded model)",
    )
    et.add_argument("--out", required=True, help="folder to create; it will hold av/ and ar/")
    et.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="dtype to load and save the weights in",
    )
    et.add_argument("--overwrite", action="store_true", help="replace --out if it is a non-empty folder")
    et.set_defaults(func=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nla-lens`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NLALensError as exc:
        print(f"nla-lens: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
