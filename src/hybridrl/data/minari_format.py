"""Reading and writing datasets in Minari's on-disk format (HDF5 storage), without the network.

A Minari dataset with id ``namespace/name-vN`` lives in ``$MINARI_DATASETS_PATH/namespace/name-vN/``
(default root ``~/.minari/datasets``)::

    <id>/data/metadata.json     dataset id, spaces (serialised by Minari), env spec, counts,
                                reference scores, minari_version; ours add a "hybridrl" entry
    <id>/data/main_data.hdf5    one group per episode, "episode_<i>", holding
                                observations (T + 1, ...), actions (T, ...), rewards (T,),
                                terminations (T,), truncations (T,)

hybridrl writes this layout itself with h5py (so a write is atomic: the dataset folder is built
under a temporary name and renamed into place) and reads it back with h5py; ``minari.load_dataset``
reads the datasets we write, and we read the datasets Minari's own API writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from hybridrl.core.io import atomic_write_json
from hybridrl.data.dataset import Dataset, DatasetInfo
from hybridrl.data.validation import DatasetError, DatasetNotFoundError

METADATA_FILE = "metadata.json"
DATA_FILE = "main_data.hdf5"
#: Namespace of the datasets hybridrl generates: ``hopper-medium-v5`` is stored as ``hybridrl/hopper-medium-v5``.
HYBRIDRL_NAMESPACE = "hybridrl"
_EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
_DATASET_ID = re.compile(r"(?:[-\w/]+/)?[-\w.]+-v\d+")


def minari_root() -> Path:
    """The local Minari datasets folder: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    configured = os.environ.get("MINARI_DATASETS_PATH")
    return Path(configured) if configured else Path.home() / ".minari" / "datasets"


