"""The Ray backend end to end, against a real local Ray instance with 2 CPUs that the test starts
and stops: real PPO smoke runs, a failing run, skipping on restart, and ``--address``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hybridrl import runs as run_files
from hybridrl.algorithms import get_algorithm
from hybridrl.experiments.spec import expand_sweep, load_sweep_spec
from hybridrl.experiments.sweep import run_sweep

ray = pytest.importorskip("ray", reason="the Ray backend needs the optional extra: pip install 'hybridrl[ray]'")

# Starting a process (Ray's servers, the sweep CLI) from a process that imported JAX trips JAX's
# warning about os.fork(); subprocess execs right after the fork, so nothing can deadlock.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray instance with 2 CPUs, shut down after the module's tests."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def smoke_spec(output: Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "ray-smoke", "output": str(output), "algorithm": "ppo",
                            "env": "CartPole-v1", "preset": "smoke", "seeds": 3,
                            "overrides": {"total_steps": 2048}}
    spec.update(changes)
    return spec


@pytest.mark.slow
def test_ray_backend_runs_skips_and_isolates_failures(ray_address: str, tmp_path: Path) -> None:
    spec = load_sweep_spec(smoke_spec(tmp_path / "sweep"))
    runs = expand_sweep(spec)
    broken = runs[2]
    broken.run_dir.mkdir(parents=True)
    run_files.write_run_config(broken.run_dir, get_algorithm("ppo"), broken.make_config())
    (broken.run_dir / "checkpoint.ckpt").write_bytes(b"not a checkpoint")

    summary = run_sweep(spec, backend="ray")

    assert sorted(outcome.run.seed for outcome in summary.finished) == [0, 1]
    assert [outcome.run.seed for outcome in summary.failed] == [2]
    assert json.loads((broken.run_dir / "error.json").read_text())["error_type"] == "CheckpointError"
    for run in runs[:2]:
        assert json.loads((run.run_dir / "final.json").read_text())["step"] == 2048
    assert ray.is_initialized()  # the backend leaves a Ray instance it did not start running

    # Restart through the CLI in another process that connects with --address: the finished runs
    # are skipped and the failed one is tried again (and fails again: its checkpoint is still bad).
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(smoke_spec(tmp_path / "sweep")))
    restart = subprocess.run(
        [sys.executable, "-m", "hybridrl", "sweep", str(spec_file), "--backend", "ray", "--address", ray_address],
        capture_output=True, text=True, timeout=120)
    assert restart.returncode == 1, restart.stdout + restart.stderr
    assert "0 finished, 2 skipped (finished before), 1 failed" in restart.stdout
    assert "ppo/CartPole-v1/default/seed2: FAILED: CheckpointError" in restart.stdout
