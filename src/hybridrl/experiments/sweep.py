"""Running a sweep: plan which runs are left, dispatch them to workers, record every outcome.

A sweep can be stopped at any moment (Ctrl-C, a killed job, a reboot) and started again with the
same spec: runs that wrote ``final.json`` are skipped, runs that were interrupted resume from their
last checkpoint, and runs that failed (``error.json``) are tried again. A failing run records its
error and traceback in ``RUN_DIR/error.json``; the other runs go on.

Backends:

- ``local`` (default): a pool of worker processes on this machine, started with ``spawn`` because
  JAX is not fork-safe. Each worker uses one BLAS/XLA thread, so ``workers`` runs share the cores
  instead of fighting over them.
- ``ray``: the same runs as Ray tasks (one CPU each) on a local or remote Ray cluster; run
  directories must be on a file system every node sees.

Seeds vmapped in one process: with ``vmap_seeds: true`` in the spec, runs that differ only in their
seed become one unit of work (:func:`dispatch_units`) that one worker trains with the algorithm's
``train_seeds`` (see :data:`~hybridrl.experiments.spec.SEED_VMAP_ENTRY_POINT`), one run directory
per seed as usual; :func:`~hybridrl.experiments.spec.load_sweep_spec` rejects the key for
algorithms that cannot.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hybridrl import runs as run_files
from hybridrl.algorithms import get_algorithm
from hybridrl.core.io import atomic_write_json, atomic_write_text
from hybridrl.errors import ConfigError, HybridRLError
from hybridrl.experiments.spec import (
    RunSpec,
    SweepSpec,
    SweepSpecError,
    check_output_writable,
    config_differences,
    expand_sweep,
)

logger = logging.getLogger(__name__)

#: Written in a run directory when the run fails: error type, message, traceback, host, time.
ERROR_FILE = "error.json"
#: Written in a run directory by the sweep: sweep name, variant and task axis (read by the results store).
SWEEP_RUN_FILE = "sweep_run.json"
#: Written in the sweep's output folder: the spec as it was last run.
SWEEP_SPEC_FILE = "sweep.yaml"

#: One BLAS/OpenMP thread per worker process.
_THREAD_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: One XLA CPU thread per worker process.
_XLA_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")

RunStatus = Literal["pending", "resumable", "failed", "finished"]
Backend = Literal["local", "ray"]


@dataclass(frozen=True)
class PlannedRun:
    """A run of the grid and what its run directory holds now.

    :param run: the run.
    :param status: ``finished`` (has final.json: skipped), ``resumable`` (started, no final.json:
        continues from its checkpoint), ``failed`` (has error.json: tried again) or ``pending``.
    """

    run: RunSpec
    status: RunStatus


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run of a sweep.

    :param run: the run.
    :param status: ``finished``, ``failed``, or ``skipped`` (it had finished before this sweep).
    :param final: the run's final metrics (``final.json``), when it finished.
    :param error: ``"ErrorType: message"``, when it failed; the traceback is in ``RUN_DIR/error.json``.
    :param wall_time_s: seconds the worker spent on the run (0 when skipped).
    """

    run: RunSpec
    status: Literal["finished", "failed", "skipped"]
    final: dict[str, Any] | None = None
    error: str | None = None
    wall_time_s: float = 0.0


@dataclass
class SweepSummary:
    """The outcome of :func:`run_sweep`: the plan and one outcome per run."""

    spec: SweepSpec
    plan: list[PlannedRun]
    outcomes: list[RunOutcome] = field(default_factory=list)
    dry_run: bool = False

    def _with_status(self, status: str) -> list[RunOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]

    @property
    def finished(self) -> list[RunOutcome]:
        """Runs that finished in this sweep."""
        return self._with_status("finished")

    @property
    def failed(self) -> list[RunOutcome]:
        """Runs that failed in this sweep (their errors are in ``RUN_DIR/error.json``)."""
        return self._with_status("failed")

    @property
    def skipped(self) -> list[RunOutcome]:
        """Runs skipped because they had finished before."""
        return self._with_status("skipped")


def run_status(run_dir: Path) -> RunStatus:
    """What ``run_dir`` holds: ``finished``, ``failed``, ``resumable`` or ``pending`` (nothing)."""
    if run_files.is_finished(run_dir):
        return "finished"
    if (run_dir / ERROR_FILE).is_file():
        return "failed"
    if (run_dir / run_files.CONFIG_FILE).is_file():
        return "resumable"
    return "pending"


