"""Trainer checkpoints without pickle: optimizer states and RNG states as safetensors + JSON.

``torch.save`` of an optimizer state pickles it, and loading a pickle runs arbitrary code; so the
tensors of an optimizer state go into a safetensors file and its plain values (hyper-parameters,
step counts) into JSON. Everything is written inside ``atomic_folder``: a crash or a kill while
writing leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nla_lens.errors import CheckpointError

STATE_FILE = "trainer_state.json"
RNG_FILE = "rng_state.safetensors"


def save_optimizer(optimizer: torch.optim.Optimizer, folder: Path, name: str) -> None:
    """Write ``{name}.safetensors`` (tensors) and ``{name}.json`` (everything else)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain.setdefault(str(index), {})[key] = value
    save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({"param_groups": state["param_groups"], "plain": plain}))


def load_optimizer(optimizer: torch.optim.Optimizer, folder: Path, name: str) -> None:
    """Restore an optimizer written by :func:`save_optimizer` (same parameters, same order)."""
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        tensors = load_file(str(folder / f"{name}.safetensors"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Optimizer state {name} in {folder} is missing or unreadable: {exc}") from exc
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, field = key.split(".", 1)
        state.setdefault(int(index), {})[field] = value
    for index, values in meta["plain"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_rng(folder: Path, generator: torch.Generator) -> None:
    """Save the global torch/numpy/python RNG states and the trainer's data generator."""
    # legacy=True is numpy's default (numpy's stub says False): the (name, keys, pos, has_gauss, cached) tuple.
    np_state = np.random.get_state(legacy=True)
    if not isinstance(np_state, tuple):  # numpy returns a dict only for a global generator other than MT19937
        raise CheckpointError(
            f"numpy's global random state is a {np_state.get('bit_generator')!r} state, not MT19937; "
            "the checkpoint can save only MT19937's."
        )
    save_file(
        {
            "torch": torch.get_rng_state(),
            "generator": generator.get_state(),
            "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        },
        str(folder / RNG_FILE),
    )
    py_state = random.getstate()
    (folder / "rng_state.json").write_text(
        json.dumps(
            {
                "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_state[0], list(py_state[1]), py_state[2]],
            }
        )
    )


def load_rng(folder: Path, generator: torch.Generator) -> None:
    """Restore what :func:`save_rng` wrote."""
    tensors = load_file(str(folder / RNG_FILE))
    extra = json.loads((folder / "rng_state.json").read_text())
    torch.set_rng_state(tensors["torch"])
    generator.set_state(tensors["generator"])
    name, pos, has_gauss, cached = extra["numpy"]
    np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = extra["python"]
    random.setstate((version, tuple(internal), gauss))
