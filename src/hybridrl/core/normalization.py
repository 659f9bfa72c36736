"""Running mean/std normalisers for observations and returns, with checkpointable state.

Statistics are kept in float64 on the host and merged with the parallel-variance formula of
Chan et al. (1979), the same as ``gymnasium.wrappers.NormalizeObservation``; unlike the wrapper,
their state is explicit so checkpoints carry it and evaluation can freeze it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RunningMeanStd:
    """Running mean and variance of vectors of shape ``shape``.

    :param shape: shape of one sample.
    :param epsilon: initial pseudo-count, which also keeps the first variance finite.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)
        # sqrt(var + epsilon) for the variance array it was computed from (``update`` replaces ``var``).
        self._std: tuple[np.ndarray, float, np.ndarray] | None = None

    def update(self, batch: np.ndarray) -> None:
        """Merge a batch of samples (leading axis = samples) into the statistics."""
        batch = np.asarray(batch, dtype=np.float64).reshape((-1, *self.mean.shape))
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        if batch_count == 1:
            # One env per step: the merge below with a zero batch variance, term by term, so the same
            # floating-point result at half the numpy calls.
            delta = batch[0] - self.mean
            total = self.count + 1
            self.mean = self.mean + delta / total
            self.var = (self.var * self.count + delta**2 * self.count / total) / total
            self.count = total
            return
        # The arithmetic of np.mean/np.var without their Python overhead (this runs every env step).
        batch_mean = np.add.reduce(batch, axis=0) / batch_count
        centered = batch - batch_mean
        batch_var = np.add.reduce(centered * centered, axis=0) / batch_count
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def normalize(self, value: np.ndarray, clip: float | None = None, epsilon: float = 1e-8) -> np.ndarray:
        """``(value - mean) / sqrt(var + epsilon)``, optionally clipped to ``[-clip, clip]``, as float32."""
        normalized = (np.asarray(value) - self.mean) / self.std(epsilon)
        if clip is not None:
            normalized = np.minimum(np.maximum(normalized, -clip), clip)  # np.clip, without its Python overhead
        return normalized.astype(np.float32)

    def std(self, epsilon: float = 1e-8) -> np.ndarray:
        """``sqrt(var + epsilon)``, computed once per update of the statistics."""
        if self._std is None or self._std[0] is not self.var or self._std[1] != epsilon:
            self._std = (self.var, epsilon, np.sqrt(self.var + epsilon))
        return self._std[2]

    def state_dict(self) -> dict[str, Any]:
        """The statistics, for checkpoints."""
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.float64(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        if mean.shape != self.mean.shape:
            raise ValueError(f"normaliser shape {mean.shape} does not match {self.mean.shape}")
        self.mean = mean
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])


class ReturnNormalizer:
    """Scales rewards by the running std of the discounted return, per environment.

    This is the reward scaling of PPO's implementation details (``VecNormalize``): keep a
    discounted return per environment, track its variance, and divide rewards by its std. The
    mean is not subtracted, so the sign of rewards is kept.

    :param num_envs: number of parallel environments.
    :param gamma: discount of the tracked return.
    :param clip: clip scaled rewards to ``[-clip, clip]``.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        self.return_stats = RunningMeanStd(shape=())
        self.discounted_returns = np.zeros(num_envs, dtype=np.float64)
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon

    def __call__(self, rewards: np.ndarray, episode_ended: np.ndarray) -> np.ndarray:
        """Update statistics with this step's ``rewards`` and return the scaled rewards.

        :param episode_ended: per env, whether this step ended its episode (terminated or truncated).
        """
        self.discounted_returns = self.discounted_returns * self.gamma + rewards
        self.return_stats.update(self.discounted_returns)
        self.discounted_returns[episode_ended] = 0.0
        return self.scale(rewards)

    def scale(self, rewards: np.ndarray) -> np.ndarray:
        """Scale and clip ``rewards`` with the current statistics, without updating them (for
        learners that keep raw rewards and re-scale them before each update)."""
        scaled = np.asarray(rewards) / self.return_stats.std(self.epsilon)
        return np.minimum(np.maximum(scaled, -self.clip), self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """The statistics and per-env returns, for checkpoints."""
        return {"return_stats": self.return_stats.state_dict(),
                "discounted_returns": self.discounted_returns.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.return_stats.load_state_dict(state["return_stats"])
        self.discounted_returns = np.asarray(state["discounted_returns"], dtype=np.float64).copy()