def plan_sweep(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of ``spec`` with the state of its run directory.

    :raises SweepSpecError: a run directory holds a run with another config (the spec changed
        since it ran); the message lists the differences.
    """
    planned = []
    conflicts = []
    for run in expand_sweep(spec):
        status = run_status(run.run_dir)
        if (run.run_dir / run_files.CONFIG_FILE).is_file():
            try:
                _, recorded = run_files.read_run_config(run.run_dir)
            except HybridRLError:
                # An unreadable config.json fails that run (with the reason in its error.json),
                # not the whole sweep.
                recorded = None
            if recorded is not None:
                differences = config_differences(run_files.config_to_dict(recorded),
                                                 run_files.config_to_dict(run.make_config()))
                if differences:
                    conflicts.append(f"{run.run_dir} ({'; '.join(differences[:4])})")
        planned.append(PlannedRun(run=run, status=status))
    if conflicts:
        shown = "\n  ".join(conflicts[:5])
        more = f"\n  ... and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        holds = "run directory holds" if len(conflicts) == 1 else "run directories hold"
        raise SweepSpecError(
            f"sweep {spec.name!r}: {len(conflicts)} {holds} "
            f"a run with another config than the spec asks for (recorded -> spec):\n  {shown}{more}\n"
            "The spec changed since those runs started: give the sweep a new `output:` folder, "
            "or restore the spec's old values."
        )
    return planned


def default_workers() -> int:
    """Worker processes for the local backend: one per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS and Windows lack sched_getaffinity
        return max(1, os.cpu_count() or 1)


def run_sweep(spec: SweepSpec, *, backend: Backend = "local", workers: int | None = None,
              address: str | None = None, dry_run: bool = False,
              on_outcome: Callable[[RunOutcome], None] | None = None) -> SweepSummary:
    """Run every run of ``spec`` that has not finished.

    :param spec: from :func:`~hybridrl.experiments.spec.load_sweep_spec`.
    :param backend: ``"local"`` (a process pool on this machine) or ``"ray"``.
    :param workers: runs at once; default one per CPU core (local) or as many as Ray schedules.
    :param address: the Ray cluster to connect to (``ray://host:10001`` or ``host:6379``); default
        a Ray instance already initialised in this process, else ``RAY_ADDRESS``, else a new local one.
    :param dry_run: only plan: return the runs and their state without running or writing anything.
    :param on_outcome: called in this process with each run's outcome as it arrives.
    :raises SweepSpecError: the output folder is unusable or run directories hold other configs.
    """
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown sweep backend {backend!r}; choose local or ray")
    if workers is not None and workers <= 0:
        raise ConfigError(f"workers must be positive, got {workers}")
    if address is not None and backend != "ray":
        raise ConfigError("--address only applies to the Ray backend; add --backend ray")
    check_output_writable(spec.output, create=not dry_run)
    plan = plan_sweep(spec)
    summary = SweepSummary(spec=spec, plan=plan, dry_run=dry_run)
    if dry_run:
        return summary

    atomic_write_text(spec.output / SWEEP_SPEC_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))

    def record(outcome: RunOutcome) -> None:
        summary.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    for planned in plan:
        if planned.status == "finished":
            record(RunOutcome(run=planned.run, status="skipped", final=_read_final(planned.run.run_dir)))
    to_run = [planned.run for planned in plan if planned.status != "finished"]
    if not to_run:
        return summary
    if backend == "local":
        _run_local(to_run, workers or default_workers(), record, spec.vmap_seeds)
    else:
        _run_ray(to_run, workers, address, record, spec.vmap_seeds)
    return summary


def dispatch_units(runs: Sequence[RunSpec], vmap_seeds: bool = False) -> list[tuple[RunSpec, ...]]:
    """The units of work sent to workers, in order: one run each, or with ``vmap_seeds`` the runs
    that share algorithm, task and variant (they differ only in their seed) as one unit."""
    if not vmap_seeds:
        return [(run,) for run in runs]
    units: dict[tuple[str, str, str], list[RunSpec]] = {}
    for run in runs:
        units.setdefault((run.algorithm, run.task, run.variant), []).append(run)
    return [tuple(unit) for unit in units.values()]


def execute_unit(unit: tuple[RunSpec, ...]) -> list[RunOutcome]:
    """Run a unit of :func:`dispatch_units`: one run (:func:`execute_run`) or seeds vmapped together."""
    if len(unit) == 1:
        return [execute_run(unit[0])]
    started = time.perf_counter()
    for run in unit:
        _start_run_files(run)
    try:
        spec = get_algorithm(unit[0].algorithm)
        results = run_files.execute_seeds(spec, [run.make_config() for run in unit], [run.run_dir for run in unit])
    except Exception as error:
        return [RunOutcome(run=run, status="failed", error=record_failure(run, error),
                           wall_time_s=time.perf_counter() - started) for run in unit]
    wall_time = (time.perf_counter() - started) / len(unit)
    return [RunOutcome(run=run, status="finished", final=dict(result.final), wall_time_s=wall_time)
            for run, result in zip(unit, results, strict=True)]