def dataset_path(dataset_id: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the dataset ``dataset_id`` under ``root`` (default :func:`minari_root`)."""
    return (Path(root) if root is not None else minari_root()) / dataset_id


def _data_dir(folder: Path) -> Path:
    return folder if (folder / METADATA_FILE).is_file() else folder / "data"


def is_minari_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` (a dataset folder or its ``data/`` subfolder) holds a Minari dataset."""
    return (_data_dir(Path(folder)) / METADATA_FILE).is_file()


def list_local_datasets(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Ids of every Minari dataset under ``root`` (default :func:`minari_root`), sorted."""
    base = Path(root) if root is not None else minari_root()
    if not base.is_dir():
        return []
    found = [metadata.parent.parent.relative_to(base).as_posix() for metadata in base.rglob(f"data/{METADATA_FILE}")]
    return sorted(name for name in found if not any(part.startswith(".") for part in name.split("/")))


# -- writing ---------------------------------------------------------------------------------------


def write_minari(dataset: Dataset, dataset_id: str, root: str | os.PathLike[str] | None = None,
                 overwrite: bool = False, observation_space: gym.Space[Any] | None = None,
                 action_space: gym.Space[Any] | None = None) -> Path:
    """Write ``dataset`` in Minari format as ``<root>/<dataset_id>/`` and return that folder.

    The folder is built under a temporary name next to its destination and renamed into place,
    so readers never see half a dataset.

    :param dataset_id: a Minari id, ``(namespace/)name-vN``.
    :param root: the datasets root; default ``$MINARI_DATASETS_PATH`` (or ``~/.minari/datasets``).
    :param overwrite: replace an existing dataset of that id instead of refusing.
    :param observation_space: recorded in the metadata; default: the env's (from ``info.env_id``),
        else an unbounded Box of the observations' shape.
    :param action_space: as ``observation_space``, for actions.
    """
    if not _DATASET_ID.fullmatch(dataset_id):
        raise DatasetError(f"malformed dataset id {dataset_id!r}: Minari ids look like 'namespace/name-v0' "
                           "(the namespace is optional, the version is not)")
    if len(dataset) == 0:
        raise DatasetError(f"refusing to write dataset {dataset_id!r}: it is empty")
    base = Path(root) if root is not None else minari_root()
    target = base / dataset_id
    if target.exists() and not overwrite:
        raise DatasetError(f"a dataset {dataset_id!r} already exists at {target}; pass overwrite=True "
                           "(--overwrite) to replace it, or choose another id")
    observation_space, action_space = _spaces(dataset, observation_space, action_space)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_namespace_files(base, dataset_id)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        data_dir = building / "data"
        data_dir.mkdir()
        _write_episodes(dataset, data_dir / DATA_FILE)
        atomic_write_json(data_dir / METADATA_FILE,
                          _metadata(dataset, dataset_id, observation_space, action_space, data_dir))
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(building, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def _spaces(dataset: Dataset, observation_space: gym.Space[Any] | None, action_space: gym.Space[Any] | None
            ) -> tuple[gym.Space[Any], gym.Space[Any]]:
    if (observation_space is None or action_space is None) and dataset.info.env_id is not None:
        from hybridrl.data.validation import env_facts
        from hybridrl.envs.factory import check_env_id

        try:
            check_env_id(dataset.info.env_id)
            facts = env_facts(dataset.info.env_id)
            observation_space = observation_space or facts.observation_space
            action_space = action_space or facts.action_space
        except DatasetError:
            raise
        except Exception:
            pass  # an env this machine cannot create: fall back to unbounded Boxes of the shapes
    if observation_space is None:
        observation_space = gym.spaces.Box(-np.inf, np.inf, shape=dataset.observation_shape, dtype=np.float32)
    if action_space is None:
        action_space = gym.spaces.Box(-np.inf, np.inf, shape=dataset.action_shape, dtype=np.float32)
    return observation_space, action_space


def _write_namespace_files(base: Path, dataset_id: str) -> None:
    # Minari lists namespaces by their metadata file; create it for each level that lacks one.
    parts = dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        namespace_file = base.joinpath(*parts[:depth]) / "namespace_metadata.json"
        if not namespace_file.is_file():
            atomic_write_json(namespace_file, {})


def _write_episodes(dataset: Dataset, path: Path) -> None:
    arrays = dataset.to_numpy()
    starts = dataset.episode_starts
    with h5py.File(path, "w", track_order=True) as handle:
        for index in range(dataset.num_episodes):
            start, end = int(starts[index]), int(starts[index + 1])
            group = handle.create_group(f"episode_{index}")
            group.attrs["id"] = index
            group.attrs["total_steps"] = end - start
            observations = np.concatenate([arrays["observations"][start:end],
                                           arrays["next_observations"][end - 1:end]])
            group.create_dataset("observations", data=observations)
            group.create_dataset("actions", data=arrays["actions"][start:end])
            group.create_dataset("rewards", data=arrays["rewards"][start:end].astype(np.float64))
            group.create_dataset("terminations", data=arrays["terminations"][start:end])
            group.create_dataset("truncations", data=arrays["truncations"][start:end])


def _metadata(dataset: Dataset, dataset_id: str, observation_space: gym.Space[Any],
              action_space: gym.Space[Any], data_dir: Path) -> dict[str, Any]:
    import minari
    from minari.serialization import serialize_space

    info = dataset.info
    metadata: dict[str, Any] = {
        "dataset_id": dataset_id,
        "total_episodes": dataset.num_episodes,
        "total_steps": len(dataset),
        "data_format": "hdf5",
        "jpeg_encoding": False,
        "observation_space": serialize_space(observation_space),
        "action_space": serialize_space(action_space),
        "minari_version": minari.__version__,
        "author": ["hybridrl"],
        "algorithm_name": info.algorithm or "unknown",
        "description": info.description or f"{dataset_id}, written by hybridrl",
        "dataset_size": round(sum(f.stat().st_size for f in data_dir.iterdir()) / 1e6, 1),
    }
    if info.env_id is not None and not info.env_id.startswith("dmc:") and info.env_id in gym.envs.registry:
        metadata["env_spec"] = gym.spec(info.env_id).to_json()
    if info.reference_returns is not None:
        metadata["ref_min_score"], metadata["ref_max_score"] = (float(v) for v in info.reference_returns)
    metadata["hybridrl"] = {
        "env_id": info.env_id,
        "source": info.source,
        "reference_returns": list(info.reference_returns) if info.reference_returns else None,
        "reference_source": info.reference_source,
        **info.extra,
    }
    return metadata


# -- reading ---------------------------------------------------------------------------------------


def read_minari(folder: str | os.PathLike[str], dataset_id: str | None = None) -> Dataset:
    """Read the Minari dataset in ``folder`` (the dataset folder or its ``data/`` subfolder).

    :param dataset_id: the id to report; default: the one in its metadata.
    """
    data_dir = _data_dir(Path(folder))
    metadata_path = data_dir / METADATA_FILE
    if not metadata_path.is_file():
        raise DatasetNotFoundError(f"{folder} is not a Minari dataset: it has no data/{METADATA_FILE}")
    try:
        metadata = json.loads(metadata_path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{metadata_path} is not valid JSON ({error}); the dataset is corrupt") from error
    name = dataset_id or str(metadata.get("dataset_id", folder))
    if metadata.get("data_format", "hdf5") != "hdf5":
        raise DatasetError(f"dataset {name!r} is stored as {metadata['data_format']!r}; hybridrl reads Minari's "
                           "hdf5 storage only (convert it with Minari, or re-create it with data_format='hdf5')")
    data_path = data_dir / DATA_FILE
    if not data_path.is_file():
        raise DatasetError(f"dataset {name!r} has metadata but no {DATA_FILE} in {data_dir}; the download or "
                           "write was interrupted: delete the folder and create it again")
    observations, actions, rewards, terminations, truncations = [], [], [], [], []
    try:
        with h5py.File(data_path, "r") as handle:
            count = int(metadata.get("total_episodes", len(handle.keys())))
            for index in range(count):
                group_name = f"episode_{index}"
                if group_name not in handle:
                    raise DatasetError(f"dataset {name!r} lists {count} episodes but {DATA_FILE} lacks {group_name}")
                group = handle[group_name]
                for key in _EPISODE_KEYS:
                    if key not in group:
                        raise DatasetError(f"dataset {name!r}: {group_name} is missing the key {key!r} "
                                           f"(every episode needs {', '.join(_EPISODE_KEYS)})")
                    if not isinstance(group[key], h5py.Dataset):
                        raise DatasetError(f"dataset {name!r}: {group_name}/{key} is a group, i.e. a Dict or Tuple "
                                           "space; hybridrl datasets need flat Box observations and Box or "
                                           "Discrete actions (flatten the data first)")
                observations.append(group["observations"][()])
                actions.append(group["actions"][()])
                rewards.append(group["rewards"][()])
                terminations.append(group["terminations"][()])
                truncations.append(group["truncations"][()])
    except OSError as error:
        raise DatasetError(f"cannot read {data_path} ({error}); the file is corrupt or not HDF5") from error
    return Dataset.from_episodes(observations, actions, rewards, terminations, truncations,
                                 _info(metadata, name))


def _info(metadata: dict[str, Any], dataset_id: str) -> DatasetInfo:
    ours = metadata.get("hybridrl")
    env_id = None
    if isinstance(ours, dict) and ours.get("env_id"):
        env_id = str(ours["env_id"])
    elif metadata.get("env_spec"):
        try:
            env_id = str(json.loads(metadata["env_spec"])["id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            env_id = None
    reference: tuple[float, float] | None = None
    if metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
        reference = (float(metadata["ref_min_score"]), float(metadata["ref_max_score"]))
    known = ("env_id", "source", "reference_returns", "reference_source")
    extra = {key: value for key, value in ours.items() if key not in known} if isinstance(ours, dict) else {}
    return DatasetInfo(
        dataset_id=dataset_id,
        env_id=env_id,
        source=str(ours.get("source", "hybridrl")) if isinstance(ours, dict) else "minari",
        reference_returns=reference,
        reference_source=(ours.get("reference_source") if isinstance(ours, dict)
                          else ("recorded in the Minari metadata" if reference else None)),
        algorithm=metadata.get("algorithm_name"),
        description=metadata.get("description"),
        extra=extra,
    )
