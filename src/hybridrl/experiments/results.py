"""The results store: every run under a folder as pandas tables.

:func:`load_results` reads each run directory (``config.json``, ``metrics.jsonl``, ``final.json``,
and the sweep's ``sweep_run.json`` / ``error.json`` where present) into one row per run and
evaluation point. :func:`load_runs` gives one row per run, with its state and final metrics.

Columns of :func:`load_results`:

=========================  ================================================================
``run``                    the run directory, relative to the folder loaded
``sweep``                  the sweep's name (None for runs started outside a sweep)
``algorithm``, ``preset``  as in ``config.json``
``variant``                the sweep variant (``default`` outside a sweep)
``method``                 ``algorithm`` for the default variant, else ``algorithm:variant``
``task_key``, ``task``     the task axis (``env``, ``dataset`` or ``task``) and its value
``seed``                   the run's seed
``step``                   environment steps at the evaluation
``time``                   seconds since the run started
``eval/return_mean``, ...  every metric on the evaluation line (``eval/normalized_score`` is NaN
                           where the task has no reference scores)
``is_final``               this row is the run's final evaluation (``final.json``)
``finished``, ``failed``   the run wrote ``final.json`` / ``error.json``
``config/<option>``        every config option with a scalar value
=========================  ================================================================
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hybridrl import runs as run_files
from hybridrl.core.logging import read_metrics
from hybridrl.errors import RunDirectoryError
from hybridrl.experiments.spec import DEFAULT_VARIANT, TASK_KEYS
from hybridrl.experiments.sweep import ERROR_FILE, SWEEP_RUN_FILE

logger = logging.getLogger(__name__)

RETURN_MEAN = "eval/return_mean"
RETURN_STD = "eval/return_std"
NORMALIZED_SCORE = "eval/normalized_score"

_RUN_COLUMNS = ["run", "sweep", "algorithm", "preset", "variant", "method", "task_key", "task", "seed"]


def method_name(algorithm: str, variant: str | None) -> str:
    """How tables and figures name a method: ``ppo`` for the default variant, else ``ppo:no-norm``."""
    return algorithm if variant in (None, DEFAULT_VARIANT) else f"{algorithm}:{variant}"


def find_run_dirs(root: str | os.PathLike[str]) -> list[Path]:
    """Every run directory (a folder with ``config.json``) under ``root``, sorted.

    :raises RunDirectoryError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise RunDirectoryError(f"results folder {root} does not exist; "
                                "pass a folder that holds run directories")
    return sorted(path.parent for path in root.rglob(run_files.CONFIG_FILE))


def load_runs(root: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per run under ``root``: identity, state, final metrics and error message.

    Columns: those of :func:`load_results` that describe a run, plus ``status``
    (``finished``/``failed``/``unfinished``), ``error`` (first line of ``error.json``'s message),
    ``final/<metric>`` (from ``final.json``) and ``config/<option>``.
    """
    root = Path(root)
    rows = []
    for run_dir in find_run_dirs(root):
        identity = _run_identity(run_dir, root)
        final = _read_json(run_dir / run_files.FINAL_FILE)
        error = _read_json(run_dir / ERROR_FILE)
        status = "finished" if final is not None else "failed" if error is not None else "unfinished"
        row: dict[str, Any] = {**identity, "status": status,
                               "error": _first_line(error.get("message")) if error else None}
        row.update({f"final/{key}": value for key, value in (final or {}).items()
                    if key not in ("algorithm", "env", "seed") and _is_scalar(value)})
        row.update(_config_columns(run_dir))
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else [*_RUN_COLUMNS, "status", "error"])


def load_results(root: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per run under ``root`` and evaluation point (see the module docstring for columns).

    Evaluation points are the ``metrics.jsonl`` lines with ``eval/return_mean``; a run that resumed
    from a checkpoint logs some steps twice, and the last line for a step wins. ``final.json`` marks
    its step as final, and adds a row if no evaluation line has that step. Runs without any
    evaluation yet have no rows (see :func:`load_runs`).

    :raises RunDirectoryError: ``root`` is not a folder, or a run's files are unreadable.
    """
    root = Path(root)
    frames = []
    for run_dir in find_run_dirs(root):
        frame = _load_run_evaluations(run_dir, root)
        if not frame.empty:
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*_RUN_COLUMNS, "step", "time", RETURN_MEAN, RETURN_STD, NORMALIZED_SCORE,
                                     "is_final", "finished", "failed"])
    results = pd.concat(frames, ignore_index=True)
    if NORMALIZED_SCORE not in results:
        results[NORMALIZED_SCORE] = float("nan")
    ordered = [*_RUN_COLUMNS, "step", "time", RETURN_MEAN, RETURN_STD, NORMALIZED_SCORE]
    flags = ("is_final", "finished", "failed")
    metric_columns = sorted(column for column in results if column not in ordered
                            and column not in flags and not column.startswith("config/"))
    config_columns = sorted(column for column in results if column.startswith("config/"))
    return results[[*ordered, *metric_columns, "is_final", "finished", "failed", *config_columns]]


