"""Sampling error with a fixed expert target: on-policy sampling vs PROPS vs ROS (Hopper-v5 and
Walker2d-v5), via the sweep machinery.

The paper's fixed-target experiment: the target is a trained expert that is never updated; the
buffer holds b = 16 batches of n = 1024 steps (16,384 transitions) from one env; the sampling
error KL(pi_D || pi_theta) of the buffer is measured every 1024 steps up to 32,768 steps. The
paper's claim: PROPS 30-45% below on-policy sampling; ROS no better than on-policy (numbers from
the authors' released runs, 5 seeds, value at 32k steps, in PAPER below).

Experts: the `cpu` PPO preset, 1M steps, seed 1, trained here if missing
(benchmarks/runs/props_experts/<env>). Resumable and recorded like every sweep benchmark: records
in benchmarks/results/props_sampling_error/runs/, the report (Markdown + PNG) in
benchmarks/results/props_sampling_error/, the summary in benchmarks/results/props_sampling_error.json.

    python benchmarks/props_sampling_error.py --seeds 5 --workers 2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, peak_memory_mb, recorded_sweep, write_result

NAME = "props_sampling_error"
REPOSITORY = Path(__file__).resolve().parent.parent
EXPERTS = Path("benchmarks/runs/props_experts")
#: The fixed-target protocol (section 2 of the reference notes). PROPS: m = 256, delta 0.05,
#: lambda 0.3, behaviour lr 1e-3, 16 epochs x 16 minibatches.
PROTOCOL: dict[str, Any] = dict(
    total_steps=32_768, num_envs=1, num_steps=1024, buffer_batches=16, sampling_error_interval=1024,
    behaviour_num_steps=256, behaviour_target_kl=0.05, behaviour_kl_coef=0.3, behaviour_learning_rate=1e-3,
    behaviour_update_epochs=16, behaviour_num_minibatches=16, policy_tanh_mean=False,
    eval_interval=0, eval_episodes=2, checkpoint_interval=8192,
)
VARIANTS: dict[str, dict[str, Any]] = {
    "on-policy": {"sampling": "on-policy"},
    "default": {},  # PROPS
    "ros-lr1e-3": {"sampling": "ros", "behaviour_learning_rate": 1e-3},
    "ros-lr1e-2": {"sampling": "ros", "behaviour_learning_rate": 1e-2},
}
PAPER = {  # mean of 5 seeds at 32k steps, v4 tasks, released data (data/se_fixed), k3 estimator
    "Hopper": {"on-policy": 0.0072, "props": 0.0039, "ros (best lr)": 0.0064},
    "Walker2d": {"on-policy": 0.0173, "props": 0.0101, "ros (best lr)": 0.0170},
}


def train_expert(env: str) -> Path:
    """The PPO expert of ``env`` (trained once, then reused)."""
    from hybridrl import runs

    run_dir = EXPERTS / env
    if not runs.is_finished(run_dir):
        if (run_dir / "config.json").is_file():
            runs.resume(run_dir)
        else:
            runs.train("ppo", preset="cpu", run_dir=run_dir, env=env, seed=1)
    return run_dir


def _curves(output: Path) -> dict[str, dict[int, list[float]]]:
    """method -> step -> sampling error per seed."""
    from hybridrl.core.logging import read_metrics
    from hybridrl.experiments.results import find_run_dirs, method_name

    curves: dict[str, dict[int, list[float]]] = {}
    for run_dir in find_run_dirs(output):
        variant = run_dir.parent.name
        for line in read_metrics(run_dir):
            if "sampling_error" in line:
                curves.setdefault(method_name("props", variant), {}).setdefault(int(line["step"]), []).append(
                    float(line["sampling_error"]))
    return curves


def _interval(values: list[float]) -> dict[str, float]:
    from hybridrl.experiments.statistics import confidence_interval, mean_score

    estimate, lower, upper = confidence_interval([np.asarray(values)], mean_score)
    return {"mean": float(estimate), "lower": float(lower), "upper": float(upper), "runs": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "Walker2d-v5"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--total-steps", type=int, default=PROTOCOL["total_steps"])
    parser.add_argument("--fit-epochs", type=int, default=1000,
                        help="Adam steps of each maximum-likelihood fit (the NeurIPS configs used 1000)")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary: dict[str, Any] = {}
    figure, axes = plt.subplots(1, len(arguments.envs), figsize=(5 * len(arguments.envs), 3.6), squeeze=False)
    for env, axis in zip(arguments.envs, axes[0], strict=True):
        expert = train_expert(env)
        spec = recorded_sweep(f"{NAME}/{env}", {
            "name": f"{NAME}-{env}", "output": f"benchmarks/runs/{NAME}/{env}", "algorithm": "props", "env": env,
            "preset": "paper", "seeds": arguments.seeds, "variants": VARIANTS,
            "overrides": {**PROTOCOL, "fixed_target": str(expert), "sampling_error_epochs": arguments.fit_epochs,
                          "total_steps": arguments.total_steps},
        }, keep=("sampling_error", "eval/return_mean"), workers=arguments.workers)
        curves = _curves(spec.output)
        final_step = max(max(steps) for steps in curves.values())
        at_end = {method: _interval(steps[final_step]) for method, steps in curves.items()}
        on_policy = at_end["props:on-policy"]["mean"]
        summary[env] = {
            "sampling_error_at_end": at_end,
            "reduction_vs_on_policy": {method: 1.0 - values["mean"] / on_policy for method, values in at_end.items()},
            "curves": {method: {str(step): float(np.mean(values)) for step, values in sorted(steps.items())}
                       for method, steps in curves.items()},
        }
        for method, steps in sorted(curves.items()):
            x = np.array(sorted(steps))
            values = [np.asarray(steps[step]) for step in x]
            mean = np.array([v.mean() for v in values])
            sem = np.array([v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for v in values])
            axis.plot(x, mean, label=method.replace("props:", "").replace("props", "PROPS"))
            axis.fill_between(x, mean - 1.96 * sem, mean + 1.96 * sem, alpha=0.2)
        axis.set(title=f"{env}: fixed expert target", xlabel="env steps", ylabel="sampling error KL(pi_D || pi)",
                 yscale="log")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure_path = RESULTS_DIR / NAME / "sampling_error.png"
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(figure_path, dpi=120)

    lines = ["# PROPS: sampling error with a fixed expert target\n",
             f"`python benchmarks/props_sampling_error.py --seeds {arguments.seeds}`: buffer of 16 x 1024 steps, "
             f"sampling error every 1024 steps up to {arguments.total_steps}, {arguments.seeds} seeds, mean and 95% "
             "bootstrap interval over seeds at the last step; ROS at two step sizes.\n",
             "| env | method | SE at the end (ours) | reduction vs on-policy | paper (v4, 5 seeds, at 32k) |",
             "|---|---|---|---|---|"]
    for env in arguments.envs:
        family = env.split("-")[0]
        for method, values in sorted(summary[env]["sampling_error_at_end"].items()):
            short = method.replace("props:", "")
            paper_key = "props" if short == "props" else ("ros (best lr)" if short.startswith("ros") else short)
            paper = PAPER.get(family, {}).get(paper_key, "")
            lines.append(f"| {env} | {short} | {values['mean']:.4f} [{values['lower']:.4f}, {values['upper']:.4f}] "
                         f"| {summary[env]['reduction_vs_on_policy'][method]:+.0%} | {paper} |")
    lines.append("\n![Sampling error over steps](sampling_error.png)\n")
    (RESULTS_DIR / NAME / "report.md").write_text("\n".join(lines))
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME, "envs": arguments.envs, "protocol": PROTOCOL, "variants": VARIANTS,
        "fit_epochs": arguments.fit_epochs, "results": summary, "paper": PAPER, "peak_memory_mb": peak_memory_mb(),
    })


if __name__ == "__main__":
    main()
