"""D4RL HDF5 files, read directly with h5py (D4RL itself no longer installs).

A D4RL file holds flat arrays over all transitions: ``observations``, ``actions``, ``rewards``,
``terminals`` (the next state is terminal), ``timeouts`` (a time limit cut the episode here) and,
in the v2 files, ``next_observations``. Episodes end where ``terminals | timeouts`` is set.

Without ``next_observations`` the state after a timeout is unknown (the next row starts a new
episode), so, as ``d4rl.qlearning_dataset`` does, the timed-out transition is dropped and the one
before it is marked truncated; the next observation of a terminal transition is set to its own
observation (it never enters a target: the transition terminates). A last episode that the file cuts
off without a flag is marked truncated (with ``next_observations``) or loses its final transition
(without). Files of older D4RL versions without ``timeouts`` are rejected: their episode ends cannot
be recovered.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from hybridrl.data.dataset import Dataset, DatasetInfo
from hybridrl.data.validation import DatasetError, DatasetNotFoundError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def read_d4rl(path: str | os.PathLike[str], env_id: str | None = None,
              reference_returns: tuple[float, float] | None = None) -> Dataset:
    """Read a D4RL HDF5 file.

    :param path: the ``.hdf5`` file (e.g. ``~/.d4rl/datasets/hopper_medium-v2.hdf5``).
    :param env_id: the env to record (D4RL files do not name it); default: guessed from the file
        name for the MuJoCo locomotion tasks (``hopper_medium-v2.hdf5`` -> ``Hopper-v5``), else None.
    :param reference_returns: ``(random, expert)`` returns for normalised scores; default: D4RL's
        published constants for the guessed env, labelled as such.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"D4RL file {path} does not exist")
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in REQUIRED_KEYS if key not in handle]
            if missing:
                raise DatasetError(f"{path} is not a D4RL dataset file: it lacks {', '.join(missing)} (a D4RL file "
                                   f"needs {', '.join(REQUIRED_KEYS)}, and may have next_observations)")
            observations = np.asarray(handle["observations"][()], dtype=np.float32)
            actions = np.asarray(handle["actions"][()])
            rewards = np.asarray(handle["rewards"][()], dtype=np.float32).reshape(-1)
            terminals = np.asarray(handle["terminals"][()], dtype=bool).reshape(-1)
            timeouts = np.asarray(handle["timeouts"][()], dtype=bool).reshape(-1)
            next_observations = (np.asarray(handle["next_observations"][()], dtype=np.float32)
                                 if "next_observations" in handle else None)
    except OSError as error:
        raise DatasetError(f"cannot read {path} as HDF5 ({error}); the file is corrupt or of another format") from error
    size = len(rewards)
    lengths = {"observations": len(observations), "actions": len(actions), "terminals": len(terminals),
               "timeouts": len(timeouts)}
    if next_observations is not None:
        lengths["next_observations"] = len(next_observations)
    wrong = {key: length for key, length in lengths.items() if length != size}
    if wrong:
        details = ", ".join(f"{key} {length}" for key, length in wrong.items())
        raise DatasetError(f"{path}: arrays differ in length ({size} rewards but {details}); the file is truncated "
                           "or was written wrongly")
    if not np.issubdtype(actions.dtype, np.integer):
        actions = actions.astype(np.float32)

    if next_observations is not None:
        keep = np.ones(size, dtype=bool)
        next_obs = next_observations
        truncations = timeouts & ~terminals
        if size and not (terminals[-1] or timeouts[-1]):
            truncations[-1] = True  # the file ends mid-episode: the data, not the env, cut it
    else:
        # Drop timed-out transitions (and an unfinished tail's last step): their next state is unknown.
        keep = ~(timeouts & ~terminals)
        if size and not (terminals[-1] or timeouts[-1]):
            keep[-1] = False
        next_obs = np.empty_like(observations)
        next_obs[:-1] = observations[1:]
        next_obs[terminals] = observations[terminals]
        truncations = np.zeros(size, dtype=bool)
        # The kept transition just before a dropped one now ends its episode by truncation.
        dropped = np.flatnonzero(~keep)
        before = dropped - 1
        before = before[(before >= 0) & keep[np.maximum(before, 0)] & ~terminals[np.maximum(before, 0)]]
        truncations[before] = True

    terminations = terminals & keep
    truncations = truncations & keep & ~terminations
    index = np.flatnonzero(keep)
    ends = np.flatnonzero((terminations | truncations)[index]) + 1
    starts = np.concatenate([[0], ends]).astype(np.int64)
    if len(index) and starts[-1] != len(index):
        starts = np.append(starts, len(index))
    guessed_env = env_id or _guess_env(path.name)
    if reference_returns is None and guessed_env is not None:
        from hybridrl.envs.reference import reference_returns as d4rl_constants

        reference_returns = d4rl_constants(guessed_env)
        reference_source = "D4RL's published constants (d4rl/infos.py)" if reference_returns else None
    else:
        reference_source = "given by the caller" if reference_returns else None
    info = DatasetInfo(dataset_id=str(path), env_id=guessed_env, source="d4rl", reference_returns=reference_returns,
                       reference_source=reference_source, description=f"D4RL file {path.name}")
    return Dataset.from_arrays(observations[index], actions[index], rewards[index], next_obs[index],
                               terminations[index], truncations[index], starts, info)


def _guess_env(file_name: str) -> str | None:
    stem = file_name.lower()
    for prefix, env_id in (("halfcheetah", "HalfCheetah-v5"), ("hopper", "Hopper-v5"),
                           ("walker2d", "Walker2d-v5"), ("walker", "Walker2d-v5"), ("ant", "Ant-v5")):
        if stem.startswith(prefix) and not stem.startswith("antmaze"):
            return env_id
    return None
