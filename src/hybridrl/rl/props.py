"""PROPS: Proximal Robust On-Policy Sampling (Corrado & Hanna, "On-Policy Policy Gradient
Reinforcement Learning Without On-Policy Sampling", arXiv:2311.08290), with its baselines PPO,
PPO-Buffer and ROS as configurations of the same code.

A finite batch of on-policy data rarely looks like the policy that produced it (*sampling error*,
:mod:`hybridrl.core.sampling_error`). PROPS collects with a separate behaviour policy ``pi_phi``
that favours the actions the buffer lacks, so that a buffer of the last ``b`` batches stays close
to on-policy for the target ``pi_theta`` and PPO can reuse it without importance weights.

Algorithm 1, with ``n`` = target batch (``num_envs * num_steps``), ``m`` = behaviour batch
(``num_envs * behaviour_num_steps``), ``b`` = ``buffer_batches``; every ``m`` steps:

1. collect ``m`` transitions with ``pi_phi`` into a FIFO buffer of ``b * n`` transitions, storing
   *raw* observations and rewards;
2. every ``n`` steps, **target update**: re-normalise the whole buffer with the current running
   statistics, recompute ``log pi_theta`` and ``V`` under the current ``theta``, run GAE over the
   buffer in time order, and run the PPO update (:func:`hybridrl.rl.ppo.ppo_update`) on it;
3. **behaviour update** (Algorithm 2): ``phi <- theta``, then minimise over ``D'`` (the buffer
   without the ``m`` oldest transitions, which the next collection evicts)

   ``L(phi) = E[max(r, clip(r, 1 - eps, 1 + eps))] + lambda E[KL(pi_phi || pi_theta)]``,
   ``r = pi_phi(a|s) / pi_theta(a|s)``,

   PPO's clipped surrogate with every advantage set to -1: it lowers the probability of actions
   the buffer already holds (so under-sampled ones rise), stops pushing an action once its
   probability fell by ``1 - eps``, and the KL keeps ``pi_phi`` near ``pi_theta``. Minibatch
   epochs stop once the k3 estimate of ``KL(pi_theta || pi_phi)`` exceeds ``behaviour_target_kl``.

Sampling schemes (``sampling``): ``props`` (above); ``on-policy`` (``phi = theta``: with
``buffer_batches=1`` this is PPO, with 2 PPO-Buffer); ``ros`` (Zhong et al. 2022: one plain
gradient step ``phi = theta - alpha * grad mean_D' log pi_theta(a|s)``).

The whole behaviour update is one jitted function (a ``lax.while_loop`` over epochs x minibatches
that exits at the KL stop), fed fixed-shape, masked arrays so it compiles once; the host syncs
once per behaviour batch, to fetch ``phi`` for the next collection.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.checkpoint import load_checkpoint
from hybridrl.core.distributions import Distribution, kl_divergence
from hybridrl.core.rollout import compute_gae
from hybridrl.core.sampling_error import sampling_error
from hybridrl.core.seeding import Seeder
from hybridrl.envs.factory import make_env
from hybridrl.errors import ConfigError
from hybridrl.rl.ppo import (
    PPOConfig,
    PPOTrainer,
    PPOTrainState,
    RolloutBatch,
    init_train_state,
    interval_crossed,
    make_networks,
    make_optimizer,
    ppo_update,
)

# --------------------------------------------------------------------------------------------
# Config and presets
# --------------------------------------------------------------------------------------------

Sampling = Literal["props", "on-policy", "ros"]


@dataclass
class PROPSConfig(PPOConfig):
    """PROPS options (the PPO options drive the target update). ``hybridrl train props --help``
    shows each with its preset default; docs/algorithms/props.md maps them to the paper's symbols."""

    sampling: Sampling = "props"
    """How data is collected: props (adaptive behaviour policy), on-policy (PPO, PPO-Buffer) or ros."""
    buffer_batches: int = 2
    """b: target batches kept in the FIFO buffer the target update trains on (1 = plain PPO)."""
    behaviour_num_steps: int = 32
    """Steps per env between behaviour updates (m = num_envs * this); must divide num_steps."""
    behaviour_learning_rate: float = 1e-3
    """Adam step size of the PROPS behaviour update; the plain gradient step size for ros."""
    behaviour_clip_coef: float = 0.3
    """eps_PROPS: the behaviour ratio is clipped to [1 - eps, 1 + eps]."""
    behaviour_target_kl: float | None = 0.05
    """delta_PROPS: stop the behaviour update once approx KL(target || behaviour) exceeds this."""
    behaviour_kl_coef: float = 0.3
    """lambda: weight of the KL(behaviour || target) regulariser."""
    behaviour_kl_per_dimension: bool = True
    """Average the Gaussian KL over action dimensions, as the PROPS code (and its tuned lambdas) do."""
    behaviour_update_epochs: int = 16
    """Epochs of each behaviour update."""
    behaviour_num_minibatches: int = 16
    """Minibatches per behaviour epoch (fixed size, so fewer while the buffer fills, as in the code)."""
    behaviour_max_grad_norm: float = 0.5
    """Global gradient-norm clip of the behaviour update."""
    behaviour_lr_std_reference: float | None = None
    """Scale the behaviour step of the mean's parameters by sigma_theta / this, sigma_theta the target's
    geometric-mean std, so that a step moves the mean by the same number of standard deviations at
    every target width (None: the paper's fixed step size). Needs a state-independent log-std."""
    stale_target: bool = True
    """The released code's ordering (the default): the behaviour update after each target update
    compares against the pre-update target. ``--no-stale-target`` compares against the updated one,
    the paper's intent."""
    ros_original: bool = False
    """ros as in the PROPS code: the PROPS optimisation loop with loss -mean log(pi_phi/pi_theta), whose
    sign raises the likelihood of buffered actions (Zhong et al.'s ROS lowers it)."""
    fixed_target: str | None = None
    """Run directory of a trained ppo run: its policy and (frozen) observation statistics become a fixed
    target that is never updated (the sampling-error experiment)."""
    fixed_target_std_scale: float = 1.0
    """Multiply the fixed target's standard deviation by this (its state-independent log-std shifts by
    its log), e.g. e^-1 or e^-2 to measure how the sampling-error reduction depends on the target's width."""
    sampling_error_interval: int = 0
    """Log the buffer's sampling error KL(pi_D || pi_theta) every this many env steps (0: never)."""
    sampling_error_reference: bool = False
    """With --sampling-error-interval: also log ``sampling_error_reference``, the error of on-policy
    sampling along the same sequence of targets (the released code's reference replay): the last
    ``buffer_batches`` targets each collect a target batch on-policy in an env of their own (steps
    not counted), and that buffer's error is measured under the current target like the real one."""
    sampling_error_epochs: int = 2000
    """Full-batch Adam steps of the maximum-likelihood fit behind the sampling error."""

    @property
    def behaviour_batch_size(self) -> int:
        """m: transitions between behaviour updates."""
        return self.num_envs * self.behaviour_num_steps

    @property
    def buffer_steps(self) -> int:
        """Rows (steps of every env) the FIFO buffer holds."""
        return self.buffer_batches * self.num_steps

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings, with the fix."""
        super().validate()
        for name in ("buffer_batches", "behaviour_num_steps", "behaviour_update_epochs",
                     "behaviour_num_minibatches", "sampling_error_epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.sampling_error_interval < 0:
            raise ConfigError(f"--sampling-error-interval must be >= 0, got {self.sampling_error_interval}")
        if self.sampling_error_reference and not self.sampling_error_interval:
            raise ConfigError("--sampling-error-reference measures beside the buffer's error: pass "
                              "--sampling-error-interval N too")
        if self.sampling not in ("props", "on-policy", "ros"):
            raise ConfigError(f"--sampling must be props, on-policy or ros, not {self.sampling!r}")
        if self.sampling != "on-policy":
            if self.num_steps % self.behaviour_num_steps:
                raise ConfigError(
                    f"--behaviour-num-steps {self.behaviour_num_steps} must divide --num-steps {self.num_steps} "
                    "so that every target update falls on a behaviour-batch boundary")
            if self.behaviour_num_steps >= self.buffer_steps:
                raise ConfigError("--behaviour-num-steps must be smaller than buffer_batches * num_steps")
            if self.behaviour_learning_rate <= 0 or self.behaviour_clip_coef <= 0:
                raise ConfigError("--behaviour-learning-rate and --behaviour-clip-coef must be positive")
            if self.behaviour_target_kl is not None and self.behaviour_target_kl <= 0:
                raise ConfigError(f"--behaviour-target-kl must be positive or None, got {self.behaviour_target_kl}")
        if self.behaviour_lr_std_reference is not None and self.behaviour_lr_std_reference <= 0:
            raise ConfigError(f"--behaviour-lr-std-reference must be positive or None, got "
                              f"{self.behaviour_lr_std_reference}")
        if self.fixed_target_std_scale <= 0:
            raise ConfigError(f"--fixed-target-std-scale must be positive, got {self.fixed_target_std_scale}")
        if self.fixed_target_std_scale != 1.0 and self.fixed_target is None:
            raise ConfigError("--fixed-target-std-scale rescales a fixed target: pass --fixed-target RUN_DIR too")
        if self.fixed_target is not None and not (Path(self.fixed_target) / "checkpoint.ckpt").is_file():
            raise ConfigError(f"--fixed-target {self.fixed_target} holds no checkpoint.ckpt; point it at the "
                              "run directory of a trained ppo run")


#: Shared by every run of the paper (the released config.yml): one env, PPO settings of
#: CleanRL with entropy 0.01 and target KL 0.03 checked on every minibatch (as the PROPS code's
#: PPO does), tanh on the actor mean, 20 evaluation episodes.
_PAPER_COMMON: dict[str, Any] = dict(
    num_envs=1, update_epochs=10, num_minibatches=32, clip_coef=0.2, entropy_coef=0.01, target_kl=0.03,
    target_kl_check="minibatch", policy_tanh_mean=True, eval_episodes=20, behaviour_update_epochs=16,
    behaviour_clip_coef=0.3,
)

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds, for tests: two short target batches, each with two behaviour batches.
    "smoke": dict(total_steps=1_024, num_envs=2, num_steps=128, update_epochs=2, num_minibatches=4,
                  behaviour_num_steps=64, behaviour_update_epochs=2, behaviour_num_minibatches=4,
                  sampling_error_epochs=50, eval_interval=0, eval_episodes=2, checkpoint_interval=512),
    # The paper's settings for the task (table below) spread over 8 sync envs (n and m are totals
    # over envs, as in the paper), at a reduced budget; evaluation every 25k steps for the curve.
    "cpu": {**_PAPER_COMMON, "num_envs": 8, "num_steps": 256, "behaviour_num_steps": 32, "total_steps": 500_000,
            "eval_interval": 25_000, "eval_episodes": 10, "checkpoint_interval": 50_000},
    # The paper's settings for the task; Hopper's where the task is not in the table.
    "paper": {**_PAPER_COMMON, "num_steps": 2048, "behaviour_num_steps": 256, "learning_rate": 1e-3},
}


@dataclass(frozen=True)
class TaskSettings:
    """One row of the paper's per-task hyper-parameters (docs/algorithms/props.md, "Presets").

    ``n`` and ``m`` are totals over environments; ``ppo`` and ``ppo_buffer`` are the tuned
    ``(n, learning rate)`` of the baselines.
    """

    total_steps: int
    cpu_total_steps: int
    n: int
    learning_rate: float
    m: int
    behaviour_learning_rate: float
    behaviour_target_kl: float
    behaviour_kl_coef: float
    behaviour_num_minibatches: int
    ppo: tuple[int, float]
    ppo_buffer: tuple[int, float]
    behaviour_clip_coef: float = 0.3


#: The released PROPS runs (b = 2) and the tuned baselines (PROPS/hyperparams/ppo_buffer.py).
#: Discrete tasks: no configs were released; the discrete script's defaults, with b = 2.
TASK_SETTINGS: dict[str, TaskSettings] = {
    "Swimmer": TaskSettings(1_000_000, 500_000, 2048, 1e-3, 1024, 1e-5, 0.03, 0.1, 16, (4096, 1e-3), (2048, 1e-3)),
    "Hopper": TaskSettings(1_000_000, 500_000, 2048, 1e-3, 256, 1e-3, 0.05, 0.3, 16, (2048, 1e-3), (1024, 1e-4)),
    "HalfCheetah": TaskSettings(2_000_000, 500_000, 1024, 1e-4, 512, 1e-3, 0.05, 0.3, 16, (1024, 1e-4),
                                (4096, 1e-3)),
    "Walker2d": TaskSettings(2_000_000, 500_000, 2048, 1e-3, 256, 1e-3, 0.1, 0.3, 32, (4096, 1e-3), (4096, 1e-3)),
    "Ant": TaskSettings(4_000_000, 1_000_000, 2048, 1e-4, 256, 1e-3, 0.03, 0.1, 16, (1024, 1e-4), (1024, 1e-4),
                        behaviour_clip_coef=0.05),
    "Humanoid": TaskSettings(6_000_000, 1_000_000, 8192, 1e-4, 256, 1e-4, 0.1, 0.1, 32, (8192, 1e-4),
                             (8192, 1e-4)),
    "CartPole": TaskSettings(500_000, 100_000, 1024, 1e-3, 128, 1e-3, 0.03, 0.1, 8, (1024, 1e-3), (1024, 1e-3)),
    "LunarLander": TaskSettings(1_000_000, 500_000, 1024, 1e-3, 128, 1e-3, 0.03, 0.1, 8, (1024, 1e-3),
                                (1024, 1e-3)),
}


def task_family(env_id: str) -> str:
    """``Hopper-v5`` -> ``Hopper``: the key of :data:`TASK_SETTINGS`."""
    return re.sub(r"-v\d+$", "", env_id)


def task_presets(preset: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The paper's settings for ``values["env"]`` and the chosen scheme (PROPS and ROS share a row;
    on-policy sampling takes the tuned PPO or PPO-Buffer row), for the cpu and paper presets."""
    settings = TASK_SETTINGS.get(task_family(str(values["env"])))
    if preset == "smoke" or settings is None:
        return {}
    num_envs = int(values["num_envs"])
    n, learning_rate = settings.n, settings.learning_rate
    if values["sampling"] == "on-policy":
        n, learning_rate = settings.ppo if int(values["buffer_batches"]) == 1 else settings.ppo_buffer
    total_steps = settings.total_steps if preset == "paper" else settings.cpu_total_steps
    overrides = dict(
        total_steps=total_steps, num_steps=max(n // num_envs, 1), learning_rate=learning_rate,
        behaviour_num_steps=max(settings.m // num_envs, 1), behaviour_learning_rate=settings.behaviour_learning_rate,
        behaviour_target_kl=settings.behaviour_target_kl, behaviour_kl_coef=settings.behaviour_kl_coef,
        behaviour_num_minibatches=settings.behaviour_num_minibatches, behaviour_clip_coef=settings.behaviour_clip_coef,
    )
    if preset == "paper":
        overrides["eval_interval"] = 10 * n  # every 10 target updates, as in the paper
    return overrides


# --------------------------------------------------------------------------------------------
# The FIFO buffer of the last b target batches
# --------------------------------------------------------------------------------------------


@dataclass
class BatchFIFO:
    """Preallocated, circular, time-major storage of the last ``capacity`` steps of every env.

    Observations and rewards are stored raw, so every update can re-normalise them with the
    current statistics (old batches would otherwise carry stale normalisation). ``final_observations``
    holds the true last observation where a time limit cut an episode (its value is bootstrapped).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    episode_ended: np.ndarray
    final_observations: np.ndarray
    position: int = 0
    size: int = 0

    @classmethod
    def allocate(cls, capacity: int, num_envs: int, observation_shape: tuple[int, ...],
                 action_shape: tuple[int, ...], action_dtype: type) -> BatchFIFO:
        """Zeroed storage for ``capacity`` steps of ``num_envs`` envs."""
        def zeros(*shape: int, dtype: type = np.float32) -> np.ndarray:
            return np.zeros((capacity, num_envs, *shape), dtype=dtype)

        return cls(observations=zeros(*observation_shape), actions=zeros(*action_shape, dtype=action_dtype),
                   rewards=zeros(), terminated=zeros(dtype=bool), episode_ended=zeros(dtype=bool),
                   final_observations=zeros(*observation_shape))

    @property
    def capacity(self) -> int:
        """Steps the buffer holds when full."""
        return int(self.observations.shape[0])

    def add(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            episode_ended: np.ndarray) -> int:
        """Write one step of every env over the oldest; returns the row written."""
        row = self.position
        self.observations[row] = observations
        self.actions[row] = actions
        self.rewards[row] = rewards
        self.terminated[row] = terminated
        self.episode_ended[row] = episode_ended
        self.position = (row + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        return row

    def ordered_rows(self) -> np.ndarray:
        """Indices of the stored rows, oldest first."""
        start = self.position if self.size == self.capacity else 0
        return (np.arange(self.size) + start) % self.capacity

    def state_dict(self) -> dict[str, Any]:
        """Contents and position, for checkpoints."""
        return {"observations": self.observations, "actions": self.actions, "rewards": self.rewards,
                "terminated": self.terminated, "episode_ended": self.episode_ended,
                "final_observations": self.final_observations, "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        for name in ("observations", "actions", "rewards", "terminated", "episode_ended", "final_observations"):
            stored = getattr(self, name)
            stored[...] = np.asarray(state[name], dtype=stored.dtype).reshape(stored.shape)
        self.position, self.size = int(state["position"]), int(state["size"])


# --------------------------------------------------------------------------------------------
# Behaviour update (Algorithm 2) and ROS
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BehaviourSettings:
    """Hyper-parameters the jitted behaviour update is specialised on."""

    objective: Literal["props", "ros-original"]
    update_epochs: int
    num_minibatches: int
    clip_coef: float
    target_kl: float | None
    kl_coef: float
    kl_per_dimension: bool
    learning_rate: float
    max_grad_norm: float
    std_reference: float | None = None


@struct.dataclass
class BehaviourState:
    """The behaviour policy's parameters, its Adam state (kept across the copies phi <- theta, as
    in the original code) and the PRNG key of minibatch shuffling."""

    params: Any
    opt_state: optax.OptState
    key: jax.Array


@struct.dataclass
class BehaviourBatch:
    """``D'`` padded to a fixed size: entries at or after ``num_valid`` are ignored."""

    observations: jax.Array
    actions: jax.Array
    num_valid: jax.Array


def behaviour_loss(params: Any, observations: jax.Array, actions: jax.Array, target: Distribution,
                   weights: jax.Array, policy: nn.Module, settings: BehaviourSettings
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The PROPS objective (minimised) on one weighted minibatch.

    ``mean[max(r, clip(r, 1 - eps, 1 + eps))] + lambda * mean[KL(pi_phi || pi_theta)]``; with the
    ``ros-original`` objective the first term is ``-mean[log r]`` instead.

    :param target: ``pi_theta`` at the minibatch's states.
    :param weights: 1 for real entries, 0 for padding.
    """
    behaviour = cast(Distribution, policy.apply({"params": params}, observations))
    log_ratio = behaviour.log_prob(actions) - target.log_prob(actions)
    ratio = jnp.exp(log_ratio)
    count = jnp.maximum(weights.sum(), 1.0)

    def mean(values: jax.Array) -> jax.Array:
        return (values * weights).sum() / count

    if settings.objective == "props":
        surrogate = mean(jnp.maximum(ratio, jnp.clip(ratio, 1.0 - settings.clip_coef, 1.0 + settings.clip_coef)))
    else:
        surrogate = -mean(log_ratio)
    kl = kl_divergence(behaviour, target)
    if settings.kl_per_dimension and hasattr(target, "mean"):
        kl = kl / target.mean.shape[-1]
    kl_term = mean(kl)
    metrics = {
        "behaviour/surrogate": surrogate,
        "behaviour/kl_regularizer": kl_term,
        "behaviour/approx_kl": mean((ratio - 1.0) - log_ratio),
        "behaviour/clip_fraction": mean((jnp.abs(ratio - 1.0) > settings.clip_coef).astype(jnp.float32)),
    }
    return surrogate + settings.kl_coef * kl_term, metrics


@functools.partial(jax.jit, static_argnames=("policy", "settings"))
def behaviour_update(state: BehaviourState, target_params: Any, reference_params: Any, batch: BehaviourBatch, *,
                     policy: nn.Module, settings: BehaviourSettings) -> tuple[BehaviourState, dict[str, jax.Array]]:
    """Algorithm 2: ``phi <- theta`` (``target_params``), then minibatch epochs on
    :func:`behaviour_loss` against ``reference_params`` (the target, or the pre-update target in
    the original ordering), until the epochs are spent or the approximate KL passes ``target_kl``.

    Minibatches have a fixed size (padded ``D'`` / ``num_minibatches``); while the buffer fills,
    only the minibatches holding real entries run, as in the original code.
    """
    optimizer = make_optimizer(settings.max_grad_norm, settings.learning_rate)
    size = batch.observations.shape[0]
    minibatch_size = size // settings.num_minibatches
    valid = jnp.arange(size) < batch.num_valid
    target = cast(Distribution, policy.apply({"params": reference_params}, batch.observations))
    key, shuffle_key = jax.random.split(state.key)
    # One shuffle per epoch with the real entries first, so minibatch k of an epoch is real data.
    scores = jnp.where(valid, jax.random.uniform(shuffle_key, (settings.update_epochs, size)), 2.0)
    orders = jnp.argsort(scores, axis=1)
    minibatches_per_epoch = (batch.num_valid + minibatch_size - 1) // minibatch_size
    total_steps = settings.update_epochs * minibatches_per_epoch
    gradient = jax.grad(functools.partial(behaviour_loss, policy=policy, settings=settings), has_aux=True)
    metric_names = ("behaviour/surrogate", "behaviour/kl_regularizer", "behaviour/approx_kl",
                    "behaviour/clip_fraction")

    # With std_reference: the mean's steps shrink with the target's width (the KL of a mean shift
    # grows like (shift / sigma)^2, so a fixed step would hit the KL stop ever sooner).
    mean_step_scale = (jnp.exp(jnp.mean(target_params["log_std"])) / settings.std_reference
                       if settings.std_reference is not None else jnp.asarray(1.0))

    def running(carry: tuple[Any, ...]) -> jax.Array:
        step, _, _, stopped, _ = carry
        return (step < total_steps) & ~stopped

    def minibatch_step(carry: tuple[Any, ...]) -> tuple[Any, ...]:
        step, params, opt_state, _, sums = carry
        order = orders[step // minibatches_per_epoch]
        indices = jax.lax.dynamic_slice(order, ((step % minibatches_per_epoch) * minibatch_size,),
                                        (minibatch_size,))
        grads, metrics = gradient(params, batch.observations[indices], batch.actions[indices],
                                  jax.tree_util.tree_map(lambda leaf: leaf[indices], target),
                                  valid[indices].astype(jnp.float32))
        # As in the original: the KL is checked on each minibatch before its step.
        stop = (jnp.asarray(False) if settings.target_kl is None
                else metrics["behaviour/approx_kl"] > settings.target_kl)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        if settings.std_reference is not None:
            updates = scale_mean_updates(updates, mean_step_scale)
        new_params = optax.apply_updates(params, updates)
        params, opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(stop, old, new),
                                                   (new_params, new_opt_state), (params, opt_state))
        taken = 1.0 - stop.astype(jnp.float32)
        sums = sums + taken * jnp.stack([metrics[name] for name in metric_names] + [jnp.asarray(1.0)])
        return step + 1, params, opt_state, stop, sums

    init = (jnp.asarray(0), target_params, state.opt_state, jnp.asarray(False), jnp.zeros(len(metric_names) + 1))
    _, params, opt_state, _, sums = jax.lax.while_loop(running, minibatch_step, init)
    taken = sums[-1]
    metrics = {name: sums[index] / jnp.maximum(taken, 1.0) for index, name in enumerate(metric_names)}
    metrics["behaviour/minibatch_steps"] = taken
    return BehaviourState(params=params, opt_state=opt_state, key=key), metrics


def scale_mean_updates(updates: Any, scale: jax.Array) -> Any:
    """Multiply every update but the state-independent log-std's by ``scale``."""
    return {name: leaf if name == "log_std" else jax.tree_util.tree_map(lambda update: update * scale, leaf)
            for name, leaf in updates.items()}


@functools.partial(jax.jit, static_argnames=("policy",))
def ros_behaviour(target_params: Any, batch: BehaviourBatch, learning_rate: float, *,
                  policy: nn.Module) -> Any:
    """ROS (Zhong et al. 2022): one plain gradient step from ``theta`` that lowers the mean
    log-likelihood of the buffered actions, ``phi = theta - alpha * grad mean_D' log pi_theta(a|s)``."""
    weights = (jnp.arange(batch.observations.shape[0]) < batch.num_valid).astype(jnp.float32)

    def mean_log_likelihood(params: Any) -> jax.Array:
        distribution = cast(Distribution, policy.apply({"params": params}, batch.observations))
        return (distribution.log_prob(batch.actions) * weights).sum() / jnp.maximum(weights.sum(), 1.0)

    gradient = jax.grad(mean_log_likelihood)(target_params)
    return jax.tree_util.tree_map(lambda param, grad: param - learning_rate * grad, target_params, gradient)


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


class PROPSTrainer(PPOTrainer):
    """Runs PROPS (or a baseline scheme) in a run directory.

    Reuses :class:`~hybridrl.rl.ppo.PPOTrainer` for environments, networks, the target's PPO
    update, evaluation, the training loop and checkpoints; replaces collection (behaviour policy,
    FIFO buffer of raw data) and the update (target update on the whole buffer, then behaviour
    update). One "iteration" is one target batch of ``n`` steps.
    """

    algorithm = "props"
    config: PROPSConfig

    def __init__(self, config: PROPSConfig, run_dir: Path, progress: bool = False) -> None:
        super().__init__(config, run_dir, progress)
        discrete = isinstance(self.action_space, gym.spaces.Discrete)
        action_shape = () if discrete else tuple(self.action_space.shape or ())
        self.fifo = BatchFIFO.allocate(config.buffer_steps, config.num_envs, self.observation_shape, action_shape,
                                       np.int64 if discrete else np.float32)
        self.freeze_observation_stats = False
        self.target_history: list[Any] = []
        if config.fixed_target is not None:
            self._load_fixed_target(Path(config.fixed_target))
        self.behaviour_settings = BehaviourSettings(
            objective="ros-original" if config.sampling == "ros" else "props",
            update_epochs=config.behaviour_update_epochs, num_minibatches=config.behaviour_num_minibatches,
            clip_coef=config.behaviour_clip_coef, target_kl=config.behaviour_target_kl,
            kl_coef=config.behaviour_kl_coef, kl_per_dimension=config.behaviour_kl_per_dimension,
            learning_rate=config.behaviour_learning_rate, max_grad_norm=config.behaviour_max_grad_norm,
            std_reference=config.behaviour_lr_std_reference)
        if config.behaviour_lr_std_reference is not None and "log_std" not in self.state.params["policy"]:
            raise ConfigError("--behaviour-lr-std-reference scales steps by the target's std: it needs a Gaussian "
                              "policy with a state-independent log-std (continuous actions)")
        behaviour_params = self.state.params["policy"]
        optimizer = make_optimizer(config.behaviour_max_grad_norm, config.behaviour_learning_rate)
        self.behaviour_state = BehaviourState(params=behaviour_params, opt_state=optimizer.init(behaviour_params),
                                              key=Seeder(config.seed).jax_key("behaviour"))
        self._behaviour_host_params = self._host_params["policy"]
        self._behaviour_metrics: list[dict[str, float]] = []
        # D' padded to its largest size (the buffer without one behaviour batch), split evenly.
        largest = (config.buffer_steps - config.behaviour_num_steps) * config.num_envs
        self._padded_size = math.ceil(largest / config.behaviour_num_minibatches) * config.behaviour_num_minibatches

    def _load_fixed_target(self, run_dir: Path) -> None:
        """Adopt a trained ppo run's policy and observation statistics as a fixed target."""
        from hybridrl.runs import read_run_config

        spec, expert = read_run_config(run_dir)
        config = self.config
        if spec.name != "ppo":
            raise ConfigError(f"--fixed-target must be a ppo run; {run_dir} is a {spec.name} run")
        if expert.env != config.env:
            raise ConfigError(f"--fixed-target {run_dir} was trained on {expert.env}, not {config.env}")
        architecture = ("policy_hidden", "activation", "policy_tanh_mean")
        mismatched = [name for name in architecture if getattr(expert, name) != getattr(config, name)]
        if mismatched:
            wanted = " ".join(f"--{name.replace('_', '-')} {getattr(expert, name)}" for name in mismatched)
            raise ConfigError(f"--fixed-target {run_dir} has another policy network; pass {wanted}")
        template = init_train_state(expert, make_networks(expert, self.action_space), self.observation_shape,
                                    jax.random.PRNGKey(0))
        state, host, _, _ = load_checkpoint(run_dir / "checkpoint.ckpt", algorithm="ppo", template=template)
        policy = state.params["policy"]
        if config.fixed_target_std_scale != 1.0:
            if "log_std" not in policy:
                raise ConfigError(f"--fixed-target-std-scale needs a state-independent log-std; {run_dir}'s policy "
                                  "has none")
            policy = {**policy, "log_std": policy["log_std"] + math.log(config.fixed_target_std_scale)}
        self.state = PPOTrainState(params={**self.state.params, "policy": policy},
                                   opt_state=self.state.opt_state, key=self.state.key)
        self.observation_stats.load_state_dict(host["observation_stats"])
        self.freeze_observation_stats = True
        self._set_host_params(jax.device_get(self.state.params))

    # -- collection ----------------------------------------------------------------------------

    def collect_rollout(self) -> list[float]:
        """Collect one target batch: ``n / m`` behaviour batches, with a behaviour update after
        each but the last (whose behaviour update follows the target update, in :meth:`update`)."""
        config = self.config
        if config.sampling_error_reference:
            # The target this batch is collected for, for the on-policy reference replay.
            self.target_history = [*self.target_history, self._host_params["policy"]][-config.buffer_batches:]
        segments = 1 if config.sampling == "on-policy" else config.num_steps // config.behaviour_num_steps
        finished: list[float] = []
        self._behaviour_metrics = []
        for segment in range(segments):
            finished += self.collect_steps(config.num_steps // segments)
            if segment < segments - 1:
                self.update_behaviour(self.state.params["policy"])
        return finished

    def collect_steps(self, num_steps: int) -> list[float]:
        """Step every env ``num_steps`` times with the behaviour policy, storing raw data in the FIFO;
        returns finished episodes' returns."""
        config, fifo = self.config, self.fifo
        policy, params = self.networks.policy, self._behaviour_host_params
        finished_returns: list[float] = []
        for _ in range(num_steps):
            observations = self.next_observations
            actions = policy.apply_numpy(params, self.normalize(observations)).sample_numpy(self.rng)
            rewards, terminated, ended, truncated_finals = self.step_envs(actions, finished_returns)
            if config.normalize_rewards:
                self.return_normalizer(rewards, ended)  # updates the statistics; rewards are scaled at update time
            row = fifo.add(observations, actions, rewards, terminated, ended)
            if truncated_finals is not None:
                cut, final = truncated_finals
                fifo.final_observations[row, cut] = final
            if config.normalize_observations and not self.freeze_observation_stats:
                self.observation_stats.update(self.next_observations)
        return finished_returns

    # -- updates -------------------------------------------------------------------------------

    def update(self) -> dict[str, float]:
        """Sampling error (at its interval), then the target update on the whole buffer (skipped
        with a fixed target), then a behaviour update."""
        config = self.config
        # Measured before the target update, as the released code does: the buffer was collected
        # for the current target, which has not yet been trained on it (the updated target has, and
        # has moved by up to target_kl, as much as the errors measured).
        measured: dict[str, float] = {}
        if interval_crossed(self.global_step - config.batch_size, self.global_step, config.sampling_error_interval):
            measured["sampling_error"] = self.buffer_sampling_error()
            if config.sampling_error_reference:
                measured["sampling_error_reference"] = self.reference_sampling_error()
        previous_target = self.state.params["policy"]
        scalars = {} if config.fixed_target is not None else self.update_target()
        self.iteration += 1
        reference = previous_target if config.stale_target else self.state.params["policy"]
        self.update_behaviour(reference)
        if self._behaviour_metrics:
            for name in self._behaviour_metrics[0]:
                scalars[name] = float(np.mean([metrics[name] for metrics in self._behaviour_metrics]))
        return {**scalars, **measured}

    def _buffer_view(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised observations and actions of ``rows``, time-major ``(rows, envs, ...)``."""
        return self.normalize(self.fifo.observations[rows]), self.fifo.actions[rows]

    def update_target(self) -> dict[str, float]:
        """PPO on the whole buffer, treated as on-policy data for the current target: observations
        and rewards re-normalised with current statistics, log-probs and values under the current
        ``theta``, GAE over the buffer oldest-first, bootstrapping from the current observation."""
        config, fifo = self.config, self.fifo
        policy, value = self.networks.policy, self.networks.value
        policy_params, value_params = self._host_params["policy"], self._host_params["value"]
        rows = fifo.ordered_rows()
        observations, actions = self._buffer_view(rows)
        values = value.apply_numpy(value_params, observations)
        next_values = np.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = value.apply_numpy(value_params, self.normalize(self.next_observations))
        terminated, ended = fifo.terminated[rows], fifo.episode_ended[rows]
        truncated = ended & ~terminated
        if truncated.any():
            finals = self.normalize(fifo.final_observations[rows][truncated])
            next_values[truncated] = value.apply_numpy(value_params, finals)
        rewards = fifo.rewards[rows]
        if config.normalize_rewards:
            rewards = self.return_normalizer.scale(rewards)
        advantages, returns = compute_gae(rewards, values, next_values, terminated, ended,
                                          config.gamma, config.gae_lambda)
        log_probs = policy.apply_numpy(policy_params, observations).log_prob(actions)
        size = len(rows) * config.num_envs
        batch = RolloutBatch(observations=observations.reshape(size, *self.observation_shape),
                             actions=actions.reshape(size, *actions.shape[2:]),
                             log_probs=np.asarray(log_probs, dtype=np.float32).reshape(-1),
                             values=values.reshape(-1), advantages=advantages.reshape(-1),
                             returns=returns.reshape(-1))
        fraction_left = 1.0 - self.iteration / config.num_iterations if config.anneal_lr else 1.0
        self.state, metrics = ppo_update(self.state, batch, np.float32(config.learning_rate * fraction_left),
                                         networks=self.networks, settings=self.settings,
                                         max_grad_norm=config.max_grad_norm,
                                         value_learning_rate_scale=config.value_learning_rate_scale)
        host_params, host_metrics = jax.device_get((self.state.params, metrics))
        self._set_host_params(host_params)
        explained = 1.0 - np.var(returns - values) / max(float(np.var(returns)), 1e-8)
        return {**{name: float(metric) for name, metric in host_metrics.items()},
                "loss/explained_variance": float(explained), "buffer/transitions": float(size)}

    def update_behaviour(self, reference_params: Any) -> None:
        """Reset ``phi`` to the current target and adapt it to the buffer (props, ros); on-policy
        sampling simply follows the target. Fetches ``phi`` to the host for the next collection."""
        config = self.config
        target_params = self.state.params["policy"]
        if config.sampling == "on-policy":
            self._behaviour_host_params = self._host_params["policy"]
            return
        batch = self.behaviour_batch()
        if config.sampling == "ros" and not config.ros_original:
            behaviour_params = ros_behaviour(target_params, batch, config.behaviour_learning_rate,
                                             policy=self.networks.policy)
            self.behaviour_state = BehaviourState(params=behaviour_params, opt_state=self.behaviour_state.opt_state,
                                                  key=self.behaviour_state.key)
            self._behaviour_host_params = jax.device_get(behaviour_params)
            return
        self.behaviour_state, metrics = behaviour_update(self.behaviour_state, target_params, reference_params,
                                                         batch, policy=self.networks.policy,
                                                         settings=self.behaviour_settings)
        self._behaviour_host_params, host_metrics = jax.device_get((self.behaviour_state.params, metrics))
        self._behaviour_metrics.append({name: float(value) for name, value in host_metrics.items()})

    def behaviour_batch(self) -> BehaviourBatch:
        """``D'``: the buffer without the rows the next behaviour batch evicts, normalised and padded."""
        config = self.config
        rows = self.fifo.ordered_rows()
        evicted = max(0, self.fifo.size + config.behaviour_num_steps - self.fifo.capacity)
        observations, actions = self._buffer_view(rows[evicted:])
        observations = observations.reshape(-1, *self.observation_shape)
        actions = actions.reshape(len(observations), *actions.shape[2:])
        padding = self._padded_size - len(observations)
        observations = np.concatenate([observations, np.zeros((padding, *observations.shape[1:]), np.float32)])
        actions = np.concatenate([actions, np.zeros((padding, *actions.shape[1:]), actions.dtype)])
        return BehaviourBatch(observations=jnp.asarray(observations), actions=jnp.asarray(actions),
                              num_valid=jnp.asarray(self._padded_size - padding))

    def buffer_sampling_error(self) -> float:
        """Sampling error ``KL(pi_D || pi_theta)`` of the whole buffer under the current target."""
        observations, actions = self._buffer_view(self.fifo.ordered_rows())
        size = observations.shape[0] * observations.shape[1]
        return sampling_error(self.networks.policy, self._host_params["policy"],
                              observations.reshape(size, *self.observation_shape),
                              actions.reshape(size, *actions.shape[2:]), fit_epochs=self.config.sampling_error_epochs)

    def reference_sampling_error(self) -> float:
        """Sampling error of on-policy sampling along the same target sequence: each of the last
        ``buffer_batches`` targets (oldest first) collects ``num_steps x num_envs`` steps with its own
        sampled actions in a separate env, continuing one trajectory; the resulting buffer is
        measured under the current target with the current observation statistics, as the real
        one is. The released code replays from a copy of the training envs; this one starts from a
        seeded reset (its own random streams, so the training run is unchanged)."""
        config = self.config
        policy = self.networks.policy
        seeder = Seeder(config.seed)
        rng = seeder.numpy(f"reference/{self.global_step}")
        env = make_env(config.env, action_repeat=config.action_repeat)
        observations_seen: list[np.ndarray] = []
        actions_taken: list[np.ndarray] = []
        try:
            observation, _ = env.reset(seed=seeder.env_seeds(f"reference/{self.global_step}", 1)[0])
            for params in self.target_history:
                for _ in range(config.num_steps * config.num_envs):
                    observation = np.asarray(observation, dtype=np.float32)
                    action = policy.apply_numpy(params, self.normalize(observation[None])).sample_numpy(rng)[0]
                    observations_seen.append(observation)
                    actions_taken.append(action)
                    if isinstance(self.action_space, gym.spaces.Box):
                        action = np.clip(action, self.action_space.low, self.action_space.high)
                    observation, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        observation, _ = env.reset()
        finally:
            env.close()
        return sampling_error(policy, self._host_params["policy"], self.normalize(np.stack(observations_seen)),
                              np.stack(actions_taken), fit_epochs=config.sampling_error_epochs)

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint_state(self) -> Any:
        """The target's and the behaviour policy's device state."""
        return {"target": self.state, "behaviour": self.behaviour_state}

    def restore_checkpoint_state(self, state: Any) -> None:
        """Take back :meth:`checkpoint_state` output."""
        self.state, self.behaviour_state = state["target"], state["behaviour"]
        source = self.state.params["policy"] if self.config.sampling == "on-policy" else self.behaviour_state.params
        self._behaviour_host_params = jax.device_get(source)

    def host_state(self) -> dict[str, Any]:
        """PPO's host state plus the FIFO buffer (and the targets the reference replay needs)."""
        return {**super().host_state(), "fifo": self.fifo.state_dict(),
                "target_history": {str(index): params for index, params in enumerate(self.target_history)}}

    def restore_host_state(self, host: dict[str, Any]) -> None:
        """Take back :meth:`host_state` output."""
        super().restore_host_state(host)
        self.fifo.load_state_dict(host["fifo"])
        # The host state is stored as nested lists: give each entry back the target's array structure.
        history, template = host.get("target_history", {}), self._host_params["policy"]
        self.target_history = [jax.tree_util.tree_map(lambda leaf, value: np.asarray(value, dtype=leaf.dtype),
                                                      template, history[str(index)])
                               for index in range(len(history))]


def _make_trainer(config: PROPSConfig, run_dir: Path, progress: bool) -> PROPSTrainer:
    return PROPSTrainer(config, run_dir, progress)


ALGORITHM = AlgorithmSpec(
    name="props",
    config_cls=PROPSConfig,
    presets=PRESETS,
    make_trainer=_make_trainer,
    summary="PROPS: PPO with adaptive off-policy sampling; also PPO, PPO-Buffer and ROS (--sampling)",
    task_presets=task_presets,
)

__all__ = ["ALGORITHM", "PRESETS", "TASK_SETTINGS", "BatchFIFO", "BehaviourBatch", "BehaviourSettings",
           "BehaviourState", "PROPSConfig", "PROPSTrainer", "TaskSettings", "behaviour_loss", "behaviour_update",
           "ros_behaviour", "scale_mean_updates", "task_family", "task_presets"]
