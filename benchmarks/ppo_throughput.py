"""PPO training throughput next to raw simulator throughput, measured in the same process.

For each env and thread setting, a worker process measures, back to back:

* raw simulator steps/s: ``gymnasium.make(env)`` stepped with random actions (drawn in advance);
* raw vector-env steps/s: our 8 sync envs stepped the same way;
* PPO training steps/s (rollouts + updates + logging, JIT compilation excluded) with the ``cpu``
  preset's 8 sync envs and with a single env (2048-step rollouts).

Ratios are taken within one worker, so machine noise affects both sides alike. Thread settings
are set before JAX starts, hence one process per setting. Writes
``benchmarks/results/ppo_throughput.json``.

    python benchmarks/ppo_throughput.py [--envs Hopper-v5 HalfCheetah-v5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import write_result

THREAD_SETTINGS: dict[str, dict[str, str]] = {
    "xla_default": {},
    "single_thread": {"OMP_NUM_THREADS": "1",
                      "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"},
}


def raw_steps_per_second(env_id: str, steps: int, num_envs: int) -> float:
    import gymnasium as gym

    from hybridrl.envs import make_vector_env

    rng = np.random.default_rng(0)
    if num_envs == 1:
        env = gym.make(env_id)
        env.reset(seed=0)
        space = env.action_space
        actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(np.float32)
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        return steps / (time.perf_counter() - start)
    vector = make_vector_env(env_id, num_envs, seed=0)
    vector.reset(seed=0)
    space = vector.single_action_space
    actions = rng.uniform(space.low, space.high, size=(steps // num_envs, num_envs, *space.shape)).astype(np.float32)
    start = time.perf_counter()
    for action in actions:
        vector.step(action)
    elapsed = time.perf_counter() - start
    vector.close()
    return steps / elapsed


def training_steps_per_second(env_id: str, num_envs: int, iterations: int) -> float:
    from hybridrl.algorithms import get_algorithm
    from hybridrl.rl.ppo import PPOTrainer

    config = get_algorithm("ppo").make_config("cpu", env=env_id, num_envs=num_envs, num_steps=2048 // num_envs,
                                              total_steps=2048 * (iterations + 1), eval_interval=0,
                                              checkpoint_interval=0)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = PPOTrainer(config, Path(run_dir))
        try:
            trainer.collect_rollout()  # the first iteration compiles the update: not timed
            trainer.update()
            start = time.perf_counter()
            for _ in range(iterations):
                trainer.collect_rollout()
                trainer.update()
            elapsed = time.perf_counter() - start
        finally:
            trainer.close()
    return iterations * config.batch_size / elapsed


def worker(env_id: str, iterations: int, raw_steps: int) -> dict[str, Any]:
    import resource

    record = {
        "raw_single_env": raw_steps_per_second(env_id, raw_steps, 1),
        "raw_vector_8": raw_steps_per_second(env_id, raw_steps, 8),
        "train_8_envs": training_steps_per_second(env_id, 8, iterations),
        "train_1_env": training_steps_per_second(env_id, 1, iterations),
    }
    record["raw_single_env_after"] = raw_steps_per_second(env_id, raw_steps, 1)
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"])
    parser.add_argument("--repeats", type=int, default=2, help="alternating repetitions per setting")
    parser.add_argument("--iterations", type=int, default=10, help="timed PPO iterations (2048 steps each)")
    parser.add_argument("--raw-steps", type=int, default=20_000)
    parser.add_argument("--worker", nargs=3, metavar=("ENV", "ITERATIONS", "RAW_STEPS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        env_id, iterations, raw_steps = arguments.worker
        print(json.dumps(worker(env_id, int(iterations), int(raw_steps))))
        return

    measurements: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for repeat in range(arguments.repeats):
        for env_id in arguments.envs:
            for setting, variables in THREAD_SETTINGS.items():
                environment = {**os.environ, "MUJOCO_GL": "disable", **variables}
                completed = subprocess.run(
                    [sys.executable, __file__, "--worker", env_id, str(arguments.iterations), str(arguments.raw_steps)],
                    env=environment, capture_output=True, text=True, check=True)
                record = json.loads(completed.stdout.strip().splitlines()[-1])
                measurements.setdefault(env_id, {}).setdefault(setting, []).append(record)
                print(f"repeat {repeat} {env_id} {setting}: {record}", flush=True)

    summary: dict[str, Any] = {}
    for env_id, settings in measurements.items():
        summary[env_id] = {}
        for setting, records in settings.items():
            def median(key: str, records: list[dict[str, Any]] = records) -> float:
                return float(np.median([r[key] for r in records]))

            raw = float(np.median([(r["raw_single_env"] + r["raw_single_env_after"]) / 2 for r in records]))
            summary[env_id][setting] = {
                "raw_single_env_steps_per_s": raw,
                "raw_vector_8_steps_per_s": median("raw_vector_8"),
                "train_8_envs_steps_per_s": median("train_8_envs"),
                "train_1_env_steps_per_s": median("train_1_env"),
                "ratio_train_8_envs_to_raw": median("train_8_envs") / raw,
                "ratio_train_1_env_to_raw": median("train_1_env") / raw,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in records),
            }
    best = {env_id: max(settings, key=lambda s, settings=settings: settings[s]["train_8_envs_steps_per_s"])
            for env_id, settings in summary.items()}
    path = write_result("ppo_throughput", [], {
        "benchmark": "ppo_throughput",
        "targets": {"ratio_train_8_envs_to_raw": 0.5, "ratio_train_1_env_to_raw": 0.25},
        "thread_settings": THREAD_SETTINGS,
        "summary": summary,
        "fastest_setting": best,
        "raw_measurements": measurements,
    })
    print(json.dumps(summary, indent=2), "->", path)


if __name__ == "__main__":
    main()
