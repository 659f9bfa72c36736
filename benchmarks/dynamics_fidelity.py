"""Uni-O4's dynamics ensemble: how long it takes to converge, and what convergence buys AM-Q.

For each dataset the ensemble (`hybridrl.offline.dynamics`, the `cpu` preset's 5 members / 3 elites,
3x200, or `--architecture released` for the reference's 7 / 5, 4x200) is trained with holdout early
stopping (the reference's rule: stop after 5 checks without a 1 % gain, a check every 1,000 steps,
about an epoch of 200k transitions) under each step cap of `--caps`. A cap that early stopping
never reaches truncates training. Each fitted model is then judged the way AM-Q uses it:

* holdout MSE of the elites (and the check-by-check curve, kept in the result);
* **survival**: the dataset's own behaviour policy (the shipped medium SAC actor, mean actions) rolled
  out in the model for `--horizon` steps from `--start-states` episode starts drawn from the dataset,
  sampling a random elite per step as AM-Q does, against the same policy's episodes in the real env,
  capped at the same horizon. A model that ends episodes too early (or never) misleads AM-Q's Q sums.

Training with a larger cap is the same run as with a smaller one up to the smaller cap (same key,
deterministic), so the caps measure one training run at several lengths; `--survival-every N`
measures the survival every N steps of the same run as well (the model training would return if it
stopped there).

    python benchmarks/dynamics_fidelity.py [--datasets hopper-medium-sac-v5 ...] [--caps 10000 150000]

Writes benchmarks/results/dynamics_fidelity.json (resumable: finished dataset x cap x architecture
entries are kept and skipped).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from common import RESULTS_DIR, peak_memory_mb, write_result

NAME = "dynamics_fidelity"
ARCHITECTURES = {
    "cpu": {"num_members": 5, "num_elites": 3, "hidden_sizes": (200, 200, 200)},
    "released": {"num_members": 7, "num_elites": 5, "hidden_sizes": (200, 200, 200, 200)},
}


def model_survival(state: Any, model: Any, env_id: str, start_observations: np.ndarray, act: Any, horizon: int,
                   seed: int) -> np.ndarray:
    """Steps each branch stays alive (at most ``horizon``) when ``act`` drives the model from each start state."""
    import jax
    import jax.numpy as jnp

    from hybridrl.offline.dynamics import dynamics_step, termination_function

    termination = jax.jit(termination_function(env_id))
    observations = jnp.asarray(start_observations, dtype=jnp.float32)
    alive = np.ones(len(start_observations), dtype=bool)
    survival = np.zeros(len(start_observations), dtype=np.int64)
    key = jax.random.key(seed)
    for _ in range(horizon):
        key, step_key = jax.random.split(key)
        actions = np.clip(act(np.asarray(observations)), -1.0, 1.0).astype(np.float32)
        observations, _ = dynamics_step(model, state, observations, jnp.asarray(actions), step_key, True)
        ended = np.asarray(termination(observations)) | ~np.all(np.isfinite(np.asarray(observations)), axis=-1)
        survival += alive
        alive &= ~ended
        if not alive.any():
            break
    return survival


def measure(dataset_name: str, architecture: str, cap: int, horizon: int, start_states: int,
            real_episodes: int, survival_every: int = 0) -> dict[str, Any]:
    import jax

    from hybridrl.core.evaluation import evaluate_policy
    from hybridrl.data import load_dataset
    from hybridrl.data.generation import BehaviourPolicies, behaviour_folder, parse_dataset_name
    from hybridrl.envs.factory import make_env
    from hybridrl.offline import dynamics

    dataset = load_dataset(dataset_name)
    env_id = parse_dataset_name(dataset_name)[2]
    raw = dataset.transitions
    settings = dynamics.DynamicsSettings(**ARCHITECTURES[architecture], max_steps=cap)
    model = dynamics.make_dynamics_model(settings, raw.observations.shape[1], raw.actions.shape[1])
    policies = BehaviourPolicies.load(behaviour_folder(env_id, "cpu", 0, learner="sac"))
    env = make_env(env_id)
    bound = policies.medium.bind(env.action_space)
    env.close()

    def act(observations: np.ndarray) -> np.ndarray:
        return np.asarray(bound(observations))  # mean actions: no rng

    rng = np.random.default_rng(0)
    starts = dataset.episode_starts[:-1]
    chosen = starts[rng.choice(len(starts), size=min(start_states, len(starts)), replace=False)]
    start_observations = np.asarray(raw.observations)[chosen]

    # Survival along the way (with --survival-every): the model training would return at that step.
    along_the_way: list[dict[str, float]] = []

    def on_check(step: int, state: Any) -> None:
        if survival_every and step % survival_every == 0 and step < cap:
            survival = model_survival(state, model, env_id, start_observations, act, horizon, seed=0)
            elites = np.asarray(state.elites)
            along_the_way.append({"step": step, "holdout_mse": float(np.asarray(state.holdout_mse)[elites].mean()),
                                  "model_survival_mean": float(survival.mean())})

    curve: list[dict[str, float]] = []
    started = time.perf_counter()
    state, metrics = dynamics.train_dynamics(
        raw.observations, raw.actions, raw.rewards, raw.next_observations, settings, jax.random.key(0),
        log=lambda step, values: curve.append({"step": step, **{name.split("/")[1]: round(value, 6)
                                                                for name, value in values.items()}}),
        on_check=on_check)
    train_s = time.perf_counter() - started
    in_model = model_survival(state, model, env_id, start_observations, act, horizon, seed=0)
    real_env = make_env(env_id)
    try:
        in_env = evaluate_policy(real_env, act, real_episodes, seed=10_000, length_cap=horizon)
    finally:
        real_env.close()
    return {"dataset": dataset_name, "architecture": architecture, "cap": cap,
            "steps": int(metrics["dynamics/steps"]), "stopped_early": bool(metrics["dynamics/stopped_early"]),
            "holdout_mse": metrics["dynamics/holdout_mse"], "train_s": round(train_s, 1),
            "horizon": horizon, "model_survival_mean": float(in_model.mean()),
            "real_survival_mean": in_env["eval/length_capped_mean"],
            "model_survival_quantiles": np.quantile(in_model, [0.1, 0.5, 0.9]).tolist(),
            "start_states": len(chosen), "real_episodes": real_episodes, "curve": curve,
            "survival_along_the_way": along_the_way}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["hopper-medium-sac-v5", "walker2d-medium-sac-v5"])
    parser.add_argument("--caps", nargs="+", type=int, default=[10_000, 150_000])
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="cpu")
    parser.add_argument("--horizon", type=int, default=200, help="rollout steps (the cpu preset's AM-Q horizon)")
    parser.add_argument("--start-states", type=int, default=128)
    parser.add_argument("--real-episodes", type=int, default=20)
    parser.add_argument("--survival-every", type=int, default=0,
                        help="also measure the model's survival every this many training steps (0: only at the end)")
    arguments = parser.parse_args()
    path = RESULTS_DIR / f"{NAME}.json"
    entries: dict[str, Any] = json.loads(path.read_text())["entries"] if path.is_file() else {}
    for dataset in arguments.datasets:
        for cap in arguments.caps:
            key = f"{dataset}/{arguments.architecture}/{cap}"
            if key in entries:
                continue
            entry = measure(dataset, arguments.architecture, cap, arguments.horizon, arguments.start_states,
                            arguments.real_episodes, arguments.survival_every)
            # Re-read before writing: one process per dataset may share the file (one per core).
            entries = {**(json.loads(path.read_text())["entries"] if path.is_file() else {}), key: entry}
            print(f"{key}: {entry['steps']} steps (stopped early: {entry['stopped_early']}), holdout MSE "
                  f"{entry['holdout_mse']:.4f}, {entry['train_s']:.0f} s; survival in {arguments.horizon} steps: "
                  f"model {entry['model_survival_mean']:.0f}, real {entry['real_survival_mean']:.0f}", flush=True)
            write_result(NAME, [0], {"entries": entries, "peak_memory_mb": peak_memory_mb()})


if __name__ == "__main__":
    main()
