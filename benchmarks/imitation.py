"""Imitation from a few demonstrations at `cpu` scale: AILBoost vs DAC vs BC on DeepMind Control,
via the sweep machinery.

The paper's claim (Chang et al., ICLR 2024, Fig. 1; 5 DMC tasks, 3 seeds): AILBoost beats DAC,
ValueDICE, IQ-Learn and BC on expert-normalised return at every demonstration count, the gap
largest with 1 demonstration. Per-task numbers are not in our reference notes, so we compare the
methods with each other, not with the paper's values.

Steps:

1. **Expert**: SAC (`cpu` preset, true reward, action repeat 2) for ``EXPERT_STEPS`` agent steps in
   benchmarks/runs/experts/ (kept across invocations; retrained on a new machine, about 20 minutes).
2. **Demonstrations**: 10 mean-action episodes of the expert (`hybridrl data demos ENV --run-dir
   EXPERT --episodes 10`); their mean return is the expert reference (100), uniform random actions
   the random one (0).
3. **Sweeps** (resumable, recorded in benchmarks/results/imitation/<sweep>/runs/): for each
   demonstration count, AILBoost and DAC for `--steps` agent steps (AILBoost's collection steps
   count on the same axis), then BC on the same first N demonstrations.

    python benchmarks/imitation.py --seeds 3 --workers 2 [--demos 1 10] [--envs dmc:walker-walk]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, iqm_summary, peak_memory_mb, sweep_or_records, write_result

NAME = "imitation"
REPOSITORY = Path(__file__).resolve().parent.parent
EXPERTS = REPOSITORY / "benchmarks" / "runs" / "experts"
#: Agent steps of SAC expert training per env (the reference's CPU recipe).
EXPERT_STEPS = {"dmc:walker-walk": 100_000, "dmc:ball_in_cup-catch": 100_000}
PAPER = {
    "claim": "AILBoost >= DAC (and > BC) on expert-normalised return at 1 and 10 demonstrations, gap largest at 1",
    "source": "Chang et al. 2024, abstract and Fig. 1 caption (aggregate over 5 DMC tasks, 3 seeds); "
              "per-task values not transcribed",
}


def expert_run(env: str) -> Path:
    """The expert's run directory."""
    return EXPERTS / f"sac-{env.replace(':', '-')}-seed1"


def ensure_expert_and_demos(env: str, episodes: int = 10) -> dict[str, Any]:
    """Train the expert and record the demonstrations if missing; their facts for the result."""
    from hybridrl.algorithms import get_algorithm
    from hybridrl.data import DatasetNotFoundError, load_dataset
    from hybridrl.data.demos import generate_demos
    from hybridrl.runs import is_finished, resume, start

    run_dir = expert_run(env)
    if not is_finished(run_dir):
        if (run_dir / "config.json").is_file():
            resume(run_dir)
        else:
            config = get_algorithm("sac").make_config("cpu", env=env, total_steps=EXPERT_STEPS.get(env, 300_000),
                                                      seed=1, eval_interval=25_000, checkpoint_interval=25_000)
            start(get_algorithm("sac"), config, run_dir)
    try:
        dataset = load_dataset(f"hybridrl/{_demos_name(env)}", validate=False)
    except DatasetNotFoundError:
        generate_demos(env, episodes, seed=0, run_dir=run_dir)
        dataset = load_dataset(f"hybridrl/{_demos_name(env)}", validate=False)
    final = json.loads((run_dir / "final.json").read_text())
    random_return, expert_return = dataset.info.reference_returns or (float("nan"), float("nan"))
    return {"expert_run": str(run_dir.relative_to(REPOSITORY)), "expert_steps": final.get("step"),
            "expert_eval_return": final.get("eval/return_mean"), "demos": dataset.info.dataset_id,
            "demo_episodes": dataset.num_episodes, "demo_returns": [float(r) for r in dataset.episode_returns()],
            "reference_returns": {"random": random_return, "expert": expert_return}}


def _demos_name(env: str) -> str:
    from hybridrl.data.demos import demos_id

    return demos_id(env)


