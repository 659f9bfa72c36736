"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1801.01290 and 1812.05905): tanh-Gaussian actor,
double Q as one batched ensemble with Polyak-averaged targets, learned temperature.

Per environment step (one env, stepped on the host):

1. Act: uniform random actions for the first ``learning_starts`` steps, then a sample of the actor
   (in numpy, no jitted call per step). Transitions go to a preallocated replay buffer on the
   device (:mod:`hybridrl.core.replay`), ``update_every * updates_per_call`` steps at a time.
2. Learn: after ``learning_starts``, one gradient update per ``update_every`` env steps, run
   ``updates_per_call`` at a time inside one compiled ``lax.scan`` that samples its own minibatches
   from the device buffer. Each update is

   * critic: ``min_j Q'_j(s', a') - alpha log pi(a'|s')`` bootstrapped through truncation, not
     termination, ``a' ~ pi(s')``; squared error of both Q members;
   * actor: ``E[alpha log pi(a|s) - min_j Q_j(s, a)]``, ``a ~ pi(s)`` reparameterised;
   * temperature: ``-log alpha * (log pi(a|s) + target_entropy)`` (``target_entropy = -|A|``);
   * targets: ``Q' <- tau Q + (1 - tau) Q'``.

Imitation learners (:mod:`hybridrl.imitation`) reuse the pieces: :func:`sac_update` takes any batch,
so they relabel rewards with their discriminator before calling it, and :class:`SACTrainer`'s
``store``/``learn`` hooks let them change what goes into the buffer and what each update does.

Seeds in one process (``hybridrl train sac --seeds N``, :func:`train_seeds`): each seed keeps its
own trainer (envs, random streams, run directory); :class:`SACSeedGroup` stacks their learner
states and replay buffers on a leading seed axis and makes one compiled call per learning step for
all of them, the single run's call vmapped. The loop (:func:`train_in_lockstep`) is the single run's.

Actions live in [-1, 1] inside the learner (the tanh range) and are mapped affinely to the env's Box.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.checkpoint import load_checkpoint, save_checkpoint
from hybridrl.core.distributions import DiagGaussian
from hybridrl.core.evaluation import evaluate_policy
from hybridrl.core.logging import RunLogger
from hybridrl.core.networks import Ensemble, GaussianPolicy, QHead
from hybridrl.core.replay import (
    ReplayBuffer,
    TransitionStager,
    add_transitions,
    replay_add,
    replay_buffer,
    replay_sample,
)
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
from hybridrl.data.dataset import TransitionBatch
from hybridrl.envs.factory import check_env_id, make_env
from hybridrl.envs.snapshot import SnapshotUnsupportedError
from hybridrl.errors import ConfigError
from hybridrl.rl.ppo import interval_crossed

Metrics = dict[str, jax.Array]

# --------------------------------------------------------------------------------------------
# Config and presets
# --------------------------------------------------------------------------------------------


