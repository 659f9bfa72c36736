"""Minari format: our writer and reader round-trip, Minari reads ours, we read Minari's."""

from __future__ import annotations

import warnings
from pathlib import Path

import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from hybridrl.data import Dataset, DatasetError, DatasetNotFoundError, list_local_datasets, load_dataset, write_minari

from .conftest import pendulum_episodes


def _assert_same(left: Dataset, right: Dataset) -> None:
    for key, value in left.to_numpy().items():
        np.testing.assert_array_equal(value, right.to_numpy()[key], err_msg=key)


def test_round_trip(pendulum_dataset: Dataset, minari_root: Path) -> None:
    folder = write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    assert folder == minari_root / "hybridrl" / "pendulum-random-v1"
    assert not [path for path in folder.parent.iterdir() if path.name.startswith(".")]  # no temporaries left
    loaded = load_dataset("pendulum-random-v1")  # our short id finds the hybridrl namespace
    _assert_same(pendulum_dataset, loaded)
    assert loaded.info.env_id == "Pendulum-v1"
    assert loaded.info.reference_returns == (-1200.0, -150.0)
    assert loaded.info.source == "hybridrl"
    assert list_local_datasets() == ["hybridrl/pendulum-random-v1"]
    # Also by folder path.
    _assert_same(pendulum_dataset, load_dataset(str(folder)))


def test_minari_reads_what_we_write(pendulum_dataset: Dataset) -> None:
    write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    theirs = minari.load_dataset("hybridrl/pendulum-random-v1")
    assert theirs.total_episodes == 4 and theirs.total_steps == len(pendulum_dataset)
    episodes = list(theirs.iterate_episodes())
    np.testing.assert_array_equal(episodes[1].observations[:-1], np.asarray(pendulum_dataset.episode(1).observations))
    np.testing.assert_array_equal(episodes[1].actions, np.asarray(pendulum_dataset.episode(1).actions))
    assert theirs.recover_environment().spec.id == "Pendulum-v1"
    normalized = minari.get_normalized_score(theirs, np.asarray([-150.0]))
    assert normalized[0] == pytest.approx(1.0)  # Minari's scale is 0-1, ours 0-100


def test_dataset_created_with_minari_api_loads() -> None:
    columns = pendulum_episodes(3, 12, seed=5)
    buffers = [EpisodeBuffer(id=index, observations=columns["observations"][index], actions=columns["actions"][index],
                             rewards=columns["rewards"][index], terminations=columns["terminations"][index],
                             truncations=columns["truncations"][index], infos={})
               for index in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about every optional field left out
        minari.create_dataset_from_buffers(dataset_id="test/pendulum/random-v0", buffer=buffers, env="Pendulum-v1",
                                           algorithm_name="random", ref_min_score=-1000.0, ref_max_score=-100.0)
    loaded = load_dataset("test/pendulum/random-v0")
    assert loaded.info.source == "minari" and loaded.info.env_id == "Pendulum-v1"
    assert loaded.info.reference_returns == (-1000.0, -100.0)
    assert loaded.episode_lengths.tolist() == [12, 11, 10]
    np.testing.assert_allclose(loaded.episode_returns(), [r.sum() for r in columns["rewards"]], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(loaded.episode(2).next_observations), columns["observations"][2][1:])


def test_write_refuses_to_overwrite_unless_asked(pendulum_dataset: Dataset) -> None:
    write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    with pytest.raises(DatasetError, match="already exists"):
        write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1", overwrite=True)
    with pytest.raises(DatasetError, match="malformed dataset id"):
        write_minari(pendulum_dataset, "no version")


def test_unknown_dataset_says_how_to_get_one(pendulum_dataset: Dataset) -> None:
    write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    with pytest.raises(DatasetNotFoundError, match=r"pendulum-random-v1.*hybridrl data make"):
        load_dataset("pendulum-randm-v1")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("missing.hdf5")
