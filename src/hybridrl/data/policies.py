"""Behaviour policies: small, self-contained snapshots of a trained policy that collect datasets.

A snapshot holds what acting needs and nothing else (no value net, no optimiser state): the
learner's config, the policy parameters and the observation normaliser's statistics. It is a
few tens of kilobytes, so the snapshots behind the ``cpu`` datasets ship with hybridrl
(``hybridrl/data/assets``) and anyone regenerates those datasets without training.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np
from flax import serialization

from hybridrl.core.io import atomic_write_bytes
from hybridrl.core.normalization import RunningMeanStd
from hybridrl.data.validation import DatasetError

_FORMAT = "hybridrl-behaviour-policy-1"


@dataclass
class BehaviourPolicy:
    """A snapshot of a trained PPO policy that acts in numpy.

    :param env_id: the env it was trained on.
    :param config: the learner's config as a dict (network sizes, activation, normalisation).
    :param params: the policy network's parameters (numpy arrays).
    :param observation_mean: the observation normaliser's mean (None without normalisation).
    :param observation_var: its variance.
    :param step: env steps of training when the snapshot was taken.
    :param eval_return: mean return of deterministic evaluation episodes at that time.
    """

    env_id: str
    config: dict[str, Any]
    params: dict[str, Any]
    observation_mean: np.ndarray | None
    observation_var: np.ndarray | None
    step: int
    eval_return: float

    @classmethod
    def from_trainer(cls, trainer: Any, eval_return: float) -> BehaviourPolicy:
        """Snapshot a :class:`hybridrl.rl.ppo.PPOTrainer`'s current policy."""
        from hybridrl.runs import config_to_dict

        normalize = bool(trainer.config.normalize_observations)
        stats = trainer.observation_stats.state_dict()
        return cls(env_id=trainer.config.env, config=config_to_dict(trainer.config),
                   params=jax.device_get(trainer.state.params["policy"]),
                   observation_mean=np.asarray(stats["mean"]) if normalize else None,
                   observation_var=np.asarray(stats["var"]) if normalize else None,
                   step=int(trainer.global_step), eval_return=float(eval_return))

    def _network(self, action_space: gym.Space[Any]) -> Any:
        from hybridrl.algorithms import get_algorithm
        from hybridrl.rl.ppo import make_networks
        from hybridrl.runs import config_from_dict

        config = config_from_dict(get_algorithm("ppo"), self.config)
        return make_networks(config, action_space).policy

    def bind(self, action_space: gym.Space[Any]) -> BoundPolicy:
        """This policy ready to act in an env with ``action_space``."""
        return BoundPolicy(self, self._network(action_space), action_space)

    # -- files -------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the snapshot to ``path`` atomically (msgpack)."""
        payload = {
            "format": _FORMAT,
            "meta": json.dumps({"env_id": self.env_id, "config": self.config, "step": self.step,
                                "eval_return": self.eval_return}),
            "params": self.params,
            "observation_mean": self.observation_mean if self.observation_mean is not None else np.zeros(0),
            "observation_var": self.observation_var if self.observation_var is not None else np.zeros(0),
        }
        atomic_write_bytes(path, serialization.msgpack_serialize(payload))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BehaviourPolicy:
        """Read a snapshot written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"behaviour policy {path} does not exist")
        try:
            payload = serialization.msgpack_restore(path.read_bytes())
            if payload.get("format") != _FORMAT:
                raise ValueError(f"format {payload.get('format')!r}")
            meta = json.loads(payload["meta"])
        except Exception as error:
            raise DatasetError(f"{path} is not a hybridrl behaviour policy ({error}); regenerate it") from error
        mean, var = np.asarray(payload["observation_mean"]), np.asarray(payload["observation_var"])
        return cls(env_id=meta["env_id"], config=meta["config"], params=payload["params"],
                   observation_mean=mean if mean.size else None, observation_var=var if var.size else None,
                   step=int(meta["step"]), eval_return=float(meta["eval_return"]))


class BoundPolicy:
    """A :class:`BehaviourPolicy` with its network built for an action space; acts in numpy."""

    def __init__(self, snapshot: BehaviourPolicy, network: Any, action_space: gym.Space[Any]) -> None:
        self.snapshot = snapshot
        self.network = network
        self.box = action_space if isinstance(action_space, gym.spaces.Box) else None
        self.clip = float(snapshot.config.get("observation_clip", 10.0))
        self.observation_stats: RunningMeanStd | None = None
        if snapshot.observation_mean is not None and snapshot.observation_var is not None:
            self.observation_stats = RunningMeanStd(tuple(snapshot.observation_mean.shape))
            self.observation_stats.load_state_dict({"mean": snapshot.observation_mean,
                                                    "var": snapshot.observation_var, "count": 1.0})

    def __call__(self, observations: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions for a batch of raw observations: sampled with ``rng``, the mode without; clipped
        to the action space."""
        if self.observation_stats is not None:
            observations = self.observation_stats.normalize(observations, clip=self.clip)
        distribution = self.network.apply_numpy(self.snapshot.params, np.asarray(observations, dtype=np.float32))
        actions = np.asarray(distribution.mode() if rng is None else distribution.sample_numpy(rng))
        if self.box is not None:
            actions = np.clip(actions, self.box.low, self.box.high)
        return actions