@dataclass
class SACConfig:
    """SAC options. ``hybridrl train sac --help`` shows each with its preset default."""

    env: str = "dmc:walker-walk"
    """Environment: a DeepMind Control task (dmc:walker-walk) or a Gymnasium id with a Box action space."""
    seed: int = 1
    """Seed of every random stream of the run (networks, actions, minibatches, environments)."""
    total_steps: int = 500_000
    """Training budget in agent steps (env steps after action repeat)."""
    preset: str = "cpu"
    """Preset the defaults came from: smoke, cpu or paper."""
    action_repeat: int | None = None
    """Repeat each action this many times; None: 2 for dmc: tasks (the AILBoost/DrQ convention), 1 otherwise."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each Q network (ReLU)."""
    batch_size: int = 256
    """Transitions per gradient update."""
    learning_rate: float = 3e-4
    """Adam step size of actor, critic and temperature."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critic, per update."""
    init_temperature: float = 0.1
    """Initial entropy temperature alpha (learned); the AILBoost code starts at 1."""
    target_entropy: float | None = None
    """Entropy the temperature steers to; None: -(action dimensions)."""
    log_std_bounds: tuple[float, float] = (-5.0, 2.0)
    """The actor's log-std range, reached smoothly through tanh (DrQ/AILBoost parameterisation)."""
    learning_starts: int = 5_000
    """Uniform-random steps before the first update."""
    update_every: int = 1
    """Env steps per gradient update (AILBoost/DAC: 2)."""
    updates_per_call: int = 1
    """Gradient updates per compiled call; the policy acting meanwhile lags by up to this many updates."""
    replay_size: int | None = None
    """Replay capacity in transitions; None: total_steps (never evicts)."""
    eval_interval: int = 10_000
    """Evaluate every this many agent steps (0: only at the end)."""
    eval_episodes: int = 5
    """Deterministic (mean-action) episodes per evaluation."""
    checkpoint_interval: int = 50_000
    """Checkpoint every this many agent steps (and always at the end)."""
    log_interval: int = 1_000
    """Log training metrics every this many agent steps (their only device-to-host transfer)."""

    @property
    def env_action_repeat(self) -> int:
        """The action repeat in effect."""
        if self.action_repeat is not None:
            return self.action_repeat
        return 2 if self.env.startswith("dmc:") else 1

    @property
    def steps_per_call(self) -> int:
        """Env steps between two compiled learning calls."""
        return self.update_every * self.updates_per_call

    @property
    def replay_capacity(self) -> int:
        """Rows of the replay buffer."""
        return self.replay_size if self.replay_size is not None else self.total_steps

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix for every impossible setting."""
        positive = ("total_steps", "batch_size", "update_every", "updates_per_call", "eval_episodes",
                    "log_interval", "env_action_repeat", "replay_capacity")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("eval_interval", "checkpoint_interval", "learning_starts"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"need 0 < gamma <= 1 and 0 < tau <= 1, got {self.gamma}, {self.tau}")
        if self.learning_rate <= 0 or self.init_temperature <= 0:
            raise ConfigError("--learning-rate and --init-temperature must be positive")
        low, high = self.log_std_bounds
        if not low < high:
            raise ConfigError(f"--log-std-bounds must be (low, high) with low < high, got {self.log_std_bounds}")
        if self.replay_capacity < self.batch_size:
            raise ConfigError(f"the replay ({self.replay_capacity}) must hold at least one batch ({self.batch_size})")
        check_env_id(self.env)
        if not self.env.startswith("dmc:") and self.env_action_repeat != 1:
            raise ConfigError(f"--action-repeat {self.action_repeat} is only supported for dmc: tasks")


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds, for tests.
    "smoke": dict(total_steps=600, hidden_sizes=(32, 32), batch_size=32, learning_starts=200,
                  eval_interval=0, eval_episodes=1, checkpoint_interval=300, log_interval=100),
    # Expert training on a 2-core CPU: 2x256 networks, one update per step (the reference's expert recipe).
    "cpu": dict(total_steps=500_000),
    # Haarnoja et al. 2018 (table 1) sizes on the AILBoost code's network width: 2x1024, batch 1024.
    "paper": dict(total_steps=1_000_000, hidden_sizes=(1024, 1024), batch_size=1024, learning_rate=1e-4),
}

# --------------------------------------------------------------------------------------------
# Networks and train state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SACNetworks:
    """The actor and the double-Q critic (hashable, so jitted functions take them statically)."""

    actor: GaussianPolicy
    critic: Ensemble


@dataclass(frozen=True)
class SACSettings:
    """Hyper-parameters the compiled update is specialised on."""

    batch_size: int
    gamma: float
    tau: float
    target_entropy: float
    learning_rate: float


@struct.dataclass
class SACState:
    """Everything an update changes. ``params`` has ``actor``, ``critic``, ``target_critic`` and
    ``log_alpha``; each of actor, critic and temperature has its own Adam state."""

    params: dict[str, Any]
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    key: jax.Array


def make_sac_networks(hidden_sizes: tuple[int, ...], action_dim: int,
                      log_std_bounds: tuple[float, float] = (-5.0, 2.0)) -> SACNetworks:
    """A tanh-squashed Gaussian actor and two Q networks in one vmapped ensemble."""
    actor = GaussianPolicy(action_dim=action_dim, hidden_sizes=hidden_sizes, activation="relu",
                           state_dependent_std=True, log_std_bounds=log_std_bounds,
                           soft_log_std_bounds=True, squash=True, mean_gain=1.0)
    critic = Ensemble(QHead(hidden_sizes=hidden_sizes, activation="relu"), num_members=2)
    return SACNetworks(actor=actor, critic=critic)


def sac_settings(config: SACConfig, action_dim: int) -> SACSettings:
    """The update's settings from a config (target entropy defaults to ``-action_dim``)."""
    target = -float(action_dim) if config.target_entropy is None else config.target_entropy
    return SACSettings(config.batch_size, config.gamma, config.tau, target, config.learning_rate)


