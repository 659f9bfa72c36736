"""Experiments: sweeps over algorithms, tasks, variants and seeds (local process pool or Ray), the
results store, statistics with bootstrap confidence intervals, and reports.

The Python API mirrors the CLI::

    from hybridrl.experiments import load_sweep_spec, run_sweep, load_results, write_report

    spec = load_sweep_spec("examples/sweeps/ppo-classic.yaml")
    run_sweep(spec)                              # hybridrl sweep examples/sweeps/ppo-classic.yaml
    table = load_results(spec.output)            # hybridrl results runs/sweeps/ppo-classic --csv out.csv
    write_report(spec.output, baseline="ppo")    # hybridrl report runs/sweeps/ppo-classic --baseline ppo

Names load on first use, so sweep workers that import this package do not pay for pandas and
matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridrl.experiments.analysis import (
        aggregate,
        improvement_over,
        learning_curves,
        normalize_scores,
        run_scores,
        score_profiles,
    )
    from hybridrl.experiments.report import Report, write_report
    from hybridrl.experiments.results import export_csv, load_results, load_runs
    from hybridrl.experiments.spec import RunSpec, SweepSpec, SweepSpecError, expand_sweep, load_sweep_spec
    from hybridrl.experiments.statistics import (
        Interval,
        interquartile_mean,
        interval_estimate,
        optimality_gap,
        performance_profile,
        probability_of_improvement,
    )
    from hybridrl.experiments.sweep import RunOutcome, SweepSummary, plan_sweep, run_sweep

_EXPORTS = {
    "analysis": ("aggregate", "improvement_over", "learning_curves", "normalize_scores", "run_scores",
                 "score_profiles"),
    "report": ("Report", "write_report"),
    "results": ("export_csv", "load_results", "load_runs"),
    "spec": ("RunSpec", "SweepSpec", "SweepSpecError", "expand_sweep", "load_sweep_spec"),
    "statistics": ("Interval", "interquartile_mean", "interval_estimate", "optimality_gap",
                   "performance_profile", "probability_of_improvement"),
    "sweep": ("RunOutcome", "SweepSummary", "plan_sweep", "run_sweep"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Interval", "Report", "RunOutcome", "RunSpec", "SweepSpec", "SweepSpecError", "SweepSummary", "aggregate",
    "expand_sweep", "export_csv", "improvement_over", "interquartile_mean", "interval_estimate",
    "learning_curves", "load_results", "load_runs", "load_sweep_spec", "normalize_scores", "optimality_gap",
    "performance_profile", "plan_sweep", "probability_of_improvement", "run_scores", "run_sweep",
    "score_profiles", "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
