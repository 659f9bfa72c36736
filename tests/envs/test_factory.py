"""Tests of the environment factory (hybridrl.envs.factory) on real Gymnasium and DMC envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from hybridrl.envs import make_env, make_vector_env, registered_env_ids
from hybridrl.errors import ConfigError, HybridRLError, UnknownEnvironmentError

CONTINUOUS = ["Hopper-v5", "Pendulum-v1", "dmc:walker-walk"]


@pytest.mark.parametrize("env_id", ["Hopper-v5", "CartPole-v1", "Pendulum-v1", "dmc:walker-walk"])
def test_make_env_gives_flat_observations_in_the_observation_space(env_id: str) -> None:
    env = make_env(env_id, seed=0)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and len(space.shape) == 1
    assert np.issubdtype(space.dtype, np.floating)

    observation, info = env.reset(seed=1)
    assert isinstance(info, dict)
    assert observation.shape == space.shape and observation.dtype == space.dtype
    assert space.contains(observation)
    for _ in range(3):
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert observation.shape == space.shape and observation.dtype == space.dtype
        assert np.isfinite(observation).all()
        assert isinstance(float(reward), float)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        assert isinstance(info, dict)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "dmc:walker-walk"])
def test_classic_and_dmc_observations_are_float32(env_id: str) -> None:
    observation, _ = make_env(env_id, seed=0).reset()
    assert observation.dtype == np.float32


@pytest.mark.parametrize("env_id", CONTINUOUS)
def test_continuous_envs_have_bounded_float32_box_actions(env_id: str) -> None:
    space = make_env(env_id).action_space
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    assert np.isfinite(space.low).all() and np.isfinite(space.high).all()


def test_dmc_walker_matches_its_specs() -> None:
    env = make_env("dmc:walker-walk")
    # walker: orientations (14) + height (1) + velocity (9); six actuators in [-1, 1].
    assert env.observation_space.shape == (24,)
    np.testing.assert_array_equal(env.action_space.low, -np.ones(6))
    np.testing.assert_array_equal(env.action_space.high, np.ones(6))


@pytest.mark.parametrize("env_id", ["Hopper-v5", "CartPole-v1", "dmc:walker-walk"])
def test_seed_fixes_the_first_reset_and_the_action_space(env_id: str) -> None:
    first, second, other = make_env(env_id, seed=3), make_env(env_id, seed=3), make_env(env_id, seed=4)
    np.testing.assert_array_equal(first.reset()[0], second.reset()[0])
    assert not np.array_equal(first.reset()[0], other.reset()[0])
    np.testing.assert_array_equal(first.action_space.sample(), second.action_space.sample())


def test_dmc_action_repeat_sums_the_rewards_of_the_repeated_steps() -> None:
    single = make_env("dmc:walker-walk", seed=5)
    repeated = make_env("dmc:walker-walk", seed=5, action_repeat=2)
    single.reset(seed=5)
    repeated.reset(seed=5)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, size=(6, 6)).astype(np.float32)

    for action in actions:
        first_reward = single.step(action)[1]
        second_observation, second_reward, *_ = single.step(action)
        observation, reward, *_ = repeated.step(action)
        assert reward == first_reward + second_reward
        assert first_reward > 0.0 and second_reward > 0.0  # both steps count
        np.testing.assert_array_equal(observation, second_observation)


@pytest.mark.parametrize(("action_repeat", "episode_steps"), [(1, 1000), (2, 500), (8, 125)])
def test_dmc_episodes_end_by_truncation_after_1000_control_steps(action_repeat: int, episode_steps: int) -> None:
    env = make_env("dmc:walker-walk", seed=0, action_repeat=action_repeat)
    env.reset()
    action = np.zeros(6, dtype=np.float32)
    for step in range(1, episode_steps + 1):
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated
        assert truncated == (step == episode_steps), step


def test_action_repeat_on_a_gymnasium_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dmc"):
        make_env("Hopper-v5", action_repeat=2)


def test_action_repeat_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make_env("dmc:walker-walk", action_repeat=0)


@pytest.mark.parametrize(("typo", "suggestion"), [("Hoper-v5", "Hopper-v5"),
                                                  ("dmc:walker-wlak", "dmc:walker-walk"),
                                                  ("CartPole-v2", "CartPole-v1")])
def test_unknown_id_lists_close_matches(typo: str, suggestion: str) -> None:
    with pytest.raises(UnknownEnvironmentError) as caught:
        make_env(typo)
    message = str(caught.value)
    assert repr(typo) in message
    assert "Close matches" in message and suggestion in message
    assert isinstance(caught.value, HybridRLError)


def test_unknown_id_without_close_matches_still_explains_the_id_format() -> None:
    with pytest.raises(UnknownEnvironmentError) as caught:
        make_vector_env("zzzzzzzzzzzzzzzz", num_envs=1)
    message = str(caught.value)
    assert "Close matches" not in message
    assert "Hopper-v5" in message and "dmc:walker-walk" in message


def test_registered_env_ids_include_gymnasium_and_dmc() -> None:
    ids = registered_env_ids()
    assert {"Hopper-v5", "CartPole-v1", "Pendulum-v1", "dmc:walker-walk", "dmc:cheetah-run"} <= set(ids)


def test_kwargs_reach_gymnasium_make() -> None:
    env = make_env("Pendulum-v1", seed=0, max_episode_steps=5)
    env.reset()
    truncations = [env.step(np.zeros(1, dtype=np.float32))[3] for _ in range(5)]
    assert truncations == [False] * 4 + [True]


def _run_cartpole_by_hand(seed: int, steps: int) -> list[dict[str, Any]]:
    """What the vector env's sub-env seeded ``seed`` (sub-env ``i`` gets the vector seed + ``i``)
    must do under SAME_STEP autoreset when pushed left at every step: it resets in the step that
    ends its episode."""
    env = make_env("CartPole-v1", seed=seed)
    observation, _ = env.reset()  # the vector env's reset (seed=None continues the stream)
    records = [{"observation": observation}]
    for _ in range(steps):
        observation, reward, terminated, truncated, _ = env.step(0)
        record = {"reward": reward, "terminated": terminated, "truncated": truncated}
        if terminated or truncated:
            record["final_observation"] = observation
            observation, _ = env.reset()
        record["observation"] = observation
        records.append(record)
    return records


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_env_autoresets_in_the_same_step_with_the_true_final_observation(mode: str) -> None:
    num_envs, steps = 2, 25
    envs = make_vector_env("CartPole-v1", num_envs, mode=mode, seed=10)  # type: ignore[arg-type]
    try:
        expected = [_run_cartpole_by_hand(10 + index, steps) for index in range(num_envs)]
        observations, _ = envs.reset()
        for index in range(num_envs):
            np.testing.assert_array_equal(observations[index], expected[index][0]["observation"])

        episode_ends = 0
        for step in range(1, steps + 1):
            observations, rewards, terminated, truncated, info = envs.step(np.zeros(num_envs, dtype=np.int64))
            for index in range(num_envs):
                record = expected[index][step]
                assert rewards[index] == record["reward"]
                assert terminated[index] == record["terminated"] and truncated[index] == record["truncated"]
                np.testing.assert_array_equal(observations[index], record["observation"])
                ended = "final_observation" in record
                assert bool(info.get("_final_obs", np.zeros(num_envs, bool))[index]) == ended
                if ended:
                    episode_ends += 1
                    np.testing.assert_array_equal(info["final_obs"][index], record["final_observation"])
                    # The returned observation is the next episode's first one, not the last one.
                    assert not np.array_equal(observations[index], info["final_obs"][index])
        # Pushing left ends a CartPole episode in about ten steps: every env ended at least twice.
        assert episode_ends >= 2 * num_envs
    finally:
        envs.close()


def test_lean_sync_vector_env_steps_like_gymnasiums() -> None:
    # Hopper falls within tens of steps under random actions and its time limit is shortened to 30
    # steps, so terminations and truncations both occur, in some envs and not others.
    num_envs, steps = 3, 200
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, num_envs, 3)).astype(np.float32)
    lean = make_vector_env("Hopper-v5", num_envs, seed=4, max_episode_steps=30)
    reference = gym.vector.SyncVectorEnv(
        [lambda index=index: make_env("Hopper-v5", seed=4 + index, max_episode_steps=30) for index in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    assert type(lean).__name__ == "LeanSyncVectorEnv"
    try:
        np.testing.assert_array_equal(lean.reset()[0], reference.reset()[0])
        seen = {"terminated": 0, "truncated": 0}
        for action in actions:
            *ours, our_info = lean.step(action)
            *theirs, their_info = reference.step(action)
            for mine, gymnasiums in zip(ours, theirs, strict=True):
                np.testing.assert_array_equal(mine, gymnasiums)
                assert mine.dtype == gymnasiums.dtype
            ended = np.asarray(their_info.get("_final_obs", np.zeros(num_envs, bool)))
            np.testing.assert_array_equal(our_info.get("_final_obs", np.zeros(num_envs, bool)), ended)
            for index in np.flatnonzero(ended):
                np.testing.assert_array_equal(our_info["final_obs"][index], their_info["final_obs"][index])
            seen["terminated"] += int(ours[2].sum())
            seen["truncated"] += int(ours[3].sum())
        assert seen["terminated"] > 0 and seen["truncated"] > 0
    finally:
        lean.close()
        reference.close()


def test_vector_env_seeding_is_reproducible() -> None:
    def rollout(seed: int) -> list[np.ndarray]:
        envs = make_vector_env("Pendulum-v1", 3, seed=seed)
        observations = [envs.reset()[0]]
        envs.action_space.seed(seed)
        for _ in range(5):
            observations.append(envs.step(envs.action_space.sample())[0])
        envs.close()
        return observations

    first, again, other = rollout(1), rollout(1), rollout(2)
    for observation, repeated in zip(first, again, strict=True):
        np.testing.assert_array_equal(observation, repeated)
    assert not np.array_equal(first[0], other[0])
    # Sub-envs are seeded seed + i, so no two start alike.
    assert len({tuple(row) for row in first[0]}) == 3


def test_vector_env_of_dmc_with_action_repeat() -> None:
    envs = make_vector_env("dmc:walker-walk", 2, seed=0, action_repeat=2)
    try:
        observations, _ = envs.reset()
        assert observations.shape == (2, 24) and observations.dtype == np.float32
        _, rewards, _, _, _ = envs.step(np.zeros((2, 6), dtype=np.float32))
        assert rewards.shape == (2,)
    finally:
        envs.close()


def test_vector_env_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="num_envs"):
        make_vector_env("CartPole-v1", 0)
    with pytest.raises(ConfigError, match="sync"):
        make_vector_env("CartPole-v1", 1, mode="threads")  # type: ignore[arg-type]
