"""PPO learning benchmark: the `cpu` preset on Hopper-v5 for 1M steps over several seeds.

Resumable: finished seeds are skipped, interrupted ones resume from their checkpoints. Run
directories (checkpoints, TensorBoard logs) go to ``benchmarks/runs/`` (not committed); each seed's
small record (config, evaluation curve, final metrics) goes to ``benchmarks/results/ppo_learning/``
and the summary to ``benchmarks/results/ppo_learning.json``.

    python benchmarks/ppo_learning.py --env Hopper-v5 --seeds 1 2 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, peak_memory_mb, write_result

RUNS_DIR = Path(__file__).resolve().parent / "runs" / "ppo_learning"


def run_seed(job: tuple[str, int, int, str]) -> dict[str, Any]:
    env, seed, total_steps, preset = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import hybridrl
    from hybridrl.core.io import atomic_write_json
    from hybridrl.core.logging import read_metrics
    from hybridrl.runs import CONFIG_FILE, is_finished

    run_dir = RUNS_DIR / f"{env}-{preset}-{total_steps}" / f"seed{seed}"
    if (run_dir / CONFIG_FILE).is_file():
        result = hybridrl.resume(run_dir)
    else:
        result = hybridrl.train("ppo", preset=preset, env=env, seed=seed, total_steps=total_steps, run_dir=run_dir)
    assert is_finished(run_dir)
    entries = read_metrics(run_dir)
    recorded = json.loads((run_dir / CONFIG_FILE).read_text())
    train_returns = [e["train/episode_return"] for e in entries if "train/episode_return" in e]
    record = {
        # The run's own provenance: the commit and machine it was trained with (from config.json).
        "command": f"python benchmarks/ppo_learning.py --env {env} --seeds {seed} --total-steps {total_steps} "
                   f"--preset {preset}",
        "seeds": [seed],
        "git_commit": recorded["git_commit"],
        "machine": recorded["machine"],
        "config": recorded["config"],
        "final": result.final,
        "eval_curve": [{"step": e["step"], "return_mean": e["eval/return_mean"], "return_std": e["eval/return_std"]}
                       for e in entries if "eval/return_mean" in e],
        # Mean of the last 10 iterations' training episodes, close to CleanRL's "last 100 episodes".
        "final_train_return": float(np.mean(train_returns[-10:])) if train_returns else None,
    }
    atomic_write_json(RESULTS_DIR / "ppo_learning" / f"{env}-seed{seed}.json", record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--total-steps", type=int, default=1_000_000)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    jobs = [(arguments.env, seed, arguments.total_steps, arguments.preset) for seed in arguments.seeds]
    with multiprocessing.get_context("spawn").Pool(arguments.workers) as pool:
        records = pool.map(run_seed, jobs)
    eval_returns = [r["final"]["eval/return_mean"] for r in records]
    train_returns = [r["final_train_return"] for r in records]
    summary = {
        "benchmark": "ppo_learning",
        "env": arguments.env,
        "preset": arguments.preset,
        "total_steps": arguments.total_steps,
        "final_eval_return": {"per_seed": eval_returns, "mean": float(np.mean(eval_returns)),
                              "std": float(np.std(eval_returns))},
        "final_train_return": {"per_seed": train_returns, "mean": float(np.mean(train_returns)),
                               "std": float(np.std(train_returns))},
        "normalized_score_per_seed": [r["final"].get("eval/normalized_score") for r in records],
        "wall_time_s_per_seed": [r["final"]["wall_time_s"] for r in records],
        "run_git_commits": [r["git_commit"] for r in records],
        "peak_memory_mb": peak_memory_mb(),
        "expectation": "CleanRL ppo_continuous_action reaches about 2400 on Hopper-v4 at 1M steps; target >= 2000",
    }
    path = write_result(f"ppo_learning_{arguments.env}", arguments.seeds, summary)
    print(json.dumps(summary["final_eval_return"]), "->", path)


if __name__ == "__main__":
    main()
