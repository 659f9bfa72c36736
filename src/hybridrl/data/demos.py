"""Expert demonstrations for imitation learning, in the same Minari format as every dataset.

``hybridrl data demos dmc:walker-walk --episodes 10`` rolls out an expert for whole episodes
(deterministic actions unless asked otherwise) from seeded starts and writes them as
``hybridrl/demos/<env>-v0``. The expert is a hybridrl run's checkpoint (``--run-dir``) or the
expert behaviour policy of :mod:`hybridrl.data.generation` for that env (trained once with PPO
and kept). The demonstrations' mean return is recorded as the expert reference return, beside the
return of uniformly random actions, so imitation results are normalised against the demonstrator.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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


def expert_from_run(run_dir: str | os.PathLike[str]) -> BehaviourPolicy:
    """The policy in a hybridrl PPO run's checkpoint, with its evaluation return."""
    from hybridrl.errors import RunDirectoryError
    from hybridrl.runs import CHECKPOINT_FILE, read_run_config

    run_dir = Path(run_dir)
    spec, config = read_run_config(run_dir)
    if spec.name != "ppo":
        raise ConfigError(f"{run_dir} is a {spec.name} run; demonstrations come from PPO runs for now")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise RunDirectoryError(f"{run_dir} has no {CHECKPOINT_FILE}: train it first")
    trainer = spec.make_trainer(config, run_dir, False)
    try:
        trainer.load_checkpoint(run_dir / CHECKPOINT_FILE)
        return BehaviourPolicy.from_trainer(trainer, float("nan"))
    finally:
        trainer.close()


def make_demos(env_id: str, episodes: int = 10, seed: int = 0, run_dir: str | os.PathLike[str] | None = None,
               preset: str = "cpu", work_dir: str | os.PathLike[str] | None = None, stochastic: bool = False,
               reference_episodes: int = 10) -> Dataset:
    """Roll out an expert for ``episodes`` whole episodes of ``env_id``.

    :param run_dir: a PPO run whose checkpoint is the expert; default: the expert behaviour policy
        of ``env_id`` at ``preset`` (trained on first use, see :mod:`hybridrl.data.generation`).
    :param stochastic: sample actions from the policy instead of taking its mean.
    :param reference_episodes: episodes of uniformly random actions behind the random reference.
    """
    check_env_id(env_id)
    if episodes < 1:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    started = time.perf_counter()
    if run_dir is not None:
        expert = expert_from_run(run_dir)
        if expert.env_id != env_id:
            raise ConfigError(f"{run_dir} trained on {expert.env_id}, not {env_id}")
        source = f"PPO run {run_dir}"
    else:
        expert = behaviour_policies(env_id, preset, seed, work_dir).expert
        source = f"expert behaviour policy ({preset} preset, seed {seed}, PPO step {expert.step})"
    env = make_env(env_id)
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
    expert_return = float(np.mean([episode_rewards.sum() for episode_rewards in rewards]))
    random_return = _mean_return(env_id, None, reference_episodes, seed)
    info = DatasetInfo(
        dataset_id=demos_id(env_id), env_id=env_id, source="hybridrl",
        reference_returns=(random_return, expert_return),
        reference_source=f"random: {reference_episodes} episodes of uniform random actions; expert: the mean return "
                         "of these demonstrations",
        algorithm="ppo", description=f"{episodes} demonstrations of {env_id} by the {source}",
        extra={"seed": seed, "kind": "demos", "behaviour_policy": source, "stochastic": stochastic,
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
