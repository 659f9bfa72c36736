"""Reports: ``report.md`` with tables per task and over tasks, and PNG figures.

Figures (each method keeps one colour in all of them):

- ``learning_curves.png``: per task, the IQM of the evaluation return over runs against
  environment steps, with its 95 % bootstrap band;
- ``aggregate_scores.png``: IQM, median, mean and optimality gap of the final normalised score
  over tasks, with 95 % intervals;
- ``task_scores.png``: per task, the IQM of the final return with its interval;
- ``performance_profile.png``: the fraction of runs whose final normalised score exceeds each
  threshold, with its band.

Figures are drawn with matplotlib's object API on the Agg canvas, so writing a report never
changes the pyplot backend of the calling program.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, MaxNLocator

from hybridrl.core.io import atomic_write_text
from hybridrl.errors import ConfigError, RunDirectoryError
from hybridrl.experiments.analysis import (
    EXPERT_SCORE,
    Normalization,
    Scale,
    ScoreKind,
    aggregate,
    improvement_over,
    learning_curves,
    normalize_scores,
    run_scores,
    score_profiles,
)
from hybridrl.experiments.results import load_results, load_runs

REPORT_FILE = "report.md"
_FIGURE_DPI = 120
_SCORE_TITLES = {"final": "Final score", "best": "Best score during training",
                 "auc": "Area under the learning curve (average score over training)"}


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are computed: resamples, coverage, and the seed that makes a report reproducible."""

    reps: int = 2000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class Report:
    """Where :func:`write_report` wrote the report and its figures."""

    markdown: Path
    figures: tuple[Path, ...]


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, fixed by the sorted method names so every figure agrees."""
    palette = [  # matplotlib's tab10, then tab20's lighter shades for more methods
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    ]
    return {method: palette[index % len(palette)] for index, method in enumerate(sorted(methods))}


def write_report(results_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None = None, *,
                 baseline: str | None = None, normalization: Normalization = "auto", reps: int = 2000,
                 confidence: float = 0.95, seed: int = 0) -> Report:
    """Write ``report.md`` and its PNG figures for every run under ``results_dir``.

    :param results_dir: a folder of run directories, e.g. a sweep's output.
    :param output_dir: where to write; default ``<results_dir>/report``.
    :param baseline: a method to compare the others with (probability of improvement).
    :param normalization: how returns become normalised scores (see :mod:`hybridrl.experiments.analysis`).
    :param reps: bootstrap resamples per interval.
    :param confidence: the intervals' coverage.
    :param seed: the bootstrap's seed (same seed, same report).
    :raises RunDirectoryError: ``results_dir`` holds no runs.
    :raises ConfigError: ``baseline`` is not a method of the results.
    """
    results_dir = Path(results_dir)
    target = Path(output_dir) if output_dir is not None else results_dir / "report"
    runs = load_runs(results_dir)
    if runs.empty:
        raise RunDirectoryError(f"{results_dir} holds no run directories (folders with config.json); "
                                "pass a sweep's output folder")
    methods = sorted(runs["method"].unique())
    if baseline is not None and baseline not in methods:
        raise ConfigError(f"baseline {baseline!r} is not a method of these results; "
                          f"methods: {', '.join(methods)}")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirectoryError(f"cannot write the report folder {target}: {error.strerror or error}; "
                                "pass another --output") from error

    results = load_results(results_dir)
    colours = method_colours(methods)
    sections = [_header(results_dir, runs, reps, confidence)]
    figures: list[Path] = []
    finished = results[results["finished"].astype(bool)] if not results.empty else results
    if finished.empty:
        sections.append("No run has finished yet, so there are no scores to report.\n")
    else:
        normalized = normalize_scores(results, normalization)
        scores = run_scores(normalized, finished_only=True)
        sections.append(_normalization_section(normalized))
        bootstrap = BootstrapSettings(reps=reps, confidence=confidence, seed=seed)
        sections.append(_aggregate_section(scores, bootstrap))
        score_label = _normalized_label(normalized)
        figures.append(_plot_aggregate(scores, colours, target / "aggregate_scores.png", bootstrap,
                                       score_label))
        thresholds = np.linspace(min(0.0, float(scores["final_normalized"].min())),
                                 max(EXPERT_SCORE, float(scores["final_normalized"].max())), 101)
        profiles = score_profiles(scores, thresholds, reps=min(reps, 1000), confidence=confidence, seed=seed)
        if not profiles.empty:
            figures.append(_plot_profiles(profiles, colours, target / "performance_profile.png",
                                          score_label))
            sections.append("![Performance profiles](performance_profile.png)\n")
        if baseline is not None:
            sections.append(_baseline_section(scores, baseline, bootstrap))
        curves = learning_curves(normalized, scale="return", reps=min(reps, 1000), confidence=confidence,
                                 seed=seed)
        figures.append(_plot_learning_curves(curves, colours, target / "learning_curves.png", confidence))
        sections.append("## Learning curves\n\nIQM of the evaluation return over runs, with its "
                        f"{confidence:.0%} bootstrap band.\n\n![Learning curves](learning_curves.png)\n")
        figures.append(_plot_task_scores(scores, colours, target / "task_scores.png", bootstrap))
        sections.append(_task_section(scores, runs, baseline, bootstrap))
    sections.append(_problem_runs_section(runs))
    markdown = target / REPORT_FILE
    atomic_write_text(markdown, "\n".join(sections))
    return Report(markdown=markdown, figures=tuple(figures))


# --- Markdown --------------------------------------------------------------------------------


def _decimals(magnitude: float) -> int:
    # Three significant digits or so: 1,234 / 123.4 / 12.3 / 1.234
    return 0 if magnitude >= 1000 else 1 if magnitude >= 10 else 3


def format_number(value: float, decimals: int | None = None) -> str:
    """A number for a table: thousands separated, decimals by magnitude unless given."""
    if value is None or not np.isfinite(value):
        return "–"
    places = _decimals(abs(value)) if decimals is None else decimals
    return f"{value:,.{places}f}"


def format_interval(estimate: float, lower: float, upper: float) -> str:
    """``estimate [lower, upper]``, all three with the decimals the largest of them needs."""
    finite = [abs(value) for value in (estimate, lower, upper) if value is not None and np.isfinite(value)]
    places = _decimals(max(finite)) if finite else None
    return (f"{format_number(estimate, places)} [{format_number(lower, places)}, "
            f"{format_number(upper, places)}]")


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds is None or not np.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _header(results_dir: Path, runs: pd.DataFrame, reps: int, confidence: float) -> str:
    sweeps = sorted(str(name) for name in runs["sweep"].dropna().unique())
    title = ", ".join(sweeps) if sweeps else results_dir.name
    counts = runs["status"].value_counts()
    per_cell = runs.groupby(["method", "task"]).size()
    seeds = (str(per_cell.iloc[0]) if per_cell.nunique() == 1
             else f"{per_cell.min()} to {per_cell.max()}") if not per_cell.empty else "0"
    rows = [
        ["Runs", f"{len(runs)} ({counts.get('finished', 0)} finished, {counts.get('failed', 0)} failed, "
                 f"{counts.get('unfinished', 0)} unfinished)"],
        ["Methods", ", ".join(sorted(runs["method"].unique()))],
        ["Tasks", ", ".join(sorted(str(task) for task in runs["task"].unique()))],
        ["Runs per method and task", seeds],
        ["Results folder", f"`{results_dir}`"],
        ["Generated", time.strftime("%Y-%m-%d %H:%M:%S %z")],
    ]
    if "config/preset" in runs:
        presets = sorted(str(preset) for preset in runs["config/preset"].dropna().unique())
        rows.insert(4, ["Presets", ", ".join(presets)])
    return (f"# Report: {title}\n\n" + markdown_table(["", ""], rows) + "\n"
            "Statistics over runs: interquartile mean (IQM: the mean of the middle 50 % of runs), mean, "
            "median and optimality gap (how far below a normalised score of 100 runs fall; lower is "
            "better), "
            f"each with a {confidence:.0%} stratified-bootstrap confidence interval ({reps} resamples), as "
            "recommended by Agarwal et al. (2021), *Deep RL at the edge of the statistical precipice*. "
            "Scores per run: **final** (the last evaluation), **best** (the best evaluation during "
            "training, an optimistic choice) and **AUC** (the area under the learning curve divided by "
            "its length: the average evaluation over training).\n")


def _normalization_section(normalized: pd.DataFrame) -> str:
    rules = normalized.groupby("task")["normalization"].first()
    rows = [[str(task), "reference returns (0 = random, 100 = expert)" if rule == "reference"
             else "min–max over all evaluations of all methods in these results (100 = best seen)"]
            for task, rule in rules.items()]
    return ("## Normalised scores\n\nAggregates over tasks use normalised scores, so that tasks count "
            "equally.\n\n" + markdown_table(["Task", "Normalisation"], rows))


def _aggregate_section(scores: pd.DataFrame, bootstrap: BootstrapSettings) -> str:
    tasks = sorted(scores["task"].unique())
    task_count = f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}"
    parts = [f"## Aggregate over tasks ({task_count}, normalised scores)\n"]
    complete = scores.groupby("method")["task"].nunique()
    partial = sorted(complete[complete < len(tasks)].index)
    if partial:
        parts.append(f"Left out of the aggregate (no finished run on some task): {', '.join(partial)}.\n")
    for kind in ("final", "best", "auc"):
        table = aggregate(scores, score=kind, scale="normalized", reps=bootstrap.reps,
                          confidence=bootstrap.confidence, seed=bootstrap.seed)
        if table.empty:
            continue
        metric_names = list(dict.fromkeys(table["metric"]))
        rows = []
        for method, group in table.groupby("method", sort=True):
            by_metric = group.set_index("metric")
            rows.append([method, str(int(group["runs"].iloc[0]))] + [
                format_interval(by_metric.at[name, "estimate"], by_metric.at[name, "lower"],
                                by_metric.at[name, "upper"]) for name in metric_names])
        parts.append(f"### {_SCORE_TITLES[kind]}\n\n"
                     + markdown_table(["Method", "Runs", *metric_names], rows))
    parts.append("![Aggregate final scores](aggregate_scores.png)\n")
    return "\n".join(parts)


def _baseline_section(scores: pd.DataFrame, baseline: str, bootstrap: BootstrapSettings) -> str:
    table = improvement_over(scores, baseline, score="final", reps=bootstrap.reps,
                             confidence=bootstrap.confidence, seed=bootstrap.seed)
    if table.empty:
        return f"## Improvement over {baseline}\n\nNo other method ran a task {baseline} ran.\n"
    tasks = [task for task in dict.fromkeys(table["task"]) if task != "all"]
    header = ["Method", "All tasks", *tasks]
    rows = []
    for method, group in table.groupby("method", sort=True):
        by_task = group.set_index("task")
        rows.append([method] + [format_interval(by_task.at[task, "estimate"], by_task.at[task, "lower"],
                                                by_task.at[task, "upper"]) if task in by_task.index else "–"
                                for task in ["all", *tasks]])
    return (f"## Improvement over {baseline}\n\nProbability that a run of the method has a higher final "
            f"normalised score than a run of {baseline} on the same task (0.5 = no difference), with "
            f"{bootstrap.confidence:.0%} intervals.\n\n" + markdown_table(header, rows))


def _task_section(scores: pd.DataFrame, runs: pd.DataFrame, baseline: str | None,
                  bootstrap: BootstrapSettings) -> str:
    columns: list[tuple[str, ScoreKind, Scale, str]] = [
        ("Final return IQM", "final", "return", "IQM"),
        ("Final return mean", "final", "return", "Mean"),
        ("Final return median", "final", "return", "Median"),
        ("Best return IQM", "best", "return", "IQM"),
        ("AUC return IQM", "auc", "return", "IQM"),
        ("Final normalised IQM", "final", "normalized", "IQM"),
    ]
    tables = {(kind, scale): aggregate(scores, score=kind, scale=scale, per_task=True,
                                       metrics=["IQM", "Mean", "Median"], reps=bootstrap.reps,
                                       confidence=bootstrap.confidence, seed=bootstrap.seed)
              for _, kind, scale, _ in columns}
    indexed = {key: table.set_index(["method", "task", "metric"]) for key, table in tables.items()}
    wall_times = (runs.groupby(["method", "task"])["final/wall_time_s"].mean() if "final/wall_time_s" in runs
                  else pd.Series(dtype=float))
    parts = ["## Per task\n\nReturns are evaluation returns (undiscounted, averaged over the evaluation "
             f"episodes); intervals are {bootstrap.confidence:.0%} bootstrap intervals over runs.\n",
             "![Final return per task](task_scores.png)\n"]
    for task in sorted(scores["task"].unique()):
        rows = []
        for method in sorted(scores.loc[scores["task"] == task, "method"].unique()):
            task_runs = scores[(scores["task"] == task) & (scores["method"] == method)]
            cells = []
            for _, kind, scale, metric in columns:
                table = indexed[(kind, scale)]
                key = (method, task, metric)
                cells.append(format_interval(table.at[key, "estimate"], table.at[key, "lower"],
                                             table.at[key, "upper"]) if key in table.index else "–")
            wall_time = float(wall_times.get((method, task), float("nan")))
            name = f"{method} (baseline)" if method == baseline else method
            rows.append([name, str(len(task_runs)), *cells, format_number(float(task_runs["steps"].median())),
                         format_duration(wall_time)])
        header = ["Method", "Runs", *(title for title, _, _, _ in columns), "Env steps", "Wall time"]
        parts.append(f"### {task}\n\n" + markdown_table(header, rows))
    return "\n".join(parts)


def _problem_runs_section(runs: pd.DataFrame) -> str:
    failed = runs[runs["status"] == "failed"]
    unfinished = runs[runs["status"] == "unfinished"]
    parts = []
    if not failed.empty:
        rows = [[f"`{row.run}`", str(row.error)] for row in failed.itertuples()]
        parts.append("## Failed runs\n\nEach run's traceback is in its `error.json`; restarting the sweep "
                     "tries them again.\n\n" + markdown_table(["Run", "Error"], rows))
    if not unfinished.empty:
        rows = [[f"`{row.run}`"] for row in unfinished.itertuples()]
        parts.append("## Unfinished runs\n\nNot in the statistics; restarting the sweep resumes them from "
                     "their last checkpoint.\n\n" + markdown_table(["Run"], rows))
    return "\n".join(parts)


# --- Figures ---------------------------------------------------------------------------------


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=_FIGURE_DPI, bbox_inches="tight")
    return path


def _legend(figure: Figure, methods: Sequence[str], colours: Mapping[str, str]) -> None:
    handles = [Line2D([], [], color=colours[method], linewidth=3, label=method) for method in methods]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(methods), 4), frameon=False,
                  title="Method")


def _subplot_grid(count: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list[Axes]]:
    columns = min(count, 3)
    rows = int(np.ceil(count / columns))
    figure = Figure(figsize=(width * columns, height * rows + 0.8), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, axes[:count]


def _plot_learning_curves(curves: pd.DataFrame, colours: Mapping[str, str], path: Path,
                          confidence: float) -> Path:
    tasks = sorted(curves["task"].unique())
    figure, axes = _subplot_grid(len(tasks))
    for axis, task in zip(axes, tasks, strict=True):
        for method, curve in curves[curves["task"] == task].groupby("method", sort=True):
            colour = colours[str(method)]
            if len(curve) == 1:
                axis.errorbar(curve["step"], curve["estimate"],
                              yerr=[curve["estimate"] - curve["lower"], curve["upper"] - curve["estimate"]],
                              fmt="o", color=colour, capsize=4)
            axis.plot(curve["step"], curve["estimate"], color=colour, linewidth=2)
            axis.fill_between(curve["step"], curve["lower"], curve["upper"], color=colour, alpha=0.2,
                              linewidth=0)
        runs = curves.loc[curves["task"] == task, "runs"]
        axis.set_title(f"{task} ({int(runs.min())}–{int(runs.max())} runs per method)"
                       if runs.nunique() > 1 else f"{task} ({int(runs.iloc[0])} runs per method)")
        axis.set_xlabel("Environment steps")
        axis.set_ylabel("Evaluation return (IQM)")
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))
        axis.grid(alpha=0.3)
    figure.suptitle(f"Learning curves: IQM over runs with {confidence:.0%} bootstrap band")
    _legend(figure, sorted(curves["method"].unique()), colours)
    return _save(figure, path)


def _interval_rows(axis: Axes, table: pd.DataFrame, methods: Sequence[str],
                   colours: Mapping[str, str]) -> None:
    for position, method in enumerate(methods):
        match = table[table["method"] == method]
        if match.empty:
            continue
        row = match.iloc[0]
        axis.barh(position, row["upper"] - row["lower"], left=row["lower"], height=0.6,
                  color=colours[method], alpha=0.45)
        # A coloured marker, so a method whose interval has no width still shows its colour.
        axis.plot(row["estimate"], position, marker="D", markersize=9, color=colours[method],
                  markeredgecolor="black", linestyle="none")
    axis.set_yticks(range(len(methods)), list(methods))
    axis.set_ylim(-0.6, len(methods) - 0.4)
    axis.invert_yaxis()
    axis.use_sticky_edges = False  # bars stick to their base otherwise, and margins would not apply
    axis.margins(x=0.08)
    axis.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    axis.grid(axis="x", alpha=0.3)


def _normalized_label(normalized: pd.DataFrame) -> str:
    rules = set(normalized["normalization"].dropna())
    if rules == {"reference"}:
        return "Normalised score (0 = random, 100 = expert)"
    if rules == {"minmax"}:
        return "Normalised score (min–max, 100 = best seen)"
    return "Normalised score (per task: see report)"


def _plot_aggregate(scores: pd.DataFrame, colours: Mapping[str, str], path: Path,
                    bootstrap: BootstrapSettings, score_label: str) -> Path:
    table = aggregate(scores, score="final", scale="normalized", reps=bootstrap.reps,
                      confidence=bootstrap.confidence, seed=bootstrap.seed)
    metric_names = list(dict.fromkeys(table["metric"])) or ["IQM"]
    methods = sorted(table["method"].unique())
    figure = Figure(figsize=(3.3 * len(metric_names), 0.6 * max(len(methods), 1) + 1.8), layout="constrained")
    axes = figure.subplots(1, len(metric_names), sharey=True, squeeze=False)[0]
    for axis, name in zip(axes, metric_names, strict=True):
        _interval_rows(axis, table[table["metric"] == name], methods, colours)
        axis.set_title(name + (" (lower is better)" if name == "Optimality gap" else ""))
    figure.supxlabel(score_label)
    figure.suptitle(f"Final normalised score over {scores['task'].nunique()} task(s): "
                    f"point estimate (◆) and {bootstrap.confidence:.0%} bootstrap interval (bar)")
    return _save(figure, path)


def _plot_task_scores(scores: pd.DataFrame, colours: Mapping[str, str], path: Path,
                      bootstrap: BootstrapSettings) -> Path:
    table = aggregate(scores, score="final", scale="return", per_task=True, metrics=["IQM"],
                      reps=bootstrap.reps, confidence=bootstrap.confidence, seed=bootstrap.seed)
    tasks = sorted(table["task"].unique())
    methods = sorted(table["method"].unique())
    figure, axes = _subplot_grid(len(tasks), width=4.2, height=0.55 * len(methods) + 1.4)
    for axis, task in zip(axes, tasks, strict=True):
        _interval_rows(axis, table[table["task"] == task], methods, colours)
        axis.set_title(str(task))
        axis.set_xlabel("Final evaluation return (IQM)")
    figure.suptitle(f"Final return per task: IQM over runs (◆) and {bootstrap.confidence:.0%} "
                    "bootstrap interval (bar)")
    return _save(figure, path)


def _plot_profiles(profiles: pd.DataFrame, colours: Mapping[str, str], path: Path,
                   score_label: str) -> Path:
    figure = Figure(figsize=(6.0, 4.8), layout="constrained")
    axis = figure.subplots()
    for method, profile in profiles.groupby("method", sort=True):
        colour = colours[str(method)]
        # A profile is a step function of the threshold: it drops where a run's score lies.
        axis.plot(profile["threshold"], profile["estimate"], color=colour, linewidth=2, label=str(method),
                  drawstyle="steps-post")
        axis.fill_between(profile["threshold"], profile["lower"], profile["upper"], color=colour, alpha=0.2,
                          linewidth=0, step="post")
    axis.set_xlabel(f"Threshold τ: {score_label[0].lower()}{score_label[1:]}")
    axis.set_ylabel("Fraction of runs with score > τ")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.set_title("Performance profile of the final score")
    _legend(figure, sorted(profiles["method"].unique()), colours)
    return _save(figure, path)
