"""Fixtures for the offline learners: one small real Hopper dataset in a private Minari root."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridrl.data import write_minari
from hybridrl.data.generation import make_dataset


@pytest.fixture(scope="session")
def offline_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Minari root holding ``hybridrl/hopper-medium-v5`` and ``hybridrl/walker2d-random-v5`` at smoke scale."""
    root = tmp_path_factory.mktemp("minari")
    work = tmp_path_factory.mktemp("behaviour")
    for name in ("hopper-medium-v5", "walker2d-random-v5"):
        write_minari(make_dataset(name, preset="smoke", seed=0, work_dir=work), f"hybridrl/{name}", root=root)
    return root


@pytest.fixture
def minari_root(offline_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MINARI_DATASETS_PATH at the shared offline root."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(offline_root))
    return offline_root