def _adam(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


def init_sac_state(networks: SACNetworks, settings: SACSettings, observation_dim: int, init_temperature: float,
                   key: jax.Array) -> SACState:
    """Fresh parameters (targets equal to the critic) and optimiser states."""
    return cast(SACState, _init_sac_state(key, networks=networks, settings=settings, observation_dim=observation_dim,
                                          init_temperature=init_temperature))


# One compiled program, and one per network shape, not per call: op by op, the orthogonal
# initialisers alone compile dozens of small programs, seconds of a run's start-up
# (docs/performance.md), and seeds trained together initialise with the same program.
@functools.partial(jax.jit, static_argnames=("networks", "settings", "observation_dim", "init_temperature"))
def _init_sac_state(key: jax.Array, *, networks: SACNetworks, settings: SACSettings, observation_dim: int,
                    init_temperature: float) -> SACState:
    adam = _adam(settings.learning_rate)
    actor_key, critic_key, key = jax.random.split(key, 3)
    observation = jnp.zeros((1, observation_dim), jnp.float32)
    action = jnp.zeros((1, networks.actor.action_dim), jnp.float32)
    critic_params = networks.critic.init(critic_key, observation, action)["params"]
    # The targets start as a copy (their own buffers), so the state can be donated to the update.
    params = {"actor": networks.actor.init(actor_key, observation)["params"], "critic": critic_params,
              "target_critic": jax.tree_util.tree_map(jnp.copy, critic_params),
              "log_alpha": jnp.asarray(np.log(init_temperature), jnp.float32)}
    return SACState(params=params, actor_opt_state=adam.init(params["actor"]),
                    critic_opt_state=adam.init(params["critic"]), alpha_opt_state=adam.init(params["log_alpha"]),
                    key=key)


# --------------------------------------------------------------------------------------------
# Losses and the update
# --------------------------------------------------------------------------------------------


def _actor_distribution(networks: SACNetworks, actor_params: Any, observations: jax.Array) -> DiagGaussian:
    return cast(DiagGaussian, networks.actor.apply({"params": actor_params}, observations))


def critic_loss(critic_params: Any, params: dict[str, Any], batch: TransitionBatch, key: jax.Array,
                networks: SACNetworks, settings: SACSettings) -> tuple[jax.Array, Metrics]:
    """Squared TD error of both Q members against the soft, clipped double-Q target."""
    next_distribution = _actor_distribution(networks, params["actor"], batch.next_observations)
    next_actions, next_log_probs = next_distribution.sample_with_log_prob(key)
    next_q = cast(jax.Array, networks.critic.apply({"params": params["target_critic"]}, batch.next_observations,
                                                   next_actions))
    alpha = jnp.exp(params["log_alpha"])
    soft_value = jnp.min(next_q, axis=0) - alpha * next_log_probs
    target = batch.rewards + settings.gamma * (1.0 - batch.terminations) * soft_value
    q_values = cast(jax.Array, networks.critic.apply({"params": critic_params}, batch.observations, batch.actions))
    loss = ((q_values - jax.lax.stop_gradient(target)[None]) ** 2).mean(axis=1).sum()
    return loss, {"loss/critic": loss, "train/q_mean": q_values.mean(), "train/target_mean": target.mean()}


def actor_loss(actor_params: Any, params: dict[str, Any], batch: TransitionBatch, key: jax.Array,
               networks: SACNetworks) -> tuple[jax.Array, jax.Array]:
    """``E[alpha log pi(a|s) - min_j Q_j(s, a)]`` with reparameterised ``a``; aux: the log-probs."""
    distribution = _actor_distribution(networks, actor_params, batch.observations)
    actions, log_probs = distribution.sample_with_log_prob(key)
    q_values = cast(jax.Array, networks.critic.apply({"params": params["critic"]}, batch.observations, actions))
    alpha = jax.lax.stop_gradient(jnp.exp(params["log_alpha"]))
    return (alpha * log_probs - jnp.min(q_values, axis=0)).mean(), log_probs


def sac_update(state: SACState, batch: TransitionBatch, *, networks: SACNetworks,
               settings: SACSettings) -> tuple[SACState, Metrics]:
    """One SAC update (critic, then actor and temperature on the new critic, then targets) on
    ``batch``; pure, so callers put it in their own scans after relabelling rewards."""
    adam = _adam(settings.learning_rate)
    key, critic_key, actor_key = jax.random.split(state.key, 3)
    params = state.params

    critic_grads, critic_metrics = jax.grad(critic_loss, has_aux=True)(
        params["critic"], params, batch, critic_key, networks, settings)
    updates, critic_opt_state = adam.update(critic_grads, state.critic_opt_state, params["critic"])
    params = {**params, "critic": optax.apply_updates(params["critic"], updates)}

    (actor_value, log_probs), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        params["actor"], params, batch, actor_key, networks)
    updates, actor_opt_state = adam.update(actor_grads, state.actor_opt_state, params["actor"])
    params = {**params, "actor": optax.apply_updates(params["actor"], updates)}

    entropy = -jax.lax.stop_gradient(log_probs).mean()

    def temperature_loss(log_alpha: jax.Array) -> jax.Array:
        return log_alpha * (entropy - settings.target_entropy)

    alpha_grad = jax.grad(temperature_loss)(params["log_alpha"])
    updates, alpha_opt_state = adam.update(alpha_grad, state.alpha_opt_state, params["log_alpha"])
    params = {**params, "log_alpha": optax.apply_updates(params["log_alpha"], updates)}

    params["target_critic"] = optax.incremental_update(params["critic"], params["target_critic"], settings.tau)
    metrics = {**critic_metrics, "loss/actor": actor_value, "train/entropy": entropy,
               "train/alpha": jnp.exp(params["log_alpha"])}
    return SACState(params=params, actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
                    alpha_opt_state=alpha_opt_state, key=key), metrics


def _replay_updates(state: SACState, buffer: ReplayBuffer, num_updates: int, networks: SACNetworks,
                    settings: SACSettings) -> tuple[SACState, Metrics]:
    def one_update(state: SACState, _: None) -> tuple[SACState, Metrics]:
        key, sample_key = jax.random.split(state.key)
        batch = replay_sample(buffer, sample_key, settings.batch_size)
        return sac_update(dataclasses.replace(state, key=key), batch, networks=networks, settings=settings)

    state, metrics = jax.lax.scan(one_update, state, None, length=num_updates)
    return state, jax.tree_util.tree_map(lambda values: values[-1], metrics)


@functools.partial(jax.jit, static_argnames=("num_updates", "networks", "settings"))
def sac_updates(state: SACState, buffer: ReplayBuffer, num_updates: int, *, networks: SACNetworks,
                settings: SACSettings) -> tuple[SACState, Metrics]:
    """``num_updates`` updates on minibatches drawn uniformly from ``buffer``, in one compiled scan;
    returns the metrics of the last update."""
    return _replay_updates(state, buffer, num_updates, networks, settings)