def _curve(run_dir: Path, key: str = "eval/normalized_score") -> tuple[np.ndarray, np.ndarray]:
    """(agent steps, scores) of a run's evaluations."""
    from hybridrl.core.logging import read_metrics

    lines = [line for line in read_metrics(run_dir) if key in line]
    return (np.asarray([line["step"] for line in lines], dtype=np.float64),
            np.asarray([line[key] for line in lines], dtype=np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["dmc:walker-walk"])
    parser.add_argument("--demos", nargs="+", type=int, default=[1, 10], help="demonstration counts")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=200_000, help="agent steps of AILBoost and DAC")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs, run nothing")
    parser.add_argument("--only", choices=("adversarial", "bc"), default=None,
                        help="run only these sweeps (the others are summarised as they are)")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)
    experts = {env: ensure_expert_and_demos(env) for env in arguments.envs}

    keep = ("eval/return_mean",)
    sweeps: list[tuple[int, Any, Any]] = []
    for count in arguments.demos:
        adversarial = {
            "name": f"{NAME}-adversarial-demos{count}", "output": f"benchmarks/runs/{NAME}/adversarial-demos{count}",
            "algorithm": ["ailboost", "dac"], "env": arguments.envs, "preset": arguments.preset,
            "seeds": arguments.seeds, "overrides": {"total_steps": arguments.steps, "num_demos": count},
        }
        bc = {
            "name": f"{NAME}-bc-demos{count}", "output": f"benchmarks/runs/{NAME}/bc-demos{count}",
            "algorithm": "bc", "dataset": [f"hybridrl/{_demos_name(env)}" for env in arguments.envs],
            "preset": arguments.preset, "seeds": arguments.seeds,
            "overrides": {"max_episodes": count, "normalize_states": False, "eval_episodes": 10},
        }
        run = {kind: not arguments.report_only and arguments.only in (None, kind) for kind in ("adversarial", "bc")}
        sweeps.append((count,
                       _sweep(f"{NAME}/adversarial-demos{count}", adversarial, keep, arguments.workers,
                              run["adversarial"]),
                       _sweep(f"{NAME}/bc-demos{count}", bc, keep, arguments.workers, run["bc"])))

    from hybridrl.experiments.spec import expand_sweep
    from hybridrl.runs import is_finished

    table: dict[str, dict[str, dict[str, Any]]] = {}
    curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    wall: dict[str, list[float]] = {}
    for count, adversarial_spec, bc_spec in sweeps:
        for run in [*expand_sweep(adversarial_spec), *expand_sweep(bc_spec)]:
            if not is_finished(run.run_dir):
                continue
            env = run.task if run.algorithm != "bc" else _env_of_demos(run.task, arguments.envs)
            final = json.loads((run.run_dir / "final.json").read_text())
            setting = f"{env} / {count} demo{'s' if count > 1 else ''}"
            scores = table.setdefault(setting, {})
            scores.setdefault(run.algorithm, {"final": [], "mixture": []})["final"].append(
                float(final["eval/normalized_score"]))
            if "eval/mixture_normalized_score" in final:
                scores[run.algorithm]["mixture"].append(float(final["eval/mixture_normalized_score"]))
            wall.setdefault(run.algorithm, []).append(float(final.get("wall_time_s", 0.0)))
            if run.algorithm != "bc":
                curves.setdefault(setting, {}).setdefault(run.algorithm, []).append(_curve(run.run_dir))
    summary = {setting: {method: {kind: iqm_summary(values) for kind, values in entry.items() if values}
                         for method, entry in methods.items()} for setting, methods in table.items()}
    report = write_report(summary, curves, RESULTS_DIR / NAME / "report", arguments)
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME, "envs": arguments.envs, "demos": arguments.demos, "preset": arguments.preset,
        "agent_steps": arguments.steps, "experts": experts,
        "normalized_score": summary,
        "mean_wall_time_s": {method: float(np.mean(values)) for method, values in wall.items()},
        "report": str(report.relative_to(REPOSITORY)), "paper": PAPER, "peak_memory_mb": peak_memory_mb(),
    })


def _sweep(name: str, mapping: dict[str, Any], keep: tuple[str, ...], workers: int, run: bool) -> Any:
    """Run a recorded sweep, or with ``run`` false only restore its records and record what finished."""
    return sweep_or_records(name, mapping, keep, workers, report_only=not run)


def _env_of_demos(dataset: str, envs: Sequence[str]) -> str:
    return next(env for env in envs if dataset.endswith(_demos_name(env)))


def write_report(summary: dict[str, Any], curves: dict[str, Any], folder: Path, arguments: argparse.Namespace) -> Path:
    """report.md with the score table and the learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)

    def cell(entry: dict[str, Any] | None) -> str:
        if not entry:
            return "–"
        return (f"{entry['iqm']:.1f} [{entry['iqm_low']:.1f}, {entry['iqm_high']:.1f}] "
                f"(mean {entry['mean']:.1f}, n={entry['seeds']})")

    lines = [f"# Imitation from demonstrations at `{arguments.preset}` scale", "",
             f"Seeds: {arguments.seeds}; {arguments.steps:,} agent steps for AILBoost and DAC (AILBoost's collection "
             "steps included); BC: its cpu preset on the same demonstrations. Scores: 0 = uniform random actions, "
             "100 = the demonstrations' mean return; IQM over seeds with a 95% bootstrap interval. AILBoost's "
             "headline is its current learner (mean action); its true mixture is the last column. Generated by "
             "`python benchmarks/imitation.py`.", "",
             "| setting | AILBoost | DAC | BC | AILBoost mixture |", "|---|---|---|---|---|"]
    for setting, methods in summary.items():
        row = [cell(methods.get(method, {}).get("final")) for method in ("ailboost", "dac", "bc")]
        row.append(cell(methods.get("ailboost", {}).get("mixture")))
        lines.append(f"| {setting} | " + " | ".join(row) + " |")
    if curves:
        figure, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.4), squeeze=False)
        for axis, (setting, methods) in zip(axes[0], curves.items(), strict=False):
            for method, runs in sorted(methods.items()):
                grid = np.unique(np.concatenate([steps for steps, _ in runs]))
                stacked = np.stack([np.interp(grid, steps, scores) for steps, scores in runs])
                axis.plot(grid, stacked.mean(axis=0), label=f"{method} (n={len(runs)})")
                axis.fill_between(grid, stacked.min(axis=0), stacked.max(axis=0), alpha=0.2)
            axis.set_title(setting)
            axis.set_xlabel("agent steps (incl. AILBoost's collection)")
            axis.set_ylabel("expert-normalised score")
            axis.legend()
        figure.tight_layout()
        figure.savefig(folder / "curves.png", dpi=120)
        plt.close(figure)
        lines += ["", "![learning curves: mean over seeds, band = min..max](curves.png)", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    main()
