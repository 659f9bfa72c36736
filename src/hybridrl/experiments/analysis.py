"""From a results table to per-run scores, aggregates with confidence intervals, and learning curves.

Each run contributes three scores, on the return scale and on the normalised scale:

- ``final``: the evaluation at the end of training (``final.json``);
- ``best``: the best evaluation during training (optimistic: it selects on the evaluation);
- ``auc``: the area under the learning curve divided by its step range, i.e. the average
  evaluation over training, which rewards learning fast.

Normalised scores make tasks comparable, so aggregates over tasks use them. They are on the D4RL
scale of :mod:`hybridrl.envs.reference`, 0 = random policy and 100 = expert. Per task:

- ``reference``: the environment's reference scores, ``eval/normalized_score`` as logged,
  ``100 · (return − random) / (expert − random)``;
- ``minmax``: ``100 · (return − lowest) / (highest − lowest)`` over every evaluation of every run on
  the task in the table; 100 is the best evaluation any method reached. Used for tasks without
  reference scores; it depends on which methods are in the table.

``normalization="auto"`` takes ``reference`` where every run of a task logs it, else ``minmax``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from hybridrl.errors import ConfigError
from hybridrl.experiments.results import NORMALIZED_SCORE, RETURN_MEAN
from hybridrl.experiments.statistics import (
    METRICS,
    FloatArray,
    Statistic,
    area_under_curve,
    confidence_interval,
    interquartile_mean,
    median_of_runs,
    optimality_gap,
    performance_profile,
    probability_of_improvement_interval,
)

Normalization = Literal["auto", "reference", "minmax"]
ScoreKind = Literal["final", "best", "auc"]
Scale = Literal["return", "normalized"]

SCORE_KINDS: tuple[ScoreKind, ...] = ("final", "best", "auc")
NORMALIZED = "normalized"
#: The normalised score of an expert (D4RL scale): the optimality gap's target.
EXPERT_SCORE = 100.0


def metric(name: str, per_task: bool = False) -> Statistic:
    """The statistic called ``name`` in :data:`~hybridrl.experiments.statistics.METRICS`.

    The optimality gap measures the distance to :data:`EXPERT_SCORE`. Per task the median is the
    median over runs (the median over tasks of one task's mean would be its mean).
    """
    if name == "Optimality gap":
        return functools.partial(optimality_gap, target=EXPERT_SCORE)
    if name == "Median" and per_task:
        return median_of_runs
    return METRICS[name]


def normalize_scores(results: pd.DataFrame, normalization: Normalization = "auto") -> pd.DataFrame:
    """``results`` with a ``normalized`` column and a ``normalization`` column naming the rule per task.

    :raises ConfigError: ``reference`` was asked for but a task lacks reference scores.
    """
    if normalization not in ("auto", "reference", "minmax"):
        raise ConfigError(f"unknown normalisation {normalization!r}; choose auto, reference or minmax")
    normalized = results.copy()
    normalized[NORMALIZED] = np.nan
    normalized["normalization"] = None
    for task, rows in normalized.groupby("task", sort=False):
        has_reference = NORMALIZED_SCORE in rows and bool(rows[NORMALIZED_SCORE].notna().all())
        if normalization == "reference" and not has_reference:
            raise ConfigError(f"task {task} has no reference scores (eval/normalized_score) in every run; "
                              "use normalization auto or minmax")
        if has_reference and normalization != "minmax":
            normalized.loc[rows.index, NORMALIZED] = rows[NORMALIZED_SCORE].astype(float)
            normalized.loc[rows.index, "normalization"] = "reference"
            continue
        returns = rows[RETURN_MEAN].astype(float)
        lowest, highest = float(returns.min()), float(returns.max())
        span = highest - lowest
        # All evaluations equal: every run is as good as the best.
        normalized.loc[rows.index, NORMALIZED] = (
            EXPERT_SCORE * (returns - lowest) / span if span > 0 else EXPERT_SCORE)
        normalized.loc[rows.index, "normalization"] = "minmax"
    return normalized


def run_scores(results: pd.DataFrame, normalization: Normalization = "auto",
               finished_only: bool = True) -> pd.DataFrame:
    """One row per run: ``final``, ``best`` and ``auc`` scores on the return and normalised scales.

    Columns: ``run, method, algorithm, variant, task, seed, steps, final_return, best_return,
    auc_return, final_normalized, best_normalized, auc_normalized, normalization``.

    :param results: from :func:`~hybridrl.experiments.results.load_results`.
    :param normalization: see the module docstring.
    :param finished_only: leave out runs that have not finished (their last evaluation is not final).
    """
    table = normalize_scores(results, normalization) if NORMALIZED not in results else results
    if finished_only and "finished" in table:
        table = table[table["finished"].astype(bool)]
    rows = []
    for run, curve in table.groupby("run", sort=True):
        curve = curve.sort_values("step")
        final_rows = curve[curve["is_final"].astype(bool)] if "is_final" in curve else curve.iloc[0:0]
        final = final_rows.iloc[-1] if not final_rows.empty else curve.iloc[-1]
        first = curve.iloc[0]
        row = {"run": run, "method": first["method"], "algorithm": first["algorithm"],
               "variant": first["variant"], "task": first["task"], "seed": first["seed"],
               "steps": float(final["step"]), "normalization": first["normalization"]}
        for scale, column in (("return", RETURN_MEAN), ("normalized", NORMALIZED)):
            values = curve[column].astype(float).to_numpy()
            row[f"final_{scale}"] = float(final[column])
            row[f"best_{scale}"] = float(values.max())
            row[f"auc_{scale}"] = area_under_curve(curve["step"].to_numpy(dtype=float), values)
        rows.append(row)
    columns = ["run", "method", "algorithm", "variant", "task", "seed", "steps",
               *(f"{kind}_{scale}" for kind in SCORE_KINDS for scale in ("return", "normalized")),
               "normalization"]
    return pd.DataFrame(rows, columns=columns)


def _task_arrays(scores: pd.DataFrame, column: str, tasks: Sequence[str]) -> list[FloatArray]:
    return [scores.loc[scores["task"] == task, column].to_numpy(dtype=np.float64) for task in tasks]


def aggregate(scores: pd.DataFrame, *, score: ScoreKind = "final", scale: Scale = "normalized",
              per_task: bool = False, metrics: Sequence[str] | None = None, reps: int = 2000,
              confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Metrics with stratified-bootstrap intervals per method, over tasks or per task.

    :param scores: from :func:`run_scores`.
    :param score: ``final``, ``best`` or ``auc``.
    :param scale: ``normalized`` (comparable over tasks) or ``return``.
    :param per_task: one row group per task instead of one aggregate over all tasks (``task == "all"``);
        per task, ``Median`` is the median over runs.
        Over tasks, a method enters only with every task of the table, so methods are compared on
        the same tasks.
    :param metrics: names from :data:`~hybridrl.experiments.statistics.METRICS`; default all
        (the optimality gap only on the normalised scale, where its target, 100, means expert).
    :param reps: bootstrap resamples; ``confidence``: the intervals' coverage; ``seed``: the
        bootstrap's seed, so a report is reproducible.
    :returns: long table with columns ``method, task, score, scale, metric, estimate, lower, upper, runs``.
    """
    if score not in SCORE_KINDS:
        raise ConfigError(f"unknown score {score!r}; choose final, best or auc")
    if scale not in ("return", "normalized"):
        raise ConfigError(f"unknown scale {scale!r}; choose return or normalized")
    if scale == "return" and not per_task:
        raise ConfigError("returns are not comparable over tasks; aggregate them per task "
                          "or use scale normalized")
    names = list(metrics) if metrics is not None else [
        name for name in METRICS if scale == "normalized" or name != "Optimality gap"]
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    column = f"{score}_{scale}"
    rng = np.random.default_rng(seed)
    all_tasks = sorted(scores["task"].unique())
    rows = []
    for method in sorted(scores["method"].unique()):
        method_scores = scores[scores["method"] == method]
        method_tasks = set(method_scores["task"])
        groups = [[task] for task in all_tasks if task in method_tasks] if per_task else (
            [all_tasks] if method_tasks == set(all_tasks) else [])
        for tasks in groups:
            task_scores = _task_arrays(method_scores, column, tasks)
            for name in names:
                estimate, lower, upper = confidence_interval(task_scores, metric(name, per_task), reps=reps,
                                                             confidence=confidence, rng=rng)
                rows.append({"method": method, "task": tasks[0] if per_task else "all", "score": score,
                             "scale": scale, "metric": name, "estimate": float(estimate),
                             "lower": float(lower), "upper": float(upper),
                             "runs": int(sum(len(task) for task in task_scores))})
    return pd.DataFrame(rows, columns=["method", "task", "score", "scale", "metric", "estimate", "lower",
                                       "upper", "runs"])


def improvement_over(scores: pd.DataFrame, baseline: str, *, score: ScoreKind = "final", reps: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """``P(method > baseline)`` with bootstrap intervals, over all tasks both ran and per task.

    :returns: columns ``method, task, estimate, lower, upper`` (``task == "all"`` for the aggregate).
    :raises ConfigError: ``baseline`` is not a method of the table.
    """
    methods = sorted(scores["method"].unique())
    if baseline not in methods:
        raise ConfigError(f"baseline {baseline!r} is not a method of these results; "
                          f"methods: {', '.join(methods)}")
    column = f"{score}_normalized"
    rng = np.random.default_rng(seed)
    baseline_scores = scores[scores["method"] == baseline]
    rows = []
    for method in methods:
        if method == baseline:
            continue
        method_scores = scores[scores["method"] == method]
        shared = sorted(set(method_scores["task"]) & set(baseline_scores["task"]))
        if not shared:
            continue
        for label, tasks in [("all", shared), *((task, [task]) for task in shared)]:
            interval = probability_of_improvement_interval(
                _task_arrays(method_scores, column, tasks), _task_arrays(baseline_scores, column, tasks),
                reps=reps, confidence=confidence, rng=rng)
            rows.append({"method": method, "task": label, "estimate": interval.estimate,
                         "lower": interval.lower, "upper": interval.upper})
    return pd.DataFrame(rows, columns=["method", "task", "estimate", "lower", "upper"])


def learning_curves(results: pd.DataFrame, *, scale: Scale = "return", points: int = 50, reps: int = 1000,
                    confidence: float = 0.95, seed: int = 0, finished_only: bool = True) -> pd.DataFrame:
    """IQM learning curves with bootstrap intervals per method and task, over environment steps.

    Runs that evaluated at the same steps are compared at those steps; otherwise every run is
    interpolated linearly onto ``points`` steps spanning the range all its method's runs cover.

    :param results: from :func:`~hybridrl.experiments.results.load_results` (or :func:`normalize_scores`
        output for ``scale="normalized"``).
    :returns: columns ``method, task, step, estimate, lower, upper, runs``.
    """
    if scale == "normalized" and NORMALIZED not in results:
        results = normalize_scores(results)
    column = RETURN_MEAN if scale == "return" else NORMALIZED
    table = results[results["finished"].astype(bool)] if finished_only and "finished" in results else results
    rng = np.random.default_rng(seed)
    frames = []
    for (method, task), rows in table.groupby(["method", "task"], sort=True):
        curves = [(group["step"].to_numpy(dtype=float), group[column].to_numpy(dtype=float))
                  for _, group in rows.sort_values("step").groupby("run", sort=True)]
        steps, values = _common_grid(curves, points)
        # values: (steps, runs); the IQM over runs at every step, with the steps as a batch axis.
        estimate, lower, upper = confidence_interval([values], interquartile_mean, reps=reps,
                                                     confidence=confidence, rng=rng)
        frames.append(pd.DataFrame({"method": method, "task": task, "step": steps, "estimate": estimate,
                                    "lower": lower, "upper": upper, "runs": len(curves)}))
    if not frames:
        return pd.DataFrame(columns=["method", "task", "step", "estimate", "lower", "upper", "runs"])
    return pd.concat(frames, ignore_index=True)


def _common_grid(curves: list[tuple[FloatArray, FloatArray]], points: int) -> tuple[FloatArray, FloatArray]:
    first_steps = curves[0][0]
    if all(steps.shape == first_steps.shape and np.array_equal(steps, first_steps) for steps, _ in curves):
        return first_steps, np.stack([values for _, values in curves], axis=-1)
    start = max(float(steps[0]) for steps, _ in curves)
    stop = min(float(steps[-1]) for steps, _ in curves)
    grid = np.linspace(start, stop, points) if stop > start else np.array([stop])
    return grid, np.stack([np.interp(grid, steps, values) for steps, values in curves], axis=-1)


def score_profiles(scores: pd.DataFrame, thresholds: FloatArray, *, score: ScoreKind = "final",
                   reps: int = 1000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Performance profiles: per method, the fraction of runs with normalised score above each threshold.

    Only methods that ran every task of the table are profiled, so profiles are comparable.

    :returns: columns ``method, threshold, estimate, lower, upper``.
    """
    column = f"{score}_normalized"
    rng = np.random.default_rng(seed)
    all_tasks = sorted(scores["task"].unique())
    frames = []
    for method in sorted(scores["method"].unique()):
        method_scores = scores[scores["method"] == method]
        if set(method_scores["task"]) != set(all_tasks):
            continue
        task_scores = _task_arrays(method_scores, column, all_tasks)
        estimate, lower, upper = confidence_interval(
            task_scores, lambda tasks: performance_profile(tasks, thresholds), reps=reps,
            confidence=confidence, rng=rng)
        frames.append(pd.DataFrame({"method": method, "threshold": thresholds, "estimate": estimate,
                                    "lower": lower, "upper": upper}))
    if not frames:
        return pd.DataFrame(columns=["method", "threshold", "estimate", "lower", "upper"])
    return pd.concat(frames, ignore_index=True)
