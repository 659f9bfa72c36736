"""Fixtures for the data tests: a private Minari root and small real datasets."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from hybridrl.data import Dataset, DatasetInfo


@pytest.fixture(autouse=True)
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own, empty MINARI_DATASETS_PATH."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def pendulum_episodes(episodes: int, max_steps: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Random-action episodes of Pendulum-v1 cut at ``max_steps`` (truncated), in Minari's layout."""
    env = gym.make("Pendulum-v1")
    env.action_space.seed(seed)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in
                                            ("observations", "actions", "rewards", "terminations", "truncations")}
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        length = max_steps - episode  # different lengths, so boundaries matter
        observations = np.empty((length + 1, 3), dtype=np.float32)
        actions = np.empty((length, 1), dtype=np.float32)
        rewards = np.empty(length, dtype=np.float64)
        observations[0] = observation
        for step in range(length):
            actions[step] = env.action_space.sample()
            observations[step + 1], rewards[step], _, _, _ = env.step(actions[step])
        truncations = np.zeros(length, dtype=bool)
        truncations[-1] = True
        for key, value in zip(columns, (observations, actions, rewards, np.zeros(length, dtype=bool), truncations),
                              strict=True):
            columns[key].append(value)
    env.close()
    return columns


@pytest.fixture
def pendulum_dataset() -> Dataset:
    """Four random Pendulum-v1 episodes of 20, 19, 18 and 17 steps."""
    columns = pendulum_episodes(4, 20, seed=3)
    return Dataset.from_episodes(**columns, info=DatasetInfo(dataset_id="pendulum-random-v1", env_id="Pendulum-v1",
                                                              reference_returns=(-1200.0, -150.0),
                                                              reference_source="test"))
