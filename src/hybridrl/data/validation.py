"""Dataset validation: every check raises :class:`DatasetError` with a message a user can act on.

Checks, in order: the dataset is not empty; episode boundaries are well formed; observations and
actions have the shapes of the environment's spaces; no NaN or infinite values; actions lie in the
action space's bounds; termination and truncation flags agree with episode lengths (every episode
ends with exactly one reason, no flag inside an episode, no episode longer than the env's time
limit); and the dataset belongs to the environment it is used with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from hybridrl.data.dataset import Dataset
from hybridrl.errors import HybridRLError

#: Slack on action bounds: float32 round-off of a clipped action must not count as out of bounds.
ACTION_BOUND_TOLERANCE = 1e-5


class DatasetError(HybridRLError):
    """A dataset is missing, malformed or does not fit the environment it is used with."""


class DatasetNotFoundError(DatasetError):
    """No dataset with the given id or path exists locally."""


@dataclass(frozen=True)
class EnvFacts:
    """What validation needs to know about an environment.

    :param env_id: the environment's id.
    :param observation_space: its observation space.
    :param action_space: its action space.
    :param max_episode_steps: its time limit, or None if it has none.
    """

    env_id: str
    observation_space: gym.Space[Any]
    action_space: gym.Space[Any]
    max_episode_steps: int | None


def env_facts(env_id: str) -> EnvFacts:
    """Spaces and time limit of ``env_id`` (creates and closes one instance)."""
    from hybridrl.envs.factory import make_env

    env = make_env(env_id)
    try:
        limit = None
        wrapper: Any = env
        while wrapper is not None:
            if isinstance(wrapper, gym.wrappers.TimeLimit):
                limit = int(wrapper._max_episode_steps)
                break
            wrapper = getattr(wrapper, "env", None)
        return EnvFacts(env_id, env.observation_space, env.action_space, limit)
    finally:
        env.close()


def validate_dataset(dataset: Dataset, env: str | EnvFacts | None = None) -> None:
    """Check ``dataset`` and, if given, that it fits ``env``; raise :class:`DatasetError` otherwise.

    :param dataset: the dataset to check.
    :param env: an env id or :class:`EnvFacts` to check shapes, bounds, time limits and the
        dataset's recorded env against. None checks the dataset's own env when it records one
        that can be created, and only the env-free checks otherwise.
    """
    name = dataset.info.dataset_id
    if len(dataset) == 0 or dataset.num_episodes == 0:
        raise DatasetError(f"dataset {name!r} is empty: it has no transitions")
    _check_boundaries(dataset)
    arrays = dataset.to_numpy()
    for key in ("observations", "actions", "rewards", "next_observations"):
        values = arrays[key]
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
            raise DatasetError(f"dataset {name!r} has NaN or infinite {key} in {len(bad)} transitions "
                               f"(first at index {int(bad[0])}); clean or regenerate the data")
    _check_flags(dataset, arrays)

    facts = _resolve_env(dataset, env)
    if facts is None:
        return
    recorded = dataset.info.env_id
    if recorded is not None and recorded != facts.env_id:
        raise DatasetError(f"dataset {name!r} was collected on {recorded}, not {facts.env_id}; "
                           f"use a {facts.env_id} dataset or pass env={recorded!r}")
    _check_space(name, "observations", arrays["observations"], facts.observation_space, facts.env_id)
    _check_space(name, "actions", arrays["actions"], facts.action_space, facts.env_id)
    _check_action_bounds(name, arrays["actions"], facts.action_space)
    limit = facts.max_episode_steps
    if limit is not None:
        lengths = dataset.episode_lengths
        too_long = np.flatnonzero(lengths > limit)
        if len(too_long):
            episode = int(too_long[0])
            raise DatasetError(f"dataset {name!r}: episode {episode} has {int(lengths[episode])} steps but "
                               f"{facts.env_id} truncates episodes at {limit}; its flags or boundaries are wrong, "
                               "or it belongs to another env")


def _resolve_env(dataset: Dataset, env: str | EnvFacts | None) -> EnvFacts | None:
    if isinstance(env, EnvFacts):
        return env
    if isinstance(env, str):
        return env_facts(env)
    if dataset.info.env_id is None:
        return None
    from hybridrl.envs.factory import check_env_id

    try:
        check_env_id(dataset.info.env_id)
    except HybridRLError:
        return None  # an env this installation lacks: only the env-free checks apply
    return env_facts(dataset.info.env_id)


def _check_boundaries(dataset: Dataset) -> None:
    starts = dataset.episode_starts
    name = dataset.info.dataset_id
    if starts.ndim != 1 or starts[0] != 0 or starts[-1] != len(dataset) or (np.diff(starts) <= 0).any():
        raise DatasetError(f"dataset {name!r} has malformed episode boundaries: they must rise strictly from 0 "
                           f"to the number of transitions ({len(dataset)}), and no episode may be empty")
    fields = ("observations", "actions", "next_observations", "terminations", "truncations")
    for field in fields:
        size = getattr(dataset.transitions, field).shape[0]
        if size != len(dataset):
            raise DatasetError(f"dataset {name!r} has {size} {field} for {len(dataset)} rewards; "
                               "every field needs one entry per transition")
    if dataset.transitions.next_observations.shape != dataset.transitions.observations.shape:
        raise DatasetError(f"dataset {name!r}: next_observations have shape "
                           f"{tuple(dataset.transitions.next_observations.shape)}, observations "
                           f"{tuple(dataset.transitions.observations.shape)}; they must match")


def _check_flags(dataset: Dataset, arrays: dict[str, np.ndarray]) -> None:
    name = dataset.info.dataset_id
    ended = arrays["terminations"] | arrays["truncations"]
    last_steps = dataset.episode_starts[1:] - 1
    unfinished = np.flatnonzero(~ended[last_steps])
    if len(unfinished):
        episode = int(unfinished[0])
        raise DatasetError(
            f"dataset {name!r}: episode {episode} ({int(dataset.episode_lengths[episode])} steps) ends with neither "
            f"a termination nor a truncation flag ({len(unfinished)} episodes do); every episode must end with one"
        )
    inner = ended.copy()
    inner[last_steps] = False
    flagged = np.flatnonzero(inner)
    if len(flagged):
        step = int(flagged[0])
        episode = int(np.searchsorted(dataset.episode_starts, step, side="right") - 1)
        raise DatasetError(
            f"dataset {name!r}: transition {step} inside episode {episode} (step "
            f"{step - int(dataset.episode_starts[episode]) + 1} of {int(dataset.episode_lengths[episode])}) "
            f"carries a termination or truncation flag; flags contradict the episode lengths ({len(flagged)} such "
            "transitions)"
        )


def _check_space(name: str, key: str, values: np.ndarray, space: gym.Space[Any], env_id: str) -> None:
    expected = tuple(space.shape or ())
    if tuple(values.shape[1:]) != expected:
        raise DatasetError(f"dataset {name!r}: {key} have shape {tuple(values.shape[1:])} but {env_id}'s "
                           f"{key[:-1].replace('_', ' ')} space has shape {expected}; the dataset belongs to "
                           "another env or was stored wrongly")
    if isinstance(space, gym.spaces.Discrete):
        outside = (values < space.start) | (values >= space.start + space.n)
        if outside.any():
            raise DatasetError(f"dataset {name!r}: {int(outside.sum())} {key} lie outside {env_id}'s {space}")


def _check_action_bounds(name: str, actions: np.ndarray, space: gym.Space[Any]) -> None:
    if not isinstance(space, gym.spaces.Box):
        return
    low = np.asarray(space.low, dtype=np.float64) - ACTION_BOUND_TOLERANCE
    high = np.asarray(space.high, dtype=np.float64) + ACTION_BOUND_TOLERANCE
    outside = ((actions < low) | (actions > high)).reshape(len(actions), -1).any(axis=1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise DatasetError(
            f"dataset {name!r}: {int(outside.sum())} actions lie outside the action bounds "
            f"[{float(np.min(space.low)):g}, {float(np.max(space.high)):g}] (first at transition {first}: "
            f"{np.array2string(actions[first], precision=3)}); clip them to the action space before storing"
        )
