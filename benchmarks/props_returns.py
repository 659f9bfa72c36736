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
(`--sampling-error-reference`, the released code's reference replay) every `--se-interval` steps;
the report plots both.

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
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, peak_memory_mb, sweep_or_records, write_result

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


def sampling_error_curves(output: Path) -> dict[str, dict[str, dict[str, dict[int, list[float]]]]]:
    """env -> method -> buffer | reference -> step -> values over seeds."""
    from hybridrl.core.logging import read_metrics
    from hybridrl.experiments.results import find_run_dirs

    curves: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = {}
    for run_dir in find_run_dirs(output):
        variant, env = run_dir.parent.name, run_dir.parent.parent.name
        method = "props" if variant == "default" else variant
        for line in read_metrics(run_dir):
            for key, label in (("sampling_error", "buffer"), ("sampling_error_reference", "on-policy reference")):
                if key in line:
                    (curves.setdefault(env, {}).setdefault(method, {}).setdefault(label, {})
                     .setdefault(int(line["step"]), []).append(float(line[key])))
    return curves


def plot_sampling_error(curves: dict[str, Any], path: Path) -> None:
    """Per env: each method's buffer error against its on-policy reference, mean over seeds, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(curves)
    figure, axes = plt.subplots(1, max(len(envs), 1), figsize=(5 * max(len(envs), 1), 3.6), squeeze=False)
    for env, axis in zip(envs, axes[0], strict=False):
        for index, (method, lines) in enumerate(sorted(curves[env].items())):
            for label, steps in sorted(lines.items()):
                x = np.array(sorted(steps))
                axis.plot(x, [np.mean(steps[step]) for step in x], color=f"C{index}",
                          linestyle="-" if label == "buffer" else "--", label=f"{method}: {label}")
        axis.set(title=f"{env}: sampling error during learning", xlabel="env steps",
                 ylabel="KL(pi_D || pi_theta)", yscale="log")
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def sampling_error_summary(curves: dict[str, Any]) -> dict[str, Any]:
    """Per env and method: the buffer's and the reference's error averaged over each run's
    measurements, and the buffer's ratio to the reference (< 1: closer to on-policy than on-policy
    sampling itself)."""
    summary: dict[str, Any] = {}
    for env, methods in curves.items():
        for method, lines in methods.items():
            means = {label: float(np.mean([np.mean(values) for values in steps.values()]))
                     for label, steps in lines.items()}
            if "buffer" in means and "on-policy reference" in means:
                means["buffer / reference"] = means["buffer"] / means["on-policy reference"]
            summary.setdefault(env, {})[method] = means
    return summary


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
    curves = sampling_error_curves(spec.output)
    plot_sampling_error(curves, report_dir / "sampling_error_during_learning.png")
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME,
        "setting": SETTING,
        "envs": arguments.envs,
        "total_steps": arguments.total_steps,
        "variants": spec_mapping(arguments, reported)["variants"],
        "per_task_return": tables,
        "probability_of_improvement_over_ppo": improvement,
        "sampling_error_during_learning": sampling_error_summary(curves),
        "mean_wall_time_s": {f"{method} {task}": float(value) for (method, task), value in wall.items()},
        "runs": len(scores),
        "report": str(report.markdown.relative_to(REPOSITORY)),
        "sampling_error_plot": str((report_dir / "sampling_error_during_learning.png").relative_to(REPOSITORY)),
        "paper": PAPER,
        "peak_memory_mb": peak_memory_mb(),
    })


if __name__ == "__main__":
    main()