def _load_run_evaluations(run_dir: Path, root: Path) -> pd.DataFrame:
    identity = _run_identity(run_dir, root)
    evaluations: dict[float, dict[str, Any]] = {}
    for line in read_metrics(run_dir):
        if RETURN_MEAN in line and "step" in line:
            evaluations[float(line["step"])] = line  # a resumed run re-logs steps: the last wins
    final = _read_json(run_dir / run_files.FINAL_FILE)
    final_step = None
    if final is not None and RETURN_MEAN in final:
        final_step = float(final.get("step", max(evaluations, default=0.0)))
        if final_step not in evaluations:
            evaluations[final_step] = {key: value for key, value in final.items()
                                       if key.startswith("eval/") or key in ("step", "time")}
    if not evaluations:
        return pd.DataFrame()
    rows = []
    for step in sorted(evaluations):
        metrics = {key: value for key, value in evaluations[step].items() if _is_scalar(value)}
        rows.append({**identity, **metrics, "step": int(step) if step.is_integer() else step,
                     "is_final": step == final_step})
    frame = pd.DataFrame(rows)
    frame["finished"] = final is not None
    frame["failed"] = final is None and (run_dir / ERROR_FILE).is_file()
    for column, value in _config_columns(run_dir).items():
        frame[column] = value
    return frame


def _run_identity(run_dir: Path, root: Path) -> dict[str, Any]:
    recorded = _read_json(run_dir / run_files.CONFIG_FILE)
    if recorded is None or "algorithm" not in recorded or not isinstance(recorded.get("config"), dict):
        raise RunDirectoryError(f"{run_dir / run_files.CONFIG_FILE} is unreadable or lacks `algorithm` and "
                                "`config`; remove the folder or restore the file")
    config = recorded["config"]
    sweep_info = _read_json(run_dir / SWEEP_RUN_FILE) or {}
    task_key = sweep_info.get("task_key") or next((key for key in TASK_KEYS if key in config), None)
    variant = sweep_info.get("variant", DEFAULT_VARIANT)
    return {
        "run": run_dir.relative_to(root).as_posix() if run_dir != root else ".",
        "sweep": sweep_info.get("sweep"),
        "algorithm": recorded["algorithm"],
        "preset": recorded.get("preset"),
        "variant": variant,
        "method": method_name(recorded["algorithm"], variant),
        "task_key": task_key,
        "task": str(config.get(task_key)) if task_key is not None else None,
        "seed": config.get("seed"),
    }


def _config_columns(run_dir: Path) -> dict[str, Any]:
    recorded = _read_json(run_dir / run_files.CONFIG_FILE) or {}
    config = recorded.get("config", {})
    return {f"config/{key}": value for key, value in config.items() if _is_scalar(value)}


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RunDirectoryError(f"{path} is unreadable ({error}); remove or restore it") from error
    return value if isinstance(value, dict) else None


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _first_line(text: Any) -> str | None:
    if text is None:
        return None
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def export_csv(results: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``results`` to ``path`` as CSV (parent folders created) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(target, index=False)
    return target
