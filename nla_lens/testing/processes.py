"""How the tests and benchmarks start a data-parallel run of several CPU processes.

``accelerate launch --cpu --num_processes N`` starts one process without MPI (accelerate 1.15), so a
multi-process CPU run is launched as a "multi-GPU" one with ``ACCELERATE_USE_CPU=true``: accelerate
then starts N processes that join a gloo group (see ``nla_lens.training.base.process_state``).
"""

from __future__ import annotations

import sys

__all__ = ["CPU_LAUNCH_ENV", "cpu_launch_command"]

#: The environment a CPU launch needs (merge it into ``os.environ``).
CPU_LAUNCH_ENV = {"ACCELERATE_USE_CPU": "true"}


def cpu_launch_command(num_processes: int) -> list[str]:
    """``accelerate launch`` with ``num_processes`` CPU processes on this machine; append the script and its args."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
