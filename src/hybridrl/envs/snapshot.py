"""Environment snapshots: the exact simulator state of an env in the middle of an episode.

Exact resume needs the environments to continue where they stopped, not from a reset. Pickling an
env is not enough: Gymnasium's MuJoCo envs pickle their constructor arguments, not their physics.
A snapshot stores

* MuJoCo (Gymnasium ``MujocoEnv``): the full integration state (``mj_getState``), the env's
  numpy generator;
* DeepMind Control (:class:`~hybridrl.envs.dmc.DMCEnv`): its own ``get_snapshot``;
* anything else: the pickled unwrapped env (classic control envs pickle their whole state);

plus the state of every wrapper that counts steps (``TimeLimit``) or orders calls.
:class:`SnapshotWrapper` exposes this as an attribute so vector envs (sync or async) can get and
set it per sub-env.

Snapshots use pickle: restore only checkpoints you or your runs wrote.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np

# Wrapper attributes that carry state between steps.
_WRAPPER_FIELDS = ("_elapsed_steps", "_has_reset", "_disable_render_order_enforcing")


class SnapshotUnsupportedError(RuntimeError):
    """The environment's state cannot be captured; resume will reset it instead."""


def get_snapshot(env: gym.Env[Any, Any]) -> bytes:
    """The exact state of ``env`` and its wrappers as bytes."""
    wrappers = []
    layer: Any = env
    while isinstance(layer, gym.Wrapper):
        wrappers.append({field: getattr(layer, field) for field in _WRAPPER_FIELDS if hasattr(layer, field)})
        layer = layer.env
    return pickle.dumps({"wrappers": wrappers, "core": _core_snapshot(layer)})


def set_snapshot(env: gym.Env[Any, Any], snapshot: bytes) -> None:
    """Restore ``env`` to the state :func:`get_snapshot` captured."""
    state = pickle.loads(snapshot)
    layer: Any = env
    for fields in state["wrappers"]:
        if not isinstance(layer, gym.Wrapper):
            raise SnapshotUnsupportedError("snapshot has more wrappers than the env it is restored into")
        for field, value in fields.items():
            setattr(layer, field, value)
        layer = layer.env
    _restore_core(layer, state["core"])


def _core_snapshot(env: Any) -> dict[str, Any]:
    if hasattr(env, "get_snapshot"):
        return {"kind": "own", "state": env.get_snapshot()}
    if _is_mujoco(env):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(env.model, spec), dtype=np.float64)
        mujoco.mj_getState(env.model, env.data, physics, spec)
        return {"kind": "mujoco", "physics": physics, "np_random": env.np_random.bit_generator.state}
    try:
        return {"kind": "pickle", "env": pickle.dumps(env)}
    except Exception as error:
        raise SnapshotUnsupportedError(f"{type(env).__name__} cannot be snapshotted: {error}") from error


def _restore_core(env: Any, state: dict[str, Any]) -> None:
    if state["kind"] == "own":
        env.set_snapshot(state["state"])
    elif state["kind"] == "mujoco":
        import mujoco

        mujoco.mj_setState(env.model, env.data, state["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(env.model, env.data)
        env.np_random.bit_generator.state = state["np_random"]
    else:
        env.__dict__.update(pickle.loads(state["env"]).__dict__)


def _is_mujoco(env: Any) -> bool:
    try:
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    except ImportError:  # pragma: no cover - mujoco is a dependency
        return False
    return isinstance(env, MujocoEnv)


class SnapshotWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Outermost wrapper that exposes ``snapshot`` as a gettable/settable attribute, so
    ``vector_env.get_attr("snapshot")`` and ``vector_env.set_attr("snapshot", values)`` work for
    sync and async vector envs alike."""

    @property
    def snapshot(self) -> bytes:
        """The wrapped env's state (see :func:`get_snapshot`)."""
        return get_snapshot(self.env)

    @snapshot.setter
    def snapshot(self, value: bytes) -> None:
        set_snapshot(self.env, value)
