"""PROPS vs PPO vs PPO-Buffer returns at `cpu` scale (Hopper-v5 and CartPole-v1), via the sweep
machinery, with IQM and area under the curve per task and 95% stratified-bootstrap intervals.

The paper's claim (Corrado & Hanna; numbers computed from the authors' released runs, 50 seeds,
1 env, v4 tasks, docs/algorithms/props.md): PROPS >= PPO, PPO-Buffer often below PPO. Each
method runs with its per-task settings (`task_presets`: PROPS's table row, the tuned PPO and
PPO-Buffer rows).

Resumable and recorded: run directories go to benchmarks/runs/props_returns/ (not committed);
each finished run's record to benchmarks/results/props_returns/runs/, the report to
benchmarks/results/props_returns/report/, the summary to benchmarks/results/props_returns.json.

    python benchmarks/props_returns.py --seeds 5 --workers 2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, peak_memory_mb, recorded_sweep, write_result

NAME = "props_returns"
REPOSITORY = Path(__file__).resolve().parent.parent
VARIANTS = {
    "default": {},  # PROPS itself; reports call it "props"
    "ppo": {"sampling": "on-policy", "buffer_batches": 1},
    "ppo-buffer": {"sampling": "on-policy", "buffer_batches": 2},
}
PAPER = {
    "claim": "PROPS >= PPO; PPO-Buffer often below PPO",
    "Hopper-v4, 1M steps, final return mean (IQM), 50 runs": {
        "props": "3181 +- 162 (3352)", "ppo": "3121 +- 156 (3297)", "ppo-buffer": "2975 +- 206 (3256)"},
    "Hopper-v4, mean return over the curve": {"props": 2609, "ppo": 2414},
    "discrete tasks": "no return data released; the abstract claims better data efficiency",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "CartPole-v1"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)  # run directories and configs use paths relative to the repository

    spec = recorded_sweep(NAME, {
        "name": NAME, "output": f"benchmarks/runs/{NAME}", "algorithm": "props", "env": arguments.envs,
        "preset": arguments.preset, "seeds": arguments.seeds, "variants": VARIANTS,
    }, keep=("eval/return_mean",), workers=arguments.workers)

    from hybridrl.experiments import aggregate, improvement_over, load_results, load_runs, run_scores
    from hybridrl.experiments.report import write_report

    report = write_report(spec.output, RESULTS_DIR / NAME / "report", baseline="props:ppo")
    scores = run_scores(load_results(spec.output), finished_only=True)
    tables: dict[str, Any] = {}
    for score in ("final", "auc"):
        table = aggregate(scores, score=score, scale="return", per_task=True, metrics=["IQM", "Mean"])
        tables[score] = table.to_dict(orient="records")
    improvement = improvement_over(scores, "props:ppo", score="final").to_dict(orient="records")
    wall = load_runs(spec.output).groupby(["method", "task"])["final/wall_time_s"].mean()
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME,
        "envs": arguments.envs,
        "preset": arguments.preset,
        "variants": VARIANTS,
        "per_task_return": tables,
        "probability_of_improvement_over_ppo": improvement,
        "mean_wall_time_s": {f"{method} {task}": float(value) for (method, task), value in wall.items()},
        "runs": len(scores),
        "report": str(report.markdown.relative_to(REPOSITORY)),
        "paper": PAPER,
        "peak_memory_mb": peak_memory_mb(),
    })


if __name__ == "__main__":
    main()
