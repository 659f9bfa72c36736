"""Behaviour policies: small, self-contained snapshots of a trained policy that collect datasets.

A snapshot holds what acting needs and nothing else (no value net, critic or optimiser state):
the learner (``ppo`` or ``sac``), its config, the policy parameters and, for PPO, the observation
normaliser's statistics. A PPO policy (64x64) is about 25 kB, a SAC actor (256x256) about 300 kB,
so the snapshots behind the ``cpu`` datasets ship with hybridrl (``hybridrl/data/assets``) and
anyone regenerates those datasets without training.

PPO's policy is a Gaussian whose samples are clipped to the action bounds; SAC's actor is a
tanh-squashed Gaussian in [-1, 1], mapped affinely to the bounds (D4RL's datasets were collected
with SAC's squashed actions).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

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
    """A snapshot of a trained PPO policy or SAC actor that acts in numpy.

    :param env_id: the env it was trained on.
    :param config: the learner's config as a dict (network sizes, activation, normalisation).
    :param params: the policy network's parameters (numpy arrays).
    :param observation_mean: the observation normaliser's mean (None without normalisation).
    :param observation_var: its variance.
    :param step: env steps of training when the snapshot was taken.
    :param eval_return: mean return of deterministic evaluation episodes at that time.
    :param algorithm: the learner, ``ppo`` or ``sac``.
    :param stochastic_return: mean return of episodes with sampled actions at that time (None if not measured).
    """

    env_id: str
    config: dict[str, Any]
    params: dict[str, Any]
    observation_mean: np.ndarray | None
    observation_var: np.ndarray | None
    step: int
    eval_return: float
    algorithm: str = "ppo"
    stochastic_return: float | None = None

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

    @classmethod
    def from_sac_trainer(cls, trainer: Any, eval_return: float, stochastic_return: float | None = None
                         ) -> BehaviourPolicy:
        """Snapshot a :class:`hybridrl.rl.sac.SACTrainer`'s current actor (its state brought up to date)."""
        from hybridrl.runs import config_to_dict

        return cls(env_id=trainer.config.env, config=config_to_dict(trainer.config),
                   params=jax.tree_util.tree_map(np.array, jax.device_get(trainer.state.params["actor"])),
                   observation_mean=None, observation_var=None, step=int(trainer.global_step),
                   eval_return=float(eval_return), algorithm="sac", stochastic_return=stochastic_return)

    def _network(self, action_space: gym.Space[Any]) -> Any:
        from hybridrl.algorithms import get_algorithm
        from hybridrl.runs import config_from_dict

        config = config_from_dict(get_algorithm(self.algorithm), self.config)
        if self.algorithm == "sac":
            from hybridrl.rl.sac import make_sac_networks

            action_dim = int(np.prod(action_space.shape or ()))
            return make_sac_networks(config.hidden_sizes, action_dim, config.log_std_bounds).actor
        from hybridrl.rl.ppo import make_networks

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
                                "eval_return": self.eval_return, "algorithm": self.algorithm,
                                "stochastic_return": self.stochastic_return}),
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
                   step=int(meta["step"]), eval_return=float(meta["eval_return"]),
                   algorithm=meta.get("algorithm", "ppo"), stochastic_return=meta.get("stochastic_return"))


class BoundPolicy:
    """A :class:`BehaviourPolicy` with its network built for an action space; acts in numpy."""

    def __init__(self, snapshot: BehaviourPolicy, network: Any, action_space: gym.Space[Any]) -> None:
        self.snapshot = snapshot
        self.network = network
        self.box = action_space if isinstance(action_space, gym.spaces.Box) else None
        self.scaler: Any = None
        if self.box is not None and snapshot.algorithm == "sac":
            from hybridrl.rl.sac import ActionScaler

            self.scaler = ActionScaler(self.box)
        self.clip = float(snapshot.config.get("observation_clip", 10.0))
        self.observation_stats: RunningMeanStd | None = None
        if snapshot.observation_mean is not None and snapshot.observation_var is not None:
            self.observation_stats = RunningMeanStd(tuple(snapshot.observation_mean.shape))
            self.observation_stats.load_state_dict({"mean": snapshot.observation_mean,
                                                    "var": snapshot.observation_var, "count": 1.0})

    def __call__(self, observations: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions for a batch of raw observations: sampled with ``rng``, the mode without; PPO's
        clipped to the action space, SAC's squashed ones mapped from [-1, 1] to its bounds."""
        if self.observation_stats is not None:
            observations = self.observation_stats.normalize(observations, clip=self.clip)
        distribution = self.network.apply_numpy(self.snapshot.params, np.asarray(observations, dtype=np.float32))
        actions = np.asarray(distribution.mode() if rng is None else distribution.sample_numpy(rng))
        if self.scaler is not None:
            return cast(np.ndarray, self.scaler.to_env(actions))
        if self.box is not None:
            actions = np.clip(actions, self.box.low, self.box.high)
        return actions
