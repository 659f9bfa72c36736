"""The offline dataset: transitions with episode boundaries, held as device arrays.

A :class:`Dataset` stores ``N`` transitions ``(s, a, r, s', terminated, truncated)`` in arrays
with a leading axis of length ``N``, ordered episode by episode. ``episode_starts`` (length
``E + 1``) marks the boundaries: episode ``i`` is the slice ``episode_starts[i]:episode_starts[i + 1]``.

``terminations[t]`` is true when ``s'`` is terminal (no bootstrapping); ``truncations[t]`` when the
episode was cut (time limit, end of data) and a learner should bootstrap from ``s'``. Every episode's
last transition carries one of the two flags; no other transition does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hybridrl.errors import ConfigError


@struct.dataclass
class TransitionBatch:
    """A batch of transitions (device arrays with a leading batch axis); a pytree for jitted updates."""

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    terminations: jax.Array
    truncations: jax.Array


@dataclass(frozen=True)
class Episode:
    """One episode of a dataset (device arrays of length ``T``, the episode's number of steps).

    :param index: the episode's position in its dataset.
    """

    index: int
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    terminations: jax.Array
    truncations: jax.Array

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def episode_return(self) -> float:
        """The undiscounted sum of rewards."""
        return float(np.asarray(self.rewards, dtype=np.float64).sum())

    @property
    def terminated(self) -> bool:
        """Whether the episode ended in a terminal state (not by a time limit or the end of data)."""
        return bool(self.terminations[-1])


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and where it came from.

    :param dataset_id: the id it was loaded by (a Minari id, a file path, or ours like
        ``hopper-medium-v5``).
    :param env_id: the environment that produced it (``Hopper-v5``, ``dmc:walker-walk``), or None
        where the file does not say.
    :param source: ``"minari"``, ``"d4rl"`` or ``"hybridrl"`` (ours, in Minari format).
    :param reference_returns: ``(random, expert)`` returns that normalised scores are computed
        from (0 = random, 100 = expert); None when the dataset records none.
    :param reference_source: where those returns come from (e.g. ``"measured by hybridrl data make"``).
    :param algorithm: the behaviour policy's algorithm, if recorded.
    :param description: free text.
    :param extra: any further metadata (JSON-ready).
    """

    dataset_id: str
    env_id: str | None = None
    source: str = "hybridrl"
    reference_returns: tuple[float, float] | None = None
    reference_source: str | None = None
    algorithm: str | None = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sample_transitions(transitions: TransitionBatch, key: jax.Array, batch_size: int) -> TransitionBatch:
    """``batch_size`` transitions drawn uniformly with replacement; pure, so learners call it
    inside their jitted ``lax.scan`` training loops."""
    indices = jax.random.randint(key, (batch_size,), 0, transitions.rewards.shape[0])
    return cast(TransitionBatch, jax.tree_util.tree_map(lambda leaf: leaf[indices], transitions))


_sample_with_key = jax.jit(sample_transitions, static_argnames=("batch_size",))


@jax.jit
def _gather(transitions: TransitionBatch, indices: jax.Array) -> TransitionBatch:
    return jax.tree_util.tree_map(lambda leaf: leaf[indices], transitions)


class Dataset:
    """Transitions and episodes of an offline dataset, as device arrays.

    Build one with :meth:`from_arrays` or :meth:`from_episodes`, or load one with
    :func:`hybridrl.data.load_dataset`. Arrays are read-only views; use :meth:`to_numpy` for host
    copies.

    :param transitions: every transition, in episode order.
    :param episode_starts: ``E + 1`` offsets, first 0, last ``N``; episode ``i`` is
        ``[episode_starts[i], episode_starts[i + 1])``.
    :param info: metadata.
    """

    def __init__(self, transitions: TransitionBatch, episode_starts: np.ndarray, info: DatasetInfo) -> None:
        self.transitions = transitions
        self.episode_starts = np.asarray(episode_starts, dtype=np.int64)
        self.episode_starts.setflags(write=False)
        self.info = info

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    next_observations: np.ndarray, terminations: np.ndarray, truncations: np.ndarray,
                    episode_starts: np.ndarray, info: DatasetInfo) -> Dataset:
        """A dataset from host arrays (copied to the device once).

        Observations and actions are stored as float32 (integer actions of discrete spaces stay
        integers), rewards as float32, flags as bool. Consistency is checked by
        :func:`hybridrl.data.validate_dataset`, not here.
        """
        action_array = np.asarray(actions)
        action_dtype = action_array.dtype if np.issubdtype(action_array.dtype, np.integer) else np.float32
        transitions = TransitionBatch(
            observations=jnp.asarray(np.asarray(observations, dtype=np.float32)),
            actions=jnp.asarray(action_array.astype(action_dtype, copy=False)),
            rewards=jnp.asarray(np.asarray(rewards, dtype=np.float32).reshape(-1)),
            next_observations=jnp.asarray(np.asarray(next_observations, dtype=np.float32)),
            terminations=jnp.asarray(np.asarray(terminations, dtype=bool).reshape(-1)),
            truncations=jnp.asarray(np.asarray(truncations, dtype=bool).reshape(-1)),
        )
        return cls(transitions, np.asarray(episode_starts, dtype=np.int64), info)

    @classmethod
    def from_episodes(cls, observations: list[np.ndarray], actions: list[np.ndarray], rewards: list[np.ndarray],
                      terminations: list[np.ndarray], truncations: list[np.ndarray], info: DatasetInfo) -> Dataset:
        """A dataset from per-episode arrays in Minari's layout (``T + 1`` observations, ``T`` of the rest).

        The arrays are copied once into preallocated arrays of the total size.
        """
        lengths = np.asarray([len(episode_rewards) for episode_rewards in rewards], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(starts[-1])
        if not observations:
            observation_shape: tuple[int, ...] = ()
            action_shape: tuple[int, ...] = ()
            action_dtype: Any = np.float32
        else:
            observation_shape = tuple(np.shape(observations[0])[1:])
            action_shape = tuple(np.shape(actions[0])[1:])
            action_dtype = np.asarray(actions[0]).dtype
        observation_array = np.empty((total, *observation_shape), dtype=np.float32)
        next_observation_array = np.empty((total, *observation_shape), dtype=np.float32)
        action_array = np.empty((total, *action_shape), dtype=action_dtype)
        reward_array = np.empty(total, dtype=np.float32)
        termination_array = np.empty(total, dtype=bool)
        truncation_array = np.empty(total, dtype=bool)
        for index, (start, end) in enumerate(itertools.pairwise(starts)):
            episode_observations = np.asarray(observations[index])
            if episode_observations.shape[0] != end - start + 1:
                from hybridrl.data.validation import DatasetError

                raise DatasetError(
                    f"episode {index} has {episode_observations.shape[0]} observations for {end - start} steps; "
                    "an episode of T steps needs T + 1 observations (the last one is the final state)"
                )
            observation_array[start:end] = episode_observations[:-1]
            next_observation_array[start:end] = episode_observations[1:]
            action_array[start:end] = actions[index]
            reward_array[start:end] = rewards[index]
            termination_array[start:end] = terminations[index]
            truncation_array[start:end] = truncations[index]
        return cls.from_arrays(observation_array, action_array, reward_array, next_observation_array,
                               termination_array, truncation_array, starts, info)

    # -- sizes -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.transitions.rewards.shape[0])

    @property
    def num_episodes(self) -> int:
        """Number of episodes."""
        return len(self.episode_starts) - 1

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(self.transitions.observations.shape[1:])

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one action (``()`` for discrete actions)."""
        return tuple(self.transitions.actions.shape[1:])

    @property
    def episode_lengths(self) -> np.ndarray:
        """Steps per episode, on the host."""
        return np.diff(self.episode_starts)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode (float64, on the host)."""
        if self.num_episodes == 0:
            return np.zeros(0, dtype=np.float64)
        rewards = np.asarray(self.transitions.rewards, dtype=np.float64)
        return np.add.reduceat(rewards, self.episode_starts[:-1]) if len(rewards) else np.zeros(self.num_episodes)

    # -- access ----------------------------------------------------------------------------------

    def sample(self, batch_size: int, key_or_rng: jax.Array | np.random.Generator) -> TransitionBatch:
        """``batch_size`` transitions drawn uniformly with replacement.

        :param key_or_rng: a JAX PRNG key (the draw is one jitted call: use this inside training
            loops) or a numpy generator.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if len(self) == 0:
            from hybridrl.data.validation import DatasetError

            raise DatasetError(f"dataset {self.info.dataset_id!r} is empty: nothing to sample")
        if isinstance(key_or_rng, np.random.Generator):
            indices = key_or_rng.integers(0, len(self), size=batch_size)
            return _gather(self.transitions, jnp.asarray(indices))
        return _sample_with_key(self.transitions, key_or_rng, batch_size)

    def episode(self, index: int) -> Episode:
        """Episode ``index`` (negative indices count from the end)."""
        if not -self.num_episodes <= index < self.num_episodes:
            raise IndexError(f"episode {index} out of range: the dataset has {self.num_episodes} episodes")
        index %= self.num_episodes
        start, end = int(self.episode_starts[index]), int(self.episode_starts[index + 1])
        part = jax.tree_util.tree_map(lambda leaf: leaf[start:end], self.transitions)
        return Episode(index=index, observations=part.observations, actions=part.actions, rewards=part.rewards,
                       next_observations=part.next_observations, terminations=part.terminations,
                       truncations=part.truncations)

    def episodes(self) -> Iterator[Episode]:
        """Every episode, in order."""
        for index in range(self.num_episodes):
            yield self.episode(index)

    def first_episodes(self, count: int) -> Dataset:
        """A dataset of the first ``count`` episodes (same metadata), e.g. ``count`` demonstrations.

        :raises DatasetError: when the dataset has fewer episodes.
        """
        if not 1 <= count <= self.num_episodes:
            from hybridrl.data.validation import DatasetError

            raise DatasetError(f"asked for {count} episodes of {self.info.dataset_id!r}, which has "
                               f"{self.num_episodes}; record more (`hybridrl data demos ENV --episodes N`) "
                               "or ask for fewer")
        end = int(self.episode_starts[count])
        part = jax.tree_util.tree_map(lambda leaf: leaf[:end], self.transitions)
        return Dataset(part, self.episode_starts[: count + 1], self.info)

    @property
    def action_repeat(self) -> int:
        """The action repeat the episodes were recorded with (1 unless the metadata says otherwise)."""
        return int(self.info.extra.get("action_repeat", 1))

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Host copies of the transition arrays, keyed by field name, plus ``episode_starts``."""
        arrays = {name: np.asarray(getattr(self.transitions, name)) for name in
                  ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")}
        arrays["episode_starts"] = np.asarray(self.episode_starts)
        return arrays

    # -- scores ----------------------------------------------------------------------------------

    def normalized_score(self, episode_return: float | np.ndarray) -> float | np.ndarray:
        """D4RL-style normalised score ``100 (R - random) / (expert - random)`` from this dataset's
        reference returns (0 = random, 100 = expert).

        :raises DatasetError: when the dataset records no reference returns.
        """
        if self.info.reference_returns is None:
            from hybridrl.data.validation import DatasetError

            raise DatasetError(
                f"dataset {self.info.dataset_id!r} records no reference returns, so it has no normalised score; "
                "use hybridrl.data.d4rl_reference_returns(env_id) for D4RL's published constants"
            )
        random_return, expert_return = self.info.reference_returns
        returns = np.asarray(episode_return, dtype=np.float64)
        scores = 100.0 * (returns - random_return) / (expert_return - random_return)
        return float(scores) if scores.ndim == 0 else scores

    def __repr__(self) -> str:
        return (f"Dataset({self.info.dataset_id!r}, env={self.info.env_id!r}, transitions={len(self)}, "
                f"episodes={self.num_episodes}, observation_shape={self.observation_shape}, "
                f"action_shape={self.action_shape})")
