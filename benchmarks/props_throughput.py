"""PROPS's cost: wall time per environment step of PROPS (and ROS, PPO-Buffer) over PPO's,
measured side by side in one process at the `cpu` preset.

PROPS adds a behaviour update every m steps (16 epochs over the buffer, early-stopped), about six
times PPO's optimiser steps on Hopper. Each scheme runs a few warm-up iterations (compilation),
then timed iterations; schemes alternate over several rounds and the median per scheme is kept,
so machine noise hits all of them alike.

    python benchmarks/props_throughput.py --env Hopper-v5 --iterations 10 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import peak_memory_mb, write_result

SCHEMES: dict[str, tuple[str, dict[str, Any]]] = {
    "ppo": ("ppo", {}),
    "props:ppo": ("props", {"sampling": "on-policy", "buffer_batches": 1}),
    "props:ppo-buffer": ("props", {"sampling": "on-policy", "buffer_batches": 2}),
    "props": ("props", {}),
    "props:ros": ("props", {"sampling": "ros"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--iterations", type=int, default=10, help="timed target batches per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed target batches first (compilation)")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from hybridrl.algorithms import get_algorithm

    trainers: dict[str, Any] = {}
    scratch = tempfile.TemporaryDirectory()
    for name, (algorithm, overrides) in SCHEMES.items():
        spec = get_algorithm(algorithm)
        # Same batch n = 2048 for every scheme, so only the sampling scheme differs.
        config = spec.make_config("cpu", env=arguments.env, seed=1, num_envs=8, num_steps=256, **overrides)
        trainer = spec.make_trainer(config, Path(scratch.name) / name, False)
        for _ in range(arguments.warmup):
            _iteration(trainer)
        trainers[name] = trainer

    seconds_per_step: dict[str, list[float]] = {name: [] for name in SCHEMES}
    behaviour_steps: dict[str, list[float]] = {name: [] for name in SCHEMES}
    for _ in range(arguments.rounds):
        for name, trainer in trainers.items():
            started = time.perf_counter()
            logged = [_iteration(trainer) for _ in range(arguments.iterations)]
            elapsed = time.perf_counter() - started
            seconds_per_step[name].append(elapsed / (arguments.iterations * trainer.config.batch_size))
            minibatch = [metrics.get("behaviour/minibatch_steps", 0.0) for metrics in logged]
            behaviour_steps[name].append(float(np.mean(minibatch)))
    for trainer in trainers.values():
        trainer.close()

    median = {name: float(np.median(values)) for name, values in seconds_per_step.items()}
    ppo = median["ppo"]
    ratios = {name: value / ppo for name, value in median.items()}
    batch_size = trainers["props"].config.batch_size
    behaviour_updates = batch_size // trainers["props"].config.behaviour_batch_size
    payload = {
        "benchmark": "props_throughput",
        "env": arguments.env,
        "iterations": arguments.iterations,
        "rounds": arguments.rounds,
        "seconds_per_env_step": median,
        "env_steps_per_second": {name: 1.0 / value for name, value in median.items()},
        "wall_time_per_step_over_ppo": ratios,
        "behaviour_minibatch_steps_per_update": {name: float(np.mean(v)) for name, v in behaviour_steps.items()},
        "behaviour_updates_per_target_batch": behaviour_updates,
        "ppo_minibatch_steps_per_target_batch": trainers["ppo"].config.update_epochs
        * trainers["ppo"].config.num_minibatches,
        "peak_memory_mb": peak_memory_mb(),
    }
    path = write_result("props_throughput", [1], payload)
    for name in SCHEMES:
        print(f"{name:18s} {1.0 / median[name]:8.0f} steps/s  x{ratios[name]:.2f} PPO's wall time per step")
    print("->", path)


def _iteration(trainer: Any) -> dict[str, float]:
    """One target batch: collect (with behaviour updates) and update, as the training loop does."""
    trainer.collect_rollout()
    trainer.global_step += trainer.config.batch_size
    metrics: dict[str, float] = trainer.update()
    return metrics


if __name__ == "__main__":
    main()
