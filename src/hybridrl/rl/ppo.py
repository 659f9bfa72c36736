"""Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347), with the implementation
details of Huang et al. 2022 ("The 37 implementation details of PPO"), continuous and discrete.

Per iteration:

1. Collect ``num_steps`` steps from ``num_envs`` vector envs with the current policy. Rollout
   inference runs in numpy on the host (a jitted call per step costs as much as a MuJoCo step).
2. Compute GAE(gamma, lambda) advantages, bootstrapping through time-limit truncation from the
   value of the true final observation and not through termination.
3. Run ``update_epochs`` epochs of ``num_minibatches`` minibatch steps on the clipped objective

   ``L = E[max(-A r, -A clip(r, 1-eps, 1+eps))] + c_v L_V - c_e H[pi]``,  ``r = pi(a|s) / pi_old(a|s)``

   as one jitted function (epochs and minibatches are ``lax.scan``s), optionally stopping early
   once the approximate KL ``E[(r - 1) - log r]`` (Schulman's k3 estimator) exceeds ``target_kl``:
   checked after each epoch on its last minibatch (CleanRL) or, with ``target_kl_check="minibatch"``,
   on each minibatch before its step (the PROPS code's PPO).

The module reads top-down: config and presets, networks and train state, the loss and the
jitted update, then the trainer (rollout, logging, evaluation, checkpoints).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
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
from hybridrl.core.checkpoint import load_checkpoint, save_checkpoint
from hybridrl.core.distributions import Array, Distribution
from hybridrl.core.evaluation import evaluate_policy
from hybridrl.core.logging import RunLogger
from hybridrl.core.networks import CategoricalPolicy, GaussianPolicy, JointNumpyMLP, ValueHead
from hybridrl.core.normalization import ReturnNormalizer, RunningMeanStd
from hybridrl.core.rollout import RolloutBuffer
from hybridrl.core.seeding import (
    Seeder,
    check_seed_configs,
    generator_state,
    restore_generator,
    seed_rows,
    seed_sharding,
    stack_seeds,
    train_in_seed_groups,
)
from hybridrl.envs.factory import check_env_id, make_env, make_vector_env
from hybridrl.envs.snapshot import SnapshotUnsupportedError
from hybridrl.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Config and presets
# --------------------------------------------------------------------------------------------


@dataclass
class PPOConfig:
    """PPO options. ``hybridrl train ppo --help`` shows each with its preset default."""

    env: str = "Hopper-v5"
    """Environment: a Gymnasium id (Hopper-v5, CartPole-v1) or a DeepMind Control task (dmc:walker-walk)."""
    seed: int = 1
    """Seed of every random stream of the run (networks, rollouts, minibatches, environments)."""
    total_steps: int = 1_000_000
    """Training budget in environment steps (summed over vector envs)."""
    preset: str = "cpu"
    """Preset the defaults came from: smoke, cpu or paper."""
    num_envs: int = 8
    """Parallel environments per rollout."""
    num_steps: int = 256
    """Steps per environment per rollout; a rollout holds num_envs * num_steps transitions."""
    vector_mode: Literal["sync", "async"] = "sync"
    """sync steps envs in this process (fastest on 2 cores); async gives each env a process."""
    action_repeat: int = 1
    """Repeat each action this many times (dmc: tasks only)."""
    learning_rate: float = 3e-4
    """Adam step size."""
    value_learning_rate: float | None = None
    """Step size of the value network if it differs from the policy's (None: learning_rate); annealed alike."""
    anneal_lr: bool = True
    """Decay the step size linearly to 0 over the run."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda: bias-variance trade-off of advantages."""
    update_epochs: int = 10
    """Passes over each rollout."""
    num_minibatches: int = 32
    """Minibatches per epoch (minibatch size = num_envs * num_steps / num_minibatches)."""
    clip_coef: float = 0.2
    """PPO ratio clip epsilon."""
    clip_value_loss: bool = True
    """Clip the value update around the rollout's values, as in OpenAI baselines."""
    normalize_advantages: bool = True
    """Standardise advantages per minibatch."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this."""
    target_kl: float | None = None
    """Stop an update's epochs early once the approximate KL exceeds this (None: never)."""
    target_kl_check: Literal["epoch", "minibatch"] = "epoch"
    """When target_kl is checked: after each epoch, on its last minibatch (CleanRL), or on each
    minibatch before its step, which it then skips (the PROPS code's PPO)."""
    policy_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the value function."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""
    policy_tanh_mean: bool = False
    """Pass the Gaussian mean through tanh (the PROPS code's actor); actions stay unsquashed."""
    normalize_observations: bool = True
    """Standardise observations with running statistics (frozen during evaluation)."""
    normalize_rewards: bool = True
    """Scale rewards by the running std of the discounted return."""
    reward_scale: float = 1.0
    """Multiply rewards by this constant before any normalisation (episode returns stay raw)."""
    observation_clip: float = 10.0
    """Clip normalised observations to +-this."""
    reward_clip: float = 10.0
    """Clip scaled rewards to +-this."""
    eval_interval: int = 100_000
    """Evaluate every this many env steps (0: only at the end)."""
    eval_episodes: int = 10
    """Deterministic episodes per evaluation."""
    checkpoint_interval: int = 100_000
    """Checkpoint every this many env steps (and always at the end)."""

    @property
    def batch_size(self) -> int:
        """Transitions per rollout."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per minibatch."""
        return self.batch_size // self.num_minibatches

    @property
    def value_learning_rate_scale(self) -> float:
        """The value network's step size relative to the policy's."""
        return 1.0 if self.value_learning_rate is None else self.value_learning_rate / self.learning_rate

    @property
    def num_iterations(self) -> int:
        """Rollout-update iterations needed to spend ``total_steps``."""
        return math.ceil(self.total_steps / self.batch_size)

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix for every impossible setting."""
        positive = ("total_steps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                    "eval_episodes", "action_repeat")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"num_envs * num_steps = {self.batch_size} is not divisible by num_minibatches = "
                f"{self.num_minibatches}; change one so minibatches are equal"
            )
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {self.gamma}, {self.gae_lambda}")
        if self.learning_rate <= 0 or self.clip_coef <= 0:
            raise ConfigError("--learning-rate and --clip-coef must be positive")
        if self.value_learning_rate is not None and self.value_learning_rate <= 0:
            raise ConfigError(f"--value-learning-rate must be positive or None, got {self.value_learning_rate}")
        if self.reward_scale <= 0:
            raise ConfigError(f"--reward-scale must be positive, got {self.reward_scale}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ConfigError(f"--target-kl must be positive or None, got {self.target_kl}")
        if self.target_kl_check not in ("epoch", "minibatch"):
            raise ConfigError(f"--target-kl-check must be epoch or minibatch, got {self.target_kl_check!r}")
        check_env_id(self.env)


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds, for tests: two short rollouts and a tiny update.
    "smoke": dict(total_steps=2_048, num_envs=2, num_steps=128, update_epochs=2, num_minibatches=4,
                  eval_interval=0, eval_episodes=2, checkpoint_interval=1_024),
    # The PPO paper's MuJoCo settings (2048-step rollouts, 10 epochs, minibatch 64) spread over 8
    # sync envs, which on 2 cores trains several times faster than one env (docs/algorithms/ppo.md).
    "cpu": dict(total_steps=1_000_000, num_envs=8, num_steps=256, update_epochs=10, num_minibatches=32),
    # Schulman et al. 2017, table 3 (MuJoCo): one env, horizon 2048, 10 epochs, minibatch 64.
    "paper": dict(total_steps=1_000_000, num_envs=1, num_steps=2048, update_epochs=10, num_minibatches=32),
}

# --------------------------------------------------------------------------------------------
# Networks and train state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PPONetworks:
    """The policy and value networks (hashable, so the jitted update can take them statically)."""

    policy: nn.Module
    value: nn.Module


@dataclass(frozen=True)
class UpdateSettings:
    """Hyper-parameters the jitted update is specialised on."""

    update_epochs: int
    num_minibatches: int
    clip_coef: float
    clip_value_loss: bool
    normalize_advantages: bool
    entropy_coef: float
    value_coef: float
    target_kl: float | None
    target_kl_check: str = "epoch"


@struct.dataclass
class PPOTrainState:
    """Everything the update changes: parameters, optimiser state (with its step count and the
    current learning rate) and the PRNG key of minibatch shuffling."""

    params: dict[str, Any]
    opt_state: optax.OptState
    key: jax.Array


@struct.dataclass
class RolloutBatch:
    """One rollout, flattened over (step, env), as the update sees it."""

    observations: Array
    actions: Array
    log_probs: Array
    values: Array
    advantages: Array
    returns: Array


def make_networks(config: PPOConfig, action_space: gym.Space[Any]) -> PPONetworks:
    """The policy for ``action_space`` (Gaussian for Box, categorical for Discrete) and a value net."""
    if isinstance(action_space, gym.spaces.Box):
        policy: nn.Module = GaussianPolicy(action_dim=int(np.prod(action_space.shape)),
                                           hidden_sizes=config.policy_hidden, activation=config.activation,
                                           log_std_init=config.log_std_init, tanh_mean=config.policy_tanh_mean)
    elif isinstance(action_space, gym.spaces.Discrete):
        policy = CategoricalPolicy(num_actions=int(action_space.n), hidden_sizes=config.policy_hidden,
                                   activation=config.activation)
    else:
        raise ConfigError(f"PPO supports Box and Discrete action spaces, not {action_space}")
    return PPONetworks(policy=policy, value=ValueHead(hidden_sizes=config.value_hidden,
                                                      activation=config.activation))


def make_optimizer(max_grad_norm: float, learning_rate: float,
                   value_learning_rate_scale: float = 1.0) -> optax.GradientTransformation:
    """Adam (eps 1e-5, as in baselines) after global-norm clipping; the learning rate is an
    injected hyper-parameter so annealing lives in the optimiser state (and in checkpoints).

    :param value_learning_rate_scale: multiply the updates of the ``"value"`` subtree by this,
        which for Adam is the same as giving the value network its own step size (Uni-O4's online
        phase uses 1e-5 for the policy and 2e-4 for the value).
    """

    def build(learning_rate: float) -> optax.GradientTransformation:
        adam = optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5))
        if value_learning_rate_scale == 1.0:
            return adam
        return optax.chain(adam, optax.masked(optax.scale(value_learning_rate_scale), _value_subtree_mask))

    return optax.inject_hyperparams(build)(learning_rate=learning_rate)


def _value_subtree_mask(params: dict[str, Any]) -> dict[str, Any]:
    return {name: jax.tree_util.tree_map(lambda _, value=name == "value": value, subtree)
            for name, subtree in params.items()}


def init_train_state(config: PPOConfig, networks: PPONetworks, observation_shape: tuple[int, ...],
                     key: jax.Array) -> PPOTrainState:
    """Fresh parameters and optimiser state."""
    optimizer = make_optimizer(config.max_grad_norm, config.learning_rate, config.value_learning_rate_scale)

    # One compiled program: run op by op, the initialisers compile some forty small programs (each
    # orthogonal init a QR of its own), about 2.5 s of a run's start-up (docs/performance.md).
    @jax.jit
    def init(key: jax.Array) -> PPOTrainState:
        policy_key, value_key, shuffle_key = jax.random.split(key, 3)
        dummy = jnp.zeros((1, *observation_shape), dtype=jnp.float32)
        params = {"policy": networks.policy.init(policy_key, dummy)["params"],
                  "value": networks.value.init(value_key, dummy)["params"]}
        return PPOTrainState(params=params, opt_state=optimizer.init(params), key=shuffle_key)

    return cast(PPOTrainState, init(key))


# --------------------------------------------------------------------------------------------
# Loss and jitted update
# --------------------------------------------------------------------------------------------


def ppo_loss(params: dict[str, Any], batch: RolloutBatch, networks: PPONetworks,
             settings: UpdateSettings) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The clipped surrogate loss with value and entropy terms on one minibatch."""
    distribution = cast(Distribution, networks.policy.apply({"params": params["policy"]}, batch.observations))
    log_probs = distribution.log_prob(batch.actions)
    log_ratio = log_probs - batch.log_probs
    ratio = jnp.exp(log_ratio)
    advantages = batch.advantages
    if settings.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    clipped_ratio = jnp.clip(ratio, 1.0 - settings.clip_coef, 1.0 + settings.clip_coef)
    policy_loss = jnp.maximum(-advantages * ratio, -advantages * clipped_ratio).mean()

    values = cast(jax.Array, networks.value.apply({"params": params["value"]}, batch.observations))
    if settings.clip_value_loss:
        clipped_values = batch.values + jnp.clip(values - batch.values, -settings.clip_coef, settings.clip_coef)
        value_loss = 0.5 * jnp.maximum((values - batch.returns) ** 2, (clipped_values - batch.returns) ** 2).mean()
    else:
        value_loss = 0.5 * ((values - batch.returns) ** 2).mean()
    entropy = distribution.entropy().mean()
    loss = policy_loss - settings.entropy_coef * entropy + settings.value_coef * value_loss
    metrics = {
        "loss/policy": policy_loss,
        "loss/value": value_loss,
        "loss/entropy": entropy,
        "loss/approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "loss/clip_fraction": (jnp.abs(ratio - 1.0) > settings.clip_coef).mean(),
    }
    return loss, metrics