@functools.partial(jax.jit, static_argnames=("num_updates", "networks", "settings"),
                   donate_argnames=("state", "buffer"))
def sac_store_and_updates(state: SACState, buffer: ReplayBuffer, transitions: TransitionBatch, num_updates: int, *,
                          networks: SACNetworks, settings: SACSettings
                          ) -> tuple[SACState, ReplayBuffer, Metrics]:
    """Add ``transitions`` to ``buffer``, then :func:`sac_updates`: the trainer's one compiled call per
    learning step. ``state`` and ``buffer`` are donated (written in place; the caller's copies are gone)."""
    return _store_and_updates(state, buffer, transitions, num_updates, networks, settings)


def _store_and_updates(state: SACState, buffer: ReplayBuffer, transitions: TransitionBatch, num_updates: int,
                       networks: SACNetworks, settings: SACSettings) -> tuple[SACState, ReplayBuffer, Metrics]:
    buffer = replay_add(buffer, transitions)
    state, metrics = _replay_updates(state, buffer, num_updates, networks, settings)
    return state, buffer, metrics


# --------------------------------------------------------------------------------------------
# Trainer: acting, the replay buffer, logging, evaluation, checkpoints
# --------------------------------------------------------------------------------------------


class ActionScaler:
    """Maps the learner's actions in [-1, 1] to a Box's bounds and back."""

    def __init__(self, space: gym.spaces.Box) -> None:
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ConfigError(f"SAC needs a bounded action space, got {space}")
        self.low, self.high = space.low.astype(np.float32), space.high.astype(np.float32)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """[-1, 1] -> the env's bounds."""
        return self.low + 0.5 * (np.asarray(actions, np.float32) + 1.0) * (self.high - self.low)

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """The env's bounds -> [-1, 1] (demonstrations are recorded in env units)."""
        return 2.0 * (np.asarray(actions, np.float32) - self.low) / (self.high - self.low) - 1.0


