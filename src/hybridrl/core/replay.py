"""Replay buffers on the device: preallocated transition arrays that jitted updates sample from.

A :class:`ReplayBuffer` is a pytree (a :class:`~hybridrl.data.TransitionBatch` of ``capacity``
rows, a fill count and a write position), so adding, sampling and whole training loops run inside
one compiled function and a checkpoint stores the buffer like any other state. Adding is a ring
write; :func:`replay_add` is pure, and the jitted :func:`add_transitions` donates the old buffer so
XLA writes in place instead of copying ``capacity`` rows per call.

:func:`mixture_weights` and :func:`sample_blocks` make a buffer of equal-sized blocks of
transitions, one per weak learner, into AILBoost's weighted buffer of the boosted mixture: a draw
picks a block by its mass, then a row uniformly inside it.
"""

from __future__ import annotations

import functools
from typing import SupportsFloat, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hybridrl.data.dataset import TransitionBatch


@struct.dataclass
class ReplayBuffer:
    """``capacity`` transitions; rows ``[0, size)`` hold data, the next write goes to ``position``."""

    transitions: TransitionBatch
    size: jax.Array
    position: jax.Array

    @property
    def capacity(self) -> int:
        """Rows the buffer holds (static)."""
        return int(self.transitions.rewards.shape[0])


def replay_buffer(capacity: int, observation_dim: int, action_dim: int) -> ReplayBuffer:
    """An empty buffer of ``capacity`` float32 transitions (terminations and truncations as float32 0/1)."""
    if capacity < 1:
        raise ValueError(f"replay capacity must be positive, got {capacity}")
    zeros = functools.partial(jnp.zeros, dtype=jnp.float32)
    transitions = TransitionBatch(
        observations=zeros((capacity, observation_dim)), actions=zeros((capacity, action_dim)),
        rewards=zeros((capacity,)), next_observations=zeros((capacity, observation_dim)),
        terminations=zeros((capacity,)), truncations=zeros((capacity,)))
    return ReplayBuffer(transitions=transitions, size=jnp.zeros((), jnp.int32), position=jnp.zeros((), jnp.int32))


def replay_add(buffer: ReplayBuffer, new: TransitionBatch) -> ReplayBuffer:
    """``buffer`` with the rows of ``new`` written at the position, wrapping around (oldest rows go first)."""
    count = new.rewards.shape[0]
    rows = (buffer.position + jnp.arange(count)) % buffer.capacity
    transitions = jax.tree_util.tree_map(lambda stored, fresh: stored.at[rows].set(fresh.astype(stored.dtype)),
                                         buffer.transitions, new)
    return ReplayBuffer(transitions=transitions, size=jnp.minimum(buffer.size + count, buffer.capacity),
                        position=(buffer.position + count) % buffer.capacity)


#: :func:`replay_add`, compiled, writing into the donated buffer.
add_transitions = jax.jit(replay_add, donate_argnums=0)


def replay_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> TransitionBatch:
    """``batch_size`` rows drawn uniformly, with replacement, from the filled part; pure (usable in scans)."""
    rows = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return cast(TransitionBatch, jax.tree_util.tree_map(lambda leaf: leaf[rows], buffer.transitions))


def host_transitions(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                     next_observations: np.ndarray, terminations: np.ndarray,
                     truncations: np.ndarray) -> TransitionBatch:
    """A batch of host arrays as a float32 :class:`TransitionBatch` ready for :func:`add_transitions`.

    The arrays are copied: on CPU, JAX may read a numpy argument in place after the (asynchronous)
    call returns, so a caller reusing its staging arrays would change rows not yet written.
    """
    columns = [np.array(array, dtype=np.float32, copy=True) for array in
               (observations, actions, rewards, next_observations, terminations, truncations)]
    return TransitionBatch(*cast(list[jax.Array], columns))


class TransitionStager:
    """Preallocated host rows for transitions collected step by step before one device write."""

    def __init__(self, rows: int, observation_dim: int, action_dim: int) -> None:
        self.observations = np.zeros((rows, observation_dim), np.float32)
        self.actions = np.zeros((rows, action_dim), np.float32)
        self.rewards = np.zeros(rows, np.float32)
        self.next_observations = np.zeros((rows, observation_dim), np.float32)
        self.terminations = np.zeros(rows, np.float32)
        self.truncations = np.zeros(rows, np.float32)

    def put(self, row: int, observation: np.ndarray, action: np.ndarray, reward: SupportsFloat,
            next_observation: np.ndarray, terminated: bool, truncated: bool) -> None:
        """Write one transition into ``row``."""
        self.observations[row] = observation
        self.actions[row] = action
        self.rewards[row] = float(reward)
        self.next_observations[row] = next_observation
        self.terminations[row] = terminated
        self.truncations[row] = truncated

    def take(self, count: int) -> TransitionBatch:
        """Copies of the first ``count`` rows, ready for :func:`add_transitions` (the rows can be reused)."""
        return host_transitions(self.observations[:count], self.actions[:count], self.rewards[:count],
                                self.next_observations[:count], self.terminations[:count], self.truncations[:count])


# --------------------------------------------------------------------------------------------
# Block weights: the boosted mixture's occupancy
# --------------------------------------------------------------------------------------------


def mixture_weights(num_blocks: int, alpha: float) -> np.ndarray:
    """Mass of each of ``num_blocks`` learners' blocks in the boosted mixture
    ``d_k = (1 - alpha) d_{k-1} + alpha d^{pi_k}`` with ``d_1 = d^{pi_1}``:

    block 1 gets ``(1 - alpha)^(k-1)``, block ``i >= 2`` gets ``alpha (1 - alpha)^(k-i)``; they sum to 1.
    Computed in float64 (the first block's mass underflows float32 only after thousands of rounds).
    """
    if num_blocks < 1:
        raise ValueError(f"need at least one block, got {num_blocks}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    ages = np.arange(num_blocks - 1, -1, -1, dtype=np.float64)  # k - i for i = 1..k
    weights = alpha * (1.0 - alpha) ** ages
    weights[0] = (1.0 - alpha) ** (num_blocks - 1)
    return weights


def sample_blocks(key: jax.Array, log_weights: jax.Array, block_size: int, batch_size: int) -> jax.Array:
    """Row indices of a buffer of consecutive ``block_size``-row blocks: each draw picks a block by
    mass (``log_weights``; ``-inf`` for absent blocks), then a row uniformly inside it. Pure."""
    block_key, row_key = jax.random.split(key)
    blocks = jax.random.categorical(block_key, log_weights, shape=(batch_size,))
    return blocks * block_size + jax.random.randint(row_key, (batch_size,), 0, block_size)


__all__ = ["ReplayBuffer", "TransitionStager", "add_transitions", "host_transitions", "mixture_weights", "replay_add",
           "replay_buffer", "replay_sample", "sample_blocks"]