@functools.partial(jax.jit, static_argnames=("networks", "settings", "max_grad_norm", "value_learning_rate_scale"))
def ppo_update(state: PPOTrainState, batch: RolloutBatch, learning_rate: jax.Array, *,
               networks: PPONetworks, settings: UpdateSettings, max_grad_norm: float,
               value_learning_rate_scale: float = 1.0) -> tuple[PPOTrainState, dict[str, jax.Array]]:
    """All epochs and minibatches of one PPO update, as one compiled function.

    :param batch: the rollout, flattened to ``(batch_size, ...)``.
    :param learning_rate: this iteration's (annealed) step size.
    :param value_learning_rate_scale: the value network's step size relative to the policy's
        (must match the optimiser the state was made with).
    :returns: the new state and metrics averaged over the minibatch steps actually taken.
    """
    optimizer = make_optimizer(max_grad_norm, 0.0, value_learning_rate_scale)
    opt_state = state.opt_state
    opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, dtype=jnp.float32)
    batch_size = batch.observations.shape[0]
    minibatch_size = batch_size // settings.num_minibatches
    gradient = jax.grad(functools.partial(ppo_loss, networks=networks, settings=settings), has_aux=True)

    def minibatch_step(carry: tuple[Any, Any, jax.Array], minibatch: RolloutBatch) -> tuple[Any, Any]:
        params, opt_state, stopped = carry

        def step(operand: tuple[Any, Any]) -> tuple[Any, Any, dict[str, jax.Array], jax.Array]:
            params, opt_state = operand
            grads, metrics = gradient(params, minibatch)
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            if settings.target_kl is None or settings.target_kl_check != "minibatch":
                return new_params, new_opt_state, metrics, jnp.asarray(False)
            # The PROPS code's check: this minibatch's KL, before its step, decides whether to take it.
            exceeded = metrics["loss/approx_kl"] > settings.target_kl
            keep = functools.partial(jax.tree_util.tree_map, lambda new, old: jnp.where(exceeded, old, new))
            return keep(new_params, params), keep(new_opt_state, opt_state), metrics, exceeded

        def skip(operand: tuple[Any, Any]) -> tuple[Any, Any, dict[str, jax.Array], jax.Array]:
            params, opt_state = operand
            _, metrics = jax.eval_shape(gradient, params, minibatch)
            zeros = jax.tree_util.tree_map(lambda spec: jnp.zeros(spec.shape, spec.dtype), metrics)
            return params, opt_state, zeros, jnp.asarray(False)

        params, opt_state, metrics, exceeded = jax.lax.cond(stopped, skip, step, (params, opt_state))
        stopped = stopped | exceeded
        metrics["taken"] = 1.0 - stopped.astype(jnp.float32)
        return (params, opt_state, stopped), metrics

    def epoch(carry: tuple[Any, Any, jax.Array], epoch_key: jax.Array) -> tuple[Any, Any]:
        order = jax.random.permutation(epoch_key, batch_size)
        minibatches = jax.tree_util.tree_map(
            lambda leaf: leaf[order].reshape(settings.num_minibatches, minibatch_size, *leaf.shape[1:]), batch)
        (params, opt_state, stopped), metrics = jax.lax.scan(minibatch_step, carry, minibatches)
        if settings.target_kl is not None and settings.target_kl_check == "epoch":
            # As in CleanRL: the KL of the epoch's last minibatch decides whether to go on.
            stopped = stopped | (metrics["loss/approx_kl"][-1] > settings.target_kl)
        return (params, opt_state, stopped), metrics

    key, *epoch_keys = jax.random.split(state.key, settings.update_epochs + 1)
    (params, opt_state, _), metrics = jax.lax.scan(
        epoch, (state.params, opt_state, jnp.asarray(False)), jnp.stack(epoch_keys))
    taken = metrics.pop("taken")
    averaged = {name: (value * taken).sum() / jnp.maximum(taken.sum(), 1.0) for name, value in metrics.items()}
    averaged["update/minibatch_steps"] = taken.sum()
    averaged["update/learning_rate"] = opt_state.hyperparams["learning_rate"]
    return PPOTrainState(params=params, opt_state=opt_state, key=key), averaged