# --- Workers ---------------------------------------------------------------------------------


def worker_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that limit a worker to one BLAS/OpenMP and one XLA CPU thread.

    :param base: the environment to extend (default ``os.environ``); its own ``XLA_FLAGS`` are kept.
    """
    base = dict(os.environ) if base is None else base
    existing_flags = base.get("XLA_FLAGS", "").split()
    flag_names = {flag.split("=", 1)[0] for flag in existing_flags}
    added = [flag for flag in _XLA_THREAD_FLAGS if flag.split("=", 1)[0] not in flag_names]
    return {**_THREAD_ENVIRONMENT, "XLA_FLAGS": " ".join([*existing_flags, *added])}


def configure_worker(cores: Sequence[int] = (), pool_size: int = 1, next_slot: Any = None) -> None:
    """Set up a local worker process: one thread for BLAS and XLA, and exit when the sweep dies.

    Runs as the pool initializer, before the worker imports JAX or starts a run, so the thread
    settings take effect when XLA creates its CPU client.

    :param cores: with ``next_slot``, the cores the pool shares out: worker k of ``pool_size`` is
        pinned to ``cores[k::pool_size]``, so that XLA, which sizes its CPU thread pool by the cores
        a process may use and ignores the thread flags above, keeps to its share. Two `cpu`-preset
        dynamics trainings side by side on 2 cores made 10 % more steps pinned than not.
    :param pool_size: workers in the pool.
    :param next_slot: a shared ``multiprocessing.Value`` counting the workers started.
    """
    os.environ.update(worker_environment())
    if cores and next_slot is not None and hasattr(os, "sched_setaffinity"):
        with next_slot.get_lock():
            slot = next_slot.value
            next_slot.value += 1
        os.sched_setaffinity(0, set(cores[slot % pool_size::pool_size]))
    parent = multiprocessing.parent_process()
    if parent is not None:
        # Without this a worker outlives a killed sweep, finishes its run and then waits forever.
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True).start()


def _exit_with_parent(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(1)


def execute_run(run: RunSpec) -> RunOutcome:
    """Start or resume ``run`` in this process; on failure write ``RUN_DIR/error.json``.

    Runs in a worker. Exceptions from training are caught and recorded so the sweep goes on;
    ``KeyboardInterrupt`` and ``SystemExit`` pass through (an interrupted run is not a failed one:
    it resumes from its checkpoint next time).
    """
    started = time.perf_counter()
    _start_run_files(run)
    try:
        result = run_files.train(run.algorithm, run.preset, run.run_dir, **run.overrides)
    except Exception as error:
        message = record_failure(run, error)
        return RunOutcome(run=run, status="failed", error=message, wall_time_s=time.perf_counter() - started)
    return RunOutcome(run=run, status="finished", final=dict(result.final),
                      wall_time_s=time.perf_counter() - started)


def _start_run_files(run: RunSpec) -> None:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / ERROR_FILE).unlink(missing_ok=True)
    atomic_write_json(run.run_dir / SWEEP_RUN_FILE, {
        "sweep": run.sweep, "algorithm": run.algorithm, "preset": run.preset, "task_key": run.task_key,
        "task": run.task, "variant": run.variant, "seed": run.seed, "overrides": dict(run.overrides),
    })


def record_failure(run: RunSpec, error: BaseException, details: str | None = None) -> str:
    """Write ``RUN_DIR/error.json`` for ``error`` and return ``"ErrorType: message"``.

    :param details: the traceback text; default the traceback of ``error``.
    """
    summary = f"{type(error).__name__}: {error}"
    trace = details if details is not None else "".join(traceback.format_exception(error))
    try:
        atomic_write_json(run.run_dir / ERROR_FILE, {
            "run": run.name,
            "error_type": type(error).__name__,
            "message": str(error),
            "traceback": trace,
            "user_error": isinstance(error, HybridRLError),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
    except OSError as write_error:  # the run directory itself may be the problem
        logger.error("%s failed (%s) and its error.json could not be written: %s",
                     run.name, summary, write_error)
    return summary


def _read_final(run_dir: Path) -> dict[str, Any] | None:
    try:
        final: dict[str, Any] = json.loads((run_dir / run_files.FINAL_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return final


# --- Local backend ---------------------------------------------------------------------------


class WorkerCrashedError(HybridRLError):
    """A worker process died (killed, out of memory, a crash in native code) while running a run."""


def _run_local(runs: Sequence[RunSpec], workers: int, record: Callable[[RunOutcome], None],
               vmap_seeds: bool = False) -> None:
    queue = deque(dispatch_units(runs, vmap_seeds))
    context = multiprocessing.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        size = min(workers, len(queue))
        # The cores shared out among the workers (see configure_worker); a new pool numbers its workers afresh.
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        shared_out = 1 < size <= len(cores)
        initargs = (cores, size, context.Value("i", 0)) if shared_out else ((), 1, None)
        return ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=configure_worker,
                                   initargs=initargs)

    pool = new_pool()
    in_flight: dict[Future[list[RunOutcome]], tuple[RunSpec, ...]] = {}
    interrupted = True
    try:
        while queue or in_flight:
            # Submit no more than there are workers, so every future in flight is really running
            # and a crash can be attributed to the runs in flight.
            while queue and len(in_flight) < workers:
                unit = queue.popleft()
                in_flight[pool.submit(execute_unit, unit)] = unit
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            pool_broken = False
            for future in done:
                unit = in_flight.pop(future)
                try:
                    for outcome in future.result():
                        record(outcome)
                except BrokenProcessPool:
                    pool_broken = True
                    in_flight[future] = unit
                except Exception as error:  # e.g. an outcome that cannot be sent back
                    for run in unit:
                        record(RunOutcome(run=run, status="failed", error=record_failure(run, error)))
            if pool_broken:
                _record_crash([run for unit in in_flight.values() for run in unit], record)
                in_flight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
        interrupted = False
    finally:
        # On Ctrl-C the workers got the signal too; do not wait for them. A killed run resumes
        # from its checkpoint next time.
        pool.shutdown(wait=not interrupted, cancel_futures=True)


def _record_crash(crashed: Iterable[RunSpec], record: Callable[[RunOutcome], None]) -> None:
    crashed = list(crashed)
    suspects = ", ".join(run.name for run in crashed)
    for run in crashed:
        error = WorkerCrashedError(
            "the worker process died while this run was in flight (killed, out of memory, or a crash in "
            f"native code); runs in flight then: {suspects}. It is tried again when the sweep is restarted."
        )
        record(RunOutcome(run=run, status="failed", error=record_failure(run, error, details="")))


# --- Ray backend -----------------------------------------------------------------------------


def _run_ray(runs: Sequence[RunSpec], workers: int | None, address: str | None,
             record: Callable[[RunOutcome], None], vmap_seeds: bool = False) -> None:
    try:
        import ray
    except ImportError as error:
        raise ConfigError("the Ray backend needs Ray: pip install 'hybridrl[ray]'") from error

    started_here = False
    if not ray.is_initialized():
        # Errors reach the driver through error.json; worker logs would only interleave.
        init_arguments: dict[str, Any] = {"address": address, "log_to_driver": False}
        if address is None and "RAY_ADDRESS" not in os.environ:
            init_arguments["include_dashboard"] = False  # a new local instance: no dashboard needed
        try:
            ray.init(**init_arguments)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"the Ray cluster at {address}" if address else "a Ray instance"
            raise HybridRLError(f"could not connect to {where}: {error}") from error
        started_here = True
    elif address is not None:
        logger.warning("Ray is already initialised in this process; using it and ignoring --address %s",
                       address)
    try:
        remote_run = ray.remote(execute_unit).options(
            num_cpus=1, max_retries=0,
            runtime_env={"env_vars": worker_environment()},
        )
        queue = deque(dispatch_units(runs, vmap_seeds))
        in_flight: dict[Any, tuple[RunSpec, ...]] = {}
        limit = workers if workers is not None else len(queue)
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                unit = queue.popleft()
                in_flight[remote_run.remote(unit)] = unit
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for reference in done:
                unit = in_flight.pop(reference)
                try:
                    for outcome in ray.get(reference):
                        record(outcome)
                except ray.exceptions.RayError as error:
                    # The task itself never raises (execute_unit records errors), so this is the
                    # worker or node dying under the runs.
                    crash = WorkerCrashedError(f"the Ray task running this run died: {error}")
                    for run in unit:
                        record(RunOutcome(run=run, status="failed",
                                          error=record_failure(run, crash, details=str(error))))
    finally:
        if started_here:
            ray.shutdown()
