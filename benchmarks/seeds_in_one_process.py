"""Seeds in one process: what ``hybridrl train ALGORITHM --seeds 4`` costs against ``--seeds 1``.

    python benchmarks/seeds_in_one_process.py [--workloads iql-hopper] [--seeds 1 4] [--repeats 3]

The claim (issue 19): four seeds trained in one process, the learners vmapped over seeds, cost less
than 2.5 times one seed. Per workload the same command runs with ``--seeds 1`` and ``--seeds 4``,
alternating (1, 4, 1, 4, ...) so that drifts in the machine's speed hit both alike. Every run is a
fresh process in a fresh run directory, timed from outside with ``os.wait4`` (wall time,
CPU-seconds, peak resident memory; ``timed_run`` of ``benchmarks/peers/compare.py``), and everything
counts: start-up and imports, loading the data, compiling (no compilation cache), training,
evaluation, checkpoints, logs and plots. From its seeds' ``metrics.jsonl`` each run also records
where its time went: training (with compilation), the final evaluation of every seed, and the rest
(start-up, imports, loading the data, building the trainers, plots).

Reported per workload: medians, and the cost ratios (N seeds / 1 seed, paired run by run, then the
median) of wall time and CPU-seconds. A workload is one entry of :data:`WORKLOADS` (IQL, SAC and PPO).

Writes ``benchmarks/results/seeds_in_one_process.json``; a workload run again replaces its own entry.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, write_result
from peers.compare import ENVIRONMENT, ensure_dataset, timed_run

HYBRIDRL = [sys.executable, "-m", "hybridrl.cli"]
#: The target of issue 19 for four seeds: less than this multiple of one seed's cost.
TARGET_RATIO = 2.5


@dataclass(frozen=True)
class Workload:
    """One training command, run with several ``--seeds`` counts.

    :param arguments: ``hybridrl`` arguments without ``--seeds``, ``--run-dir`` and ``--no-progress``;
        ``{dataset}`` stands for the folder of :attr:`dataset`, ``{steps}`` for the steps per seed.
    :param steps: steps per seed, in :attr:`unit`.
    :param dataset: a dataset ``hybridrl data make`` writes once (``benchmarks/runs/datasets/``).
    :param environment: extra environment variables of the runs (e.g. ``XLA_FLAGS``).
    """

    name: str
    description: str
    arguments: tuple[str, ...]
    steps: int
    unit: str
    dataset: str = ""
    environment: dict[str, str] = field(default_factory=dict)


IQL_STEPS = 5_000


def iql_workload(name: str, environment: dict[str, str] | None = None) -> Workload:
    """IQL's ``cpu`` preset on hopper-medium-v5, evaluated once at the end."""
    return Workload(
        name=name,
        description=f"IQL, `cpu` preset (2x256 ReLU networks, batch 256), {IQL_STEPS:,} gradient steps per seed on "
                    "hopper-medium-v5 (100,000 transitions, `hybridrl data make hopper-medium-v5 --preset cpu "
                    "--seed 0`), metrics every 1,000 steps, 10 evaluation episodes per seed at the end only, one "
                    "checkpoint per seed at the end",
        arguments=("train", "iql", "--dataset", "{dataset}", "--preset", "cpu", "--steps", "{steps}",
                   "--eval-interval", "0", "--checkpoint-interval", "0"),
        steps=IQL_STEPS, unit="gradient steps", dataset="hopper-medium-v5", environment=environment or {})


SAC_STEPS = 6_000


def sac_workload(name: str, environment: dict[str, str] | None = None) -> Workload:
    """SAC's ``cpu`` preset on Hopper-v5: 1,000 random steps, then one update per step, evaluated once at the end."""
    return Workload(
        name=name,
        description=f"SAC, `cpu` preset (2x256 ReLU networks, batch 256), {SAC_STEPS:,} env steps per seed on "
                    "Hopper-v5 of which the first 1,000 uniform-random, then one gradient update per step "
                    f"({SAC_STEPS - 1000:,} updates per seed), 5 evaluation episodes per seed at the end only, one "
                    "checkpoint per seed at the end",
        arguments=("train", "sac", "--env", "Hopper-v5", "--preset", "cpu", "--total-steps", "{steps}",
                   "--learning-starts", "1000", "--eval-interval", "0", "--checkpoint-interval", "0"),
        steps=SAC_STEPS, unit="env steps", environment=environment or {})


PPO_STEPS = 65_536


def ppo_workload(name: str) -> Workload:
    """PPO's ``cpu`` preset on Hopper-v5 (8 sync envs x 256 steps), evaluated once at the end."""
    return Workload(
        name=name,
        description=f"PPO, `cpu` preset (8 sync envs x 256 steps per rollout, 10 epochs x 32 minibatches, 64x64 "
                    f"tanh networks), {PPO_STEPS:,} env steps per seed on Hopper-v5 (32 iterations), 5 evaluation "
                    "episodes per seed at the end only, one checkpoint per seed at the end",
        arguments=("train", "ppo", "--env", "Hopper-v5", "--preset", "cpu", "--total-steps", "{steps}",
                   "--eval-interval", "0", "--eval-episodes", "5", "--checkpoint-interval", "0"),
        steps=PPO_STEPS, unit="env steps")


WORKLOADS: dict[str, Workload] = {
    "iql-hopper": iql_workload("iql-hopper"),
    "sac-hopper": sac_workload("sac-hopper"),
    "ppo-hopper": ppo_workload("ppo-hopper"),
    # The ablation of the device split: with the device count in XLA_FLAGS, `--seeds N` leaves JAX's one CPU
    # device alone, and the vmapped seeds share it (every matrix product split over the cores).
    "iql-hopper-one-device": iql_workload("iql-hopper-one-device",
                                          {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}),
}


