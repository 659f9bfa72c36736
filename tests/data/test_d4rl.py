"""The D4RL reader, on small HDF5 files written here."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from hybridrl.data import DatasetError, load_dataset, read_d4rl


def _write(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
    return path


def _arrays(size: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    observations = np.arange(size * 2, dtype=np.float32).reshape(size, 2)
    terminals = np.zeros(size, dtype=bool)
    timeouts = np.zeros(size, dtype=bool)
    terminals[3] = True   # episode 0: rows 0-3, terminal
    timeouts[7] = True    # episode 1: rows 4-7, time limit
    return {"observations": observations, "actions": rng.uniform(-1, 1, (size, 1)).astype(np.float32),
            "rewards": np.arange(size, dtype=np.float32), "terminals": terminals, "timeouts": timeouts}


def test_with_next_observations(tmp_path: Path) -> None:
    arrays = _arrays()
    next_observations = arrays["observations"] + 100.0
    dataset = read_d4rl(_write(tmp_path / "toy.hdf5", **arrays, next_observations=next_observations))
    assert dataset.episode_lengths.tolist() == [4, 4, 2]  # the file ends mid-episode: rows 8-9
    data = dataset.to_numpy()
    assert data["terminations"].nonzero()[0].tolist() == [3]
    assert data["truncations"].nonzero()[0].tolist() == [7, 9]
    np.testing.assert_array_equal(data["next_observations"], next_observations)
    np.testing.assert_allclose(dataset.episode_returns(), [0 + 1 + 2 + 3, 4 + 5 + 6 + 7, 8 + 9])
    assert dataset.info.source == "d4rl" and dataset.info.env_id is None


def test_without_next_observations_drops_timeouts(tmp_path: Path) -> None:
    dataset = read_d4rl(_write(tmp_path / "toy.hdf5", **_arrays()))
    # Row 7 (timeout) and row 9 (unfinished tail) have no known next state and are dropped.
    assert dataset.episode_lengths.tolist() == [4, 3, 1]
    data = dataset.to_numpy()
    np.testing.assert_array_equal(data["rewards"], [0, 1, 2, 3, 4, 5, 6, 8])
    assert data["terminations"].tolist() == [False, False, False, True, False, False, False, False]
    assert data["truncations"].tolist() == [False, False, False, False, False, False, True, True]
    np.testing.assert_array_equal(data["next_observations"][4], [10.0, 11.0])  # row 5's observation
    np.testing.assert_array_equal(data["next_observations"][3], data["observations"][3])  # terminal: itself


def test_env_is_guessed_for_locomotion_files_with_d4rl_constants(tmp_path: Path) -> None:
    size = 6
    arrays = {"observations": np.zeros((size, 11), np.float32), "actions": np.zeros((size, 3), np.float32),
              "rewards": np.ones(size, np.float32), "terminals": np.eye(1, size, 2, dtype=bool)[0],
              "timeouts": np.eye(1, size, 5, dtype=bool)[0], "next_observations": np.zeros((size, 11), np.float32)}
    dataset = load_dataset(str(_write(tmp_path / "hopper_medium-v2.hdf5", **arrays)))  # validated against Hopper-v5
    assert dataset.info.env_id == "Hopper-v5"
    assert dataset.info.reference_returns == pytest.approx((-20.272305, 3234.3))
    assert "D4RL" in (dataset.info.reference_source or "")


def test_missing_keys_and_lengths(tmp_path: Path) -> None:
    arrays = _arrays()
    del arrays["timeouts"]
    with pytest.raises(DatasetError, match="lacks timeouts"):
        read_d4rl(_write(tmp_path / "old.hdf5", **arrays))
    arrays = _arrays()
    arrays["actions"] = arrays["actions"][:-1]
    with pytest.raises(DatasetError, match="differ in length"):
        read_d4rl(_write(tmp_path / "short.hdf5", **arrays))
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="corrupt"):
        read_d4rl(tmp_path / "junk.hdf5")
