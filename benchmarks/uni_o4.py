"""Uni-O4 at `cpu` scale: offline scores of BC, IQL and Uni-O4 side by side, then online
fine-tuning of Uni-O4 against PPO from scratch, via the sweep machinery.

The paper's claims (Lei et al. 2024; D4RL -v2, 5 seeds): offline, Uni-O4 above IQL and BC on most
datasets (hopper-medium 104.4 vs IQL 66.3; hopper-medium-replay 103.2 vs 97.7; walker2d-medium
90.2 vs 78.3); online, no initial drop and better sample efficiency than every baseline, PPO from
scratch included. Our datasets are hybridrl's own v5 datasets made as D4RL made them (`hybridrl
data make <family>-<kind>-sac-v5 --preset cpu`: SAC behaviour policies, 200k transitions; the
medium-replay buffer as large as the SAC run's up to the medium policy; scores normalised with
their measured random/expert returns), so absolute numbers are not comparable with D4RL's. The
committed records of the legacy PPO-made datasets (`hopper-medium-v5` ...) stay under their names;
pass them with `--datasets` to reproduce those.

Three sweeps, resumable and recorded (run directories in benchmarks/runs/uni_o4/, not
committed; records in benchmarks/results/uni_o4/{baselines,uni-o4,scratch}/runs/):

* baselines: bc and iql on every dataset, `--seeds` seeds;
* uni-o4: both phases (offline, then `--online-steps` of fine-tuning) on every dataset;
* scratch: PPO (its `cpu` preset, our tuned from-scratch settings) for the same online budget on
  each dataset's environment.

    python benchmarks/uni_o4.py --seeds 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, iqm_summary, peak_memory_mb, recorded_sweep, write_result

NAME = "uni_o4"
REPOSITORY = Path(__file__).resolve().parent.parent
PAPER = {
    "claim": "offline: Uni-O4 > IQL and BC on most datasets; online: no initial drop, better sample "
             "efficiency than PPO from scratch",
    "offline normalised scores (D4RL -v2, Table 1)": {
        "hopper-medium": {"uni-o4": 104.4, "iql": 66.3, "bc (BPPO's table)": 52.9},
        "hopper-medium-replay": {"uni-o4": 103.2, "iql": 97.7, "bc (BPPO's table)": 18.1},
        "walker2d-medium": {"uni-o4": 90.2, "iql": 78.3, "bc (BPPO's table)": 75.3},
    },
}


def ensure_datasets(datasets: Sequence[str], preset: str) -> dict[str, tuple[float, float]]:
    """Make the datasets that are missing (seconds each at cpu scale); their reference returns."""
    from hybridrl.data import DatasetNotFoundError, load_dataset, write_minari
    from hybridrl.data.generation import make_dataset

    references = {}
    for name in datasets:
        try:
            dataset = load_dataset(name, validate=False)
        except DatasetNotFoundError:
            dataset = make_dataset(name, preset=preset)
            write_minari(dataset, f"hybridrl/{name}")
        assert dataset.info.reference_returns is not None
        references[name] = dataset.info.reference_returns
    return references


def _normalize(returns: np.ndarray, reference: tuple[float, float]) -> np.ndarray:
    random_return, expert_return = reference
    return 100.0 * (np.asarray(returns, dtype=np.float64) - random_return) / (expert_return - random_return)


def _curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, returns) of a run's evaluations."""
    from hybridrl.core.logging import read_metrics

    lines = [line for line in read_metrics(run_dir) if "eval/return_mean" in line]
    return (np.asarray([line["step"] for line in lines], dtype=np.float64),
            np.asarray([line["eval/return_mean"] for line in lines], dtype=np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+",
                        default=["hopper-medium-sac-v5", "hopper-medium-replay-sac-v5", "walker2d-medium-sac-v5"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--online-steps", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)
    references = ensure_datasets(arguments.datasets, arguments.preset)
    envs = sorted({_env_of(name) for name in arguments.datasets})

    keep = ("eval/return_mean",)
    baselines = recorded_sweep(f"{NAME}/baselines", {
        "name": f"{NAME}-baselines", "output": f"benchmarks/runs/{NAME}/baselines", "algorithm": ["bc", "iql"],
        "dataset": arguments.datasets, "preset": arguments.preset, "seeds": arguments.seeds,
    }, keep=keep, workers=arguments.workers)
    uni_o4 = recorded_sweep(f"{NAME}/uni-o4", {
        "name": f"{NAME}-uni-o4", "output": f"benchmarks/runs/{NAME}/uni-o4", "algorithm": "uni-o4",
        "dataset": arguments.datasets, "preset": arguments.preset, "seeds": arguments.seeds,
        "overrides": {"online_steps": arguments.online_steps, "online_eval_interval": 10_000},
    }, keep=keep, workers=arguments.workers, extra_metrics=("online",))
    scratch = recorded_sweep(f"{NAME}/scratch", {
        "name": f"{NAME}-scratch", "output": f"benchmarks/runs/{NAME}/scratch", "algorithm": "ppo", "env": envs,
        "preset": arguments.preset, "seeds": arguments.seeds,
        "overrides": {"total_steps": arguments.online_steps, "eval_interval": 10_000},
    }, keep=keep, workers=arguments.workers)

    from hybridrl.experiments.spec import expand_sweep
    from hybridrl.runs import is_finished

    offline_scores: dict[str, dict[str, list[float]]] = {name: {} for name in arguments.datasets}
    curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    wall: dict[str, list[float]] = {}
    for run in [*expand_sweep(baselines), *expand_sweep(uni_o4)]:
        if not is_finished(run.run_dir):
            continue
        final = json.loads((run.run_dir / "final.json").read_text())
        reference = references[run.task]
        key = "offline/eval/return_mean" if run.algorithm == "uni-o4" else "eval/return_mean"
        offline_scores[run.task].setdefault(run.algorithm, []).append(float(_normalize(final[key], reference)))
        wall.setdefault(run.algorithm, []).append(float(final.get("offline/wall_time_s", final.get("wall_time_s", 0))))
        if run.algorithm == "uni-o4":
            steps, returns = _curve(run.run_dir / "online")
            curves.setdefault(run.task, {}).setdefault("uni-o4", []).append((steps, _normalize(returns, reference)))
    for run in expand_sweep(scratch):
        if not is_finished(run.run_dir):
            continue
        steps, returns = _curve(run.run_dir)
        for dataset in arguments.datasets:
            if _env_of(dataset) == run.task:
                scores = _normalize(np.concatenate([[np.nan], returns]), references[dataset])
                curves.setdefault(dataset, {}).setdefault("ppo", []).append((np.concatenate([[0.0], steps]), scores))

    offline_table = {dataset: {method: iqm_summary(values) for method, values in methods.items()}
                     for dataset, methods in offline_scores.items()}
    online_table = {dataset: _online_summary(methods) for dataset, methods in curves.items()}
    report = write_report(offline_table, online_table, curves, RESULTS_DIR / NAME / "report", arguments)
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME,
        "datasets": arguments.datasets,
        "preset": arguments.preset,
        "online_steps": arguments.online_steps,
        "reference_returns": {name: list(value) for name, value in references.items()},
        "offline_normalized_score": offline_table,
        "online": online_table,
        "mean_offline_wall_time_s": {method: float(np.mean(values)) for method, values in wall.items()},
        "report": str(report.relative_to(REPOSITORY)),
        "paper": PAPER,
        "peak_memory_mb": peak_memory_mb(),
    })


def _env_of(dataset: str) -> str:
    from hybridrl.data.generation import parse_dataset_name

    return parse_dataset_name(dataset)[2]


def _online_summary(methods: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, Any]:
    """Per method: the score before fine-tuning (Uni-O4's step 0), the lowest score in the first
    quarter of the budget (the initial drop), the final score and the curve's average (AUC)."""
    from hybridrl.experiments.statistics import area_under_curve

    summary: dict[str, Any] = {}
    for method, runs in methods.items():
        start, lowest, final, auc = [], [], [], []
        for steps, scores in runs:
            valid = ~np.isnan(scores)
            first_quarter = valid & (steps <= steps.max() / 4)
            start.append(float(scores[0]) if valid[0] else float("nan"))
            lowest.append(float(np.min(scores[first_quarter])) if first_quarter.any() else float("nan"))
            final.append(float(scores[valid][-1]))
            auc.append(area_under_curve(steps[valid], scores[valid]))
        summary[method] = {"start": iqm_summary(start) if not np.isnan(start).any() else None,
                           "lowest_in_first_quarter": iqm_summary(lowest) if not np.isnan(lowest).any() else None,
                           "final": iqm_summary(final), "auc": iqm_summary(auc)}
    return summary


def write_report(offline: dict[str, Any], online: dict[str, Any], curves: dict[str, Any], folder: Path,
                 arguments: argparse.Namespace) -> Path:
    """report.md with the offline and online tables and a figure of the fine-tuning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)

    def cell(entry: dict[str, float] | None) -> str:
        if entry is None:
            return "–"
        return f"{entry['iqm']:.1f} [{entry['iqm_low']:.1f}, {entry['iqm_high']:.1f}] (mean {entry['mean']:.1f})"

    lines = [f"# Uni-O4 at `{arguments.preset}` scale", "",
             f"Seeds: {arguments.seeds}. Scores: normalised with each dataset's measured random and expert returns "
             "(0 = random, 100 = expert); IQM over seeds with a 95% bootstrap interval. Generated by "
             "`python benchmarks/uni_o4.py`.", "", "## Offline", "",
             "| dataset | BC | IQL | Uni-O4 |", "|---|---|---|---|"]
    for dataset, methods in offline.items():
        lines.append(f"| {dataset} | " + " | ".join(cell(methods.get(m)) for m in ("bc", "iql", "uni-o4")) + " |")
    lines += ["", f"## Online fine-tuning ({arguments.online_steps:,} env steps)", "",
              "| dataset | method | before fine-tuning | lowest in first quarter | final | average over the curve |",
              "|---|---|---|---|---|---|"]
    for dataset, methods in online.items():
        for method, entry in methods.items():
            lines.append(f"| {dataset} | {method} | {cell(entry['start'])} | {cell(entry['lowest_in_first_quarter'])} "
                         f"| {cell(entry['final'])} | {cell(entry['auc'])} |")
    figure, axes = plt.subplots(1, max(len(curves), 1), figsize=(4.4 * max(len(curves), 1), 3.3), squeeze=False)
    for axis, (dataset, methods) in zip(axes[0], curves.items(), strict=False):
        for method, runs in methods.items():
            grid = runs[0][0]
            stacked = np.stack([np.interp(grid, steps, scores) for steps, scores in runs])
            mean = np.nanmean(stacked, axis=0)
            low, high = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
            axis.plot(grid, mean, label=method)
            axis.fill_between(grid, low, high, alpha=0.2)
        axis.set_title(dataset)
        axis.set_xlabel("environment steps")
        axis.set_ylabel("normalised score")
        axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "online.png", dpi=120)
    plt.close(figure)
    lines += ["", "![online fine-tuning: mean over seeds, band = min..max](online.png)", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    main()
