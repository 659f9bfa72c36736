"""``hybridrl mbo``: offline model-based optimisation from the command line.

::

    hybridrl mbo run --task tfbind8 --optimizer grad-ascent --regularizer ignite --seeds 8 [--preset cpu]
                     [--first-seed 0] [--run-dir DIR] [--no-progress] [CONFIG OPTIONS]
    hybridrl mbo tasks

``run`` trains the seeds together (vmapped), one run directory per seed under ``DIR`` (default
``runs/mbo/<task>/<optimizer>-<regularizer>``), and prints the Design-Bench table: the 100th, 80th
and 50th percentile normalised scores of the 128 candidates, mean ± std and IQM with a 95%
bootstrap interval over seeds. The table is also written to ``DIR/summary.json``. Rerunning the
same command skips finished seeds and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from hybridrl.core.io import atomic_write_json

_USAGE = """usage: hybridrl mbo COMMAND ...

commands:
  run     train surrogates and propose designs on a task, several seeds at once
          (`hybridrl mbo run --help` lists the options)
  tasks   list the tasks
"""

#: The protocol's percentiles, as keys of a run's final metrics.
SCORE_KEYS = ("score/p100", "score/p80", "score/p50")


def mbo_main(rest: list[str]) -> int:
    """``hybridrl mbo ...``; returns the exit status."""
    if not rest or rest[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if rest else 2
    if rest[0] == "tasks":
        return _tasks()
    if rest[0] == "run":
        return _run(rest[1:])
    print(f"hybridrl mbo: unknown command {rest[0]!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


def _tasks() -> int:
    from hybridrl.mbo.tasks import task_names

    for name in task_names():
        print(name)
    return 0


def _run(rest: list[str]) -> int:
    from hybridrl import runs
    from hybridrl.algorithms import get_algorithm
    from hybridrl.cli import resolve_config
    from hybridrl.errors import ConfigError

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    known, options = parser.parse_known_args(rest)
    if "-h" in options or "--help" in options:
        print("hybridrl mbo run [--seeds N] [--first-seed K] [--preset smoke|cpu|paper] [--run-dir DIR] "
              "[--[no-]progress] and the config options below.")
    if known.seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {known.seeds}")
    spec = get_algorithm("mbo")
    config = resolve_config(spec, known.preset, options)
    root = Path(known.run_dir or f"runs/mbo/{config.task}/{config.optimizer}-{config.regularizer}")
    seeds = range(known.first_seed, known.first_seed + known.seeds)
    configs = [dataclasses.replace(config, seed=seed) for seed in seeds]
    results = runs.execute_seeds(spec, configs, runs.seed_run_dirs(root, seeds), progress=known.progress)
    summary = summarize_runs([result.final for result in results])
    summary = {"task": config.task, "optimizer": config.optimizer, "regularizer": config.regularizer,
               "preset": known.preset, "command": "hybridrl mbo run " + " ".join(rest), **summary}
    atomic_write_json(root / "summary.json", summary)
    print(format_summary(summary))
    print(f"run dirs: {root}/seed*; summary: {root / 'summary.json'}")
    return 0


def summarize_runs(finals: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-percentile mean ± std and IQM with its 95% interval over the runs' final metrics."""
    from hybridrl.experiments.statistics import summarize_seeds

    keys = [*SCORE_KEYS, "candidates/feasible_fraction"]
    summary: dict[str, Any] = {"seeds": [final.get("seed") for final in finals],
                               "offline_best": finals[0].get("score/offline_best")}
    for key in keys:
        if all(key in final for final in finals):
            summary[key] = summarize_seeds([final[key] for final in finals])
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a small text table."""
    lines = [f"{summary['task']}  {summary['optimizer']}  regularizer={summary['regularizer']}  "
             f"seeds={len(summary['seeds'])}  D(best)={summary['offline_best']:.3f}",
             f"{'':22s}{'mean ± std':>18s}{'IQM [95% CI]':>26s}"]
    for key in [*SCORE_KEYS, "candidates/feasible_fraction"]:
        if key in summary:
            row = summary[key]
            lines.append(f"{key:22s}{row['mean']:>10.3f} ± {row['std']:<6.3f}"
                         f"{row['iqm']:>10.3f} [{row['iqm_low']:.3f}, {row['iqm_high']:.3f}]")
    return "\n".join(lines)
