"""PROPS vs PPO (vs PPO-Buffer) returns where the paper's effect is largest, set up as the paper
ran it, with the sampling error measured during learning; via the sweep machinery.

The paper's claim (Corrado & Hanna; numbers computed from the authors' released runs, 50 seeds,
1 env, v4 tasks, docs/algorithms/props.md): PROPS >= PPO, with the largest gains in the area under
the curve on Walker2d (2945 vs 2275) and HalfCheetah (2218 vs 1808); PPO-Buffer often below PPO.

**Setup** (the released code's): one env; each method with its released per-task row (`props
--preset cpu`: PROPS's table row, the tuned PPO and PPO-Buffer rows, via `task_presets`); the
target's PPO with its KL early stop checked on every minibatch (`--target-kl-check minibatch`)
and the behaviour update's stale reference after each target update (`--stale-target`), both
now the presets' defaults; 500k steps per run (the `cpu` budget: the paper ran 1M on Hopper and 2M
on Walker2d and HalfCheetah), evaluation every 25k steps over 10 mean-action episodes.

**Sampling error during learning** (the paper's second measurement): PROPS and PPO-Buffer runs log
the buffer's sampling error and that of on-policy sampling along the same sequence of targets
(`--sampling-error-reference`, the released code's reference replay) every `--se-interval` steps,
both before that iteration's target update as the code does; the summary gives each method's
buffer/reference ratio per seed (IQM, 95 % CI) and the fraction of measurements below the
reference, and the report plots the ratio (the buffers differ in size, so raw errors do not compare).

The paper's released runs read at our 500k budget (`benchmarks/props_paper_curves.py`) are
reported beside ours as `paper_at_our_budget`.

The report gives, per task, the final return (last evaluation) and the area under the curve
(mean over evaluations) as IQM with 95% stratified-bootstrap intervals, and P(PROPS > PPO) with its
interval. Resumable and recorded: run directories in benchmarks/runs/props_returns/paper-1env/
(not committed); each finished run's record in benchmarks/results/props_returns/paper-1env/runs/
(returns, sampling errors and the behaviour and PPO diagnostics logged beside them), the report
in benchmarks/results/props_returns/report/, the summary in benchmarks/results/props_returns.json.

    python benchmarks/props_returns.py --seeds 10 --workers 2 [--envs ...] [--variants props ppo ppo-buffer
        props-lr-scaled] [--report-only]

``props-lr-scaled`` (ours, not run by default) is PROPS with ``--behaviour-lr-std-reference 1``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, iqm_summary, peak_memory_mb, sweep_or_records, write_result

NAME = "props_returns"
SETTING = "paper-1env"
REPOSITORY = Path(__file__).resolve().parent.parent
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},  # PROPS itself; reports call it "props"
    "ppo": {"sampling": "on-policy", "buffer_batches": 1},
    "ppo-buffer": {"sampling": "on-policy", "buffer_batches": 2},
    # Ours, optional: the behaviour step of the mean scaled by the target's std (over 1, the initial
    # policy's), so it shrinks as the target narrows during learning (docs/algorithms/props.md).
    "props-lr-scaled": {"behaviour_lr_std_reference": 1.0},
}
#: Variant names on the command line -> the sweep's variant keys.
CHOICES = {"props": "default", "ppo": "ppo", "ppo-buffer": "ppo-buffer", "props-lr-scaled": "props-lr-scaled"}
#: Metrics lines kept in the records: evaluations and sampling-error measurements (each line holds
#: every diagnostic logged at that update: behaviour/ and loss/ included).
KEEP = ("eval/return_mean", "sampling_error")
PAPER = {
    "claim": "PROPS >= PPO, largest gains in the area under the curve on Walker2d and HalfCheetah; "
             "PPO-Buffer often below PPO",
    "final return mean +- 95% CI (IQM), 50 runs, v4": {
        "Hopper (1M)": {"props": "3181 +- 162 (3352)", "ppo": "3121 +- 156 (3297)", "ppo-buffer": "2975 +- 206 (3256)"},
        "HalfCheetah (2M)": {"props": "2696 +- 337 (2617)", "ppo": "2291 +- 303 (2005)",
                             "ppo-buffer": "2230 +- 278 (1841)"},
        "Walker2d (2M)": {"props": "3884 +- 155 (3913)", "ppo": "3501 +- 144 (3590)",
                          "ppo-buffer": "3790 +- 168 (3854)"},
    },
    "mean return over the curve": {"Hopper": {"props": 2609, "ppo": 2414},
                                   "Walker2d": {"props": 2945, "ppo": 2275},
                                   "HalfCheetah": {"props": 2218, "ppo": 1808}},
}


def spec_mapping(arguments: argparse.Namespace, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sweep: every env x variant x seed, one env each, sampling error where a buffer is reused."""
    measured = {"sampling_error_interval": arguments.se_interval, "sampling_error_reference": True,
                "sampling_error_epochs": arguments.se_fit_epochs}
    return {
        "name": f"{NAME}-{SETTING}", "output": f"benchmarks/runs/{NAME}/{SETTING}", "algorithm": "props",
        "env": arguments.envs, "preset": "cpu", "seeds": arguments.seeds,
        "overrides": {"num_envs": 1, "total_steps": arguments.total_steps},
        "variants": {name: {**values, **(measured if name != "ppo" else {})} for name, values in variants.items()},
    }


