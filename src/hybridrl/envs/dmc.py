"""DeepMind Control Suite tasks behind the Gymnasium API.

Ids are written ``dmc:<domain>-<task>`` (``dmc:walker-walk``, ``dmc:ball_in_cup-catch``).
Observations are the task's observation dict flattened, in key order, into one float32 vector;
actions are the task's bounded action spec. DMC episodes end by time limit (discount 1 on the last
step: *truncated*) or, in a few tasks, by a terminal state (discount 0: *terminated*).
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np


def dmc_task_ids() -> list[str]:
    """Every DeepMind Control Suite benchmark task as a ``dmc:domain-task`` id."""
    from dm_control import suite

    return [f"dmc:{domain}-{task}" for domain, task in suite.ALL_TASKS]


def parse_dmc_id(env_id: str) -> tuple[str, str]:
    """``"dmc:walker-walk"`` -> ``("walker", "walk")``."""
    name = env_id.removeprefix("dmc:")
    domain, _, task = name.partition("-")
    return domain, task


class DMCEnv(gym.Env[np.ndarray, np.ndarray]):
    """A DeepMind Control task as a Gymnasium env.

    :param domain: DMC domain, e.g. ``"walker"``.
    :param task: DMC task, e.g. ``"walk"``.
    :param action_repeat: repeat each action this many physics-control steps, summing rewards.
    :param seed: seed of the task's random state (re-seeded by ``reset(seed=...)``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}  # noqa: RUF012 (gymnasium declares it so)

    def __init__(self, domain: str, task: str, action_repeat: int = 1, seed: int | None = None,
                 render_mode: str | None = None) -> None:
        from dm_control import suite

        if action_repeat < 1:
            raise ValueError(f"action_repeat must be at least 1, got {action_repeat}")
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        self.domain, self.task, self.action_repeat = domain, task, action_repeat
        self.render_mode = render_mode
        action_spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(action_spec.minimum.astype(np.float32),
                                           action_spec.maximum.astype(np.float32), dtype=np.float32)
        size = sum(int(np.prod(spec.shape)) for spec in self._env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)

    @staticmethod
    def _flatten(observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(value, dtype=np.float32).ravel() for value in observation.values()])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        time_step = self._env.reset()
        return self._flatten(time_step.observation), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        terminated = time_step.last() and time_step.discount == 0.0
        truncated = time_step.last() and not terminated
        return self._flatten(time_step.observation), reward, terminated, truncated, {}

    def render(self) -> np.ndarray:
        return self._env.physics.render(height=240, width=320, camera_id=0)

    def get_snapshot(self) -> bytes:
        """Physics state, step counter and random state, for exact resume."""
        import mujoco

        physics = self._env.physics
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        # The full integration state (incl. warm-start accelerations), so a restored env is bit-exact.
        integration_state = np.empty(mujoco.mj_stateSize(physics.model.ptr, spec), dtype=np.float64)
        mujoco.mj_getState(physics.model.ptr, physics.data.ptr, integration_state, spec)
        return pickle.dumps({
            "physics": integration_state,
            "step_count": self._env._step_count,
            "reset_next_step": self._env._reset_next_step,
            "task_random": self._env.task.random.get_state(),
            "np_random": self.np_random.bit_generator.state,
        })

    def set_snapshot(self, snapshot: bytes) -> None:
        """Restore :meth:`get_snapshot` output."""
        state = pickle.loads(snapshot)
        import mujoco

        physics = self._env.physics
        mujoco.mj_setState(physics.model.ptr, physics.data.ptr, state["physics"],
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(physics.model.ptr, physics.data.ptr)
        self._env._step_count = state["step_count"]
        self._env._reset_next_step = state["reset_next_step"]
        self._env.task.random.set_state(state["task_random"])
        self.np_random.bit_generator.state = state["np_random"]