class SACTrainer:
    """Runs SAC in a run directory; see :mod:`hybridrl.runs` for the directory layout.

    Subclasses change what is stored (:meth:`store`), how the agent learns (:meth:`learn`) and
    what happens before each env step (:meth:`before_step`); the loop, evaluation and checkpoints
    stay here.
    """

    algorithm = "sac"

    def __init__(self, config: SACConfig, run_dir: Path, progress: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.seeder = Seeder(config.seed)
        repeat = config.env_action_repeat
        self.env = make_env(config.env, action_repeat=repeat)
        self.eval_env = make_env(config.env, action_repeat=repeat)
        self.train_seed = self.seeder.env_seeds("train", 1)[0]
        self.eval_seed = self.seeder.env_seeds("eval", 1)[0]
        if not isinstance(self.env.action_space, gym.spaces.Box):
            raise ConfigError(f"SAC needs a Box action space; {config.env} has {self.env.action_space}")
        self.scaler = ActionScaler(self.env.action_space)
        self.observation_dim = int(np.prod(self.env.observation_space.shape or ()))
        self.action_dim = int(np.prod(self.env.action_space.shape or ()))
        self.networks = make_sac_networks(config.hidden_sizes, self.action_dim, config.log_std_bounds)
        self.settings = sac_settings(config, self.action_dim)
        self.state = init_sac_state(self.networks, self.settings, self.observation_dim, config.init_temperature,
                                    self.seeder.jax_key("params"))
        self.buffer = replay_buffer(config.replay_capacity, self.observation_dim, self.action_dim)
        self.rng = self.seeder.numpy("actions")
        # Host staging of the steps since the last learning call (flushed to the device buffer there).
        self.staged = TransitionStager(config.steps_per_call, self.observation_dim, self.action_dim)
        self.num_staged = 0
        self.global_step = 0
        self.num_updates = 0
        self.episode_return = 0.0
        self.finished_returns: list[float] = []
        self.elapsed = 0.0
        self.last_eval: dict[str, float] = {}
        self.last_eval_step = -1
        self.last_metrics: Metrics = {}
        self.observation, _ = self.env.reset(seed=self.train_seed)
        self.refresh_host_actor()

    # -- policy on the host --------------------------------------------------------------------

    def actor_actions(self, observations: np.ndarray, actor_params: Any = None,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions in [-1, 1] of an actor (default: the current one) for a batch of raw
        observations: sampled with ``rng``, the mean action without."""
        params = self._host_actor if actor_params is None else actor_params
        distribution = self.networks.actor.apply_numpy(params, np.asarray(observations, np.float32))
        return np.asarray(distribution.mode() if rng is None else distribution.sample_numpy(rng))

    def act_deterministic(self, observations: np.ndarray) -> np.ndarray:
        """The current actor's mean action (in env units) for raw observations."""
        return self.scaler.to_env(self.actor_actions(observations))

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The training action in [-1, 1]: uniform during warm-up, else an actor sample."""
        if self.global_step < self.config.learning_starts:
            return self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
        return self.actor_actions(observation[None], rng=self.rng)[0]

    def refresh_host_actor(self) -> None:
        """Copy the actor's parameters to the host (after updates): a copy, not a view of device memory,
        because the next update is donated the state's buffers."""
        self._host_actor = jax.tree_util.tree_map(np.array, jax.device_get(self.state.params["actor"]))

    # -- one step ------------------------------------------------------------------------------

    def before_step(self) -> None:
        """Hook run before every env step (AILBoost's boosting rounds)."""

    def env_step(self) -> None:
        """One env step with the training policy; stage the transition; learn when a call's worth is staged."""
        observation = np.asarray(self.observation, np.float32)
        self.step_env(observation, self.act(observation))
        call = self.take_call()
        if call is not None:
            staged, learn = call
            if learn:
                self.store_and_learn(staged, self.config.updates_per_call)
            else:
                self.store(staged)

    def step_env(self, observation: np.ndarray, action: np.ndarray) -> None:
        """Step the env from ``observation`` with ``action`` (in [-1, 1]) and stage the transition."""
        next_observation, reward, terminated, truncated, _ = self.env.step(self.scaler.to_env(action))
        self.staged.put(self.num_staged, observation, action, reward, next_observation, terminated, truncated)
        self.num_staged += 1
        self.global_step += 1
        self.episode_return += float(reward)
        if terminated or truncated:
            self.finished_returns.append(self.episode_return)
            self.episode_return = 0.0
            self.observation, _ = self.env.reset()
        else:
            self.observation = next_observation

    def take_call(self) -> tuple[TransitionBatch, bool] | None:
        """At the end of a learning call's steps, the staged transitions (emptying the stage) and whether
        to learn on them (false during warm-up); None between."""
        call_complete = self.num_staged == self.config.steps_per_call
        # The budget can run out mid-call (a total_steps that is no multiple of a call, or AILBoost's
        # collection steps): store what is staged so the run still ends at a boundary, with its
        # final evaluation and checkpoint.
        if not (call_complete or self.global_step >= self.config.total_steps):
            return None
        staged = self.staged.take(self.num_staged)
        self.num_staged = 0
        return staged, call_complete and self.global_step >= self.config.learning_starts

    def store(self, transitions: TransitionBatch) -> None:
        """Add staged transitions to the replay buffer."""
        self.buffer = add_transitions(self.buffer, transitions)

    #: whether :meth:`store_and_learn` may fuse plain SAC's store and learn into one compiled call (a
    #: subclass that overrides :meth:`store` or :meth:`learn` sets False)
    fused_store_and_learn = True

    def store_and_learn(self, transitions: TransitionBatch, num_updates: int) -> None:
        """:meth:`store`, then :meth:`learn`: for plain SAC one compiled call, with state and buffer
        donated, which saves a dispatch and a copy of the learner's state per update."""
        if not self.fused_store_and_learn:
            self.store(transitions)
            self.learn(num_updates)
            return
        self.state, self.buffer, self.last_metrics = sac_store_and_updates(
            self.state, self.buffer, transitions, num_updates, networks=self.networks, settings=self.settings)
        self.num_updates += num_updates
        self.refresh_host_actor()

    def learn(self, num_updates: int) -> None:
        """Run ``num_updates`` gradient updates."""
        self.state, self.last_metrics = sac_updates(self.state, self.buffer, num_updates,
                                                    networks=self.networks, settings=self.settings)
        self.num_updates += num_updates
        self.refresh_host_actor()

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Deterministic evaluation on a separate env instance."""
        return evaluate_policy(self.eval_env, self.act_deterministic, episodes, self.eval_seed, self.config.env)

    def evaluate_all(self, episodes: int) -> dict[str, float]:
        """Every evaluation the run logs (a subclass may add more than the current policy's)."""
        return self.evaluate(episodes)

    def log_scalars(self) -> dict[str, float]:
        """Training metrics for the log (one device-to-host transfer)."""
        scalars = {name: float(value) for name, value in jax.device_get(self.last_metrics).items()}
        scalars["train/gradient_updates"] = float(self.num_updates)
        if self.finished_returns:
            scalars["train/episode_return"] = float(np.mean(self.finished_returns))
            self.finished_returns = []
        return scalars

    # -- the loop ------------------------------------------------------------------------------

    def train(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (or pause at the first checkpoint at or after ``stop_at_step``).

        Evaluations, logs and checkpoints happen when their interval has passed, at a learning-call
        boundary (nothing is left staged), so a checkpoint holds the complete state.
        """
        def advance() -> None:
            self.before_step()
            self.env_step()

        return train_in_lockstep([self], advance, stop_at_step)[0]

    def evaluate_and_log(self, logger: RunLogger) -> None:
        """Run every evaluation (:meth:`evaluate_all`) and log it at the current step."""
        self.last_eval, self.last_eval_step = self.evaluate_all(self.config.eval_episodes), self.global_step
        logger.log(self.global_step, self.last_eval)

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint_state(self) -> Any:
        """The device state a checkpoint stores: learner and replay buffer (a subclass adds its own)."""
        return {"sac": self.state, "replay": self.buffer}

    def restore_checkpoint_state(self, state: Any) -> None:
        """Take back :meth:`checkpoint_state` output."""
        self.state, self.buffer = state["sac"], state["replay"]

    def host_state(self) -> dict[str, Any]:
        """Host-side train state for checkpoints (a subclass may add to it)."""
        return {"global_step": self.global_step, "num_updates": self.num_updates, "elapsed": self.elapsed,
                "rng": generator_state(self.rng), "episode_return": self.episode_return,
                "observation": np.asarray(self.observation), "last_eval": self.last_eval,
                "last_eval_step": self.last_eval_step, "finished_returns": list(self.finished_returns)}

    def restore_host_state(self, host: dict[str, Any]) -> None:
        """Take back :meth:`host_state` output."""
        self.global_step = int(host["global_step"])
        self.num_updates = int(host["num_updates"])
        self.elapsed = float(host["elapsed"])
        self.rng = restore_generator(host["rng"])
        self.episode_return = float(host["episode_return"])
        self.last_eval = dict(host["last_eval"])
        self.last_eval_step = int(host["last_eval_step"])
        self.finished_returns = [float(value) for value in host.get("finished_returns", [])]

    def env_blobs(self) -> dict[str, bytes]:
        """Snapshots of the envs whose state carries across steps (a subclass may add its own)."""
        return {"env": cast(Any, self.env).snapshot}

    def save_checkpoint(self) -> Path:
        """Write every piece of train state to ``run_dir/checkpoint.ckpt`` atomically."""
        return self.write_checkpoint(self.checkpoint_state())

    def write_checkpoint(self, state: Any) -> Path:
        """:meth:`save_checkpoint` with the device ``state`` given (that of :meth:`checkpoint_state`);
        seeds trained together hand each run its rows of their stacked state."""
        path = self.run_dir / "checkpoint.ckpt"
        try:
            blobs = self.env_blobs()
        except SnapshotUnsupportedError as error:
            warnings.warn(f"environment state not saved ({error}); a resumed run will reset its env", stacklevel=2)
            blobs = {}
        save_checkpoint(path, algorithm=self.algorithm, step=self.global_step, state=state,
                        host_state=self.host_state(), blobs=blobs)
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` of the same config."""
        state, host, blobs, _ = load_checkpoint(path, algorithm=self.algorithm, template=self.checkpoint_state())
        self.restore_checkpoint_state(state)
        self.restore_host_state(host)
        if blobs:
            self.restore_env_blobs(blobs)
            self.observation = np.asarray(host["observation"], np.float32)
        else:
            warnings.warn("checkpoint has no environment state; the env restarts from a reset", stacklevel=2)
        self.refresh_host_actor()

    def restore_env_blobs(self, blobs: dict[str, bytes]) -> None:
        """Take back :meth:`env_blobs` output."""
        cast(Any, self.env).snapshot = blobs["env"]

    def close(self) -> None:
        """Close the environments."""
        self.env.close()
        self.eval_env.close()


@dataclass(frozen=True)
class CallBoundary:
    """What a learning-call boundary (nothing left staged) at ``step`` does. Seeds trained together
    reach their boundaries together and do the same there."""

    step: int
    log: bool
    evaluate: bool
    checkpoint: bool
    #: the budget is spent (the final evaluation and checkpoint)
    done: bool
    pause: bool


def train_in_lockstep(trainers: Sequence[SACTrainer], advance: Callable[[], None], stop_at_step: int | None = None,
                      prepare: Callable[[CallBoundary], None] | None = None,
                      save: Callable[[int], object] | None = None) -> list[dict[str, Any]]:
    """The loop of :meth:`SACTrainer.train`, for one run or for seeds trained together.

    The trainers are at the same step with the same config but for the seed. ``advance()`` makes one
    env step of every run (and their learning call when one is due); at each call boundary every
    run then logs, evaluates and checkpoints what is due, each in its own run directory.

    :param stop_at_step: pause (with checkpoints) at the first boundary at or after this step,
        returning ``{"step": ..., "paused": True}`` per run.
    :param prepare: called at each boundary before the runs act on it (seeds trained together hand
        each trainer its metrics and its learner's state there).
    :param save: writes run ``i``'s checkpoint (default: its :meth:`SACTrainer.save_checkpoint`).
    :returns: each run's final metrics, in order.
    """
    lead, config = trainers[0], trainers[0].config
    save = save or (lambda index: trainers[index].save_checkpoint())
    loggers = [RunLogger(trainer.run_dir, config.total_steps, start_step=trainer.global_step,
                         progress=trainer.progress, elapsed=trainer.elapsed) for trainer in trainers]
    previous = lead.global_step
    last_logs = [(lead.global_step, logger.elapsed) for logger in loggers]
    try:
        while lead.global_step < config.total_steps:
            advance()
            if lead.num_staged:
                continue
            step = lead.global_step
            # At multiples of the interval (not every interval from the start), so a resumed run
            # logs, evaluates and checkpoints at the same steps as an uninterrupted one.
            done, pause = step >= config.total_steps, stop_at_step is not None and step >= stop_at_step
            boundary = CallBoundary(
                step=step, log=interval_crossed(previous, step, config.log_interval),
                evaluate=interval_crossed(previous, step, config.eval_interval),
                checkpoint=done or pause or interval_crossed(previous, step, config.checkpoint_interval),
                done=done, pause=pause)
            previous = step
            if prepare is not None:
                prepare(boundary)
            for index, (trainer, logger) in enumerate(zip(trainers, loggers, strict=True)):
                if boundary.log:
                    last_step, last_time = last_logs[index]
                    scalars = trainer.log_scalars()
                    scalars["train/steps_per_second"] = (step - last_step) / max(logger.elapsed - last_time, 1e-9)
                    last_logs[index] = (step, logger.elapsed)
                    logger.log(step, scalars)
                    logger.update_progress(step)
                if boundary.evaluate:
                    trainer.evaluate_and_log(logger)
                if boundary.checkpoint:
                    trainer.elapsed = logger.elapsed
                    if boundary.done and trainer.last_eval_step != step:
                        trainer.evaluate_and_log(logger)
                    save(index)
            if pause and not done:
                return [{"step": step, "paused": True} for _ in trainers]
        for trainer, logger in zip(trainers, loggers, strict=True):
            trainer.elapsed = logger.elapsed
    finally:
        for logger in loggers:
            logger.close()
    return [{"step": trainer.global_step, **trainer.last_eval, "gradient_updates": trainer.num_updates,
             "wall_time_s": trainer.elapsed} for trainer in trainers]


# --------------------------------------------------------------------------------------------
# Seeds in one process: the learning call vmapped over a leading seed axis
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("num_updates", "networks", "settings"),
                   donate_argnames=("states", "buffers"))
def sac_store_and_updates_over_seeds(states: SACState, buffers: ReplayBuffer, transitions: TransitionBatch,
                                     num_updates: int, *, networks: SACNetworks, settings: SACSettings
                                     ) -> tuple[SACState, ReplayBuffer, Metrics]:
    """:func:`sac_store_and_updates` of every seed in one compiled call: states, buffers and
    transitions stacked on a leading seed axis (states and buffers donated). Each seed draws its
    minibatches and noise with its own key, so it follows the computation it has alone up to the
    float round-off of the batched matrix products; each metric gets a leading seed axis."""
    def one_seed(state: SACState, buffer: ReplayBuffer, staged: TransitionBatch
                 ) -> tuple[SACState, ReplayBuffer, Metrics]:
        return _store_and_updates(state, buffer, staged, num_updates, networks, settings)

    return jax.vmap(one_seed)(states, buffers, transitions)


#: :func:`~hybridrl.core.replay.add_transitions` of every seed in one compiled call (buffers and
#: transitions stacked on a leading seed axis, the buffers donated): the warm-up's stores.
add_transitions_over_seeds = jax.jit(jax.vmap(replay_add), donate_argnums=0)


class SACSeedGroup:
    """Runs of SAC that differ only in their seed, trained together in one process
    (``hybridrl train sac --seeds N``).

    Each seed keeps its own :class:`SACTrainer`: its envs, its random streams (env seeds, action
    generator, JAX keys), its run directory, log, evaluations and checkpoints, so it follows the
    computation it has when trained alone. The group holds the learners' states and replay buffers
    stacked on a leading seed axis on the device (split over the local devices when there are
    several, :func:`~hybridrl.core.seeding.seed_sharding`) and, per learning call, makes one
    compiled and donated call that stores every seed's staged transitions and runs every seed's
    updates (:func:`sac_store_and_updates_over_seeds`). The envs step on the host one after another; the
    actors act in one batched numpy pass over their stacked parameters, each seed drawing its noise
    from its own generator. Only the float round-off of batched matrix products differs from a
    seed trained alone.

    :param trainers: plain SAC trainers (not the imitation learners) at the same step, with configs
        equal but for the seed and their checkpoints loaded. Their replay buffers move into the
        group; their ``state`` is brought up to date at each evaluation and checkpoint.
    """

    def __init__(self, trainers: Sequence[SACTrainer]) -> None:
        if any(type(trainer) is not SACTrainer for trainer in trainers):
            raise ConfigError("only plain SAC trains seeds in one process, not its imitation subclasses")
        if len({trainer.global_step for trainer in trainers}) != 1:
            raise ConfigError("seeds trained together must be at the same step; resume them in groups by step")
        self.trainers = list(trainers)
        lead = self.trainers[0]
        self.config, self.networks, self.settings = lead.config, lead.networks, lead.settings
        self.states: SACState = stack_seeds([trainer.state for trainer in self.trainers])
        self.buffers: ReplayBuffer = stack_seeds([trainer.buffer for trainer in self.trainers])
        for trainer in self.trainers:
            # The stacked buffer holds its rows now; a run's rows are sliced out for its checkpoints.
            del trainer.buffer
        # With several devices (``hybridrl train --seeds`` shows JAX one per CPU core), each holds an
        # equal share of the seeds and runs their updates.
        sharding = seed_sharding(len(self.trainers))
        if sharding is not None:
            self.states, self.buffers = jax.device_put((self.states, self.buffers), sharding[0])
        self.metrics: Metrics = {}
        self.refresh_host_actors()

    # -- acting and learning -------------------------------------------------------------------

    def refresh_host_actors(self) -> None:
        """Copy the stacked actors to the host (after updates), each bias given a row axis so a layer
        is one batched matmul for all seeds, ``[seeds, 1, in] @ [seeds, in, out] + [seeds, 1, out]``."""
        actors = jax.device_get(self.states.params["actor"])
        self.host_actors = jax.tree_util.tree_map(lambda leaf: np.array(leaf[:, None] if leaf.ndim == 2 else leaf),
                                                  actors)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Every seed's training action in [-1, 1] for its row of ``observations``, from its own
        generator: uniform during warm-up, else a sample of its actor (:meth:`SACTrainer.act`)."""
        if self.trainers[0].global_step < self.config.learning_starts:
            return np.stack([trainer.act(observation) for trainer, observation in
                             zip(self.trainers, observations, strict=True)])
        distribution = self.networks.actor.apply_numpy(self.host_actors, observations[:, None])
        # Per seed, the one-row draw of its single run's generator.
        noise = np.stack([trainer.rng.standard_normal(distribution.noise_shape()[1:], dtype=np.float32)
                          for trainer in self.trainers])
        return np.asarray(distribution.sample_from_noise(noise))[:, 0]

    def advance(self) -> None:
        """One env step of every seed; at the end of a learning call's steps, one compiled call that
        stores (and, after warm-up, learns) for all of them."""
        observations = np.stack([np.asarray(trainer.observation, np.float32) for trainer in self.trainers])
        actions = self.act(observations)
        for trainer, observation, action in zip(self.trainers, observations, actions, strict=True):
            trainer.step_env(observation, action)
        calls = [trainer.take_call() for trainer in self.trainers]
        if calls[0] is None:
            return
        staged = jax.tree_util.tree_map(lambda *rows: np.stack(rows),
                                        *[cast(tuple[TransitionBatch, bool], call)[0] for call in calls])
        if not calls[0][1]:
            self.buffers = add_transitions_over_seeds(self.buffers, staged)
            return
        num_updates = self.config.updates_per_call
        self.states, self.buffers, self.metrics = sac_store_and_updates_over_seeds(
            self.states, self.buffers, staged, num_updates, networks=self.networks, settings=self.settings)
        for trainer in self.trainers:
            trainer.num_updates += num_updates
        self.refresh_host_actors()

    # -- the runs' logs, evaluations and checkpoints -------------------------------------------

    def prepare(self, boundary: CallBoundary) -> None:
        """Hand each trainer what its run logs, evaluates or checkpoints at ``boundary``: its last
        update's metrics, its learner's state and its host actor."""
        if boundary.log:
            for index, trainer in enumerate(self.trainers):
                trainer.last_metrics = {name: value[index] for name, value in self.metrics.items()}
        if boundary.evaluate or boundary.checkpoint:
            for index, trainer in enumerate(self.trainers):
                trainer.state = seed_rows(self.states, index)
                trainer.refresh_host_actor()

    def save(self, index: int) -> Path:
        """Write run ``index``'s checkpoint in a single run's format (after :meth:`prepare`)."""
        trainer = self.trainers[index]
        return trainer.write_checkpoint({"sac": trainer.state, "replay": seed_rows(self.buffers, index)})

    def train(self, stop_at_step: int | None = None) -> list[dict[str, Any]]:
        """Train every seed to ``total_steps`` (see :meth:`SACTrainer.train`); each run's final
        metrics, its ``wall_time_s`` being its share of the group's."""
        finals = train_in_lockstep(self.trainers, self.advance, stop_at_step, self.prepare, self.save)
        for final in finals:
            if "wall_time_s" in final:  # absent from a paused run's
                final["wall_time_s"] /= len(self.trainers)
        return finals


def train_seeds(configs: Sequence[SACConfig], run_dirs: Sequence[Path], progress: bool = False,
                stop_at_step: int | None = None) -> list[dict[str, Any]]:
    """The ``train_seeds`` hook of :data:`ALGORITHM`: train runs that differ only in their seed in this
    process (:class:`SACSeedGroup`), each resuming from its checkpoint when it has one. Runs whose
    checkpoints stopped at different steps (an interruption between two runs' writes) are trained in
    separate groups, one per step.

    :param configs: one config per run, equal but for ``seed``.
    :param run_dirs: one run directory per config.
    :param progress: show a progress bar (of the first run).
    :param stop_at_step: pause every run at its first checkpoint at or after this step (for tests).
    :returns: each run's final metrics, in order.
    """
    check_seed_configs(configs, run_dirs)
    return train_in_seed_groups(
        len(configs), lambda index: SACTrainer(configs[index], Path(run_dirs[index]), progress and index == 0),
        lambda trainer: trainer.global_step, lambda group: SACSeedGroup(group).train(stop_at_step))


def _make_trainer(config: SACConfig, run_dir: Path, progress: bool) -> SACTrainer:
    return SACTrainer(config, run_dir, progress)


ALGORITHM = AlgorithmSpec(
    name="sac",
    config_cls=SACConfig,
    presets=PRESETS,
    make_trainer=_make_trainer,
    summary="Soft Actor-Critic, continuous actions (also trains imitation experts)",
    train_seeds=train_seeds,
)

__all__ = ["ALGORITHM", "PRESETS", "ActionScaler", "CallBoundary", "SACConfig", "SACNetworks", "SACSeedGroup",
           "SACSettings", "SACState", "SACTrainer", "actor_loss", "add_transitions_over_seeds", "critic_loss",
           "init_sac_state", "make_sac_networks", "sac_settings", "sac_store_and_updates",
           "sac_store_and_updates_over_seeds", "sac_update", "sac_updates", "train_in_lockstep", "train_seeds"]
