"""Tests of the device replay buffer and the boosted mixture's block weights (hybridrl.core.replay):
ring writes against a plain list of rows, uniform sampling of the filled part, the jitted add
against the pure one, the mixture weights against their formula, and block sampling frequencies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.core.replay import (
    ReplayBuffer,
    add_transitions,
    host_transitions,
    mixture_weights,
    replay_add,
    replay_buffer,
    replay_sample,
    sample_blocks,
)
from hybridrl.data.dataset import TransitionBatch
from hybridrl.testing import assert_trees_equal

OBSERVATION_DIM, ACTION_DIM = 3, 2


def numbered_rows(first: int, count: int) -> TransitionBatch:
    """``count`` transitions whose every field encodes the row number ``first + i``, so any row can
    be traced back to the add that wrote it."""
    ids = np.arange(first, first + count, dtype=np.float32)
    return host_transitions(
        observations=np.repeat(ids[:, None], OBSERVATION_DIM, axis=1),
        actions=np.repeat(-ids[:, None], ACTION_DIM, axis=1),
        rewards=ids + 0.5,
        next_observations=np.repeat(ids[:, None] + 0.25, OBSERVATION_DIM, axis=1),
        terminations=(ids % 2 == 0),
        truncations=(ids % 3 == 0))


def row_ids(buffer: ReplayBuffer) -> np.ndarray:
    """The row numbers held in ``buffer``'s filled part, in storage order."""
    return np.asarray(buffer.transitions.rewards)[: int(buffer.size)] - 0.5


def assert_rows_consistent(transitions: TransitionBatch) -> None:
    """Every field of every row comes from the same numbered transition."""
    ids = np.asarray(transitions.rewards) - 0.5
    np.testing.assert_array_equal(np.asarray(transitions.observations), np.repeat(ids[:, None], OBSERVATION_DIM, 1))
    np.testing.assert_array_equal(np.asarray(transitions.actions), np.repeat(-ids[:, None], ACTION_DIM, 1))
    np.testing.assert_array_equal(np.asarray(transitions.next_observations),
                                  np.repeat(ids[:, None] + 0.25, OBSERVATION_DIM, 1))
    np.testing.assert_array_equal(np.asarray(transitions.terminations), (ids % 2 == 0).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(transitions.truncations), (ids % 3 == 0).astype(np.float32))


# --------------------------------------------------------------------------------------------
# The ring buffer
# --------------------------------------------------------------------------------------------


def test_empty_buffer_and_bad_capacity() -> None:
    buffer = replay_buffer(8, OBSERVATION_DIM, ACTION_DIM)
    assert buffer.capacity == 8 and int(buffer.size) == 0 and int(buffer.position) == 0
    assert buffer.transitions.observations.shape == (8, OBSERVATION_DIM)
    assert buffer.transitions.actions.shape == (8, ACTION_DIM)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(buffer.transitions))
    with pytest.raises(ValueError, match="capacity must be positive"):
        replay_buffer(0, OBSERVATION_DIM, ACTION_DIM)


def test_samples_come_only_from_added_rows() -> None:
    buffer = replay_add(replay_buffer(100, OBSERVATION_DIM, ACTION_DIM), numbered_rows(0, 7))
    batch = replay_sample(buffer, jax.random.PRNGKey(0), 2_000)
    assert_rows_consistent(batch)
    drawn = np.asarray(batch.rewards) - 0.5
    # The 93 empty (all-zero) rows are never drawn; every added row is.
    assert set(drawn.tolist()) == set(range(7))


def test_ring_keeps_the_newest_rows_and_wraps_the_position() -> None:
    buffer = replay_buffer(5, OBSERVATION_DIM, ACTION_DIM)
    buffer = replay_add(buffer, numbered_rows(0, 3))
    assert (int(buffer.size), int(buffer.position)) == (3, 3)
    buffer = replay_add(buffer, numbered_rows(3, 4))  # rows 3..6: 5 and 6 overwrite 0 and 1
    assert (int(buffer.size), int(buffer.position)) == (5, 2)
    np.testing.assert_array_equal(row_ids(buffer), [5, 6, 2, 3, 4])
    buffer = replay_add(buffer, numbered_rows(7, 12))  # more than the capacity in one add
    assert (int(buffer.size), int(buffer.position)) == (5, (2 + 12) % 5)
    assert sorted(row_ids(buffer).tolist()) == [14, 15, 16, 17, 18]
    assert_rows_consistent(buffer.transitions)
    batch = replay_sample(buffer, jax.random.PRNGKey(1), 500)
    assert set((np.asarray(batch.rewards) - 0.5).tolist()) == {14, 15, 16, 17, 18}


