"""``hybridrl sweep``, ``results`` and ``report`` through the ``hybridrl`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from hybridrl.cli import main
from hybridrl.errors import ConfigError
from hybridrl.experiments.spec import load_sweep_spec
from hybridrl.experiments.sweep import run_sweep


def write_spec(tmp_path: Path, **changes: object) -> Path:
    spec: dict[str, object] = {"name": "cli", "output": str(tmp_path / "sweep"), "algorithm": ["ppo"],
                               "env": ["CartPole-v1", "Pendulum-v1"], "preset": "smoke", "seeds": 2,
                               "variants": {"default": {}, "no-norm": {"normalize_observations": False}}}
    spec.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_dry_run_lists_the_runs_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = write_spec(tmp_path)
    finished = tmp_path / "sweep" / "ppo" / "Pendulum-v1" / "no-norm" / "seed1"
    finished.mkdir(parents=True)
    (finished / "final.json").write_text("{}")

    assert main(["sweep", str(spec_file), "--dry-run"]) == 0

    output = capsys.readouterr().out
    assert "sweep cli: 8 runs" in output
    assert "ppo/CartPole-v1/default/seed0  run" in output
    assert "ppo/Pendulum-v1/no-norm/seed1  skip (finished)" in output
    assert "7 of 8 runs would run (dry run: nothing was started)" in output
    assert sorted(path.name for path in (tmp_path / "sweep").iterdir()) == ["ppo"]  # no sweep.yaml


def test_user_errors_exit_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(write_spec(tmp_path, algorithm=["ppo", "sacc"])), "--dry-run"]) == 2
    assert "unknown algorithm 'sacc'" in capsys.readouterr().err
    assert main(["sweep", str(write_spec(tmp_path)), "--address", "ray://head:10001"]) == 2
    assert "--address only applies to the Ray backend" in capsys.readouterr().err
    assert main(["results", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no run directories" in capsys.readouterr().err


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    spec = load_sweep_spec(yaml.safe_load(write_spec(tmp_path).read_text()))
    with pytest.raises(ConfigError, match=r"pip install 'hybridrl\[ray\]'"):
        run_sweep(spec, backend="ray")
