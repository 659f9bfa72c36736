"""What every benchmark script shares: provenance of results and peak memory."""

from __future__ import annotations

import json
import resource
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hybridrl.core import provenance
from hybridrl.core.io import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its finished children, in MB."""
    to_mb = 1 / 1024  # ru_maxrss is in KiB on Linux
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_mb,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_mb}


def _command() -> str:
    """This process's command line, as it was typed."""
    return " ".join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv])


def write_result(name: str, seeds: list[int], payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the command, seeds, commit and machine."""
    record = {
        "command": _command(),
        "seeds": seeds,
        "git_commit": provenance.git_commit(),
        "machine": provenance.machine(),
        "versions": provenance.package_versions(),
        **payload,
    }
    path = RESULTS_DIR / f"{name}.json"
    atomic_write_json(path, record)
    return path


# -- sweeps whose finished runs live on as small committed records -------------------------------
#
# A sweep's run directories (checkpoints, TensorBoard logs, full metrics) stay out of git. After a
# sweep, each finished run is condensed into a record of kilobytes (config.json, sweep_run.json,
# final.json, and the metrics lines worth keeping) under benchmarks/results/<name>/runs/. Before a
# sweep, records whose run directory is missing are written back as finished run directories, so
# a sweep resumed on a new machine skips the runs another machine finished, and results and
# reports read them like any run.

RECORDED_FILES = ("config.json", "sweep_run.json", "final.json")


def _record_path(name: str, spec: Any, run_dir: Path) -> Path:
    return RESULTS_DIR / name / "runs" / run_dir.relative_to(spec.output).with_suffix(".json")


def restore_records(name: str, spec: Any) -> int:
    """Write back the recorded runs of sweep ``spec`` that have no run directory; returns how many."""
    from hybridrl.core.io import atomic_write_json, atomic_write_text
    from hybridrl.experiments.spec import expand_sweep

    restored = 0
    for run in expand_sweep(spec):
        record_path = _record_path(name, spec, run.run_dir)
        if not record_path.is_file() or (run.run_dir / "config.json").is_file():
            continue
        record = json.loads(record_path.read_text())
        run.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.run_dir / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in record["metrics"]))
        for relative, lines in record.get("extra_metrics", {}).items():
            (run.run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.run_dir / relative, "".join(json.dumps(line) + "\n" for line in lines))
        for file_name in RECORDED_FILES:  # final.json last: it marks the run finished
            atomic_write_json(run.run_dir / file_name, record[file_name])
        restored += 1
    return restored


def kept_line(line: dict[str, Any], keep: tuple[str, ...]) -> bool:
    """Whether a metrics line holds a key of ``keep``; a key ending in ``/`` keeps any metric under
    that prefix, one ending in ``*`` any metric whose name starts with the rest (``class-r*``)."""
    def holds(key: str) -> bool:
        if key.endswith(("/", "*")):
            prefix = key.removesuffix("*")
            return any(name.startswith(prefix) for name in line)
        return key in line

    return any(holds(key) for key in keep)


def save_records(name: str, spec: Any, keep: tuple[str, ...], extra_metrics: tuple[str, ...] = ()) -> int:
    """Condense every finished run of ``spec`` into its record (:func:`save_record`); returns how
    many runs are recorded."""
    from hybridrl.experiments.spec import expand_sweep

    return sum(save_record(name, spec, run, keep, extra_metrics) for run in expand_sweep(spec))


def save_record(name: str, spec: Any, run: Any, keep: tuple[str, ...], extra_metrics: tuple[str, ...] = ()) -> bool:
    """Condense run ``run`` of ``spec``, if finished, into its record, keeping the metrics lines that
    hold any key in ``keep`` (a key ending in ``/`` keeps every metric under that prefix, e.g.
    ``ope/``), also from the run's ``extra_metrics`` files (e.g. ``online`` for a phase with a
    metrics file of its own); returns whether it was recorded."""
    from hybridrl.core.io import atomic_write_json
    from hybridrl.core.logging import read_metrics
    from hybridrl.runs import is_finished

    if not is_finished(run.run_dir):
        return False
    files = {file_name: json.loads((run.run_dir / file_name).read_text()) for file_name in RECORDED_FILES}
    # Provenance first: the command that ran the sweep, this run's seed, and the commit and
    # machine the run itself was trained with (from its config.json).
    # A run recorded before keeps the command that trained it (re-recording, e.g. --report-only, trains nothing).
    record_path = _record_path(name, spec, run.run_dir)
    command = json.loads(record_path.read_text()).get("command") if record_path.is_file() else None
    record: dict[str, Any] = {"command": command or _command(), "seeds": [run.seed],
                              "git_commit": files["config.json"].get("git_commit"),
                              "machine": files["config.json"].get("machine"), **files}
    record["metrics"] = [line for line in read_metrics(run.run_dir) if kept_line(line, keep)]
    record["extra_metrics"] = {
        f"{folder}/metrics.jsonl": [line for line in read_metrics(run.run_dir / folder) if kept_line(line, keep)]
        for folder in extra_metrics if (run.run_dir / folder / "metrics.jsonl").is_file()}
    atomic_write_json(record_path, record)
    return True


def recorded_sweep(name: str, spec_mapping: dict[str, Any], keep: tuple[str, ...], workers: int,
                   extra_metrics: tuple[str, ...] = ()) -> Any:
    """Run a sweep resumably: restore records, run what is left, record each run as it finishes.

    :returns: the loaded :class:`~hybridrl.experiments.spec.SweepSpec`.
    """
    from hybridrl.experiments.spec import load_sweep_spec
    from hybridrl.experiments.sweep import run_sweep

    spec = load_sweep_spec(spec_mapping)
    restored = restore_records(name, spec)

    def on_outcome(outcome: Any) -> None:
        print(f"{outcome.status:8s} {outcome.run.run_dir} {outcome.wall_time_s:.0f}s {outcome.error or ''}", flush=True)
        # Recorded as each run finishes, so a sweep cut short keeps what it finished.
        save_record(name, spec, outcome.run, keep, extra_metrics)

    summary = run_sweep(spec, workers=workers, on_outcome=on_outcome)
    saved = save_records(name, spec, keep, extra_metrics)
    print(f"{name}: {restored} runs restored from records, {len(summary.failed)} failed, {saved} recorded")
    return spec


def sweep_or_records(name: str, spec_mapping: dict[str, Any], keep: tuple[str, ...], workers: int,
                     report_only: bool, extra_metrics: tuple[str, ...] = ()) -> Any:
    """:func:`recorded_sweep`, or with ``report_only`` just restore and re-record the finished runs
    (nothing is trained); returns the loaded sweep spec either way."""
    if not report_only:
        return recorded_sweep(name, spec_mapping, keep=keep, workers=workers, extra_metrics=extra_metrics)
    from hybridrl.experiments.spec import load_sweep_spec

    spec = load_sweep_spec(spec_mapping)
    restore_records(name, spec)
    save_records(name, spec, keep, extra_metrics)
    return spec


def iqm_summary(values: Any) -> dict[str, Any]:
    """Mean, IQM and the IQM's 95% bootstrap interval of per-seed scores, with the values themselves."""
    from hybridrl.experiments.statistics import summarize_seeds

    summary = summarize_seeds(values)
    return {**{key: summary[key] for key in ("mean", "iqm", "iqm_low", "iqm_high", "seeds")},
            "values": [round(value, 2) for value in summary["values"]]}


def paired_difference(treated: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]], key: str
                      ) -> dict[str, Any] | None:
    """Mean over the seeds both have of ``treated[seed][key] − base[seed][key]``, with its 95 %
    bootstrap interval (seeds resampled), and relative to the base's mean."""
    from hybridrl.experiments.statistics import interval_estimate, mean_score

    seeds = sorted(seed for seed in set(treated) & set(base) if key in treated[seed] and key in base[seed])
    if not seeds:
        return None
    differences = np.array([treated[seed][key] - base[seed][key] for seed in seeds], dtype=float)
    base_mean = float(np.mean([base[seed][key] for seed in seeds]))
    interval = interval_estimate(differences, mean_score)
    return {"absolute": interval.estimate, "low": interval.lower, "high": interval.upper,
            "relative": interval.estimate / abs(base_mean) if base_mean else None, "seeds": len(seeds)}
