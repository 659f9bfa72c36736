"""Statistics that hold up with a handful of seeds, after Agarwal et al. (2021), "Deep Reinforcement
Learning at the Edge of the Statistical Precipice" (NeurIPS), the methods of the ``rliable`` library.

Scores come as one array of per-run scores per task (tasks may have different numbers of runs).
Every statistic accepts arrays with leading batch axes, ``(..., runs)`` per task, which is how the
bootstrap evaluates all its resamples at once. With ``n`` runs on each of ``m`` tasks:

- mean: the mean over tasks of the per-task mean score.
- median: the median over tasks of the per-task mean score (for one task that is its mean, so
  per-task tables use :func:`median_of_runs`, the median over runs).
- IQM (interquartile mean): the mean of the middle 50 % of all ``n·m`` scores, after discarding
  ``floor(0.25·n·m)`` at each end (``scipy.stats.trim_mean(x, 0.25)``). Robust to outlier runs,
  more efficient than the median.
- optimality gap: ``γ − mean(min(x, γ))``, how far below the target ``γ`` (1.0 for normalised
  scores) the runs fall on average; lower is better.
- performance profile: the fraction of runs with score above ``τ``, averaged over tasks.
- probability of improvement ``P(X > Y)``: the chance a run of method X beats a run of method Y on a
  task (ties count half), averaged over tasks.

Confidence intervals come from the stratified bootstrap: each resample draws, for every task
independently, as many runs as that task has, with replacement; the interval is the percentile
interval of the statistic over the resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
#: Per-task score arrays, each ``(..., runs)``.
TaskScores = Sequence[FloatArray]
#: A statistic of per-task scores: maps arrays ``(..., runs)`` to ``(...)`` or ``(..., k)``.
Statistic = Callable[[TaskScores], FloatArray]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    lower: float
    upper: float


def as_task_scores(scores: ArrayLike | Sequence[ArrayLike]) -> list[FloatArray]:
    """Per-task score arrays from a ``(runs, tasks)`` matrix, one 1-D array, or a list of per-task arrays.

    :raises ValueError: there are no tasks, or a task has no runs or non-finite scores.
    """
    if isinstance(scores, np.ndarray) and scores.ndim == 2:
        tasks = [np.asarray(scores[:, column], dtype=np.float64) for column in range(scores.shape[1])]
    elif isinstance(scores, np.ndarray) and scores.ndim == 1:
        tasks = [np.asarray(scores, dtype=np.float64)]
    elif isinstance(scores, Sequence) and scores and all(np.ndim(task) == 1 for task in scores):
        tasks = [np.asarray(task, dtype=np.float64) for task in scores]
    elif isinstance(scores, Sequence) and scores and all(np.ndim(task) == 0 for task in scores):
        tasks = [np.asarray(scores, dtype=np.float64)]
    else:
        raise ValueError("scores must be a (runs, tasks) matrix, one array of runs, "
                         "or a list of per-task arrays")
    if not tasks:
        raise ValueError("scores have no tasks")
    for index, task in enumerate(tasks):
        if task.size == 0:
            raise ValueError(f"task {index} has no runs")
        if not np.all(np.isfinite(task)):
            raise ValueError(f"task {index} has non-finite scores: {task}")
    return tasks


def _task_means(task_scores: TaskScores) -> FloatArray:
    return np.stack([task.mean(axis=-1) for task in task_scores], axis=-1)


def mean_score(task_scores: TaskScores) -> FloatArray:
    """The mean over tasks of the per-task mean score."""
    return _task_means(task_scores).mean(axis=-1)


def median_score(task_scores: TaskScores) -> FloatArray:
    """The median over tasks of the per-task mean score."""
    return np.median(_task_means(task_scores), axis=-1)


def median_of_runs(task_scores: TaskScores) -> FloatArray:
    """The median of all runs' scores pooled over tasks; for one task, the median over its runs."""
    return np.median(np.concatenate(list(task_scores), axis=-1), axis=-1)


