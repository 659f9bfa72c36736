"""Fixtures for the imitation learners: a smoke SAC expert on Pendulum-v1 and three of its
demonstrations in a private Minari root."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridrl import runs
from hybridrl.data.demos import generate_demos

#: Demonstration episodes in the private root.
NUM_DEMOS = 3


@pytest.fixture(scope="session")
def expert_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished smoke SAC run on Pendulum-v1 (its quality does not matter to the tests)."""
    run_dir = tmp_path_factory.mktemp("expert") / "sac"
    runs.train("sac", preset="smoke", env="Pendulum-v1", run_dir=run_dir)
    return run_dir


@pytest.fixture(scope="session")
def demos_root(tmp_path_factory: pytest.TempPathFactory, expert_run: Path) -> Path:
    """A Minari root holding :data:`NUM_DEMOS` demonstrations of the expert as ``hybridrl/demos/pendulum-v1-v0``,
    the dataset an imitation run on Pendulum-v1 looks for by default."""
    root = tmp_path_factory.mktemp("minari")
    generate_demos("Pendulum-v1", episodes=NUM_DEMOS, seed=0, root=root, run_dir=expert_run)
    return root


@pytest.fixture
def minari_root(demos_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MINARI_DATASETS_PATH at the root with the demonstrations."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(demos_root))
    return demos_root
