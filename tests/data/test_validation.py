"""Every validation error, each with a message that names the problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from hybridrl.data import Dataset, DatasetError, DatasetInfo, EnvFacts, load_dataset, validate_dataset, write_minari


def _modified(dataset: Dataset, change: Callable[[dict[str, np.ndarray]], None], env_id: str | None = "Pendulum-v1"
              ) -> Dataset:
    arrays = {key: value.copy() for key, value in dataset.to_numpy().items()}
    change(arrays)
    starts = arrays.pop("episode_starts")
    return Dataset.from_arrays(**arrays, episode_starts=starts, info=DatasetInfo("broken-v0", env_id=env_id))


def test_a_good_dataset_passes(pendulum_dataset: Dataset) -> None:
    validate_dataset(pendulum_dataset)
    validate_dataset(pendulum_dataset, "Pendulum-v1")


def test_empty(pendulum_dataset: Dataset) -> None:
    empty = Dataset.from_episodes([], [], [], [], [], DatasetInfo("empty-v0"))
    with pytest.raises(DatasetError, match="is empty"):
        validate_dataset(empty)


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "next_observations"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_inf(pendulum_dataset: Dataset, key: str, value: float) -> None:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[key][5] = value

    with pytest.raises(DatasetError, match=f"NaN or infinite {key} in 1 transitions \\(first at index 5\\)"):
        validate_dataset(_modified(pendulum_dataset, change))


def test_actions_out_of_bounds(pendulum_dataset: Dataset) -> None:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays["actions"][7] = 2.5  # Pendulum's torque bound is 2

    with pytest.raises(DatasetError, match=r"1 actions lie outside the action bounds \[-2, 2\].*transition 7"):
        validate_dataset(_modified(pendulum_dataset, change))


def test_observation_and_action_shapes(pendulum_dataset: Dataset) -> None:
    wrong_observations = EnvFacts("Pendulum-v1", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-2, 2, (1,)), 200)
    with pytest.raises(DatasetError, match=r"observations have shape \(3,\) but Pendulum-v1's observation space"):
        validate_dataset(pendulum_dataset, wrong_observations)
    wrong_actions = EnvFacts("Pendulum-v1", gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)), 200)
    with pytest.raises(DatasetError, match=r"actions have shape \(1,\) but Pendulum-v1's action space"):
        validate_dataset(pendulum_dataset, wrong_actions)


def test_dataset_of_another_env(pendulum_dataset: Dataset) -> None:
    with pytest.raises(DatasetError, match="was collected on Pendulum-v1, not MountainCarContinuous-v0"):
        validate_dataset(pendulum_dataset, "MountainCarContinuous-v0")


def test_episode_without_an_end_flag(pendulum_dataset: Dataset) -> None:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays["truncations"][19] = False  # last step of episode 0

    with pytest.raises(DatasetError, match=r"episode 0 \(20 steps\) ends with neither"):
        validate_dataset(_modified(pendulum_dataset, change))


def test_flag_inside_an_episode(pendulum_dataset: Dataset) -> None:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays["terminations"][25] = True  # step 6 of episode 1

    with pytest.raises(DatasetError, match=r"transition 25 inside episode 1 \(step 6 of 19\).*contradict"):
        validate_dataset(_modified(pendulum_dataset, change))


def test_episode_longer_than_the_time_limit(pendulum_dataset: Dataset) -> None:
    facts = EnvFacts("Pendulum-v1", gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)), max_episode_steps=18)
    with pytest.raises(DatasetError, match="episode 0 has 20 steps but Pendulum-v1 truncates episodes at 18"):
        validate_dataset(pendulum_dataset, facts)


def test_malformed_boundaries(pendulum_dataset: Dataset) -> None:
    broken = Dataset(pendulum_dataset.transitions, np.asarray([0, 20, 20, 74]), pendulum_dataset.info)
    with pytest.raises(DatasetError, match="malformed episode boundaries"):
        validate_dataset(broken)


def test_missing_key_in_a_minari_file(pendulum_dataset: Dataset, minari_root: Path) -> None:
    folder = write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    with h5py.File(folder / "data" / "main_data.hdf5", "a") as handle:
        del handle["episode_2"]["rewards"]
    with pytest.raises(DatasetError, match="episode_2 is missing the key 'rewards'"):
        load_dataset("pendulum-random-v1")


def test_observation_count_must_exceed_steps_by_one() -> None:
    with pytest.raises(DatasetError, match=r"needs T \+ 1 observations"):
        Dataset.from_episodes([np.zeros((3, 2))], [np.zeros((3, 1))], [np.zeros(3)], [np.zeros(3, bool)],
                              [np.ones(3, bool)], DatasetInfo("x-v0"))


def test_load_validates_against_the_requested_env(pendulum_dataset: Dataset) -> None:
    write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    with pytest.raises(DatasetError, match="not CartPole-v1"):
        load_dataset("pendulum-random-v1", env="CartPole-v1")