def interquartile_mean(task_scores: TaskScores) -> FloatArray:
    """The mean of the middle 50 % of all runs' scores pooled over tasks (25 % trimmed at each end)."""
    pooled = np.sort(np.concatenate(list(task_scores), axis=-1), axis=-1)
    count = pooled.shape[-1]
    trimmed = int(0.25 * count)
    return pooled[..., trimmed:count - trimmed].mean(axis=-1)


def optimality_gap(task_scores: TaskScores, target: float = 1.0) -> FloatArray:
    """``target − mean(min(score, target))``, averaged per task then over tasks; lower is better."""
    return target - mean_score([np.minimum(task, target) for task in task_scores])


#: The aggregate metrics of the reports, by display name.
METRICS: dict[str, Statistic] = {
    "IQM": interquartile_mean,
    "Mean": mean_score,
    "Median": median_score,
    "Optimality gap": optimality_gap,
}


def performance_profile(task_scores: TaskScores, thresholds: ArrayLike) -> FloatArray:
    """The fraction of runs with score above each threshold, averaged over tasks: ``(..., thresholds)``."""
    taus = np.asarray(thresholds, dtype=np.float64)
    fractions = [(task[..., None, :] > taus[:, None]).mean(axis=-1) for task in task_scores]
    return np.mean(np.stack(fractions, axis=0), axis=0)


def probability_of_improvement(x_scores: TaskScores, y_scores: TaskScores) -> FloatArray:
    """``P(X > Y)``: the chance a run of X scores above a run of Y on the same task, averaged over tasks.

    Ties count one half (the Mann–Whitney U statistic divided by ``n·m``).
    """
    if len(x_scores) != len(y_scores):
        raise ValueError(f"X has {len(x_scores)} tasks and Y has {len(y_scores)}; "
                         "compare them on the same tasks")
    per_task = []
    for x_task, y_task in zip(x_scores, y_scores, strict=True):
        wins = (x_task[..., :, None] > y_task[..., None, :]).mean(axis=(-2, -1))
        ties = (x_task[..., :, None] == y_task[..., None, :]).mean(axis=(-2, -1))
        per_task.append(wins + 0.5 * ties)
    return np.mean(np.stack(per_task, axis=-1), axis=-1)


def stratified_bootstrap(task_scores: TaskScores, statistic: Statistic, reps: int,
                         rng: np.random.Generator) -> FloatArray:
    """The statistic over ``reps`` stratified resamples: ``(reps, ...)``.

    Each resample draws, for every task independently, as many runs as the task has, with replacement.
    """
    if reps <= 0:
        raise ValueError(f"reps must be positive, got {reps}")
    resampled = []
    for task in task_scores:
        runs = task.shape[-1]
        indices = rng.integers(0, runs, size=(reps, runs))
        # (..., reps, runs) -> (reps, ..., runs): the resample axis first.
        resampled.append(np.moveaxis(np.take(task, indices, axis=-1), -2, 0))
    return statistic(resampled)


