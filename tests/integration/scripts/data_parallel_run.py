"""One training run of the data-parallel tests: run it with ``python`` or ``accelerate launch``.

    python data_parallel_run.py WARM_NLA OUT [--resume CHECKPOINT]

Loads the warm-started tiny NLA saved at WARM_NLA, then runs the AR warm start (3 steps), the AV
warm start (3 steps) and GRPO (4 steps, a checkpoint every 2) on the same synthetic data with the
same global batches, whatever the number of processes. The main process writes each stage's
trained weights to ``OUT/{stage}.safetensors`` and the history to ``OUT/{stage}.csv``; GRPO's
checkpoints and ``history.csv`` go to ``OUT/grpo/``. ``--resume`` runs only GRPO, from a checkpoint,
to step 4, after writing to ``OUT/errors.json`` what a batch of 5 (which no 2 processes split) raises.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from nla_lens.models import NLA
from nla_lens.testing.synthetic import concept_dataset
from nla_lens.training import ARWarmStart, AVWarmStart, GRPOConfig, GRPOTrainer, WarmStartConfig

D = 64
GRPO = dict(
    n_vectors=8, group_size=4, max_new_tokens=16, lr=1e-3, ar_lr=1e-4, micro_batch_size=6, seed=3, ar_augment=0.5
)


def dump(trainer, out: Path, stage: str) -> None:
    if trainer.is_main_process:
        weights = {
            f"{name}.{key}": value.detach().contiguous().clone()
            for name, module in trainer._modules().items()
            if name != "reference"
            for key, value in module.state_dict().items()
        }
        save_file(weights, str(out / f"{stage}.safetensors"))
        trainer.history.to_csv(out / f"{stage}.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("warm")
    parser.add_argument("out")
    parser.add_argument("--resume")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    data, texts = concept_dataset(64, D)
    nla = NLA.from_pretrained(args.warm)
    config = GRPOConfig(**GRPO, checkpoint_every=2, output_dir=str(out / "grpo"))
    if args.resume:
        errors = {}
        for name, make in (
            ("grpo", lambda: GRPOTrainer(nla, data, GRPOConfig(**{**GRPO, "n_vectors": 5}))),
            ("ar", lambda: ARWarmStart(nla.ar, data, texts, WarmStartConfig(batch_size=5))),
        ):
            try:
                make()
            except Exception as exc:  # recorded for the test to check
                errors[name] = f"{type(exc).__name__}: {exc}"
        if os.environ.get("RANK", "0") == "0":
            (out / "errors.json").write_text(json.dumps(errors))
        trainer = GRPOTrainer(nla, data, config, resume_from=args.resume)
        trainer.train(4 - trainer.step_count, progress=False)
        dump(trainer, out, "grpo")
        return
    ar_run = ARWarmStart(nla.ar, data, texts, WarmStartConfig(lr=1e-3, batch_size=8, seed=1, augment=0.5))
    ar_run.train(3, progress=False)
    dump(ar_run, out, "ar")
    av_run = AVWarmStart(nla.av, data, texts, WarmStartConfig(lr=1e-3, batch_size=8, seed=2))
    av_run.train(3, progress=False)
    dump(av_run, out, "av")
    grpo = GRPOTrainer(nla, data, config)
    grpo.train(4, progress=False)
    dump(grpo, out, "grpo")


if __name__ == "__main__":
    main()
