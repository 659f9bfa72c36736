"""One factory for every environment hybridrl runs on.

* Gymnasium ids (``Hopper-v5``, ``CartPole-v1``, ``LunarLander-v3`` if Box2D is installed);
* DeepMind Control tasks written ``dmc:<domain>-<task>`` (``dmc:walker-walk``).

Vector envs use ``gymnasium.vector`` with ``AutoresetMode.SAME_STEP``: an env that ends an episode
is reset within the same ``step`` call and its true last observation is returned in
``info["final_obs"]`` (mask ``info["_final_obs"]``). Learners need that observation to bootstrap
through time-limit truncation; the default NEXT_STEP mode would instead hand back one extra,
fake transition per episode.

``"sync"`` vector envs are :class:`LeanSyncVectorEnv`: Gymnasium's ``SyncVectorEnv`` with a ``step``
that does only what our learners read. Gymnasium's generic step merges every env's ``info`` dict into
arrays at every step, which around one fast MuJoCo env costs about a third of the simulator's own time
(docs/performance.md); the lean step returns the same observations, rewards, flags and
``final_obs``, and no per-step ``info`` of the envs.
"""

from __future__ import annotations

import difflib
import functools
import os
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from hybridrl.envs.dmc import DMCEnv, dmc_task_ids, parse_dmc_id
from hybridrl.envs.snapshot import SnapshotWrapper
from hybridrl.errors import ConfigError, UnknownEnvironmentError

# MuJoCo must not try to open a display on headless machines; rendering users set it themselves.
os.environ.setdefault("MUJOCO_GL", "disable")

VectorMode = Literal["sync", "async"]


def registered_env_ids() -> list[str]:
    """Every id :func:`make_env` accepts: Gymnasium's registry and the DeepMind Control tasks."""
    return sorted(gym.envs.registry) + dmc_task_ids()


def check_env_id(env_id: str) -> None:
    """Raise :class:`UnknownEnvironmentError`, listing close matches, if ``env_id`` is unknown."""
    if env_id.startswith("dmc:"):
        known = dmc_task_ids()
        if env_id in known:
            return
    elif env_id in gym.envs.registry:
        return
    else:
        known = sorted(gym.envs.registry)
    close = difflib.get_close_matches(env_id, registered_env_ids(), n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise UnknownEnvironmentError(
        f"unknown environment {env_id!r}.{hint} Gymnasium ids look like 'Hopper-v5'; DeepMind Control "
        "tasks like 'dmc:walker-walk'. `python -c \"import hybridrl.envs as e; print(e.registered_env_ids())\"` "
        "lists them all."
    )


def make_env(env_id: str, seed: int | None = None, action_repeat: int = 1,
             render_mode: str | None = None, **kwargs: Any) -> gym.Env[Any, Any]:
    """Create one environment.

    :param env_id: a Gymnasium id or ``dmc:<domain>-<task>``.
    :param seed: seeds the env's first ``reset``; later resets continue its random stream.
    :param action_repeat: repeat each action this many times, summing rewards (DMC convention;
        Gymnasium envs use their own frame skip and accept only 1).
    :param render_mode: passed to the env.
    :param kwargs: passed to ``gymnasium.make`` for Gymnasium ids.
    """
    check_env_id(env_id)
    if env_id.startswith("dmc:"):
        if kwargs:
            raise ConfigError(f"{env_id} takes no extra options (got {', '.join(sorted(kwargs))}); "
                              "DeepMind Control tasks are configured by their domain and task names")
        domain, task = parse_dmc_id(env_id)
        env: gym.Env[Any, Any] = DMCEnv(domain, task, action_repeat=action_repeat, seed=seed,
                                        render_mode=render_mode)
        env = gym.wrappers.TimeLimit(env, max_episode_steps=(1000 + action_repeat - 1) // action_repeat)
    else:
        if action_repeat != 1:
            raise ConfigError(f"action_repeat={action_repeat} is only supported for dmc: tasks; "
                              f"{env_id} has its own frame skip")
        try:
            env = gym.make(env_id, render_mode=render_mode, **kwargs)
        except gym.error.DependencyNotInstalled as error:
            raise ConfigError(f"{env_id} needs an extra dependency: {error}. For Box2D envs install "
                              "`pip install hybridrl[box2d]`.") from error
    env = SnapshotWrapper(env)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


class LeanSyncVectorEnv(gym.vector.SyncVectorEnv):
    """``SyncVectorEnv`` whose same-step-autoreset ``step`` skips the per-step merging of the envs' ``info``.

    For Box observation spaces (every MuJoCo and DeepMind Control task) ``step`` returns what
    ``SyncVectorEnv.step`` returns (copies of the batched observations, rewards, terminations and
    truncations) and an ``info`` holding only ``final_obs``/``_final_obs`` of the envs whose episode ended
    (then reset) in this step, and ``final_info``/``_final_info`` with their last ``info``. Other spaces
    and autoreset modes use Gymnasium's step.
    """

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if (self.autoreset_mode != gym.vector.AutoresetMode.SAME_STEP
                or not isinstance(self.single_observation_space, gym.spaces.Box)):
            return super().step(actions)
        observations, rewards = self._observations, self._rewards
        terminations, truncations = self._terminations, self._truncations
        infos: dict[str, Any] = {}
        for index, env in enumerate(self.envs):
            observation, rewards[index], terminations[index], truncations[index], env_info = env.step(actions[index])
            if terminations[index] or truncations[index]:
                if not infos:
                    infos = {"final_obs": np.full(self.num_envs, None, dtype=object),
                             "_final_obs": np.zeros(self.num_envs, dtype=bool),
                             "final_info": np.full(self.num_envs, None, dtype=object),
                             "_final_info": np.zeros(self.num_envs, dtype=bool)}
                infos["final_obs"][index], infos["_final_obs"][index] = observation, True
                infos["final_info"][index], infos["_final_info"][index] = env_info, True
                observation, _ = env.reset()
            observations[index] = observation
        self._autoreset_envs = terminations | truncations
        return observations.copy(), rewards.copy(), terminations.copy(), truncations.copy(), infos


def _make_seeded(env_id: str, seed: int | None, action_repeat: int, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    # Module-level so AsyncVectorEnv can pickle the thunk into its worker processes.
    return make_env(env_id, seed=seed, action_repeat=action_repeat, **kwargs)


def make_vector_env(env_id: str, num_envs: int, mode: VectorMode = "sync", seed: int | None = None,
                    action_repeat: int = 1, **kwargs: Any
                    ) -> gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv:
    """Create ``num_envs`` copies of an environment as one vector env with same-step autoreset.

    :param mode: ``"sync"`` steps envs in this process (best for fast envs and few cores);
        ``"async"`` steps each in its own process.
    :param seed: env ``i`` is seeded with ``seed + i``.
    """
    if num_envs < 1:
        raise ConfigError(f"num_envs must be at least 1, got {num_envs}")
    check_env_id(env_id)
    thunks = [functools.partial(_make_seeded, env_id, None if seed is None else seed + index,
                                action_repeat, kwargs) for index in range(num_envs)]
    autoreset = gym.vector.AutoresetMode.SAME_STEP
    if mode == "sync":
        return LeanSyncVectorEnv(thunks, autoreset_mode=autoreset)
    if mode == "async":
        return gym.vector.AsyncVectorEnv(thunks, autoreset_mode=autoreset, context="spawn")
    raise ConfigError(f"unknown vector mode {mode!r}; choose 'sync' or 'async'")
