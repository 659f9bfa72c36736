"""Local sweeps with real PPO smoke runs: skipping finished runs, failure isolation, and a restart
after the sweep process was killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest
import yaml

from hybridrl import runs as run_files
from hybridrl.algorithms import get_algorithm
from hybridrl.experiments import sweep as sweep_module
from hybridrl.experiments.spec import expand_sweep, load_sweep_spec
from hybridrl.experiments.sweep import (
    RunOutcome,
    configure_worker,
    plan_sweep,
    run_sweep,
    worker_environment,
)

# Starting a process (Ray's servers, the sweep CLI) from a process that imported JAX trips JAX's
# warning about os.fork(); subprocess execs right after the fork, so nothing can deadlock.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def smoke_spec(output: Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "smoke", "output": str(output), "algorithm": "ppo", "env": "CartPole-v1",
                            "preset": "smoke", "seeds": 2, "overrides": {"total_steps": 2048}}
    spec.update(changes)
    return spec


def test_workers_use_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    merged = worker_environment({"XLA_FLAGS": "--xla_dump_to=/tmp/dump --xla_cpu_multi_thread_eigen=true"})
    # The user's own flags stay, and their choice of a flag we would set wins.
    assert merged["XLA_FLAGS"] == ("--xla_dump_to=/tmp/dump --xla_cpu_multi_thread_eigen=true "
                                   "intra_op_parallelism_threads=1")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # what the worker would inherit without configure_worker
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=configure_worker) as pool:
        # os.getenv, not a test function: the spawned worker cannot import test modules.
        seen = {name: pool.submit(os.getenv, name).result(timeout=60) for name in ("OMP_NUM_THREADS", "XLA_FLAGS")}
    assert seen == {"OMP_NUM_THREADS": "1",
                    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and at least 2 cores")
def test_workers_share_out_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # Configured in this process (a spawned worker could not report back which worker it was):
    # the pool's workers take the cores in turn, k-th worker cores[k::pool_size].
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    cores = sorted(os.sched_getaffinity(0))
    next_slot = get_context("spawn").Value("i", 0)
    try:
        configure_worker(cores, 2, next_slot)
        first = os.sched_getaffinity(0)
        configure_worker(cores, 2, next_slot)
        second = os.sched_getaffinity(0)
    finally:
        os.sched_setaffinity(0, cores)
    assert first == set(cores[0::2]) and second == set(cores[1::2])
    assert next_slot.value == 2


@pytest.mark.slow
def test_failed_run_is_recorded_and_others_go_on_then_finished_runs_are_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_sweep_spec(smoke_spec(tmp_path / "sweep", seeds=3))
    runs = expand_sweep(spec)
    # Seed 2 starts from a corrupt checkpoint, as a disk error would leave it.
    broken = runs[2]
    broken.run_dir.mkdir(parents=True)
    run_files.write_run_config(broken.run_dir, get_algorithm("ppo"), broken.make_config())
    (broken.run_dir / "checkpoint.ckpt").write_bytes(b"not a checkpoint")

    seen: list[RunOutcome] = []
    summary = run_sweep(spec, workers=2, on_outcome=seen.append)

    assert sorted(outcome.run.seed for outcome in summary.finished) == [0, 1]
    assert [outcome.run.seed for outcome in summary.failed] == [2]
    assert seen == summary.outcomes
    error = json.loads((broken.run_dir / "error.json").read_text())
    assert error["error_type"] == "CheckpointError"
    assert "not a hybridrl checkpoint" in error["message"]
    assert "Traceback" in error["traceback"] and error["user_error"] is True
    assert summary.failed[0].error is not None and summary.failed[0].error.startswith("CheckpointError")
    for run in runs[:2]:
        final = json.loads((run.run_dir / "final.json").read_text())
        assert (final["env"], final["seed"], final["step"]) == ("CartPole-v1", run.seed, 2048)
        assert json.loads((run.run_dir / "sweep_run.json").read_text())["variant"] == "default"
    assert yaml.safe_load((tmp_path / "sweep" / "sweep.yaml").read_text())["seeds"] == [0, 1, 2]

    # Started again, the failed run is tried again; with the spec cut to the finished seeds nothing
    # is left to run and no worker starts.
    assert [planned.status for planned in plan_sweep(spec)] == ["finished", "finished", "failed"]
    monkeypatch.setattr(sweep_module, "_run_local", _no_workers_expected)
    finished_at = {run.seed: (run.run_dir / "final.json").stat().st_mtime_ns for run in runs[:2]}
    again = run_sweep(load_sweep_spec(smoke_spec(tmp_path / "sweep", seeds=[0, 1])), workers=2)
    assert sorted(outcome.run.seed for outcome in again.skipped) == [0, 1]
    assert again.outcomes == again.skipped
    assert {run.seed: (run.run_dir / "final.json").stat().st_mtime_ns for run in runs[:2]} == finished_at


def _no_workers_expected(*args: Any) -> None:
    raise AssertionError("a sweep whose runs have all finished started workers")


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_restart_after_the_sweep_process_is_killed(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    output = tmp_path / "sweep"
    spec_file.write_text(yaml.safe_dump(smoke_spec(output, overrides={"total_steps": 16384})))
    spec = load_sweep_spec(spec_file)
    first, second = (run.run_dir for run in expand_sweep(spec))

    sweep = subprocess.Popen([sys.executable, "-m", "hybridrl", "sweep", str(spec_file), "--workers", "1"],
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: (first / "final.json").exists() and (second / "checkpoint.ckpt").exists(), 90,
                  "the first run to finish and the second to checkpoint")
        # Kill only the sweep process, as an out-of-memory killer or a lost SSH session might:
        # its worker must notice and exit rather than run on unsupervised.
        sweep.kill()
        sweep.wait(timeout=10)
        _wait_for(lambda: not _group_alive(sweep.pid), 20, "the orphaned worker to exit")
    finally:
        if _group_alive(sweep.pid):
            os.killpg(sweep.pid, signal.SIGKILL)
        assert sweep.stdout is not None
        sweep.stdout.close()

    assert [planned.status for planned in plan_sweep(spec)] == ["finished", "resumable"]
    first_finished_at = (first / "final.json").stat().st_mtime_ns

    summary = run_sweep(spec, workers=1)

    assert [outcome.run.seed for outcome in summary.skipped] == [0]
    assert [outcome.run.seed for outcome in summary.finished] == [1]
    assert (first / "final.json").stat().st_mtime_ns == first_finished_at
    assert json.loads((second / "final.json").read_text())["step"] == 16384
    # The resumed run's log reads as one run: steps only go up.
    steps = [json.loads(line)["step"] for line in (second / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 16384