# Few distinct shapes, so the eager ops compile once each and the examples run fast.
@given(capacity=st.sampled_from([1, 3, 5]), sizes=st.lists(st.sampled_from([1, 2, 4, 7]), min_size=1, max_size=5))
@settings(max_examples=20, deadline=None)
def test_ring_equals_the_last_capacity_rows_of_a_list(capacity: int, sizes: list[int]) -> None:
    buffer = replay_buffer(capacity, OBSERVATION_DIM, ACTION_DIM)
    history: list[int] = []
    for size in sizes:
        buffer = replay_add(buffer, numbered_rows(len(history), size))
        history.extend(range(len(history), len(history) + size))
    total = len(history)
    assert int(buffer.size) == min(total, capacity)
    assert int(buffer.position) == total % capacity
    # Row r holds the newest transition written at r: transition t goes to row t % capacity.
    expected = [max(t for t in history if t % capacity == row) for row in range(int(buffer.size))]
    np.testing.assert_array_equal(row_ids(buffer), expected)
    assert_rows_consistent(jax.tree_util.tree_map(lambda leaf: leaf[: int(buffer.size)], buffer.transitions))


def test_jitted_donating_add_equals_the_pure_add() -> None:
    pure = replay_buffer(6, OBSERVATION_DIM, ACTION_DIM)
    jitted = replay_buffer(6, OBSERVATION_DIM, ACTION_DIM)
    for first, count in ((0, 4), (4, 4), (8, 1)):
        pure = replay_add(pure, numbered_rows(first, count))
        jitted = add_transitions(jitted, numbered_rows(first, count))
        assert_trees_equal(jax.device_get(jitted), jax.device_get(pure))
    assert (int(jitted.size), int(jitted.position)) == (6, 3)


# --------------------------------------------------------------------------------------------
# Mixture weights and block sampling
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_blocks", [1, 2, 5, 100, 1000])
@pytest.mark.parametrize("alpha", [0.05, 0.5, 0.9])
def test_mixture_weights_sum_to_one(num_blocks: int, alpha: float) -> None:
    weights = mixture_weights(num_blocks, alpha)
    assert weights.shape == (num_blocks,) and weights.dtype == np.float64
    # The oldest blocks' mass may underflow to 0 (0.1^999 at alpha 0.9), never below.
    assert np.all(weights >= 0) and weights[-1] == pytest.approx(alpha if num_blocks > 1 else 1.0)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)


def test_mixture_weights_match_the_formula() -> None:
    # k = 3, alpha = 0.05: block 1 (1 - a)^2, block 2 a (1 - a), block 3 a.
    np.testing.assert_allclose(mixture_weights(3, 0.05), [0.9025, 0.0475, 0.05], rtol=1e-12)
    np.testing.assert_array_equal(mixture_weights(1, 0.3), [1.0])
    # The recursion d_k = (1 - a) d_{k-1} + a d^{pi_k} behind them.
    alpha, previous = 0.2, mixture_weights(1, 0.2)
    for num_blocks in range(2, 8):
        recursed = np.append((1.0 - alpha) * previous, alpha)
        np.testing.assert_allclose(mixture_weights(num_blocks, alpha), recursed, rtol=1e-12)
        previous = recursed


@pytest.mark.parametrize(("num_blocks", "alpha", "message"), [
    (0, 0.05, "at least one block"), (-1, 0.05, "at least one block"),
    (3, 0.0, "alpha must lie in"), (3, 1.0, "alpha must lie in"), (3, -0.1, "alpha must lie in")])
def test_mixture_weights_reject_bad_arguments(num_blocks: int, alpha: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mixture_weights(num_blocks, alpha)


def test_sample_blocks_follows_the_weights_and_is_uniform_inside_blocks() -> None:
    weights = np.array([0.5, 0.3, 0.2])
    block_size, draws = 10, 20_000
    log_weights = jnp.asarray(np.append(np.log(weights), -np.inf), jnp.float32)  # a 4th, absent block
    rows = np.asarray(jax.jit(sample_blocks, static_argnums=(2, 3))(jax.random.PRNGKey(0), log_weights,
                                                                    block_size, draws))
    assert rows.shape == (draws,)
    assert rows.min() >= 0 and rows.max() < 3 * block_size  # never the -inf block
    block_frequencies = np.bincount(rows // block_size, minlength=4) / draws
    np.testing.assert_allclose(block_frequencies[:3], weights, atol=0.01)
    assert block_frequencies[3] == 0.0
    for block, weight in enumerate(weights):
        counts = np.bincount(rows[rows // block_size == block] % block_size, minlength=block_size)
        expected = weight * draws / block_size
        # Binomial standard deviation is at most sqrt(expected) (~32 for the largest block): 5 sigma.
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), (block, counts)


def test_host_transitions_copy_the_staging_arrays() -> None:
    # JAX may read numpy arguments after an asynchronous call returns; a trainer that refills its
    # staging arrays must not change rows still on their way into the buffer.
    staged = {name: np.array(getattr(numbered_rows(0, 4), name)) for name in
              ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")}
    batch = host_transitions(**staged)
    for name, array in staged.items():
        assert not np.shares_memory(getattr(batch, name), array), name
        array[:] = -1.0
    assert_rows_consistent(batch)