# --------------------------------------------------------------------------------------------
# Trainer: rollouts, logging, evaluation, checkpoints
# --------------------------------------------------------------------------------------------


class PPOTrainer:
    """Runs PPO in a run directory; see :mod:`hybridrl.runs` for the directory layout.

    :param config: a validated :class:`PPOConfig`.
    :param run_dir: where logs and checkpoints go.
    :param progress: show a progress bar.
    """

    algorithm = "ppo"

    def __init__(self, config: PPOConfig, run_dir: Path, progress: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        seeder = Seeder(config.seed)
        train_seed = seeder.env_seeds("train", 1)[0]
        # Seeded once, by the first reset below (env i gets train_seed + i).
        self.envs = make_vector_env(config.env, config.num_envs, config.vector_mode,
                                    action_repeat=config.action_repeat)
        self.eval_env = make_env(config.env, action_repeat=config.action_repeat)
        self.eval_seed = seeder.env_seeds("eval", 1)[0]
        observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.observation_shape = tuple(observation_space.shape or ())
        self.networks = make_networks(config, self.action_space)
        self.settings = UpdateSettings(config.update_epochs, config.num_minibatches, config.clip_coef,
                                       config.clip_value_loss, config.normalize_advantages,
                                       config.entropy_coef, config.value_coef, config.target_kl,
                                       config.target_kl_check)
        self.state = init_train_state(config, self.networks, self.observation_shape, seeder.jax_key("params"))
        self.rng = seeder.numpy("rollout")
        self.observation_stats = RunningMeanStd(self.observation_shape)
        self.return_normalizer = ReturnNormalizer(config.num_envs, config.gamma, config.reward_clip)
        discrete = isinstance(self.action_space, gym.spaces.Discrete)
        action_shape = () if discrete else tuple(self.action_space.shape or ())
        self.buffer = RolloutBuffer.allocate(config.num_steps, config.num_envs, self.observation_shape,
                                             action_shape, np.int64 if discrete else np.float32)
        # Values of the true last observations of truncated episodes, per (step, env).
        self.truncation_values = np.zeros((config.num_steps, config.num_envs), dtype=np.float32)
        self.global_step = 0
        self.iteration = 0
        self.episode_returns = np.zeros(config.num_envs, dtype=np.float64)
        self.episode_lengths = np.zeros(config.num_envs, dtype=np.int64)
        self.elapsed = 0.0
        self.last_eval: dict[str, float] = {}
        self.last_eval_step = -1
        self.next_observations, _ = self.envs.reset(seed=train_seed)
        if config.normalize_observations:
            self.observation_stats.update(self.next_observations)
        self._set_host_params(jax.device_get(self.state.params))

    # -- policy on the host ------------------------------------------------------------------

    def _set_host_params(self, params: dict[str, Any]) -> None:
        """Take the parameters the rollouts use, and join policy and value into one numpy pass where
        their depths match (:class:`~hybridrl.core.networks.JointNumpyMLP`)."""
        self._host_params = params
        policy, value = self.networks.policy, self.networks.value
        policy_layers = policy.numpy_layers(params["policy"])
        value_layers = value.numpy_layers(params["value"])
        joinable = (policy_layers is not None and len(policy_layers) == len(value_layers)
                    and policy.activation == value.activation)
        self._policy_and_value = (JointNumpyMLP.from_layers([policy_layers, value_layers],
                                                            policy.activation)
                                  if joinable else None)

    def policy_and_values(self, observations: np.ndarray) -> tuple[Distribution, np.ndarray]:
        """The rollout policy's distribution and the values of (normalised) ``observations``, in numpy."""
        params = self._host_params
        if self._policy_and_value is None:
            return (self.networks.policy.apply_numpy(params["policy"], observations),
                    self.networks.value.apply_numpy(params["value"], observations))
        head, values = self._policy_and_value(observations)
        return self.networks.policy.distribution_numpy(params["policy"], head), values[..., 0]

    def normalize(self, observations: np.ndarray) -> np.ndarray:
        """Observations as the networks see them (normalised and clipped if configured)."""
        if not self.config.normalize_observations:
            return np.asarray(observations, dtype=np.float32)
        return self.observation_stats.normalize(observations, clip=self.config.observation_clip)

    def act_deterministic(self, observations: np.ndarray) -> np.ndarray:
        """The mean (or most likely) action for raw observations, with frozen statistics."""
        distribution = self.networks.policy.apply_numpy(self._host_params["policy"], self.normalize(observations))
        return np.asarray(distribution.mode())

    # -- one iteration -----------------------------------------------------------------------

    def collect_rollout(self) -> list[float]:
        """Fill the buffer with ``num_steps`` steps of every env; return finished episodes' returns."""
        finished_returns: list[float] = []
        for step in range(self.config.num_steps):
            observations = self.normalize(self.next_observations)
            distribution, values = self.policy_and_values(observations)
            self.record_step(step, observations, distribution, values, finished_returns)
        self.finish_rollout()
        return finished_returns

    def record_step(self, step: int, observations: np.ndarray, distribution: Distribution, values: np.ndarray,
                    finished_returns: list[float]) -> None:
        """Rollout step ``step``: sample actions from ``distribution`` (the policy at the normalised
        ``observations``, whose values are ``values``) with this run's generator, step the envs and
        store the transition."""
        config, buffer = self.config, self.buffer
        actions = distribution.sample_numpy(self.rng)
        buffer.observations[step] = observations
        buffer.values[step] = values
        buffer.actions[step] = actions
        buffer.log_probs[step] = distribution.log_prob(actions)
        rewards, terminated, ended, truncated_finals = self.step_envs(actions, finished_returns)
        if truncated_finals is not None:
            cut, final = truncated_finals
            self.truncation_values[step, cut] = self.networks.value.apply_numpy(self._host_params["value"],
                                                                                self.normalize(final))
        if config.normalize_rewards:
            rewards = self.return_normalizer(rewards, ended)
        buffer.rewards[step] = rewards
        buffer.terminated[step] = terminated
        buffer.episode_ended[step] = ended
        if config.normalize_observations:
            self.observation_stats.update(self.next_observations)

    def finish_rollout(self) -> None:
        """After the last step: the value of the state after each step, which is the next stored state
        within an episode, the true final observation where a time limit cut the episode, and the
        current state after the last step."""
        buffer = self.buffer
        buffer.next_values[:-1] = buffer.values[1:]
        buffer.next_values[-1] = self.networks.value.apply_numpy(self._host_params["value"],
                                                                 self.normalize(self.next_observations))
        truncated_mask = buffer.episode_ended & ~buffer.terminated
        buffer.next_values[truncated_mask] = self.truncation_values[truncated_mask]
        self.truncation_values.fill(0.0)

    def step_envs(self, actions: np.ndarray, finished_returns: list[float]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Step every env with ``actions`` (clipped to a Box's bounds; log-probs stay those of the
        unclipped actions), track episode returns, and append finished ones to ``finished_returns``.

        :returns: rewards (times ``reward_scale``), terminated and ended flags, and, where a time limit cut episodes,
            ``(mask, true final observations)`` of those envs (else None).
        """
        if isinstance(self.action_space, gym.spaces.Box):
            actions = np.minimum(np.maximum(actions, self.action_space.low), self.action_space.high)
        self.next_observations, rewards, terminated, truncated, info = self.envs.step(actions)
        ended = terminated | truncated
        self.episode_returns += rewards
        self.episode_lengths += 1
        truncated_finals = None
        if ended.any():
            finished_returns.extend(self.episode_returns[ended].tolist())
            self.episode_returns[ended] = 0.0
            self.episode_lengths[ended] = 0
            cut = truncated & ~terminated
            if cut.any():
                truncated_finals = cut, np.stack(info["final_obs"][cut]).astype(np.float32)
        if self.config.reward_scale != 1.0:
            rewards = rewards * self.config.reward_scale
        return rewards, terminated, ended, truncated_finals

    def update(self) -> dict[str, float]:
        """One PPO update on the collected rollout; returns host metrics."""
        config = self.config
        batch, returns = self.rollout_batch()
        self.state, metrics = ppo_update(self.state, batch, self.learning_rate(), networks=self.networks,
                                         settings=self.settings, max_grad_norm=config.max_grad_norm,
                                         value_learning_rate_scale=config.value_learning_rate_scale)
        # One transfer per iteration: parameters for the next rollout and the metrics.
        host_params, host_metrics = jax.device_get((self.state.params, metrics))
        return self.finish_update(host_params, host_metrics, returns)

    def rollout_batch(self) -> tuple[RolloutBatch, np.ndarray]:
        """The collected rollout with its GAE advantages, flattened for the update, and the returns
        (``(num_steps, num_envs)``)."""
        config = self.config
        advantages, returns = self.buffer.advantages_and_returns(config.gamma, config.gae_lambda)
        batch = RolloutBatch(
            observations=self.buffer.observations.reshape(config.batch_size, *self.observation_shape),
            actions=self.buffer.actions.reshape(config.batch_size, *self.buffer.actions.shape[2:]),
            log_probs=self.buffer.log_probs.reshape(-1), values=self.buffer.values.reshape(-1),
            advantages=advantages.reshape(-1), returns=returns.reshape(-1),
        )
        return batch, returns

    def learning_rate(self) -> np.float32:
        """This iteration's step size (annealed linearly to 0 over the run if configured)."""
        config = self.config
        fraction_left = 1.0 - self.iteration / config.num_iterations if config.anneal_lr else 1.0
        return np.float32(config.learning_rate * fraction_left)

    def finish_update(self, host_params: dict[str, Any], host_metrics: dict[str, Any],
                      returns: np.ndarray) -> dict[str, float]:
        """After an update: take its parameters for the next rollout; the update's scalars."""
        self.iteration += 1
        self._set_host_params(host_params)
        explained = 1.0 - np.var(returns - self.buffer.values) / max(float(np.var(returns)), 1e-8)
        return {**{name: float(value) for name, value in host_metrics.items()},
                "loss/explained_variance": float(explained)}

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Deterministic evaluation on a separate env instance."""
        return evaluate_policy(self.eval_env, self.act_deterministic, episodes, self.eval_seed, self.config.env)

    def evaluate_and_log(self, logger: RunLogger) -> None:
        """Evaluate now and log the result at the current step."""
        self.last_eval, self.last_eval_step = self.evaluate(self.config.eval_episodes), self.global_step
        logger.log(self.global_step, self.last_eval)

    # -- the loop ------------------------------------------------------------------------------

    def iterate(self) -> dict[str, float]:
        """One iteration: a rollout and the update on it; returns the iteration's scalars."""
        finished_returns = self.collect_rollout()
        self.global_step += self.config.batch_size
        scalars = self.update()
        if finished_returns:
            scalars["train/episode_return"] = float(np.mean(finished_returns))
        return scalars

    def train(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (or pause at the first checkpoint at or after ``stop_at_step``).

        Evaluations and checkpoints happen at iteration boundaries once their interval has passed.
        """
        return train_in_lockstep([self], lambda: [self.iterate()], stop_at_step)[0]

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint_state(self) -> Any:
        """The device state a checkpoint stores (a subclass may add to it)."""
        return self.state

    def restore_checkpoint_state(self, state: Any) -> None:
        """Take back :meth:`checkpoint_state` output."""
        self.state = state

    def host_state(self) -> dict[str, Any]:
        """Host-side train state for checkpoints (a subclass may add to it)."""
        return {
            "global_step": self.global_step,
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "rng": generator_state(self.rng),
            "observation_stats": self.observation_stats.state_dict(),
            "return_normalizer": self.return_normalizer.state_dict(),
            "episode_returns": self.episode_returns,
            "episode_lengths": self.episode_lengths,
            "next_observations": self.next_observations,
            "last_eval": self.last_eval,
            "last_eval_step": self.last_eval_step,
        }

    def restore_host_state(self, host: dict[str, Any]) -> None:
        """Take back :meth:`host_state` output."""
        self.global_step = int(host["global_step"])
        self.iteration = int(host["iteration"])
        self.elapsed = float(host["elapsed"])
        self.rng = restore_generator(host["rng"])
        self.observation_stats.load_state_dict(host["observation_stats"])
        self.return_normalizer.load_state_dict(host["return_normalizer"])
        self.episode_returns = np.asarray(host["episode_returns"], dtype=np.float64)
        self.episode_lengths = np.asarray(host["episode_lengths"], dtype=np.int64)
        self.last_eval = dict(host["last_eval"])
        self.last_eval_step = int(host["last_eval_step"])

    def save_checkpoint(self) -> Path:
        """Write every piece of train state to ``run_dir/checkpoint.ckpt`` atomically."""
        path = self.run_dir / "checkpoint.ckpt"
        blobs: dict[str, bytes] = {}
        try:
            for index, snapshot in enumerate(self.envs.get_attr("snapshot")):
                blobs[f"env_{index}"] = snapshot
        except SnapshotUnsupportedError as error:
            warnings.warn(f"environment state not saved ({error}); a resumed run will reset its envs",
                          stacklevel=2)
            blobs = {}
        save_checkpoint(path, algorithm=self.algorithm, step=self.global_step, state=self.checkpoint_state(),
                        host_state=self.host_state(), blobs=blobs)
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` of the same config."""
        state, host, blobs, _ = load_checkpoint(path, algorithm=self.algorithm, template=self.checkpoint_state())
        self.restore_checkpoint_state(state)
        self.restore_host_state(host)
        observations = np.asarray(host["next_observations"], dtype=self.next_observations.dtype)
        if blobs:
            self.envs.set_attr("snapshot", [blobs[f"env_{index}"] for index in range(self.config.num_envs)])
            self.next_observations = observations
        else:
            warnings.warn("checkpoint has no environment state; envs restart from a reset", stacklevel=2)
        self._set_host_params(jax.device_get(self.state.params))

    def close(self) -> None:
        """Close the environments."""
        self.envs.close()
        self.eval_env.close()


def interval_crossed(previous: int, current: int, interval: int) -> bool:
    """Whether a multiple of ``interval`` lies in ``(previous, current]`` (never for interval 0)."""
    return interval > 0 and previous // interval != current // interval


def train_in_lockstep(trainers: Sequence[PPOTrainer], iterate: Callable[[], list[dict[str, float]]],
                      stop_at_step: int | None = None, save: Callable[[int], object] | None = None
                      ) -> list[dict[str, Any]]:
    """The loop of :meth:`PPOTrainer.train`, for one run or for seeds trained together.

    The trainers are at the same step with the same config but for the seed. ``iterate()`` makes one
    iteration (rollout and update) of every run and returns each run's scalars; every run then logs,
    evaluates and checkpoints what is due, each in its own run directory.

    :param stop_at_step: pause (with checkpoints) after the first iteration at or after this step,
        returning ``{"step": ..., "paused": True}`` per run.
    :param save: writes run ``i``'s checkpoint (default: its :meth:`PPOTrainer.save_checkpoint`).
    :returns: each run's final metrics, in order.
    """
    lead, config = trainers[0], trainers[0].config
    save = save or (lambda index: trainers[index].save_checkpoint())
    loggers = [RunLogger(trainer.run_dir, config.total_steps, start_step=trainer.global_step,
                         progress=trainer.progress, elapsed=trainer.elapsed) for trainer in trainers]
    runs = list(zip(trainers, loggers, strict=True))
    try:
        while lead.global_step < config.total_steps:
            previous = lead.global_step
            scalars = iterate()
            step = lead.global_step
            done, pause = step >= config.total_steps, stop_at_step is not None and step >= stop_at_step
            checkpoint = done or pause or interval_crossed(previous, step, config.checkpoint_interval)
            for index, ((trainer, logger), run_scalars) in enumerate(zip(runs, scalars, strict=True)):
                run_scalars["train/steps_per_second"] = config.batch_size / max(logger.elapsed - trainer.elapsed, 1e-9)
                trainer.elapsed = logger.elapsed
                logger.log(step, run_scalars)
                if interval_crossed(previous, step, config.eval_interval):
                    trainer.evaluate_and_log(logger)
                if checkpoint:
                    save(index)
                logger.update_progress(step)
            if pause and not done:
                return [{"step": step, "paused": True} for _ in trainers]
        for index, (trainer, logger) in enumerate(runs):
            if trainer.last_eval_step != trainer.global_step:
                trainer.evaluate_and_log(logger)
                save(index)
    finally:
        for logger in loggers:
            logger.close()
    return [{"step": trainer.global_step, **trainer.last_eval, "wall_time_s": trainer.elapsed} for trainer in trainers]


# --------------------------------------------------------------------------------------------
# Seeds in one process: rollouts side by side, the update vmapped over a leading seed axis
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("networks", "settings", "max_grad_norm", "value_learning_rate_scale"))
def ppo_update_over_seeds(states: PPOTrainState, batches: RolloutBatch, learning_rate: jax.Array, *,
                          networks: PPONetworks, settings: UpdateSettings, max_grad_norm: float,
                          value_learning_rate_scale: float = 1.0) -> tuple[PPOTrainState, dict[str, jax.Array]]:
    """:func:`ppo_update` of every seed in one compiled call, states and rollouts stacked on a leading
    seed axis. Each seed shuffles its minibatches with its own key, so it follows the computation it
    has alone up to the float round-off of the batched matrix products; each metric gets a leading
    seed axis."""
    def one_seed(state: PPOTrainState, batch: RolloutBatch) -> tuple[PPOTrainState, dict[str, jax.Array]]:
        return ppo_update(state, batch, learning_rate, networks=networks, settings=settings,
                          max_grad_norm=max_grad_norm, value_learning_rate_scale=value_learning_rate_scale)

    updated: tuple[PPOTrainState, dict[str, jax.Array]] = jax.vmap(one_seed)(states, batches)
    return updated


class PPOSeedGroup:
    """Runs of PPO that differ only in their seed, trained together in one process
    (``hybridrl train ppo --seeds N``).

    Each seed keeps its own :class:`PPOTrainer`: its vector envs, normalisers, random streams (env
    seeds, action generator, minibatch key), run directory, log, evaluations and checkpoints, so it
    follows the computation it has when trained alone. Per rollout step the policies and values of
    all seeds are one batched numpy pass over their stacked parameters
    (:class:`~hybridrl.core.networks.JointNumpyMLP` with a seed axis) and the envs step one seed
    after another; per iteration, the updates of all seeds are one compiled call
    (:func:`ppo_update_over_seeds`), with the seeds split over the local devices when there are
    several (:func:`~hybridrl.core.seeding.seed_sharding`).

    :param trainers: plain PPO trainers (not PROPS or Uni-O4's online phase) at the same step, with
        configs equal but for the seed and their checkpoints loaded. Their ``state`` is brought up
        to date at each checkpoint.
    """

    def __init__(self, trainers: Sequence[PPOTrainer]) -> None:
        if any(type(trainer) is not PPOTrainer for trainer in trainers):
            raise ConfigError("only plain PPO trains seeds in one process, not its subclasses")
        if len({trainer.global_step for trainer in trainers}) != 1:
            raise ConfigError("seeds trained together must be at the same step; resume them in groups by step")
        self.trainers = list(trainers)
        lead = self.trainers[0]
        self.config, self.networks, self.settings = lead.config, lead.networks, lead.settings
        self.states: PPOTrainState = stack_seeds([trainer.state for trainer in self.trainers])
        self.sharding = seed_sharding(len(self.trainers))
        if self.sharding is not None:
            self.states = jax.device_put(self.states, self.sharding[0])
        self._stack_host_networks()

    def _stack_host_networks(self) -> None:
        """The seeds' joint policy-and-value passes stacked into one (None where a seed has none)."""
        joint = [trainer._policy_and_value for trainer in self.trainers]
        self.policies_and_values = (None if any(network is None for network in joint)
                                    else JointNumpyMLP.stack(cast(list[JointNumpyMLP], joint)))

    def collect_rollouts(self) -> list[list[float]]:
        """:meth:`PPOTrainer.collect_rollout` of every seed, step by step; each seed's finished returns."""
        finished: list[list[float]] = [[] for _ in self.trainers]
        for step in range(self.config.num_steps):
            observations = np.stack([trainer.normalize(trainer.next_observations) for trainer in self.trainers])
            if self.policies_and_values is None:
                outputs = [trainer.policy_and_values(rows) for trainer, rows in zip(self.trainers, observations,
                                                                                     strict=True)]
            else:
                heads, values = self.policies_and_values(observations)
                outputs = [(trainer.networks.policy.distribution_numpy(trainer._host_params["policy"], head),
                            value[..., 0]) for trainer, head, value in zip(self.trainers, heads, values, strict=True)]
            for trainer, rows, (distribution, value), returns in zip(self.trainers, observations, outputs, finished,
                                                                     strict=True):
                trainer.record_step(step, rows, distribution, value, returns)
        for trainer in self.trainers:
            trainer.finish_rollout()
        return finished

    def iterate(self) -> list[dict[str, float]]:
        """One iteration of every seed (:meth:`PPOTrainer.iterate`); each seed's scalars."""
        finished = self.collect_rollouts()
        for trainer in self.trainers:
            trainer.global_step += self.config.batch_size
        batches, returns = zip(*[trainer.rollout_batch() for trainer in self.trainers], strict=True)
        stacked = jax.tree_util.tree_map(lambda *rows: np.stack(rows), *batches)
        if self.sharding is not None:
            stacked = jax.device_put(stacked, self.sharding[0])
        config = self.config
        self.states, metrics = ppo_update_over_seeds(
            self.states, stacked, self.trainers[0].learning_rate(), networks=self.networks, settings=self.settings,
            max_grad_norm=config.max_grad_norm, value_learning_rate_scale=config.value_learning_rate_scale)
        host_params, host_metrics = jax.device_get((self.states.params, metrics))
        scalars = []
        for index, (trainer, run_returns, run_finished) in enumerate(zip(self.trainers, returns, finished,
                                                                         strict=True)):
            run_scalars = trainer.finish_update(seed_rows(host_params, index), seed_rows(host_metrics, index),
                                                run_returns)
            if run_finished:
                run_scalars["train/episode_return"] = float(np.mean(run_finished))
            scalars.append(run_scalars)
        self._stack_host_networks()
        return scalars

    def save(self, index: int) -> Path:
        """Write run ``index``'s checkpoint in a single run's format."""
        trainer = self.trainers[index]
        trainer.state = seed_rows(self.states, index)
        return trainer.save_checkpoint()

    def train(self, stop_at_step: int | None = None) -> list[dict[str, Any]]:
        """Train every seed to ``total_steps`` (see :meth:`PPOTrainer.train`); each run's final
        metrics, its ``wall_time_s`` being its share of the group's."""
        finals = train_in_lockstep(self.trainers, self.iterate, stop_at_step, self.save)
        for final in finals:
            if "wall_time_s" in final:  # absent from a paused run's
                final["wall_time_s"] /= len(self.trainers)
        return finals


def train_seeds(configs: Sequence[PPOConfig], run_dirs: Sequence[Path], progress: bool = False,
                stop_at_step: int | None = None) -> list[dict[str, Any]]:
    """The ``train_seeds`` hook of :data:`ALGORITHM`: train runs that differ only in their seed in this
    process (:class:`PPOSeedGroup`), each resuming from its checkpoint when it has one; runs whose
    checkpoints stopped at different steps train in separate groups, one per step.

    :param configs: one config per run, equal but for ``seed``.
    :param run_dirs: one run directory per config.
    :param progress: show a progress bar (of the first run).
    :param stop_at_step: pause every run after its first iteration at or after this step (for tests).
    :returns: each run's final metrics, in order.
    """
    check_seed_configs(configs, run_dirs)
    return train_in_seed_groups(
        len(configs), lambda index: PPOTrainer(configs[index], Path(run_dirs[index]), progress and index == 0),
        lambda trainer: trainer.global_step, lambda group: PPOSeedGroup(group).train(stop_at_step))


def _make_trainer(config: PPOConfig, run_dir: Path, progress: bool) -> PPOTrainer:
    return PPOTrainer(config, run_dir, progress)


ALGORITHM = AlgorithmSpec(
    name="ppo",
    config_cls=PPOConfig,
    presets=PRESETS,
    make_trainer=_make_trainer,
    summary="Proximal Policy Optimization, continuous and discrete actions",
    train_seeds=train_seeds,
)

__all__ = ["ALGORITHM", "PRESETS", "PPOConfig", "PPOSeedGroup", "PPOTrainState", "PPOTrainer", "RolloutBatch",
           "init_train_state", "make_networks", "ppo_loss", "ppo_update", "ppo_update_over_seeds", "train_in_lockstep",
           "train_seeds"]
