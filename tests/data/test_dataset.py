"""The Dataset: construction, sampling with keys and generators, episodes, scores."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.data import Dataset, DatasetError, DatasetInfo
from hybridrl.errors import ConfigError


def test_episode_layout(pendulum_dataset: Dataset) -> None:
    assert len(pendulum_dataset) == 20 + 19 + 18 + 17
    assert pendulum_dataset.num_episodes == 4
    assert pendulum_dataset.episode_lengths.tolist() == [20, 19, 18, 17]
    assert pendulum_dataset.observation_shape == (3,) and pendulum_dataset.action_shape == (1,)
    arrays = pendulum_dataset.to_numpy()
    for episode in pendulum_dataset.episodes():
        # Within an episode the next observation is the following observation.
        np.testing.assert_array_equal(np.asarray(episode.next_observations[:-1]), np.asarray(episode.observations[1:]))
        assert bool(episode.truncations[-1]) and not episode.terminated
    returns = pendulum_dataset.episode_returns()
    assert returns[1] == pytest.approx(arrays["rewards"][20:39].astype(np.float64).sum())
    assert pendulum_dataset.episode(-1).index == 3
    with pytest.raises(IndexError):
        pendulum_dataset.episode(4)


def test_sample_with_key_and_generator(pendulum_dataset: Dataset) -> None:
    batch = pendulum_dataset.sample(32, jax.random.key(0))
    assert batch.observations.shape == (32, 3) and batch.actions.shape == (32, 1) and batch.rewards.shape == (32,)
    again = pendulum_dataset.sample(32, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(batch.observations), np.asarray(again.observations))
    from_rng = pendulum_dataset.sample(16, np.random.default_rng(1))
    repeat = pendulum_dataset.sample(16, np.random.default_rng(1))
    np.testing.assert_array_equal(np.asarray(from_rng.next_observations), np.asarray(repeat.next_observations))
    # Every sampled row is a real transition.
    observations = pendulum_dataset.to_numpy()["observations"]
    rows = {tuple(row) for row in observations.tolist()}
    assert all(tuple(row) in rows for row in np.asarray(from_rng.observations).tolist())
    with pytest.raises(ConfigError):
        pendulum_dataset.sample(0, jax.random.key(0))


def test_normalized_score(pendulum_dataset: Dataset) -> None:
    assert pendulum_dataset.normalized_score(-150.0) == pytest.approx(100.0)
    assert pendulum_dataset.normalized_score(-1200.0) == pytest.approx(0.0)
    bare = Dataset(pendulum_dataset.transitions, pendulum_dataset.episode_starts, DatasetInfo("bare-v0"))
    with pytest.raises(DatasetError, match="no reference returns"):
        bare.normalized_score(1.0)


@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=6), batch_size=st.integers(1, 9))
def test_from_episodes_preserves_every_transition(lengths: list[int], batch_size: int) -> None:
    rng = np.random.default_rng(sum(lengths))
    observations = [rng.normal(size=(length + 1, 2)).astype(np.float32) for length in lengths]
    actions = [rng.uniform(-1, 1, size=(length, 1)).astype(np.float32) for length in lengths]
    rewards = [rng.normal(size=length) for length in lengths]
    terminations = [np.eye(1, length, length - 1, dtype=bool)[0] for length in lengths]
    truncations = [np.zeros(length, dtype=bool) for length in lengths]
    dataset = Dataset.from_episodes(observations, actions, rewards, terminations, truncations, DatasetInfo("h-v0"))
    assert dataset.episode_lengths.tolist() == lengths
    for index, episode in enumerate(dataset.episodes()):
        np.testing.assert_array_equal(np.asarray(episode.observations), observations[index][:-1])
        np.testing.assert_array_equal(np.asarray(episode.next_observations), observations[index][1:])
        assert episode.episode_return == pytest.approx(float(np.float32(rewards[index]).astype(np.float64).sum()))
    assert dataset.sample(batch_size, jax.random.key(batch_size)).rewards.shape == (batch_size,)
