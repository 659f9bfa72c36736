"""Tests of GAE and the rollout buffer (hybridrl.core.rollout)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.core.rollout import RolloutBuffer, compute_gae


def test_gae_matches_hand_computation_with_termination_and_truncation() -> None:
    # Two envs, four steps, gamma = 0.9, lambda = 0.8 (gamma * lambda = 0.72).
    # env 0: terminates at t=1 (a new episode starts at t=2), the rollout cuts it at t=3.
    # env 1: truncated by a time limit at t=2 (the value of its final observation is 4.0), a new
    #        episode starts at t=3.
    gamma, gae_lambda = 0.9, 0.8
    rewards = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 2.0], [1.0, 3.0]], dtype=np.float32)
    values = np.array([[0.5, 1.0], [1.0, 0.5], [0.0, 1.0], [0.5, 2.0]], dtype=np.float32)
    # V(s'_t): the next step's value inside an episode; 7.0 after the terminal step must be ignored;
    # 4.0 is V(final observation) of the truncated step; the last row is the rollout's bootstrap.
    next_values = np.array([[1.0, 0.5], [7.0, 1.0], [0.5, 4.0], [2.0, 1.0]], dtype=np.float32)
    terminated = np.array([[False, False], [True, False], [False, False], [False, False]])
    episode_ended = np.array([[False, False], [True, False], [False, True], [False, False]])

    # deltas = r + gamma * (1 - terminated) * V(s') - V(s)
    # env 0: t0 = 1 + 0.9*1.0 - 0.5 = 1.4     t1 = 2 + 0 - 1.0 = 1.0 (terminal: no bootstrap)
    #        t2 = 0 + 0.9*0.5 - 0.0 = 0.45    t3 = 1 + 0.9*2.0 - 0.5 = 2.3
    # env 1: t0 = 0 + 0.9*0.5 - 1.0 = -0.55   t1 = 1 + 0.9*1.0 - 0.5 = 1.4
    #        t2 = 2 + 0.9*4.0 - 1.0 = 4.6 (truncated: bootstraps from V(final obs))
    #        t3 = 3 + 0.9*1.0 - 2.0 = 1.9
    # A_t = delta_t + 0.72 * (1 - ended_t) * A_{t+1}, backwards:
    # env 0: A3 = 2.3; A2 = 0.45 + 0.72*2.3 = 2.106; A1 = 1.0 (ended); A0 = 1.4 + 0.72*1.0 = 2.12
    # env 1: A3 = 1.9; A2 = 4.6 (ended); A1 = 1.4 + 0.72*4.6 = 4.712; A0 = -0.55 + 0.72*4.712 = 2.84264
    expected_advantages = np.array([[2.12, 2.84264], [1.0, 4.712], [2.106, 4.6], [2.3, 1.9]])
    # returns = A + V
    expected_returns = np.array([[2.62, 3.84264], [2.0, 5.212], [2.106, 5.6], [2.8, 3.9]])

    advantages, returns = compute_gae(rewards, values, next_values, terminated, episode_ended,
                                      gamma, gae_lambda)

    assert advantages.dtype == np.float32 and returns.dtype == np.float32
    np.testing.assert_allclose(advantages, expected_advantages, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(returns, expected_returns, rtol=1e-6, atol=1e-6)


@st.composite
def _rollouts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    steps = draw(st.integers(1, 12))
    num_envs = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    episode_ended = rng.random((steps, num_envs)) < 0.3
    terminated = episode_ended & (rng.random((steps, num_envs)) < 0.5)
    return {
        "rewards": rng.normal(size=(steps, num_envs)).astype(np.float32),
        "values": rng.normal(size=(steps, num_envs)).astype(np.float32),
        "next_values": rng.normal(size=(steps, num_envs)).astype(np.float32),
        "terminated": terminated,
        "episode_ended": episode_ended,
    }


@given(_rollouts())
@settings(deadline=None)
def test_gae_with_gamma_and_lambda_one_is_monte_carlo_return_minus_value(rollout: dict[str, np.ndarray]) -> None:
    rewards, values = rollout["rewards"], rollout["values"]
    terminated, episode_ended = rollout["terminated"], rollout["episode_ended"]
    steps = rewards.shape[0]
    # Inside an episode the next state's value is the next step's value; elsewhere next_values
    # holds V(final observation) (truncation) or the rollout's bootstrap value (last step).
    next_values = rollout["next_values"].copy()
    within_episode = ~episode_ended[:-1]
    next_values[:-1][within_episode] = values[1:][within_episode]

    # Monte Carlo: rewards summed to the episode's end (or the rollout's end), plus the bootstrap
    # value there unless the episode terminated.
    expected_returns = np.zeros_like(rewards, dtype=np.float64)
    for env in range(rewards.shape[1]):
        for t in range(steps):
            total, k = 0.0, t
            while True:
                total += float(rewards[k, env])
                if episode_ended[k, env] or k == steps - 1:
                    if not terminated[k, env]:
                        total += float(next_values[k, env])
                    break
                k += 1
            expected_returns[t, env] = total

    advantages, returns = compute_gae(rewards, values, next_values, terminated, episode_ended,
                                      gamma=1.0, gae_lambda=1.0)

    np.testing.assert_allclose(returns, expected_returns, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(advantages, expected_returns - values, rtol=1e-5, atol=1e-4)


@given(_rollouts(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
@settings(deadline=None)
def test_gae_does_not_flow_across_an_episode_end(rollout: dict[str, np.ndarray], gamma: float,
                                                 gae_lambda: float) -> None:
    ended_rows, ended_envs = np.nonzero(rollout["episode_ended"])
    advantages, _ = compute_gae(**rollout, gamma=gamma, gae_lambda=gae_lambda)
    for row, env in zip(ended_rows, ended_envs, strict=True):
        changed = {name: array.copy() for name, array in rollout.items()}
        # Anything after the episode's last step belongs to another episode.
        changed["rewards"][row + 1 :, env] += 100.0
        changed["values"][row + 1 :, env] -= 50.0
        changed["next_values"][row + 1 :, env] += 25.0
        changed_advantages, _ = compute_gae(**changed, gamma=gamma, gae_lambda=gae_lambda)
        np.testing.assert_array_equal(changed_advantages[: row + 1, env], advantages[: row + 1, env])


@pytest.mark.parametrize(("observation_shape", "action_shape", "action_dtype"),
                         [((3,), (2,), np.float32), ((4, 5), (), np.int64), ((), (1,), np.float32)])
def test_allocate_gives_zeroed_time_major_arrays(observation_shape: tuple[int, ...],
                                                 action_shape: tuple[int, ...], action_dtype: type) -> None:
    buffer = RolloutBuffer.allocate(7, 3, observation_shape, action_shape, action_dtype)

    assert buffer.observations.shape == (7, 3, *observation_shape)
    assert buffer.observations.dtype == np.float32
    assert buffer.actions.shape == (7, 3, *action_shape)
    assert buffer.actions.dtype == action_dtype
    for name in ("log_probs", "rewards", "values", "next_values"):
        array = getattr(buffer, name)
        assert array.shape == (7, 3) and array.dtype == np.float32, name
    for name in ("terminated", "episode_ended"):
        array = getattr(buffer, name)
        assert array.shape == (7, 3) and array.dtype == np.bool_, name
    for array in vars(buffer).values():
        assert not array.any()


def test_allocate_defaults_to_float32_actions() -> None:
    assert RolloutBuffer.allocate(2, 2, (3,), (2,)).actions.dtype == np.float32


@given(_rollouts(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
@settings(deadline=None, max_examples=25)
def test_buffer_advantages_are_gae_of_its_contents(rollout: dict[str, np.ndarray], gamma: float,
                                                  gae_lambda: float) -> None:
    steps, num_envs = rollout["rewards"].shape
    buffer = RolloutBuffer.allocate(steps, num_envs, (2,), (1,))
    for name, array in rollout.items():
        getattr(buffer, name)[...] = array

    advantages, returns = buffer.advantages_and_returns(gamma, gae_lambda)

    expected_advantages, expected_returns = compute_gae(**rollout, gamma=gamma, gae_lambda=gae_lambda)
    np.testing.assert_array_equal(advantages, expected_advantages)
    np.testing.assert_array_equal(returns, expected_returns)
