"""``load_dataset``: one entry point for Minari ids, hybridrl's own ids, Minari folders and D4RL files."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from hybridrl.data.d4rl import read_d4rl
from hybridrl.data.dataset import Dataset
from hybridrl.data.minari_format import (
    HYBRIDRL_NAMESPACE,
    is_minari_folder,
    list_local_datasets,
    minari_root,
    read_minari,
)
from hybridrl.data.validation import DatasetNotFoundError, EnvFacts, validate_dataset

_HDF5_SUFFIXES = (".hdf5", ".h5")


def resolve_dataset(name: str, root: str | os.PathLike[str] | None = None) -> tuple[str, Path]:
    """Where the dataset ``name`` is: ``("d4rl" | "minari", path)``.

    Tried in order: an existing ``.hdf5``/``.h5`` file (D4RL), an existing folder holding a Minari
    dataset, the Minari id under the root, and ``hybridrl/<name>`` under the root (the datasets
    ``hybridrl data make`` writes).
    """
    candidate = Path(name).expanduser()
    if candidate.suffix in _HDF5_SUFFIXES:
        if candidate.is_file():
            return "d4rl", candidate
        raise DatasetNotFoundError(f"D4RL file {candidate} does not exist")
    if candidate.is_dir() and is_minari_folder(candidate):
        return "minari", candidate
    base = Path(root) if root is not None else minari_root()
    for dataset_id in (name, f"{HYBRIDRL_NAMESPACE}/{name}"):
        folder = base / dataset_id
        if is_minari_folder(folder):
            return "minari", folder
    known = list_local_datasets(base)
    short = [dataset_id.removeprefix(f"{HYBRIDRL_NAMESPACE}/") for dataset_id in known]
    close = difflib.get_close_matches(name, sorted(set(known + short)), n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise DatasetNotFoundError(
        f"no dataset {name!r} in {base} (MINARI_DATASETS_PATH) and no such file or folder.{hint} Generate one "
        "with `hybridrl data make hopper-medium-sac-v5`, pass a D4RL .hdf5 file or a Minari dataset folder, or "
        "`hybridrl data list` to see what is there. hybridrl never downloads datasets."
    )


def load_dataset(name: str, env: str | EnvFacts | None = None, validate: bool = True,
                 root: str | os.PathLike[str] | None = None) -> Dataset:
    """Load an offline dataset as device arrays.

    ``name`` can be

    * one of ours, as ``hybridrl data make`` names them: ``"hopper-medium-sac-v5"`` (stored as the
      Minari id ``hybridrl/hopper-medium-sac-v5``), or a legacy PPO-made ``"hopper-medium-v5"``;
    * any Minari id in the local Minari root (``"mujoco/hopper/medium-v0"``); no network is used;
    * a Minari dataset folder, or a D4RL ``.hdf5`` file on disk.

    :param env: an env id the dataset must belong to (checked, with its spaces and time limit);
        default: the env the dataset records.
    :param validate: run :func:`hybridrl.data.validate_dataset` (shapes, NaN/inf, action bounds,
        flags against episode lengths, env); turn off only for data you have checked.
    :param root: the Minari root; default ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``.
    :raises DatasetNotFoundError: nothing of that name exists locally.
    :raises DatasetError: the data is malformed or does not fit ``env``.
    """
    kind, path = resolve_dataset(name, root)
    if kind == "d4rl":
        env_id = env.env_id if isinstance(env, EnvFacts) else env
        dataset = read_d4rl(path, env_id=env_id)
    else:
        dataset = read_minari(path, dataset_id=name)
    if validate:
        validate_dataset(dataset, env)
    return dataset