def sampling_error_runs(output: Path) -> dict[str, dict[str, list[list[tuple[int, float, float]]]]]:
    """env -> method -> per run, its (step, buffer error, on-policy reference error) measurements."""
    from hybridrl.core.logging import read_metrics
    from hybridrl.experiments.results import find_run_dirs

    runs: dict[str, dict[str, list[list[tuple[int, float, float]]]]] = {}
    for run_dir in find_run_dirs(output):
        variant, env = run_dir.parent.name, run_dir.parent.parent.name
        method = "props" if variant == "default" else variant
        measured = [(int(line["step"]), float(line["sampling_error"]), float(line["sampling_error_reference"]))
                    for line in read_metrics(run_dir) if "sampling_error_reference" in line]
        if measured:
            runs.setdefault(env, {}).setdefault(method, []).append(measured)
    return runs


def plot_sampling_error(runs: dict[str, Any], path: Path) -> None:
    """Per env: each method's buffer error over its on-policy reference (the ratio: the methods' buffers
    differ in size, so raw errors do not compare), the mean of the per-seed ratios with the range of
    the middle half of seeds, log scale; below 1 the buffer is closer to on-policy than on-policy
    sampling itself."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(runs)
    figure, axes = plt.subplots(1, max(len(envs), 1), figsize=(5 * max(len(envs), 1), 3.6), squeeze=False)
    for env, axis in zip(envs, axes[0], strict=False):
        for index, (method, measured) in enumerate(sorted(runs[env].items())):
            ratios: dict[int, list[float]] = {}
            for run in measured:
                for step, buffer, reference in run:
                    ratios.setdefault(step, []).append(buffer / reference)
            x = np.array(sorted(ratios))
            axis.plot(x, [np.mean(ratios[step]) for step in x], color=f"C{index}", label=method)
            axis.fill_between(x, [np.percentile(ratios[step], 25) for step in x],
                              [np.percentile(ratios[step], 75) for step in x], color=f"C{index}", alpha=0.2)
        axis.axhline(1.0, color="k", linewidth=0.8, linestyle="--")
        axis.set(title=f"{env}: sampling error during learning", xlabel="env steps",
                 ylabel="buffer / on-policy reference", yscale="log")
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def sampling_error_summary(runs: dict[str, Any]) -> dict[str, Any]:
    """Per env and method: over seeds, each run's buffer error over its on-policy reference's
    (measurement by measurement, averaged over the run) as IQM with a 95 % bootstrap interval, the
    fraction of all measurements where the buffer's error is the smaller, and the raw errors' means."""

    summary: dict[str, Any] = {}
    for env, methods in runs.items():
        for method, measured in methods.items():
            pairs = np.array([(buffer, reference) for run in measured for _, buffer, reference in run])
            summary.setdefault(env, {})[method] = {
                "buffer_over_reference": iqm_summary([np.mean([b / r for _, b, r in run]) for run in measured]),
                "fraction_of_measurements_below_reference": float(np.mean(pairs[:, 0] < pairs[:, 1])),
                "measurements": len(pairs),
                "buffer_mean": float(pairs[:, 0].mean()), "reference_mean": float(pairs[:, 1].mean())}
    return summary


def paper_at_budget() -> dict[str, Any] | None:
    """The released runs read at our budget (`benchmarks/props_paper_curves.py`), when summarised."""
    path = RESULTS_DIR / "props_paper_curves.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())

    def row(at_budget: dict[str, Any]) -> str:
        final = at_budget["final"]
        return (f"{final['iqm']:.0f} [{final['iqm_low']:.0f}, {final['iqm_high']:.0f}] / "
                f"{at_budget['curve_mean']['iqm']:.0f}")

    return {"budget": result["budget"], "note": result["note"],
            "final IQM [95% CI] / curve mean IQM": {
                env: {method: row(values["at_budget"]) for method, values in methods.items()}
                for env, methods in result["curves"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Walker2d-v5", "HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--total-steps", type=int, default=500_000)
    parser.add_argument("--variants", nargs="+", choices=sorted(CHOICES), default=["props", "ppo", "ppo-buffer"],
                        help="run only these (finished runs of the others are still reported)")
    parser.add_argument("--se-interval", type=int, default=25_000, help="env steps between sampling-error measurements")
    parser.add_argument("--se-fit-epochs", type=int, default=1000,
                        help="Adam steps of each maximum-likelihood fit (the NeurIPS configs used 1000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs, run nothing")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)  # run directories and configs use paths relative to the repository

    record_name = f"{NAME}/{SETTING}"
    chosen = {CHOICES[name]: VARIANTS[CHOICES[name]] for name in arguments.variants}
    if not arguments.report_only:
        sweep_or_records(record_name, spec_mapping(arguments, chosen), KEEP, arguments.workers, report_only=False)
    reported = {CHOICES[name]: VARIANTS[CHOICES[name]] for name in sorted({"props", "ppo", "ppo-buffer",
                                                                           *arguments.variants})}
    spec = sweep_or_records(record_name, spec_mapping(arguments, reported), KEEP, arguments.workers, report_only=True)

    from hybridrl.experiments import aggregate, improvement_over, load_results, load_runs, run_scores
    from hybridrl.experiments.report import write_report

    report_dir = RESULTS_DIR / NAME / "report"
    report = write_report(spec.output, report_dir, baseline="props:ppo")
    scores = run_scores(load_results(spec.output), finished_only=True)
    tables: dict[str, Any] = {}
    for score in ("final", "auc"):
        table = aggregate(scores, score=score, scale="return", per_task=True, metrics=["IQM", "Mean"])
        tables[score] = table.to_dict(orient="records")
    improvement = {score: improvement_over(scores, "props:ppo", score=score).to_dict(orient="records")
                   for score in ("final", "auc")}
    wall = load_runs(spec.output).groupby(["method", "task"])["final/wall_time_s"].mean()
    measured = sampling_error_runs(spec.output)
    plot_sampling_error(measured, report_dir / "sampling_error_during_learning.png")
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME,
        "setting": SETTING,
        "envs": arguments.envs,
        "total_steps": arguments.total_steps,
        "variants": spec_mapping(arguments, reported)["variants"],
        "per_task_return": tables,
        "probability_of_improvement_over_ppo": improvement,
        "sampling_error_during_learning": sampling_error_summary(measured),
        "mean_wall_time_s": {f"{method} {task}": float(value) for (method, task), value in wall.items()},
        "runs": len(scores),
        "report": str(report.markdown.relative_to(REPOSITORY)),
        "sampling_error_plot": str((report_dir / "sampling_error_during_learning.png").relative_to(REPOSITORY)),
        "paper": PAPER,
        "paper_at_our_budget": paper_at_budget(),
        "peak_memory_mb": peak_memory_mb(),
    })


if __name__ == "__main__":
    main()
