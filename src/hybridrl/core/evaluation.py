"""Policy evaluation: N episodes on an environment instance of its own, never the training envs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from hybridrl.envs.reference import normalized_score

#: maps a batch of observations (shape ``(1, *obs_shape)``) to a batch of actions.
ActFunction = Callable[[np.ndarray], np.ndarray]


def evaluate_policy(env: gym.Env[Any, Any], act: ActFunction, episodes: int, seed: int,
                    env_id: str | None = None, length_cap: int | None = None) -> dict[str, float]:
    """Run ``episodes`` episodes of ``act`` on ``env`` and summarise their returns.

    Episode ``i`` resets with seed ``seed + i``, so evaluations of different policies see the same
    start states. Actions are clipped to the action space, as the training envs' are.

    :param act: the policy, usually deterministic (mean action).
    :param env_id: the env's id, to add a D4RL-style ``eval/normalized_score`` where reference
        returns exist (:mod:`hybridrl.envs.reference`).
    :param length_cap: also report ``eval/length_capped_mean``, the mean of ``min(length, cap)``
        (survival within a horizon, to compare with rollouts of that horizon in a model).
    :returns: ``eval/return_mean``, ``eval/return_std``, ``eval/length_mean`` and, where
        available, ``eval/normalized_score``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    box = env.action_space if isinstance(env.action_space, gym.spaces.Box) else None
    returns, lengths = [], []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        episode_return, length, done = 0.0, 0, False
        while not done:
            action = act(np.asarray(observation, dtype=np.float32)[None])[0]
            if box is not None:
                action = np.clip(action, box.low, box.high)
            observation, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(episode_return)
        lengths.append(length)
    summary = {
        "eval/return_mean": float(np.mean(returns)),
        "eval/return_std": float(np.std(returns)),
        "eval/length_mean": float(np.mean(lengths)),
    }
    if length_cap is not None:
        summary["eval/length_capped_mean"] = float(np.mean(np.minimum(lengths, length_cap)))
    if env_id is not None:
        score = normalized_score(env_id, summary["eval/return_mean"])
        if score is not None:
            summary["eval/normalized_score"] = score
    return summary
