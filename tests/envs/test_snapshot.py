"""Tests of environment snapshots (hybridrl.envs.snapshot): exact mid-episode restore."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from hybridrl.envs import make_env, make_vector_env
from hybridrl.envs.snapshot import SnapshotUnsupportedError, get_snapshot, set_snapshot

# (env id, make_env kwargs, steps before the snapshot): each episode is truncated by its time limit
# 20 steps after the snapshot (DMC: 1000 control steps = 125 steps of 8).
CASES = [
    ("Hopper-v5", {"max_episode_steps": 30}, 10),
    ("CartPole-v1", {"max_episode_steps": 30}, 10),
    ("Pendulum-v1", {"max_episode_steps": 30}, 10),
    ("dmc:walker-walk", {"action_repeat": 8}, 105),
]


def _actions(env: gym.Env[Any, Any], count: int) -> list[Any]:
    """Open-loop actions that keep each env's episode going until its time limit: alternating
    pushes balance the cart-pole; gentle random torques keep the hopper upright."""
    if isinstance(env.action_space, gym.spaces.Discrete):
        return [step % 2 for step in range(count)]
    env.action_space.seed(0)
    return [0.2 * env.action_space.sample() for _ in range(count)]


def _play(env: gym.Env[Any, Any], actions: list[Any]) -> list[tuple[Any, ...]]:
    """Every step's (observation, reward, terminated, truncated), resetting (without a seed, so
    from the env's own random stream) after an episode ends."""
    transcript: list[tuple[Any, ...]] = []
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        transcript.append((observation, float(reward), terminated, truncated))
        if terminated or truncated:
            transcript.append(("reset", env.reset()[0]))
    return transcript


def _assert_identical(actual: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(actual) == len(expected)
    for step, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert isinstance(got[0], str) == isinstance(want[0], str), step
        for got_item, want_item in zip(got, want, strict=True):
            if isinstance(want_item, np.ndarray):
                np.testing.assert_array_equal(got_item, want_item, err_msg=f"step {step}")
            else:
                assert got_item == want_item, step


@pytest.mark.parametrize(("env_id", "kwargs", "steps_before"), CASES)
def test_restored_env_continues_bit_exactly(env_id: str, kwargs: dict[str, Any], steps_before: int) -> None:
    env = make_env(env_id, seed=1, **kwargs)
    actions = _actions(env, steps_before + 40)
    for action in actions[:steps_before]:
        _, _, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
    snapshot = env.snapshot  # type: ignore[attr-defined]
    assert isinstance(snapshot, bytes)

    # Another seed and another position in the episode: only the snapshot can make it match.
    restored = make_env(env_id, seed=12345, **kwargs)
    restored.step(actions[-1])
    restored.snapshot = snapshot  # type: ignore[attr-defined]

    expected = _play(env, actions[steps_before:])
    actual = _play(restored, actions[steps_before:])

    _assert_identical(actual, expected)
    # The time limit's step counter came along: the episode is truncated 20 steps after the snapshot.
    ends = [index for index, record in enumerate(expected) if not isinstance(record[0], str) and record[3]]
    assert ends and ends[0] == 19


@pytest.mark.parametrize(("env_id", "kwargs", "steps_before"), CASES)
def test_snapshot_is_a_copy_of_the_state_at_that_moment(env_id: str, kwargs: dict[str, Any],
                                                        steps_before: int) -> None:
    env = make_env(env_id, seed=1, **kwargs)
    actions = _actions(env, steps_before + 5)
    for action in actions[:steps_before]:
        env.step(action)
    snapshot = env.snapshot  # type: ignore[attr-defined]
    expected = _play(env, actions[steps_before:])

    # Restoring into the same env rewinds it.
    env.snapshot = snapshot  # type: ignore[attr-defined]
    _assert_identical(_play(env, actions[steps_before:]), expected)


def test_snapshot_functions_work_without_the_wrapper() -> None:
    env = gym.make("CartPole-v1", max_episode_steps=30)
    env.reset(seed=0)
    for _ in range(5):
        env.step(1)
    snapshot = get_snapshot(env)
    expected = [env.step(0)[0] for _ in range(3)]

    other = gym.make("CartPole-v1", max_episode_steps=30)
    other.reset(seed=9)
    set_snapshot(other, snapshot)
    for observation in expected:
        np.testing.assert_array_equal(other.step(0)[0], observation)


def test_restoring_into_an_env_with_fewer_wrappers_fails() -> None:
    snapshot = get_snapshot(make_env("CartPole-v1", seed=0))
    bare = gym.make("CartPole-v1").unwrapped
    with pytest.raises(SnapshotUnsupportedError, match="wrappers"):
        set_snapshot(gym.wrappers.TimeLimit(bare, 10), snapshot)


def test_an_unpicklable_env_raises_snapshot_unsupported() -> None:
    class Unpicklable(gym.Env[np.ndarray, int]):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
        action_space = gym.spaces.Discrete(2)

        def __init__(self) -> None:
            self.handle = (lambda: None)  # lambdas cannot be pickled

    with pytest.raises(SnapshotUnsupportedError, match="Unpicklable"):
        get_snapshot(Unpicklable())


@pytest.mark.parametrize(("mode", "env_id", "kwargs", "steps_before"), [
    ("sync", "Hopper-v5", {"max_episode_steps": 30}, 10),
    ("sync", "dmc:walker-walk", {"action_repeat": 8}, 105),
    ("async", "CartPole-v1", {"max_episode_steps": 30}, 10),
])
def test_vector_env_get_and_set_snapshot_attribute(mode: str, env_id: str, kwargs: dict[str, Any],
                                                   steps_before: int) -> None:
    num_envs = 2
    envs = make_vector_env(env_id, num_envs, mode=mode, seed=1, **kwargs)  # type: ignore[arg-type]
    restored = make_vector_env(env_id, num_envs, mode=mode, seed=77, **kwargs)  # type: ignore[arg-type]
    try:
        envs.reset()
        restored.reset()
        envs.action_space.seed(0)
        actions = [envs.action_space.sample() for _ in range(steps_before + 20)]
        if isinstance(envs.action_space, gym.spaces.Box):
            actions = [0.2 * action for action in actions]
        episode_ends = 0
        for action in actions[:steps_before]:
            envs.step(action)

        snapshots = envs.get_attr("snapshot")
        assert len(snapshots) == num_envs and all(isinstance(snapshot, bytes) for snapshot in snapshots)
        assert snapshots[0] != snapshots[1]
        restored.set_attr("snapshot", list(snapshots))

        for action in actions[steps_before:]:
            expected = envs.step(action)
            actual = restored.step(action)
            for got, want in zip(actual[:4], expected[:4], strict=True):
                np.testing.assert_array_equal(got, want)
            assert ("final_obs" in actual[4]) == ("final_obs" in expected[4])
            if "final_obs" in expected[4]:
                episode_ends += 1
                np.testing.assert_array_equal(actual[4]["_final_obs"], expected[4]["_final_obs"])
                for index in np.flatnonzero(expected[4]["_final_obs"]):
                    np.testing.assert_array_equal(actual[4]["final_obs"][index], expected[4]["final_obs"][index])
        # Random actions end CartPole episodes within 20 steps; the others reach their time limit.
        assert episode_ends > 0
    finally:
        envs.close()
        restored.close()