def phases(root: Path, wall_s: float) -> dict[str, float]:
    """Where a run's time went, from its seeds' metrics logs (their clocks start once the trainers are
    built): training (with compilation), the final evaluations of every seed, and the rest (start-up,
    imports, loading the data, building the trainers, plots)."""
    logs = {seed_dir.name: [json.loads(line) for line in (seed_dir / "metrics.jsonl").read_text().splitlines()]
            for seed_dir in root.glob("seed*")}
    training_end = max(line["time"] for lines in logs.values() for line in lines
                       if not any(key.startswith("eval/") for key in line))
    evaluations_end = max(line["time"] for lines in logs.values() for line in lines)
    return {"training_s": training_end, "evaluation_s": evaluations_end - training_end,
            "rest_s": wall_s - evaluations_end}


def measure(workload: Workload, seed_counts: list[int], repeats: int, steps: int | None = None) -> dict[str, Any]:
    """Time ``workload`` with each of ``seed_counts``, alternating, ``repeats`` times each (``steps``:
    instead of the workload's steps per seed)."""
    log = print
    dataset = ensure_dataset(workload.dataset, log) if workload.dataset else None
    steps = steps or workload.steps
    arguments = [argument.replace("{dataset}", str(dataset)).replace("{steps}", str(steps))
                 for argument in workload.arguments]
    environment = {"HYBRIDRL_COMPILATION_CACHE": "0", **workload.environment}
    runs: dict[str, list[dict[str, Any]]] = {str(count): [] for count in seed_counts}
    commands: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=f"seeds-{workload.name}-") as tmp:
        work_dir = Path(tmp)
        for repeat in range(repeats):
            for count in seed_counts:
                root = work_dir / f"seeds{count}"
                shutil.rmtree(root, ignore_errors=True)  # every run starts afresh
                command = [*HYBRIDRL, *arguments, "--seeds", str(count), "--run-dir", str(root), "--no-progress"]
                commands[str(count)] = shlex.join(command[1:])
                run = timed_run(command, work_dir, environment)
                finished = sorted(path.parent.name for path in root.glob("seed*/final.json"))
                if len(finished) != count:
                    raise SystemExit(f"{commands[str(count)]} finished {finished}, not {count} seeds")
                run.update(phases(root, run["wall_s"]))
                run["eval_return_mean"] = [json.loads((root / name / "final.json").read_text())["eval/return_mean"]
                                           for name in finished]
                runs[str(count)].append(run)
                log(f"{workload.name} --seeds {count} run {repeat + 1}/{repeats}: {run['wall_s']:.1f} s wall, "
                    f"{run['cpu_s']:.1f} CPU-s, {run['peak_rss_mb']:.0f} MB (training {run['training_s']:.1f} s, "
                    f"evaluation {run['evaluation_s']:.1f} s, the rest {run['rest_s']:.1f} s), "
                    f"load {run['load_average_1min']:.2f}")
    keys = ("wall_s", "cpu_s", "peak_rss_mb", "training_s", "evaluation_s", "rest_s")
    medians = {count: {key: float(np.median([run[key] for run in rows])) for key in keys}
               for count, rows in runs.items()}
    baseline = str(seed_counts[0])
    # Ratios pair by pair (run i of N seeds against run i of one seed), then their median: robust to drift.
    ratios = {count: {key: float(np.median([run[key] / one[key] for run, one in
                                            zip(runs[count], runs[baseline], strict=True)]))
                      for key in ("wall_s", "cpu_s", "training_s")}
              for count in runs if count != baseline}
    return {"description": workload.description, "steps_per_seed": steps, "unit": workload.unit,
            "dataset": str(dataset.relative_to(Path(__file__).resolve().parents[1])) if dataset else None,
            "commands": commands, "environment": {**ENVIRONMENT, **environment}, "runs": runs,
            "median": medians, "ratio_to_one_seed": ratios, "target_ratio_for_4_seeds": TARGET_RATIO}


def report(results: dict[str, Any]) -> str:
    """A Markdown table: medians per seed count and the ratios to one seed."""
    lines = ["| workload | seeds | wall s | CPU-s | peak MB | training s | evaluation s | ratio to 1 seed "
             "(wall, CPU-s, training) |", "|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        for count, median in result["median"].items():
            ratio = result["ratio_to_one_seed"].get(count)
            ratio_cell = (f"{ratio['wall_s']:.2f}×, {ratio['cpu_s']:.2f}×, {ratio['training_s']:.2f}×"
                          if ratio else "1")
            lines.append(f"| {name} | {count} | {median['wall_s']:.1f} | {median['cpu_s']:.1f} "
                         f"| {median['peak_rss_mb']:.0f} | {median['training_s']:.1f} "
                         f"| {median['evaluation_s']:.1f} | {ratio_cell} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4],
                        help="seed counts, alternating; ratios are against the first")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each seed count")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per seed instead of the workloads' (a quick check; implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    args = parser.parse_args()
    path = RESULTS_DIR / "seeds_in_one_process.json"
    results = dict(json.loads(path.read_text())["workloads"]) if path.is_file() else {}
    measured = {}
    for name in args.workloads:
        measured[name] = measure(WORKLOADS[name], args.seeds, args.repeats, args.steps)
        results[name] = measured[name]
        if not (args.no_write or args.steps):
            write_result("seeds_in_one_process", list(range(1, max(args.seeds) + 1)),
                         {"repeats": args.repeats, "workloads": results})
    print(report(measured))


if __name__ == "__main__":
    main()
