"""Tests of policy evaluation (hybridrl.core.evaluation) on real environments."""

from __future__ import annotations

import numpy as np
import pytest

from hybridrl.core.evaluation import evaluate_policy
from hybridrl.envs import make_env, normalized_score

KEYS = {"eval/return_mean", "eval/return_std", "eval/length_mean"}


def _balance(observations: np.ndarray) -> np.ndarray:
    """A CartPole policy that pushes towards the pole's lean: episodes of 30 to 50 steps."""
    return (observations[:, 2] > 0).astype(np.int64)


def _always_left(observations: np.ndarray) -> np.ndarray:
    return np.zeros(len(observations), dtype=np.int64)


def _manual_returns(env_id: str, act: object, seeds: list[int], clip: bool = False) -> list[tuple[float, int]]:
    """Returns and lengths of one episode per seed, stepped by hand."""
    env = make_env(env_id)
    results = []
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        total, length, done = 0.0, 0, False
        while not done:
            action = act(np.asarray(observation, dtype=np.float32)[None])[0]  # type: ignore[operator]
            if clip:
                action = np.clip(action, env.action_space.low, env.action_space.high)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
        results.append((total, length))
    return results


def test_cartpole_evaluation_summarises_the_episodes() -> None:
    summary = evaluate_policy(make_env("CartPole-v1"), _always_left, episodes=3, seed=10, env_id="CartPole-v1")

    assert set(summary) == KEYS  # CartPole has no reference returns
    expected = _manual_returns("CartPole-v1", _always_left, [10, 11, 12])
    returns = [episode_return for episode_return, _ in expected]
    assert summary["eval/return_mean"] == pytest.approx(np.mean(returns))
    assert summary["eval/return_std"] == pytest.approx(np.std(returns))
    assert summary["eval/length_mean"] == pytest.approx(np.mean([length for _, length in expected]))
    assert all(isinstance(value, float) for value in summary.values())


def test_evaluation_is_deterministic_for_a_seed_and_episode_i_uses_seed_plus_i() -> None:
    env = make_env("CartPole-v1", seed=123)
    first = evaluate_policy(env, _balance, episodes=2, seed=7)
    second = evaluate_policy(make_env("CartPole-v1", seed=999), _balance, episodes=2, seed=7)
    again = evaluate_policy(env, _balance, episodes=2, seed=7)
    assert first == second == again

    episode_seven = evaluate_policy(env, _balance, episodes=1, seed=7)["eval/return_mean"]
    episode_eight = evaluate_policy(env, _balance, episodes=1, seed=8)["eval/return_mean"]
    assert first["eval/return_mean"] == pytest.approx((episode_seven + episode_eight) / 2)


def test_evaluation_with_another_seed_sees_other_start_states() -> None:
    env = make_env("CartPole-v1")
    summaries = {tuple(evaluate_policy(env, _balance, episodes=2, seed=seed).values()) for seed in (0, 2, 4)}
    assert len(summaries) > 1


def test_hopper_evaluation_has_a_normalized_score_and_clips_actions() -> None:
    def push_hard(observations: np.ndarray) -> np.ndarray:
        # Out of the action space [-1, 1]: the control cost shows whether actions were clipped.
        return np.tile([5.0, -5.0, 5.0], (len(observations), 1)).astype(np.float32)

    summary = evaluate_policy(make_env("Hopper-v5"), push_hard, episodes=1, seed=0, env_id="Hopper-v5")

    assert set(summary) == {*KEYS, "eval/normalized_score"}
    assert summary["eval/normalized_score"] == pytest.approx(normalized_score("Hopper-v5",
                                                                             summary["eval/return_mean"]))
    [(expected_return, expected_length)] = _manual_returns("Hopper-v5", push_hard, [0], clip=True)
    assert summary["eval/return_mean"] == pytest.approx(expected_return)
    assert summary["eval/length_mean"] == expected_length
    assert summary["eval/return_std"] == 0.0


def test_evaluation_without_env_id_has_no_normalized_score() -> None:
    summary = evaluate_policy(make_env("Hopper-v5"), lambda obs: np.zeros((len(obs), 3), np.float32),
                              episodes=1, seed=0)
    assert set(summary) == KEYS


def test_at_least_one_episode_is_required() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_policy(make_env("CartPole-v1"), _always_left, episodes=0, seed=0)
