"""Uni-O4's compute: gradient steps per second of each offline stage's jitted chunk (critic, BC
ensemble, dynamics ensemble, offline PPO), model-rollout steps per second of AM-Q, and the critic
with seeds vmapped, at the `cpu` preset's sizes and (optionally) the `paper` preset's.

Each number is the best of ``--repeats`` timed calls after one compiling call, on hopper-medium-v5
(made if missing). The whole offline phase's wall time per seed comes from the benchmark's runs
(benchmarks/results/uni_o4.json, ``mean_offline_wall_time_s``).

    python benchmarks/uni_o4_throughput.py [--presets cpu paper]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from common import peak_memory_mb, write_result

NAME = "uni_o4_throughput"


def best_time(call: Callable[[], Any], repeats: int, label: str = "") -> float:
    """Seconds of the fastest of ``repeats`` calls (after one warm-up call that compiles)."""
    print(f"timing {label}", flush=True)
    jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - started)
    return min(times)


def measure(preset: str, dataset: str, chunk: int, repeats: int, seeds: int) -> dict[str, Any]:
    """Throughput of every stage of one Uni-O4 trainer built with ``preset``."""
    import tempfile
    from pathlib import Path

    from hybridrl.algorithms import get_algorithm
    from hybridrl.offline import bc, dynamics, iql
    from hybridrl.offline.uni_o4 import UniO4Trainer, offline_ppo_steps

    config = get_algorithm("uni-o4").make_config(preset, dataset=dataset, phase="offline")
    trainer = UniO4Trainer(config, Path(tempfile.mkdtemp()))
    data, artefacts = trainer.data, trainer.artefacts
    results: dict[str, Any] = {"preset": preset, "chunk_steps": chunk}
    try:
        seconds = best_time(lambda: iql.iql_train_steps(artefacts.critic, data.transitions, chunk,
                                                        networks=trainer.critic, settings=trainer.critic_settings,
                                                        train_policy=False), repeats, "critic")
        results["critic_steps_per_s"] = chunk / seconds
        seed_states = [iql.init_iql_state(trainer.critic, trainer.critic_settings, data.observation_dim,
                                          data.action_dim, jax.random.key_data(jax.random.key(seed)))
                       for seed in range(seeds)]
        states = jax.tree_util.tree_map(lambda *leaves: jax.numpy.stack(leaves), *seed_states)
        vmapped = jax.jit(jax.vmap(lambda state: iql.iql_train_steps(
            state, data.transitions, chunk, networks=trainer.critic, settings=trainer.critic_settings,
            train_policy=False)))
        seconds = best_time(lambda: vmapped(states), repeats, "critic, seeds vmapped")
        results[f"critic_steps_per_s_{seeds}_seeds_vmapped"] = seeds * chunk / seconds
        seconds = best_time(lambda: bc.bc_train_steps(artefacts.behaviour, data.transitions, chunk,
                                                      networks=trainer.behaviour, settings=trainer.bc_settings),
                            repeats)
        results["bc_ensemble_steps_per_s"] = chunk / seconds
        raw = data.dataset.transitions
        settings = dataclasses.replace(trainer.dynamics_settings, max_steps=chunk, eval_every=chunk, patience=10**6)
        seconds = best_time(lambda: dynamics.train_dynamics(raw.observations, raw.actions, raw.rewards,
                                                            raw.next_observations, settings, trainer.dynamics_key)[0],
                            repeats)
        results["dynamics_steps_per_s_incl_holdout_check"] = chunk / seconds
        # Offline PPO and AM-Q need a trained dynamics model for realistic termination rates.
        trained, _ = dynamics.train_dynamics(raw.observations, raw.actions, raw.rewards, raw.next_observations,
                                             settings, trainer.dynamics_key)
        trainer.artefacts = dataclasses.replace(artefacts, dynamics=trained)
        critic = iql.critic_params(artefacts.critic)
        ppo_chunk = min(chunk, config.ope_interval)
        seconds = best_time(lambda: offline_ppo_steps(artefacts.ppo, data.transitions.observations, critic, ppo_chunk,
                                                      policy=trainer.policy, critic=trainer.critic,
                                                      settings=trainer.ppo_settings), repeats)
        results["offline_ppo_steps_per_s"] = ppo_chunk / seconds
        seconds = best_time(lambda: trainer.ope_scores(artefacts.ppo.params), repeats)
        model_steps = config.num_policies * config.ope_start_states * config.ope_horizon
        results["ope_seconds_per_round"] = seconds
        results["ope_model_rollout_steps_per_s"] = model_steps / seconds
        results["ope_round"] = {"policies": config.num_policies, "start_states": config.ope_start_states,
                                "horizon": config.ope_horizon}
    finally:
        trainer.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu"])
    parser.add_argument("--dataset", default="hopper-medium-v5")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the vmapped critic measurement")
    arguments = parser.parse_args()
    from uni_o4 import ensure_datasets

    ensure_datasets([arguments.dataset], "cpu")
    measurements = [measure(preset, arguments.dataset, arguments.chunk, arguments.repeats, arguments.seeds)
                    for preset in arguments.presets]
    for entry in measurements:
        print({name: round(value, 1) if isinstance(value, float) else value for name, value in entry.items()})
    write_result(NAME, [0], {"benchmark": NAME, "dataset": arguments.dataset, "devices": str(jax.devices()),
                             "measurements": measurements, "peak_memory_mb": peak_memory_mb(),
                             "note": "best of --repeats calls after a compiling call; other processes may share "
                                     "the machine (see the command and machine)",
                             "numpy": np.__version__})


if __name__ == "__main__":
    main()
