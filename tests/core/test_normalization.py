"""Tests of the running normalisers (hybridrl.core.normalization)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.core.normalization import ReturnNormalizer, RunningMeanStd

_SHAPES = st.sampled_from([(), (1,), (3,), (2, 3)])


def _pooled_with_prior(samples: np.ndarray, prior_count: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``samples`` pooled with ``prior_count`` pseudo-samples of mean 0 and
    variance 1, the initial state of :class:`RunningMeanStd`."""
    count = samples.shape[0]
    if count == 0:
        return np.zeros(samples.shape[1:]), np.ones(samples.shape[1:])
    data_mean, data_var = samples.mean(axis=0), samples.var(axis=0)
    total = prior_count + count
    mean = data_mean * count / total
    m2 = prior_count * 1.0 + data_var * count + data_mean**2 * prior_count * count / total
    return mean, m2 / total


@st.composite
def _batches(draw: st.DrawFn) -> tuple[tuple[int, ...], list[np.ndarray]]:
    shape = draw(_SHAPES)
    sizes = draw(st.lists(st.integers(0, 20), min_size=1, max_size=6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    offset = draw(st.floats(-100.0, 100.0))
    return shape, [offset + scale * rng.normal(size=(size, *shape)) for size in sizes]


@given(_batches())
@settings(deadline=None)
def test_running_stats_equal_numpy_over_the_concatenated_batches(case: tuple[tuple[int, ...],
                                                                            list[np.ndarray]]) -> None:
    shape, batches = case
    stats = RunningMeanStd(shape, epsilon=0.0)
    for batch in batches:
        stats.update(batch)

    everything = np.concatenate(batches)
    if everything.shape[0] == 0:  # nothing seen: the initial statistics stay
        np.testing.assert_array_equal(stats.mean, np.zeros(shape))
        np.testing.assert_array_equal(stats.var, np.ones(shape))
        return
    assert stats.mean.shape == shape and stats.var.shape == shape
    assert stats.count == everything.shape[0]
    scale = np.abs(everything).max() + 1e-300
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(stats.var, everything.var(axis=0), rtol=1e-7, atol=1e-12 * scale**2)


@given(_batches())
@settings(deadline=None)
def test_default_pseudo_count_acts_as_a_unit_variance_prior(case: tuple[tuple[int, ...],
                                                                         list[np.ndarray]]) -> None:
    shape, batches = case
    stats = RunningMeanStd(shape)
    for batch in batches:
        stats.update(batch)

    expected_mean, expected_var = _pooled_with_prior(np.concatenate(batches), 1e-4)
    scale = np.abs(np.concatenate(batches)).max(initial=1.0)
    np.testing.assert_allclose(stats.mean, expected_mean, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(stats.var, expected_var, rtol=1e-7, atol=1e-12 * scale**2)


def test_update_accepts_a_single_unbatched_sample() -> None:
    stats = RunningMeanStd((3,), epsilon=0.0)
    stats.update(np.array([1.0, 2.0, 3.0]))
    stats.update(np.array([3.0, 2.0, 1.0]))
    np.testing.assert_allclose(stats.mean, [2.0, 2.0, 2.0])
    np.testing.assert_allclose(stats.var, [1.0, 0.0, 1.0])
    assert stats.count == 2


def test_normalize_standardises_clips_and_returns_float32() -> None:
    stats = RunningMeanStd((2,), epsilon=0.0)
    stats.update(np.array([[0.0, 10.0], [2.0, 30.0]]))  # mean (1, 20), var (1, 100)

    normalized = stats.normalize(np.array([[3.0, 20.0], [1.0, 1000.0]]), epsilon=0.0)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, [[2.0, 0.0], [0.0, 98.0]], rtol=1e-6)

    clipped = stats.normalize(np.array([[3.0, 20.0], [-9.0, 1000.0]]), clip=5.0, epsilon=0.0)
    np.testing.assert_allclose(clipped, [[2.0, 0.0], [-5.0, 5.0]], rtol=1e-6)


@given(_batches(), st.integers(0, 6))
@settings(deadline=None)
def test_state_dict_round_trip_continues_identically(case: tuple[tuple[int, ...], list[np.ndarray]],
                                                     split: int) -> None:
    shape, batches = case
    stats = RunningMeanStd(shape)
    for batch in batches[:split]:
        stats.update(batch)

    restored = RunningMeanStd(shape)
    restored.load_state_dict(stats.state_dict())
    for batch in batches[split:]:
        stats.update(batch)
        restored.update(batch)

    np.testing.assert_array_equal(restored.mean, stats.mean)
    np.testing.assert_array_equal(restored.var, stats.var)
    assert restored.count == stats.count


def test_state_dict_is_a_copy() -> None:
    stats = RunningMeanStd((2,))
    stats.update(np.ones((4, 2)))
    state = stats.state_dict()
    stats.update(np.full((4, 2), 5.0))
    assert not np.array_equal(state["mean"], stats.mean)
    state["mean"][:] = 123.0
    assert not np.any(stats.mean == 123.0)


def test_load_state_dict_rejects_another_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd((3,)).load_state_dict(RunningMeanStd((4,)).state_dict())


def _expected_scaled_rewards(rewards: np.ndarray, episode_ended: np.ndarray, gamma: float,
                             clip: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The reward scaling computed directly: every discounted return seen so far, pooled with the
    normaliser's prior, gives the variance each step's rewards are divided by."""
    returns = np.zeros(rewards.shape[1])
    seen: list[float] = []
    scaled = np.zeros_like(rewards, dtype=np.float64)
    for t in range(rewards.shape[0]):
        returns = gamma * returns + rewards[t]
        seen.extend(returns)
        _, variance = _pooled_with_prior(np.array(seen), 1e-4)
        scaled[t] = np.clip(rewards[t] / np.sqrt(variance + epsilon), -clip, clip)
        returns = np.where(episode_ended[t], 0.0, returns)
    return scaled, returns


def test_return_normalizer_resets_the_discounted_return_after_an_episode_ends() -> None:
    normalizer = ReturnNormalizer(num_envs=2, gamma=0.5)
    normalizer(np.array([1.0, 1.0]), np.array([False, True]))
    # env 0 keeps its return 1.0; env 1's episode ended, so its return restarts from 0.
    np.testing.assert_array_equal(normalizer.discounted_returns, [1.0, 0.0])
    normalizer(np.array([2.0, 2.0]), np.array([False, False]))
    # env 0: 0.5 * 1.0 + 2.0; env 1: 0.5 * 0.0 + 2.0
    np.testing.assert_array_equal(normalizer.discounted_returns, [2.5, 2.0])


@given(st.integers(1, 30), st.integers(1, 4), st.floats(0.0, 0.999), st.integers(0, 2**32 - 1))
@settings(deadline=None)
def test_return_normalizer_matches_a_direct_computation(steps: int, num_envs: int, gamma: float,
                                                        seed: int) -> None:
    rng = np.random.default_rng(seed)
    rewards = rng.normal(1.0, 2.0, size=(steps, num_envs))
    episode_ended = rng.random((steps, num_envs)) < 0.2
    normalizer = ReturnNormalizer(num_envs, gamma, clip=10.0)

    scaled = np.stack([normalizer(rewards[t], episode_ended[t]) for t in range(steps)])

    expected_scaled, expected_returns = _expected_scaled_rewards(rewards, episode_ended, gamma, 10.0, 1e-8)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, expected_scaled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalizer.discounted_returns, expected_returns, rtol=1e-12)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_return_normalizer_keeps_the_sign_and_clips(sign: float) -> None:
    normalizer = ReturnNormalizer(num_envs=2, gamma=0.99, clip=4.0)
    # Returns seen: 5 and 3, so the std is about 1: 5 / 1 hits the clip at 4, 3 / 1 = 3.
    scaled = normalizer(sign * np.array([5.0, 3.0]), np.array([False, False]))
    np.testing.assert_allclose(scaled, sign * np.array([4.0, 3.0]), rtol=1e-3)
    assert sign * scaled[0] == 4.0


def test_return_normalizer_state_dict_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(0)
    normalizer = ReturnNormalizer(num_envs=3, gamma=0.9)
    for _ in range(5):
        normalizer(rng.normal(size=3), rng.random(3) < 0.3)
    restored = ReturnNormalizer(num_envs=3, gamma=0.9)
    restored.load_state_dict(normalizer.state_dict())

    for _ in range(5):
        rewards, ended = rng.normal(size=3), rng.random(3) < 0.3
        np.testing.assert_array_equal(restored(rewards, ended), normalizer(rewards, ended))
    np.testing.assert_array_equal(restored.discounted_returns, normalizer.discounted_returns)


@given(_batches())
@settings(deadline=None)
def test_one_sample_updates_equal_the_general_merge_bit_for_bit(case: tuple[tuple[int, ...],
                                                                            list[np.ndarray]]) -> None:
    # The one-sample fast path must give exactly what the batch merge gives (runs resumed across versions and
    # one-env vs vector-env code paths depend on it), so it is compared with the merge written out here.
    shape, batches = case
    stats = RunningMeanStd(shape)
    mean, var, count = np.zeros(shape), np.ones(shape), 1e-4
    for sample in np.concatenate(batches):
        stats.update(sample[None])
        batch = sample[None].astype(np.float64)
        batch_mean = np.add.reduce(batch, axis=0) / 1
        centered = batch - batch_mean
        batch_var = np.add.reduce(centered * centered, axis=0) / 1
        delta = batch_mean - mean
        total = count + 1
        mean = mean + delta * 1 / total
        var = (var * count + batch_var * 1 + delta**2 * count * 1 / total) / total
        count = total
        np.testing.assert_array_equal(stats.mean, mean)
        np.testing.assert_array_equal(stats.var, var)
    assert stats.count == count


def test_cached_std_follows_every_update_and_restore() -> None:
    stats = RunningMeanStd((2,))
    stats.update(np.array([[1.0, 4.0], [3.0, 0.0]]))
    first = stats.normalize(np.array([2.0, 2.0]))
    stats.update(np.array([10.0, -10.0]))
    np.testing.assert_array_equal(stats.std(), np.sqrt(stats.var + 1e-8))
    assert not np.array_equal(stats.normalize(np.array([2.0, 2.0])), first)
    restored = RunningMeanStd((2,))
    restored.std()
    restored.load_state_dict(stats.state_dict())
    np.testing.assert_array_equal(restored.std(), stats.std())
