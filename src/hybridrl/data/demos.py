"""Expert demonstrations for imitation learning, in the same Minari format as every dataset.

``hybridrl data demos dmc:walker-walk --episodes 10`` rolls out an expert for whole episodes
(deterministic actions unless asked otherwise) from seeded starts and writes them as
``hybridrl/demos/<env>-v0``. The expert is a hybridrl PPO or SAC run's checkpoint (``--run-dir``;
episodes use the run's action repeat, which the dataset records) or the
expert behaviour policy of :mod:`hybridrl.data.generation` for that env (trained once with PPO
and kept). The demonstrations' mean return is recorded as the expert reference return, beside the
return of uniformly random actions, so imitation results are normalised against the demonstrator.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from hybridrl.core.seeding import Seeder
from hybridrl.data.dataset import Dataset, DatasetInfo
from hybridrl.data.generation import _mean_return, behaviour_policies
from hybridrl.data.minari_format import HYBRIDRL_NAMESPACE, write_minari
from hybridrl.data.policies import BehaviourPolicy
from hybridrl.data.validation import validate_dataset
from hybridrl.envs.factory import check_env_id, make_env
from hybridrl.errors import ConfigError


def demos_id(env_id: str) -> str:
    """The dataset id demonstrations of ``env_id`` get: ``demos/dmc-walker-walk-v0``, ``demos/hopper-v5-v0``."""
    return f"demos/{env_id.lower().replace(':', '-').replace('_', '-')}-v0"


class _TrainedExpert:
    """The policy of a hybridrl run (PPO or SAC), acting in numpy, with the run's env and action repeat."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.env_id: str = trainer.config.env
        self.action_repeat = int(getattr(trainer.config, "env_action_repeat", trainer.config.action_repeat))
        is_ppo = trainer.algorithm == "ppo"
        self.sampled_policy = BehaviourPolicy.from_trainer(trainer, float("nan")) if is_ppo else None

    def bind(self, action_space: gym.Space[Any]) -> Callable[[np.ndarray, np.random.Generator | None], np.ndarray]:
        if self.sampled_policy is not None:
            return self.sampled_policy.bind(action_space)
        trainer = self.trainer

        def act(observations: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
            if rng is None:
                return np.asarray(trainer.act_deterministic(observations))
            return np.asarray(trainer.scaler.to_env(trainer.actor_actions(observations, rng=rng)))

        return act

    def close(self) -> None:
        self.trainer.close()


def expert_from_run(run_dir: str | os.PathLike[str]) -> _TrainedExpert:
    """The policy in a hybridrl PPO or SAC run's checkpoint (call ``close()`` when done)."""
    from hybridrl.errors import RunDirectoryError
    from hybridrl.runs import CHECKPOINT_FILE, read_run_config

    run_dir = Path(run_dir)
    spec, config = read_run_config(run_dir)
    if spec.name not in ("ppo", "sac"):
        raise ConfigError(f"{run_dir} is a {spec.name} run; demonstrations come from PPO or SAC runs")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise RunDirectoryError(f"{run_dir} has no {CHECKPOINT_FILE}: train it first")
    trainer = spec.make_trainer(config, run_dir, False)
    try:
        trainer.load_checkpoint(run_dir / CHECKPOINT_FILE)
    except BaseException:
        trainer.close()
        raise
    return _TrainedExpert(trainer)


def make_demos(env_id: str, episodes: int = 10, seed: int = 0, run_dir: str | os.PathLike[str] | None = None,
               preset: str = "cpu", work_dir: str | os.PathLike[str] | None = None, stochastic: bool = False,
               reference_episodes: int = 10) -> Dataset:
    """Roll out an expert for ``episodes`` whole episodes of ``env_id``.

    :param run_dir: a PPO or SAC run whose checkpoint is the expert (episodes use the run's action
        repeat, recorded in the dataset); default: the expert behaviour policy of ``env_id`` at
        ``preset`` (trained on first use, see :mod:`hybridrl.data.generation`).
    :param stochastic: sample actions from the policy instead of taking its mean.
    :param reference_episodes: episodes of uniformly random actions behind the random reference.
    """
    check_env_id(env_id)
    if episodes < 1:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    started = time.perf_counter()
    trained: _TrainedExpert | None = None
    expert: _TrainedExpert | BehaviourPolicy
    action_repeat, algorithm = 1, "ppo"
    if run_dir is not None:
        expert = trained = expert_from_run(run_dir)
        if expert.env_id != env_id:
            trained.close()
            raise ConfigError(f"{run_dir} trained on {expert.env_id}, not {env_id}")
        action_repeat, algorithm = trained.action_repeat, trained.trainer.algorithm
        source = f"{algorithm.upper()} run {run_dir} (step {trained.trainer.global_step})"
    else:
        expert = behaviour_policies(env_id, preset, seed, work_dir).expert
        source = f"expert behaviour policy ({preset} preset, seed {seed}, PPO step {expert.step})"
    env = make_env(env_id, action_repeat=action_repeat)
    act = expert.bind(env.action_space)
    rng = Seeder(seed).numpy("demos/actions")
    observations, actions, rewards, terminations, truncations = [], [], [], [], []
    try:
        for episode_seed in Seeder(seed).env_seeds("demos", episodes):
            observation, _ = env.reset(seed=episode_seed)
            episode_observations, episode_actions, episode_rewards = [observation], [], []
            terminated = truncated = False
            while not (terminated or truncated):
                action = act(np.asarray(observation, np.float32)[None], rng if stochastic else None)[0]
                observation, reward, terminated, truncated, _ = env.step(action)
                episode_observations.append(observation)
                episode_actions.append(action)
                episode_rewards.append(reward)
            length = len(episode_rewards)
            observations.append(np.asarray(episode_observations, np.float32))
            actions.append(np.asarray(episode_actions, np.float32))
            rewards.append(np.asarray(episode_rewards, np.float64))
            terminations.append(np.eye(1, length, length - 1, dtype=bool)[0] & bool(terminated))
            truncations.append(np.eye(1, length, length - 1, dtype=bool)[0] & bool(truncated and not terminated))
    finally:
        env.close()
        if trained is not None:
            trained.close()
    expert_return = float(np.mean([episode_rewards.sum() for episode_rewards in rewards]))
    random_return = _mean_return(env_id, None, reference_episodes, seed, action_repeat)
    info = DatasetInfo(
        dataset_id=demos_id(env_id), env_id=env_id, source="hybridrl",
        reference_returns=(random_return, expert_return),
        reference_source=f"random: {reference_episodes} episodes of uniform random actions; expert: the mean return "
                         "of these demonstrations",
        algorithm=algorithm, description=f"{episodes} demonstrations of {env_id} by the {source}",
        extra={"seed": seed, "kind": "demos", "action_repeat": action_repeat, "behaviour_policy": source,
               "stochastic": stochastic,
               "expert_return": expert_return, "generation_time_s": round(time.perf_counter() - started, 1)},
    )
    # Per-episode lists of episodes are short (tens of episodes); from_episodes copies them into one
    # preallocated array each.
    dataset = Dataset.from_episodes(observations, actions, rewards, terminations, truncations, info)
    validate_dataset(dataset, env_id)
    return dataset


def generate_demos(env_id: str, episodes: int = 10, seed: int = 0, root: str | os.PathLike[str] | None = None,
                   overwrite: bool = False, dataset_id: str | None = None, **options: object) -> Path:
    """:func:`make_demos` and write the result in Minari format; returns its folder.

    :param dataset_id: default ``hybridrl/`` + :func:`demos_id`.
    :param options: passed to :func:`make_demos`.
    """
    dataset = make_demos(env_id, episodes, seed, **options)  # type: ignore[arg-type]
    return write_minari(dataset, dataset_id or f"{HYBRIDRL_NAMESPACE}/{demos_id(env_id)}", root=root,
                        overwrite=overwrite)
