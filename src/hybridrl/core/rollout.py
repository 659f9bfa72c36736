"""Rollout storage for on-policy learners, and generalised advantage estimation (GAE).

Episodes end in two ways that GAE must tell apart (Pardo et al. 2018, "Time limits in RL"):
*terminated* (a true terminal state: its value is zero) and *truncated* (a time limit: the episode
could have gone on, so we bootstrap from the value of the last observation). Storage keeps both
flags and, per step, the value of the state that actually followed, ``next_values``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def compute_gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray,
                terminated: np.ndarray, episode_ended: np.ndarray, gamma: float,
                gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns by GAE(gamma, lambda) over time-major arrays of shape ``(T, N)``.

    ``delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)``, where ``s'_t`` is the state
    that followed step t (the final observation when the episode was truncated there);
    ``A_t = delta_t + gamma * lambda * (1 - ended_t) * A_{t+1}``, so advantages never flow across
    an episode boundary. Returns are ``A_t + V(s_t)``.

    :param rewards: reward of each step.
    :param values: V(s_t) of each step's state.
    :param next_values: V(s'_t) of the state that followed each step.
    :param terminated: whether step t reached a terminal state.
    :param episode_ended: whether step t ended its episode (terminated or truncated).
    """
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards, dtype=np.float32)
    not_terminal = 1.0 - terminated.astype(np.float32)
    continues = 1.0 - episode_ended.astype(np.float32)
    deltas = rewards + gamma * not_terminal * next_values - values
    running = np.zeros(rewards.shape[1:], dtype=np.float32)
    for t in reversed(range(steps)):
        running = deltas[t] + gamma * gae_lambda * continues[t] * running
        advantages[t] = running
    return advantages, (advantages + values).astype(np.float32)


@dataclass
class RolloutBuffer:
    """Preallocated, time-major storage for ``num_steps`` steps of ``num_envs`` environments.

    Arrays are allocated once for the whole run and overwritten each rollout.
    """

    observations: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    rewards: np.ndarray
    values: np.ndarray
    next_values: np.ndarray
    terminated: np.ndarray
    episode_ended: np.ndarray

    @classmethod
    def allocate(cls, num_steps: int, num_envs: int, observation_shape: tuple[int, ...],
                 action_shape: tuple[int, ...], action_dtype: type = np.float32) -> RolloutBuffer:
        """Allocate zeroed arrays for one rollout."""
        def zeros(*shape: int, dtype: type = np.float32) -> np.ndarray:
            return np.zeros((num_steps, num_envs, *shape), dtype=dtype)

        return cls(
            observations=zeros(*observation_shape),
            actions=zeros(*action_shape, dtype=action_dtype),
            log_probs=zeros(),
            rewards=zeros(),
            values=zeros(),
            next_values=zeros(),
            terminated=zeros(dtype=bool),
            episode_ended=zeros(dtype=bool),
        )

    def advantages_and_returns(self, gamma: float, gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
        """GAE advantages and value targets of the stored rollout (:func:`compute_gae`)."""
        return compute_gae(self.rewards, self.values, self.next_values, self.terminated,
                           self.episode_ended, gamma, gae_lambda)