def confidence_interval(task_scores: TaskScores, statistic: Statistic, *, reps: int = 2000,
                        confidence: float = 0.95,
                        rng: np.random.Generator | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The statistic's point estimate and stratified-bootstrap percentile interval, each shaped like it.

    :param task_scores: per-task arrays ``(..., runs)``.
    :param statistic: e.g. :func:`interquartile_mean`.
    :param reps: bootstrap resamples.
    :param confidence: the interval's coverage, e.g. 0.95.
    :param rng: the generator the resamples draw from (default seeded with 0, so reports are reproducible).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rng = rng if rng is not None else np.random.default_rng(0)
    estimate = np.asarray(statistic(task_scores), dtype=np.float64)
    resampled = stratified_bootstrap(task_scores, statistic, reps, rng)
    tail = 50.0 * (1.0 - confidence)
    lower, upper = np.percentile(resampled, [tail, 100.0 - tail], axis=0)
    return estimate, np.asarray(lower), np.asarray(upper)


def interval_estimate(scores: ArrayLike | Sequence[ArrayLike], statistic: Statistic, *, reps: int = 2000,
                      confidence: float = 0.95, rng: np.random.Generator | None = None) -> Interval:
    """A scalar statistic of ``scores`` (see :func:`as_task_scores`) with its bootstrap interval."""
    estimate, lower, upper = confidence_interval(as_task_scores(scores), statistic, reps=reps,
                                                 confidence=confidence, rng=rng)
    return Interval(float(estimate), float(lower), float(upper))


def probability_of_improvement_interval(x_scores: ArrayLike | Sequence[ArrayLike],
                                        y_scores: ArrayLike | Sequence[ArrayLike], *, reps: int = 2000,
                                        confidence: float = 0.95,
                                        rng: np.random.Generator | None = None) -> Interval:
    """``P(X > Y)`` with a bootstrap interval; X's and Y's runs are resampled independently per task."""
    x_tasks, y_tasks = as_task_scores(x_scores), as_task_scores(y_scores)
    task_count = len(x_tasks)

    def statistic(tasks: TaskScores) -> FloatArray:
        return probability_of_improvement(tasks[:task_count], tasks[task_count:])

    # Stratifying over X's tasks and Y's tasks together resamples each method's runs independently.
    estimate, lower, upper = confidence_interval([*x_tasks, *y_tasks], statistic, reps=reps,
                                                 confidence=confidence, rng=rng)
    return Interval(float(estimate), float(lower), float(upper))


def area_under_curve(steps: ArrayLike, scores: ArrayLike) -> float:
    """The area under a learning curve divided by its step range: the average score over training.

    Trapezoidal rule over the evaluation points; a curve with one point has its only score.
    Dividing by the step range keeps runs of different lengths on the score's scale.
    """
    step_values = np.asarray(steps, dtype=np.float64)
    score_values = np.asarray(scores, dtype=np.float64)
    if step_values.shape != score_values.shape or step_values.ndim != 1 or step_values.size == 0:
        raise ValueError("steps and scores must be 1-D arrays of the same, non-zero length")
    order = np.argsort(step_values, kind="stable")
    step_values, score_values = step_values[order], score_values[order]
    span = step_values[-1] - step_values[0]
    if span == 0:
        return float(score_values.mean())
    return float(np.trapezoid(score_values, step_values) / span)


def summarize_seeds(values: ArrayLike, *, reps: int = 2000) -> dict[str, Any]:
    """Mean ± std, IQM and the IQM's 95% stratified-bootstrap interval of one score over seeds.

    :returns: ``{"mean", "std", "iqm", "iqm_low", "iqm_high", "seeds", "values"}``.
    """
    scores = np.asarray(values, dtype=np.float64)
    iqm = interval_estimate(scores, interquartile_mean, reps=reps)
    return {"mean": float(scores.mean()), "std": float(scores.std(ddof=1)) if scores.size > 1 else 0.0,
            "iqm": iqm.estimate, "iqm_low": iqm.lower, "iqm_high": iqm.upper, "seeds": int(scores.size),
            "values": [float(v) for v in scores]}


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation of paired samples (ties get mean ranks); NaN where either side is
    constant or fewer than two pairs are finite."""
    from scipy.stats import spearmanr

    x_array, y_array = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x_array) & np.isfinite(y_array)
    x_array, y_array = x_array[finite], y_array[finite]
    if len(x_array) < 2 or np.ptp(x_array) == 0 or np.ptp(y_array) == 0:
        return float("nan")
    return float(spearmanr(x_array, y_array).statistic)


def ope_fidelity(scores: ArrayLike, returns: ArrayLike) -> dict[str, float]:
    """How well off-policy scores rank policies by their true returns, from ``(rounds, members)``
    arrays of both: pooled over every member-round, within each round across members (mean), and
    over time within each member (mean)."""
    score_rows, return_rows = np.asarray(scores, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    within_rounds = [spearman(s, r) for s, r in zip(score_rows, return_rows, strict=True)]
    over_time = [spearman(s, r) for s, r in zip(score_rows.T, return_rows.T, strict=True)]
    return {"spearman_pooled": spearman(score_rows.ravel(), return_rows.ravel()),
            "spearman_within_rounds": float(np.nanmean(within_rounds)) if np.isfinite(within_rounds).any()
            else float("nan"),
            "spearman_over_time": float(np.nanmean(over_time)) if np.isfinite(over_time).any() else float("nan")}
