"""Fixed targets for PROPS's sampling-error experiment, trained the way the paper's were, and shipped.

The paper's fixed-target experts (PPOROS `PROPS/policies/<env>/best_model.zip`) come from PPO with
an entropy bonus of 0.01 and step size 1e-4 on one env (the released `config.yml` settings of
every MuJoCo run, docs/algorithms/props.md), so their state-independent log-std stays near 0
(std about 1): a wide target, with room for sampling error to show. A PPO expert trained without
the entropy bonus (ours before, `ppo --preset cpu`) narrows to std about 0.1-0.3 and the same
PROPS code reduces the error far less. The recipe here, for each env:

    hybridrl train ppo --preset paper --env ENV --num-envs 1 --num-steps 2048 --learning-rate 1e-4 \\
        --entropy-coef 0.01 --update-epochs 10 --num-minibatches 32 --clip-coef 0.2 --target-kl 0.03 \\
        --target-kl-check minibatch --policy-tanh-mean --total-steps STEPS --seed 1

(the `paper` PPO preset with the PROPS code's settings; `--steps`, 1M by default), then the run's
`config.json` and `checkpoint.ckpt` are copied to ``src/hybridrl/data/assets/props-targets/<ENV>/``
(tens of kB), so `benchmarks/props_sampling_error.py` needs no training. Each target's return (20
mean-action episodes) and per-dimension policy std are recorded in
``benchmarks/results/props_targets.json``.

    python benchmarks/props_targets.py train  [--envs Hopper-v5 Walker2d-v5 HalfCheetah-v5] [--steps 1000000]
    python benchmarks/props_targets.py export [--envs ...]

`train` is resumable (an interrupted run continues from its last checkpoint); run one process per
env, one per core, e.g. ``taskset -c 1 python benchmarks/props_targets.py train --envs Walker2d-v5``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, write_result
from hybridrl.data.generation import ASSETS

REPOSITORY = Path(__file__).resolve().parent.parent
WORK_DIR = REPOSITORY / "benchmarks" / "runs" / "props_targets"
TARGETS = ASSETS / "props-targets"
ENVS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")
#: The PROPS code's PPO (reference notes, sections 1.4 and 3) with the experts' entropy and step size.
RECIPE: dict[str, Any] = dict(num_envs=1, num_steps=2048, learning_rate=1e-4, entropy_coef=0.01, update_epochs=10,
                              num_minibatches=32, clip_coef=0.2, target_kl=0.03, target_kl_check="minibatch",
                              policy_tanh_mean=True, seed=1, eval_interval=100_000, eval_episodes=10,
                              checkpoint_interval=50_000)
#: What a fixed target needs: the run's config and its final checkpoint.
SHIPPED_FILES = ("config.json", "checkpoint.ckpt")


def target_dir(env: str) -> Path:
    """The shipped target of ``env`` (a minimal run directory), for `--fixed-target`."""
    return TARGETS / env


def train(envs: list[str], steps: int) -> None:
    from hybridrl import runs

    for env in envs:
        run_dir = WORK_DIR / env
        if runs.is_finished(run_dir):
            print(f"{env}: finished already ({run_dir})")
            continue
        if (run_dir / "config.json").is_file():
            result = runs.resume(run_dir)
        else:
            result = runs.train("ppo", preset="paper", run_dir=run_dir, env=env, total_steps=steps, **RECIPE)
        print(f"{env}: {result.final.get('eval/return_mean', float('nan')):.0f} after {steps:,} steps", flush=True)


def describe(run_dir: Path, episodes: int = 20) -> dict[str, Any]:
    """A target's mean-action return over ``episodes`` and its per-dimension policy std."""
    import jax

    from hybridrl.rl.ppo import PPOTrainer
    from hybridrl.runs import read_run_config

    _, config = read_run_config(run_dir)
    trainer = PPOTrainer(config, run_dir / "probe")
    try:
        trainer.load_checkpoint(run_dir / "checkpoint.ckpt")
        evaluation = trainer.evaluate(episodes)
        log_std = np.asarray(jax.device_get(trainer.state.params["policy"]["log_std"]))
    finally:
        trainer.close()
        shutil.rmtree(run_dir / "probe", ignore_errors=True)
    return {"return_mean": evaluation["eval/return_mean"], "return_std": evaluation["eval/return_std"],
            "evaluation_episodes": episodes, "policy_std": np.exp(log_std).round(4).tolist(),
            "policy_std_mean": float(np.exp(log_std).mean()), "total_steps": config.total_steps,
            "recipe": {name: getattr(config, name) for name in RECIPE}}


def export(envs: list[str]) -> None:
    path = RESULTS_DIR / "props_targets.json"
    records = json.loads(path.read_text())["targets"] if path.is_file() else {}
    for env in envs:
        source = WORK_DIR / env
        target = target_dir(env)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in SHIPPED_FILES:
            shutil.copy(source / name, target / name)
        records[env] = {**describe(target), "command": f"python benchmarks/props_targets.py train --envs {env}"}
        print(f"{env}: return {records[env]['return_mean']:.0f}, policy std {records[env]['policy_std']}")
    write_result("props_targets", [RECIPE["seed"]], {"targets": records})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "export"))
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--steps", type=int, default=1_000_000)
    arguments = parser.parse_args()
    if arguments.command == "train":
        train(arguments.envs, arguments.steps)
    else:
        export(arguments.envs)


if __name__ == "__main__":
    main()
