"""Implicit Q-Learning (Kostrikov, Nair & Levine 2021, arXiv:2110.06169): the functional core.

IQL learns a critic from dataset actions only, never querying Q at actions the data lacks. Each
gradient step on a minibatch ``(s, a, r, s', terminated, truncated)`` does, in this order (the
order of the IQL and Uni-O4 code):

1. **V** (paper Eq. 5), an upper expectile of the target double-Q over the data's actions::

       L_V = E[ |tau - 1(u < 0)| u^2 ],   u = min_k Qbar_k(s, a) - V(s)

2. **Policy**, optional (Eq. 7), advantage-weighted regression with the new V::

       L_pi = -E[ min(exp(beta (min_k Qbar_k(s, a) - V(s))), w_max) log pi(a|s) ]   (weights detached)

3. **Q** (Eq. 6), both members regressed on one target built from the new V::

       L_Q = sum_k E[ (Q_k(s, a) - y)^2 ],   y = r + gamma * not_done * V(s')

4. **Target**: every ``target_update_period``-th step, ``Qbar <- polyak Q + (1 - polyak) Qbar``.

``Qbar`` is the Polyak-averaged target double-Q. ``not_done`` is ``1 - (terminated | truncated)``
when ``timeouts_as_terminals`` (the Uni-O4 code, which does not bootstrap through time limits),
else ``1 - terminated`` (bootstrapping through truncation, the correct form for time limits).

As Uni-O4's critic (reference section 1.2) the Q and V are trained once, then frozen; the
advantage it hands to policy improvement is ``A(s, a) = min_k Q_k(s, a) - V(s)`` from the
*online* double-Q (``critic.py: IQL_Q_V.get_advantage``), see :func:`advantage`.

Conventions: observations are already normalised by the caller; the whole dataset lives on the
device as one :class:`TransitionBatch`; :func:`iql_train_steps` runs a chunk of steps as one
jitted ``lax.scan`` that samples minibatches (uniformly, with replacement) from ``state.key``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.distributions import DiagGaussian
from hybridrl.core.evaluation import ActFunction, evaluate_policy
from hybridrl.core.networks import Ensemble, GaussianPolicy, QHead, ValueHead
from hybridrl.core.replay import ReplayBuffer, add_transitions, replay_sample
from hybridrl.core.seeding import Seeder
from hybridrl.data.dataset import Dataset, TransitionBatch, sample_transitions
from hybridrl.errors import ConfigError
from hybridrl.offline.common import (
    ONLINE_DIR,
    OfflineData,
    OfflineToOnlineConfig,
    OfflineToOnlineTrainer,
    Phase,
    Stage,
    gaussian_mean_policy,
    host_scalars,
    read_offline_run,
    train_seeds,
)
from hybridrl.rl.sac import SACConfig, SACTrainer

Metrics = dict[str, jax.Array]

#: Size of the double-Q ensemble (clipped double Q, as in IQL and Uni-O4).
NUM_Q = 2

# --------------------------------------------------------------------------------------------
# Settings, networks and train state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IQLSettings:
    """Hyper-parameters IQL's jitted functions are specialised on (frozen, so hashable and usable
    as a static argument).

    Defaults follow the IQL paper's MuJoCo settings except ``target_update_period`` (2, the Uni-O4
    code; the paper updates every step). Uni-O4's own critic uses 2 x 1024 Q, 3 x 512 V, learning
    rate 1e-4 and batch 512 (reference section 2); a caller's preset sets those.

    :param q_hidden: hidden widths of each Q network.
    :param value_hidden: hidden widths of V.
    :param policy_hidden: hidden widths of the AWR policy.
    :param activation: hidden activation of Q, V and the policy.
    :param gamma: discount factor.
    :param expectile: ``tau`` of the V loss; 0.5 gives the mean (SARSA value of the behaviour),
        values towards 1 approach the maximum over the data's actions. Uni-O4: 0.7 (AntMaze 0.9).
    :param polyak: step size of the target update, ``Qbar <- polyak Q + (1 - polyak) Qbar``.
    :param target_update_period: apply the target update every this many steps (2 as in the
        Uni-O4 code; 1 = every step as in the IQL paper). Between updates the target is unchanged.
    :param critic_learning_rate: Adam step size of Q (and of V unless ``value_learning_rate``).
    :param value_learning_rate: Adam step size of V; ``None`` uses ``critic_learning_rate``.
    :param batch_size: minibatch size (transitions drawn uniformly with replacement).
    :param temperature: AWR inverse temperature ``beta``.
    :param max_weight: clip of the AWR weights ``exp(beta A)`` (100 in the IQL code).
    :param policy_learning_rate: Adam step size of the AWR policy. Constant: the IQL code decays it
        with a cosine schedule over training; a trainer that wants that can rebuild the state's
        optimiser, but this core keeps plain Adam so that chunks of steps compose.
    :param policy_log_std_init: initial value of the AWR policy's state-independent log-std.
    :param timeouts_as_terminals: ``True`` (the Uni-O4 code): ``not_done = 1 - (terminated |
        truncated)``, so a time limit cuts the bootstrap as if the state were terminal. ``False``:
        ``not_done = 1 - terminated``, bootstrapping ``V(s')`` through truncation, which is correct
        for time limits that are not part of the task.
    :param reward_scale: rewards are multiplied by this before they enter Q's target (see
        :func:`return_range_reward_scale`: the IQL code's scaling of locomotion rewards, which its
        ``temperature`` assumes). Stored transitions keep their raw rewards.
    """

    q_hidden: tuple[int, ...] = (256, 256)
    value_hidden: tuple[int, ...] = (256, 256)
    policy_hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    gamma: float = 0.99
    expectile: float = 0.7
    polyak: float = 0.005
    target_update_period: int = 2
    critic_learning_rate: float = 3e-4
    value_learning_rate: float | None = None
    batch_size: int = 256
    temperature: float = 3.0
    max_weight: float = 100.0
    policy_learning_rate: float = 3e-4
    policy_log_std_init: float = 0.0
    timeouts_as_terminals: bool = True
    reward_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.reward_scale > 0.0:
            raise ConfigError(f"reward_scale must be positive, got {self.reward_scale}")
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"expectile must lie in (0, 1) (0.5 = mean, 0.7 = Uni-O4), got {self.expectile}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 < self.polyak <= 1.0:
            raise ConfigError(f"polyak must lie in (0, 1] (1 copies Q into the target), got {self.polyak}")
        if self.target_update_period < 1:
            raise ConfigError(f"target_update_period must be >= 1 (1 = every step), got {self.target_update_period}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")
        if self.max_weight <= 0.0:
            raise ConfigError(f"max_weight must be positive, got {self.max_weight}")
        learning_rates = (self.critic_learning_rate, self.policy_learning_rate,
                          self.critic_learning_rate if self.value_learning_rate is None else self.value_learning_rate)
        if min(learning_rates) <= 0.0:
            raise ConfigError(f"learning rates must be positive, got {learning_rates}")

    @property
    def value_step_size(self) -> float:
        """The Adam step size V actually uses."""
        return self.critic_learning_rate if self.value_learning_rate is None else self.value_learning_rate


@dataclass(frozen=True)
class IQLNetworks:
    """IQL's networks (hashable, so jitted functions take them statically).

    :param q: the double-Q, an :class:`Ensemble` of two :class:`QHead`; ``q.apply`` returns ``(2, B)``.
    :param value: ``V(s)``, a :class:`ValueHead`.
    :param policy: the AWR policy, a Gaussian with tanh-bounded mean and a state-independent
        log-std (the IQL code's MuJoCo policy, without its dropout).
    """

    q: Ensemble
    value: ValueHead
    policy: GaussianPolicy


@struct.dataclass
class IQLState:
    """Everything an IQL step changes.

    :param q_params: online double-Q parameters (leading member axis of size 2).
    :param target_q_params: Polyak-averaged copy of ``q_params``.
    :param value_params: V parameters.
    :param policy_params: AWR policy parameters (initialised even when only the critic is trained).
    :param q_opt_state: Adam state of Q.
    :param value_opt_state: Adam state of V.
    :param policy_opt_state: Adam state of the policy.
    :param step: int32 scalar, the number of steps taken (drives the target-update period).
    :param key: PRNG key of minibatch sampling in :func:`iql_train_steps`.
    """

    q_params: Any
    target_q_params: Any
    value_params: Any
    policy_params: Any
    q_opt_state: optax.OptState
    value_opt_state: optax.OptState
    policy_opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


@struct.dataclass
class IQLCritic:
    """The frozen critic IQL hands to a policy-improvement phase (Uni-O4's ``Q_tau``/``V_tau``).

    :param q_params: online double-Q parameters.
    :param value_params: V parameters.
    """

    q_params: Any
    value_params: Any


def make_iql_networks(settings: IQLSettings, action_dim: int) -> IQLNetworks:
    """Build IQL's double-Q, V and AWR policy from ``settings``.

    :param settings: hyper-parameters (widths, activation, initial policy log-std).
    :param action_dim: number of action dimensions.
    """
    return IQLNetworks(
        q=Ensemble(QHead(settings.q_hidden, settings.activation), NUM_Q),
        value=ValueHead(settings.value_hidden, settings.activation),
        policy=GaussianPolicy(action_dim=action_dim, hidden_sizes=settings.policy_hidden,
                              activation=settings.activation, state_dependent_std=False,
                              log_std_init=settings.policy_log_std_init, tanh_mean=True),
    )


def _optimizers(settings: IQLSettings) -> tuple[optax.GradientTransformation, ...]:
    """Adam for Q, V and the policy, in that order (plain Adam, no gradient clipping, as both codes)."""
    return (optax.adam(settings.critic_learning_rate), optax.adam(settings.value_step_size),
            optax.adam(settings.policy_learning_rate))


@functools.partial(jax.jit, static_argnames=("networks", "observation_dim", "action_dim"))
def _init_params(networks: IQLNetworks, observation_dim: int, action_dim: int,
                 key: jax.Array) -> tuple[Any, Any, Any, jax.Array]:
    # Jitted: one compilation instead of one per eager operation of Flax's init.
    q_key, value_key, policy_key, state_key = jax.random.split(key, 4)
    observation = jnp.zeros((1, observation_dim), jnp.float32)
    action = jnp.zeros((1, action_dim), jnp.float32)
    return (networks.q.init(q_key, observation, action)["params"],
            networks.value.init(value_key, observation)["params"],
            networks.policy.init(policy_key, observation)["params"], state_key)


def init_iql_state(networks: IQLNetworks, settings: IQLSettings, observation_dim: int, action_dim: int,
                   key: jax.Array) -> IQLState:
    """A fresh state: new parameters, the target a copy of Q, zeroed optimisers, ``step = 0``.

    :param networks: from :func:`make_iql_networks`.
    :param settings: hyper-parameters (learning rates).
    :param observation_dim: size of a (flat, normalised) observation.
    :param action_dim: number of action dimensions.
    :param key: PRNG key; split into the initialisation keys and the sampling key of the state.
    """
    q_params, value_params, policy_params, state_key = _init_params(networks, observation_dim, action_dim, key)
    q_optimizer, value_optimizer, policy_optimizer = _optimizers(settings)
    return IQLState(q_params=q_params, target_q_params=jax.tree_util.tree_map(jnp.array, q_params),
                    value_params=value_params, policy_params=policy_params,
                    q_opt_state=q_optimizer.init(q_params), value_opt_state=value_optimizer.init(value_params),
                    policy_opt_state=policy_optimizer.init(policy_params),
                    step=jnp.zeros((), jnp.int32), key=state_key)


# --------------------------------------------------------------------------------------------
# Losses (pure functions of network outputs)
# --------------------------------------------------------------------------------------------


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """The asymmetric squared loss ``mean(|tau - 1(diff < 0)| diff^2)`` (IQL Eq. 5).

    :param diff: residuals ``u = Qbar(s, a) - V(s)``, any shape.
    :param expectile: ``tau`` in (0, 1): positive residuals (V below Q) weigh ``tau``, negative ones
        ``1 - tau``, so the minimiser is the ``tau``-expectile of the targets.
    """
    weight = jnp.where(diff < 0.0, 1.0 - expectile, expectile)
    return jnp.mean(weight * diff**2)


def value_loss(values: jax.Array, target_q_values: jax.Array, expectile: float) -> jax.Array:
    """V's loss: ``expectile_loss(min_k Qbar_k(s, a) - V(s), tau)``.

    :param values: ``V(s)``, shape ``(B,)``.
    :param target_q_values: the target double-Q at the data's actions, shape ``(K, B)``; its
        minimum over ``K`` is taken here and treated as a constant.
    :param expectile: ``tau``.
    """
    target = jax.lax.stop_gradient(jnp.min(target_q_values, axis=0))
    return expectile_loss(target - values, expectile)


def not_done_mask(terminations: jax.Array, truncations: jax.Array, timeouts_as_terminals: bool) -> jax.Array:
    """The bootstrap mask, float32: ``1 - (terminated | truncated)`` when ``timeouts_as_terminals``
    (the Uni-O4 code), else ``1 - terminated`` (bootstrap through truncation).

    :param terminations: bool or 0/1 flags, shape ``(B,)``.
    :param truncations: bool or 0/1 flags, shape ``(B,)``.
    :param timeouts_as_terminals: treat truncation as termination.
    """
    done = terminations.astype(bool)
    if timeouts_as_terminals:
        done = done | truncations.astype(bool)
    return 1.0 - done.astype(jnp.float32)


def q_targets(rewards: jax.Array, next_values: jax.Array, not_done: jax.Array, gamma: float) -> jax.Array:
    """The TD target ``y = r + gamma * not_done * V(s')`` of both Q members (detached).

    :param rewards: ``(B,)``.
    :param next_values: ``V(s')``, ``(B,)``.
    :param not_done: bootstrap mask from :func:`not_done_mask`, ``(B,)``.
    :param gamma: discount factor.
    """
    return jax.lax.stop_gradient(rewards + gamma * not_done * next_values)


def q_loss(q_values: jax.Array, targets: jax.Array) -> jax.Array:
    """Q's loss ``sum_k mean_b (Q_k(s_b, a_b) - y_b)^2`` (IQL Eq. 6, summed over the double-Q as in
    both codes).

    :param q_values: online Q at the data's actions, ``(K, B)``.
    :param targets: ``y`` from :func:`q_targets`, ``(B,)``.
    """
    return jnp.sum(jnp.mean((q_values - targets[None, :]) ** 2, axis=1))


def awr_weights(advantages: jax.Array, temperature: float, max_weight: float) -> jax.Array:
    """The detached AWR weights ``min(exp(beta A), w_max)``.

    :param advantages: ``A = min_k Qbar_k(s, a) - V(s)``, ``(B,)``.
    :param temperature: ``beta``.
    :param max_weight: ``w_max``.
    """
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * advantages), max_weight))


def awr_policy_loss(log_probs: jax.Array, advantages: jax.Array, temperature: float,
                    max_weight: float) -> jax.Array:
    """AWR policy extraction (IQL Eq. 7): ``-mean(min(exp(beta A), w_max) * log pi(a|s))``, the
    weights detached (:func:`awr_weights`).

    :param log_probs: ``log pi(a|s)`` of the data's actions, ``(B,)``.
    :param advantages: ``(B,)``; no gradient flows into them.
    :param temperature: ``beta``.
    :param max_weight: ``w_max``.
    """
    return -jnp.mean(awr_weights(advantages, temperature, max_weight) * log_probs)


# --------------------------------------------------------------------------------------------
# Critic queries
# --------------------------------------------------------------------------------------------


def q_values(networks: IQLNetworks, q_params: Any, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """Both members' ``Q_k(s, a)``, shape ``(2, B)``.

    :param networks: IQL's networks.
    :param q_params: double-Q parameters (online or target).
    :param observations: normalised observations ``(B, obs_dim)``.
    :param actions: ``(B, action_dim)``.
    """
    return cast(jax.Array, networks.q.apply({"params": q_params}, observations, actions))


def state_values(networks: IQLNetworks, value_params: Any, observations: jax.Array) -> jax.Array:
    """``V(s)``, shape ``(B,)``.

    :param networks: IQL's networks.
    :param value_params: V parameters.
    :param observations: normalised observations ``(B, obs_dim)``.
    """
    return cast(jax.Array, networks.value.apply({"params": value_params}, observations))


def min_q(networks: IQLNetworks, q_params: Any, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """``min_k Q_k(s, a)`` of the double-Q with ``q_params`` (online or target), shape ``(B,)``.

    :param networks: IQL's networks.
    :param q_params: double-Q parameters.
    :param observations: normalised observations ``(B, obs_dim)``.
    :param actions: ``(B, action_dim)``.
    """
    return jnp.min(q_values(networks, q_params, observations, actions), axis=0)


def critic_params(state: IQLState) -> IQLCritic:
    """The online Q and V of ``state``, the critic Uni-O4 freezes after IQL training."""
    return IQLCritic(q_params=state.q_params, value_params=state.value_params)


#: What :func:`advantage` accepts as the critic: a state, its :func:`critic_params`, or a mapping
#: with keys ``"q_params"`` and ``"value_params"``.
CriticLike = IQLState | IQLCritic | Mapping[str, Any]


def _unpack_critic(critic: CriticLike) -> tuple[Any, Any]:
    if isinstance(critic, IQLState | IQLCritic):
        return critic.q_params, critic.value_params
    return critic["q_params"], critic["value_params"]


@functools.partial(jax.jit, static_argnames=("networks",))
def advantage(networks: IQLNetworks, critic: CriticLike, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """``A(s, a) = min(Q_1, Q_2)(s, a) - V(s)`` with the **online** double-Q, as Uni-O4's
    ``IQL_Q_V.get_advantage`` (the Polyak target is used only inside IQL's own V and AWR losses;
    the code saves and reloads the online Q).

    :param networks: IQL's networks.
    :param critic: an :class:`IQLState`, its :func:`critic_params`, or a mapping with keys
        ``"q_params"`` and ``"value_params"``.
    :param observations: normalised observations ``(B, obs_dim)``.
    :param actions: ``(B, action_dim)``, e.g. samples of the policy being improved.
    """
    q_params, value_params = _unpack_critic(critic)
    values = state_values(networks, value_params, observations)
    return min_q(networks, q_params, observations, actions) - values


# --------------------------------------------------------------------------------------------
# Update
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("networks", "settings", "train_policy"))
def iql_update(state: IQLState, batch: TransitionBatch, *, networks: IQLNetworks, settings: IQLSettings,
               train_policy: bool) -> tuple[IQLState, Metrics]:
    """One IQL step on ``batch``: V, then (if ``train_policy``) the AWR policy, then Q, then the
    target every ``target_update_period`` steps (see the module docstring for the losses).

    :param state: the current state; ``state.key`` is not used (sampling lives in
        :func:`iql_train_steps`).
    :param batch: a minibatch of normalised transitions.
    :param networks: IQL's networks.
    :param settings: hyper-parameters.
    :param train_policy: also take an AWR step (False: critic only, as Uni-O4's critic phase; the
        policy parameters and optimiser are then untouched).
    :return: the new state (``step`` incremented) and scalar metrics: ``iql/value_loss``,
        ``iql/q_loss``, ``iql/value_mean``, ``iql/q_mean``, ``iql/target_q_mean``,
        ``iql/advantage_mean``, and with ``train_policy`` ``iql/policy_loss``,
        ``iql/awr_weight_mean``, ``iql/awr_weight_clipped`` (fraction at ``max_weight``),
        ``iql/policy_log_prob``.
    """
    q_optimizer, value_optimizer, policy_optimizer = _optimizers(settings)
    target_q_values = q_values(networks, state.target_q_params, batch.observations, batch.actions)

    # 1. V: expectile regression on the target double-Q's minimum.
    def value_objective(params: Any) -> jax.Array:
        return value_loss(state_values(networks, params, batch.observations), target_q_values,
                          settings.expectile)

    value_loss_value, value_grads = jax.value_and_grad(value_objective)(state.value_params)
    value_updates, value_opt_state = value_optimizer.update(value_grads, state.value_opt_state, state.value_params)
    value_params = optax.apply_updates(state.value_params, value_updates)
    values = state_values(networks, value_params, batch.observations)
    advantages = jnp.min(target_q_values, axis=0) - values

    metrics: Metrics = {"iql/value_loss": value_loss_value, "iql/value_mean": jnp.mean(values),
                        "iql/target_q_mean": jnp.mean(target_q_values), "iql/advantage_mean": jnp.mean(advantages)}

    # 2. Policy: advantage-weighted regression with the new V and the target double-Q.
    policy_params, policy_opt_state = state.policy_params, state.policy_opt_state
    if train_policy:
        def policy_objective(params: Any) -> tuple[jax.Array, jax.Array]:
            distribution = cast(DiagGaussian, networks.policy.apply({"params": params}, batch.observations))
            log_probs = distribution.log_prob(batch.actions)
            return awr_policy_loss(log_probs, advantages, settings.temperature, settings.max_weight), log_probs

        (policy_loss_value, log_probs), policy_grads = jax.value_and_grad(policy_objective, has_aux=True)(
            policy_params)
        policy_updates, policy_opt_state = policy_optimizer.update(policy_grads, policy_opt_state, policy_params)
        policy_params = optax.apply_updates(policy_params, policy_updates)
        weights = awr_weights(advantages, settings.temperature, settings.max_weight)
        metrics["iql/policy_loss"] = policy_loss_value
        metrics["iql/awr_weight_mean"] = jnp.mean(weights)
        metrics["iql/awr_weight_clipped"] = jnp.mean((weights >= settings.max_weight).astype(jnp.float32))
        metrics["iql/policy_log_prob"] = jnp.mean(log_probs)

    # 3. Q: both members regress on r + gamma * not_done * V(s') with the new V.
    next_values = state_values(networks, value_params, batch.next_observations)
    not_done = not_done_mask(batch.terminations, batch.truncations, settings.timeouts_as_terminals)
    targets = q_targets(settings.reward_scale * batch.rewards, next_values, not_done, settings.gamma)

    def q_objective(params: Any) -> tuple[jax.Array, jax.Array]:
        predictions = q_values(networks, params, batch.observations, batch.actions)
        return q_loss(predictions, targets), predictions

    (q_loss_value, predictions), q_grads = jax.value_and_grad(q_objective, has_aux=True)(state.q_params)
    q_updates, q_opt_state = q_optimizer.update(q_grads, state.q_opt_state, state.q_params)
    q_params = optax.apply_updates(state.q_params, q_updates)
    metrics["iql/q_loss"] = q_loss_value
    metrics["iql/q_mean"] = jnp.mean(predictions)

    # 4. Target: Polyak step on every target_update_period-th step (counting from 1), else unchanged.
    step = state.step + 1
    update_target = step % settings.target_update_period == 0
    target_q_params = jax.tree_util.tree_map(
        lambda online, target: jnp.where(update_target, settings.polyak * online + (1.0 - settings.polyak) * target,
                                         target),
        q_params, state.target_q_params)

    new_state = IQLState(q_params=q_params, target_q_params=target_q_params, value_params=value_params,
                         policy_params=policy_params, q_opt_state=q_opt_state, value_opt_state=value_opt_state,
                         policy_opt_state=policy_opt_state, step=step, key=state.key)
    return new_state, metrics


def _iql_steps(state: IQLState, sample: Callable[[jax.Array], TransitionBatch], num_steps: int,
               networks: IQLNetworks, settings: IQLSettings, train_policy: bool) -> tuple[IQLState, Metrics]:
    """``num_steps`` :func:`iql_update` steps as one ``lax.scan``, each on ``sample(key)`` with a key
    split off ``state.key``; each metric averaged over the steps."""

    def one_step(carry: IQLState, _: None) -> tuple[IQLState, Metrics]:
        key, sample_key = jax.random.split(carry.key)
        return iql_update(dataclasses.replace(carry, key=key), sample(sample_key), networks=networks,
                          settings=settings, train_policy=train_policy)

    state, metrics = jax.lax.scan(one_step, state, None, length=num_steps)
    return state, {name: jnp.mean(values) for name, values in metrics.items()}


@functools.partial(jax.jit, static_argnames=("num_steps", "networks", "settings", "train_policy"))
def iql_train_steps(state: IQLState, data: TransitionBatch, num_steps: int, *, networks: IQLNetworks,
                    settings: IQLSettings, train_policy: bool) -> tuple[IQLState, Metrics]:
    """``num_steps`` :func:`iql_update` steps as one jitted ``lax.scan``, each on a minibatch of
    ``settings.batch_size`` transitions drawn from ``data`` with a key split off ``state.key``.

    :param state: the current state.
    :param data: the whole (normalised) dataset on the device.
    :param num_steps: steps in this chunk (static: each distinct value compiles once).
    :param networks: IQL's networks.
    :param settings: hyper-parameters.
    :param train_policy: also train the AWR policy.
    :return: the new state and each metric averaged over the chunk.
    """
    return _iql_steps(state, lambda key: sample_transitions(data, key, settings.batch_size), num_steps,
                      networks, settings, train_policy)


@functools.partial(jax.jit, static_argnames=("num_steps", "networks", "settings"))
def iql_replay_steps(state: IQLState, buffer: ReplayBuffer, num_steps: int, *, networks: IQLNetworks,
                     settings: IQLSettings) -> tuple[IQLState, Metrics]:
    """:func:`iql_train_steps` (critic and policy) on minibatches drawn uniformly from the filled
    part of a replay ``buffer``: online fine-tuning's learning call."""
    return _iql_steps(state, lambda key: replay_sample(buffer, key, settings.batch_size), num_steps,
                      networks, settings, train_policy=True)


def return_range_reward_scale(dataset: Dataset, target_range: float = 1000.0) -> float:
    """``target_range / (highest - lowest episode return)`` of ``dataset``: the factor by which the
    IQL code (``train_offline.py: normalize``, also CORL's IQL) scales MuJoCo locomotion rewards, so
    that advantages, and with them the AWR weights ``exp(beta A)`` at its ``beta = 3``, live on the
    same scale for every dataset.

    :raises ConfigError: every episode has the same return, so there is no range to scale by.
    """
    returns = dataset.episode_returns()
    spread = float(np.max(returns) - np.min(returns))
    if not spread > 0.0:
        raise ConfigError(f"every episode of the dataset returns {float(returns[0]):.4g}: there is no return range "
                          "to scale rewards by; pass --reward-normalization none")
    return target_range / spread


# --------------------------------------------------------------------------------------------
# The IQL baseline: `hybridrl train iql --dataset ...`
# --------------------------------------------------------------------------------------------


RewardNormalization = Literal["none", "return-range"]


@dataclass
class IQLConfig(OfflineToOnlineConfig):
    """IQL options. ``hybridrl train iql --help`` shows each with its preset default."""

    phase: Phase = "offline"
    """Which phases to run: offline, online (fine-tunes --offline-run), or both (offline, then online)."""
    steps: int = 1_000_000
    """Gradient steps (critic and policy together)."""
    batch_size: int = 256
    """Minibatch size."""
    critic_learning_rate: float = 3e-4
    """Adam step size of Q and V."""
    policy_learning_rate: float = 3e-4
    """Adam step size of the policy."""
    q_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of each Q network."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of V."""
    policy_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the policy."""
    expectile: float = 0.7
    """Expectile tau of V's loss."""
    temperature: float = 3.0
    """Inverse temperature beta of advantage-weighted regression."""
    max_weight: float = 100.0
    """Cap on the AWR weight exp(beta A)."""
    gamma: float = 0.99
    """Discount factor."""
    polyak: float = 0.005
    """Target-Q averaging rate."""
    target_update_period: int = 1
    """Gradient steps between target updates (IQL paper: 1; Uni-O4 code: 2)."""
    timeouts_as_terminals: bool = False
    """Treat time-limit truncations as terminals (Uni-O4's code) instead of bootstrapping through them."""
    reward_normalization: RewardNormalization = "none"
    """return-range: rewards x 1000 / (highest - lowest episode return of the dataset), the IQL code's
    locomotion scaling that its beta = 3 assumes; none: raw rewards."""
    # -- online fine-tuning (--phase online or both; --online-steps, one gradient step each) -------
    online_eval_interval: int = 10_000
    """Evaluate every this many environment steps online."""
    online_checkpoint_interval: int = 20_000
    """Checkpoint every this many environment steps online."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix for every impossible setting."""
        self.validate_offline()
        self.validate_phase("iql")
        for name in ("steps", "batch_size", "target_update_period"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("online_eval_interval", "online_checkpoint_interval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"--expectile must lie in (0, 1), got {self.expectile}")
        if self.reward_normalization not in ("none", "return-range"):
            raise ConfigError(f"--reward-normalization must be none or return-range, got {self.reward_normalization!r}")


IQL_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(steps=200, batch_size=64, q_hidden=(32, 32), value_hidden=(32, 32), policy_hidden=(32, 32),
                  eval_interval=0, eval_episodes=1, checkpoint_interval=100, log_interval=100, online_steps=300,
                  online_eval_interval=0, online_checkpoint_interval=150),
    # The step budget of Uni-O4's critic stage at cpu scale; fine-tuning with Uni-O4's online budget.
    "cpu": dict(steps=50_000, eval_interval=10_000, checkpoint_interval=10_000, online_steps=100_000),
    # Kostrikov et al. 2021, MuJoCo locomotion: 1M steps, batch 256, 2x256, tau 0.7, beta 3; 1M steps online.
    "paper": dict(eval_interval=50_000, checkpoint_interval=50_000, online_eval_interval=50_000,
                  online_checkpoint_interval=50_000),
}

class IQLTrainer(OfflineToOnlineTrainer):
    """IQL with advantage-weighted policy extraction on a dataset, evaluated in its environment, and
    with ``--phase both`` or ``online`` fine-tuned online (:class:`IQLOnlineTrainer`; the run
    directory's layout is :class:`OfflineToOnlineTrainer`'s)."""

    algorithm = "iql"

    def __init__(self, config: IQLConfig, run_dir: Path, progress: bool = False,
                 data: OfflineData | None = None) -> None:
        # With --phase online every offline setting comes from the offline run being fine-tuned.
        offline_config: IQLConfig = read_offline_run(config, "iql") if config.phase == "online" else config
        super().__init__(offline_config, run_dir, progress, data)
        self.config: IQLConfig = config
        self.offline_config = offline_config
        oc = offline_config
        reward_scale = (return_range_reward_scale(self.data.dataset) if oc.reward_normalization == "return-range"
                        else 1.0)
        self.settings = IQLSettings(
            q_hidden=oc.q_hidden, value_hidden=oc.value_hidden, policy_hidden=oc.policy_hidden,
            activation="relu", gamma=oc.gamma, expectile=oc.expectile, polyak=oc.polyak,
            target_update_period=oc.target_update_period, critic_learning_rate=oc.critic_learning_rate,
            policy_learning_rate=oc.policy_learning_rate, batch_size=oc.batch_size,
            temperature=oc.temperature, max_weight=oc.max_weight,
            timeouts_as_terminals=oc.timeouts_as_terminals, reward_scale=reward_scale)
        self.networks = make_iql_networks(self.settings, self.data.action_dim)
        key = Seeder(oc.seed).jax_key("iql")
        self.state = init_iql_state(self.networks, self.settings, self.data.observation_dim, self.data.action_dim, key)
        if config.phase == "online":
            self.load_checkpoint(Path(config.offline_run) / "checkpoint.ckpt")

    def stages(self) -> list[Stage]:
        """One stage: ``steps`` joint critic and policy steps."""
        return [Stage("iql", self.offline_config.steps, self._train_chunk)]

    def _train_chunk(self, steps: int) -> dict[str, float]:
        self.state, metrics = self.train_steps(self.state, self.data.transitions, steps)
        return host_scalars(metrics)

    def train_steps(self, state: IQLState, data: TransitionBatch, num_steps: int) -> tuple[IQLState, Metrics]:
        """``num_steps`` joint critic and policy steps from ``state`` (pure; seeds trained together vmap it)."""
        return iql_train_steps(state, data, num_steps, networks=self.networks, settings=self.settings,
                               train_policy=True)

    def deterministic_policy(self) -> ActFunction:
        """The AWR policy's mean action for raw observations."""
        return gaussian_mean_policy(self.networks.policy, self.state.policy_params, self.data.normalizer)

    def online_config(self) -> SACConfig:
        """The loop settings of fine-tuning: one env, one IQL step per env step from the first step
        (the policy is trained; no random warm-up), a replay that never evicts."""
        config = self.config
        return SACConfig(
            env=self.env_id, seed=config.seed, total_steps=config.online_steps, preset=config.preset,
            action_repeat=self.data.dataset.action_repeat, batch_size=self.settings.batch_size,
            gamma=self.settings.gamma, learning_starts=0, update_every=1, updates_per_call=1,
            replay_size=len(self.data.dataset) + config.online_steps, eval_interval=config.online_eval_interval,
            eval_episodes=config.eval_episodes, checkpoint_interval=config.online_checkpoint_interval,
            log_interval=self.offline_config.log_interval)

    def make_online_trainer(self) -> IQLOnlineTrainer:
        """The fine-tuning trainer, starting from the offline state."""
        online_config = self.online_config()
        online_config.validate()
        return IQLOnlineTrainer(online_config, self.run_dir / ONLINE_DIR, self.progress, self.networks,
                                self.settings, self.state, self.data)

    # -- checkpoints -----------------------------------------------------------------------------

    def checkpoint_state(self) -> IQLState:
        """The IQL state."""
        return self.state

    def restore_checkpoint_state(self, state: IQLState) -> None:
        """Take back :meth:`checkpoint_state` output."""
        self.state = state


class IQLOnlineTrainer(SACTrainer):
    """IQL fine-tuned online, as the IQL code's ``train_finetune.py``: the replay starts as the whole
    offline dataset and every env step adds the policy's transition and takes one joint IQL step
    (V, AWR policy, Q, target) on a minibatch drawn uniformly from it; the policy acts by sampling
    its Gaussian, clipped to [-1, 1]. SAC's loop supplies acting, staging, evaluation and checkpoints.

    Two choices of ours, both documented in ``docs/algorithms/uni-o4.md``: observations are
    standardised with the dataset's frozen statistics (as offline), and online rewards get the
    offline reward scale too (the IQL code scales only the dataset's rewards, so with its locomotion
    scaling on, the two parts of its replay would disagree).

    :param networks: IQL's networks.
    :param settings: IQL's hyper-parameters (with the offline reward scale).
    :param state: the offline IQL state to start from.
    :param data: the offline dataset (normalised), which fills the replay first.
    """

    algorithm = "iql-online"
    fused_store_and_learn = False

    def __init__(self, config: SACConfig, run_dir: Path, progress: bool, networks: IQLNetworks,
                 settings: IQLSettings, state: IQLState, data: OfflineData) -> None:
        # Set before SAC's constructor, which refreshes the host copy of the acting policy.
        self.iql_networks, self.iql_settings, self.iql_state = networks, settings, state
        self.state_normalizer = data.normalizer
        self.normalized_score = data.normalized_score
        super().__init__(config, run_dir, progress)
        bounds = cast(gym.spaces.Box, self.env.action_space)
        if not (np.allclose(bounds.low, -1.0) and np.allclose(bounds.high, 1.0)):
            raise ConfigError(f"IQL fine-tuning acts in the dataset's action units, which offline learners treat as "
                              f"[-1, 1]; {config.env} has bounds [{bounds.low}, {bounds.high}]")
        self.buffer = add_transitions(self.buffer, data.transitions)

    def actor_actions(self, observations: np.ndarray, actor_params: Any = None,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions in [-1, 1] of the AWR policy for raw observations: sampled with ``rng``, else its mean."""
        params = self._host_actor if actor_params is None else actor_params
        normalized = cast(np.ndarray, self.state_normalizer(np.asarray(observations, np.float32)))
        distribution = self.iql_networks.policy.apply_numpy(params, normalized)
        return np.clip(np.asarray(distribution.mode() if rng is None else distribution.sample_numpy(rng)), -1.0, 1.0)

    def act_deterministic(self, observations: np.ndarray) -> np.ndarray:
        """The policy's mean action, clipped to [-1, 1] (the env's bounds), as offline evaluation acts."""
        return self.actor_actions(observations)

    def refresh_host_actor(self) -> None:
        """Copy the policy's parameters to the host (after updates)."""
        self._host_actor = jax.tree_util.tree_map(np.array, jax.device_get(self.iql_state.policy_params))

    def store(self, transitions: TransitionBatch) -> None:
        """Add staged transitions, their observations standardised as the dataset's, to the replay."""
        normalized = dataclasses.replace(transitions, observations=self.state_normalizer(transitions.observations),
                                         next_observations=self.state_normalizer(transitions.next_observations))
        self.buffer = add_transitions(self.buffer, normalized)

    def learn(self, num_updates: int) -> None:
        """``num_updates`` IQL steps on the replay."""
        self.iql_state, self.last_metrics = iql_replay_steps(self.iql_state, self.buffer, num_updates,
                                                             networks=self.iql_networks, settings=self.iql_settings)
        self.num_updates += num_updates
        self.refresh_host_actor()

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Deterministic evaluation; the normalised score uses the dataset's reference returns."""
        result = evaluate_policy(self.eval_env, self.act_deterministic, episodes, self.eval_seed)
        score = self.normalized_score(result["eval/return_mean"])
        if score is not None:
            result["eval/normalized_score"] = score
        return result

    def checkpoint_state(self) -> Any:
        """The IQL state and the replay (offline rows included)."""
        return {"iql": self.iql_state, "replay": self.buffer}

    def restore_checkpoint_state(self, state: Any) -> None:
        """Take back :meth:`checkpoint_state` output."""
        self.iql_state, self.buffer = state["iql"], state["replay"]


def _make_trainer(config: IQLConfig, run_dir: Path, progress: bool) -> IQLTrainer:
    return IQLTrainer(config, run_dir, progress)


def _train_seeds(configs: list[IQLConfig], run_dirs: list[Path], progress: bool) -> list[dict[str, Any]]:
    if configs[0].phase == "offline":
        return train_seeds(IQLTrainer, configs, run_dirs, progress)
    # Fine-tuning steps one environment per run, so runs with an online phase train one after another.
    finals = []
    for index, (config, run_dir) in enumerate(zip(configs, run_dirs, strict=True)):
        trainer = IQLTrainer(config, Path(run_dir), progress and index == 0)
        try:
            checkpoint = Path(run_dir) / "checkpoint.ckpt"
            if checkpoint.is_file():
                trainer.load_checkpoint(checkpoint)
            finals.append({"env": trainer.env_id, **trainer.train()})
        finally:
            trainer.close()
    return finals


ALGORITHM = AlgorithmSpec(name="iql", config_cls=IQLConfig, presets=IQL_PRESETS, make_trainer=_make_trainer,
                          summary="Implicit Q-Learning with advantage-weighted policy extraction (offline, "
                                  "optionally fine-tuned online)",
                          train_seeds=_train_seeds)
