"""A learned dynamics ensemble for model-based off-policy evaluation (Uni-O4 §1.4, after
MOBILE / OfflineRL-Kit's ``EnsembleDynamics``).

Each of ``num_members`` members is a Gaussian over the state change and the reward,

    p_k(Δs, r | s, a) = N(μ_k(x), diag(exp(logvar_k(x)))),   x = standardise([s, a]),

an MLP (4×200 Swish by default) whose log-variance is soft-bounded by learnable per-member
``max_logvar`` / ``min_logvar`` vectors. All members live in ONE batched Flax module
(:class:`hybridrl.core.networks.Ensemble`; parameters stacked on axis 0).

Training (:class:`DynamicsFit`, run whole by :func:`train_dynamics` or in checkpointed pieces),
per member k and gradient step:

    L_k = mean_{batch, outputs}[(μ_k − y)² exp(−logvar_k) + logvar_k]           (Gaussian NLL)
          + Σ_layers ½ λ_l ‖W_l‖²                                              (weight decay)
          + c · (Σ max_logvar_k − Σ min_logvar_k)                              (log-variance bounds)

with targets ``y = (s' − s, r)`` (raw, not standardised, as the reference code), member k's
batches drawn from its own bootstrap resample of the training split (drawn once), and Adam on
``Σ_k L_k``. ``min(holdout_fraction · N, max_holdout)`` transitions are held out. Every
``eval_every`` steps (our stand-in for the reference's epoch) the per-member holdout MSE of the
means is measured; a member whose MSE beats its best by more than 1 % is snapshotted. Training
stops when no member improved for ``patience`` checks (or at ``max_steps``); the snapshots are
kept and the ``num_elites`` members with the lowest holdout MSE become the elites.

A model step (:func:`dynamics_step`) takes raw observations and actions and returns raw next
observations and rewards, sampling one random elite per transition (or, deterministically, the
mean of the elites' means). Terminations come from hand-written functions of the next
observation (:func:`termination_function`), keyed by Gymnasium environment id.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hybridrl.core.networks import MLP, Ensemble
from hybridrl.errors import ConfigError

Params = Any
TerminationFn = Callable[[jax.Array], jax.Array]

# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamicsSettings:
    """Options of the dynamics ensemble; defaults are the reference's MuJoCo values
    (``transition_model/configs/gym/default.py`` of Uni-O4, from OfflineRL-Kit)."""

    num_members: int = 7
    """Ensemble size."""
    num_elites: int = 5
    """Members with the lowest holdout MSE that model steps use."""
    hidden_sizes: tuple[int, ...] = (200, 200, 200, 200)
    """Width of each hidden layer of a member."""
    activation: str = "silu"
    """Hidden activation; ``silu`` is Swish, x·sigmoid(x)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    batch_size: int = 256
    """Transitions per member per gradient step."""
    weight_decays: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    """L2 coefficient λ_l of each Dense layer's kernel (hidden layers, then the output), as
    ``½ λ_l ‖W_l‖²``; layers beyond the tuple's length use its last value, extra values are ignored,
    an empty tuple means no decay."""
    logvar_loss_coef: float = 0.01
    """Coefficient c of ``Σ max_logvar − Σ min_logvar`` in the loss (keeps the bounds tight)."""
    holdout_fraction: float = 0.2
    """Fraction of the transitions held out for early stopping and elite selection..."""
    max_holdout: int = 1000
    """...but at most this many."""
    patience: int = 5
    """Holdout checks in a row without any member improving by more than ``improvement_threshold``
    (relative) before training stops."""
    improvement_threshold: float = 0.01
    """Relative holdout-MSE decrease that counts as an improvement (the reference's 1 %)."""
    eval_every: int = 1000
    """Gradient steps per compiled chunk, between holdout checks (the reference checks once per epoch)."""
    max_steps: int = 100_000
    """Cap on gradient steps."""

    def __post_init__(self) -> None:
        for name in ("num_members", "num_elites", "batch_size", "max_holdout", "patience", "eval_every", "max_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"dynamics {name} must be positive, got {getattr(self, name)}")
        if self.num_elites > self.num_members:
            raise ConfigError(f"dynamics num_elites ({self.num_elites}) cannot exceed num_members "
                              f"({self.num_members}): elites are chosen among the members")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"dynamics holdout_fraction must be in (0, 1), got {self.holdout_fraction}: "
                              "the holdout split drives early stopping and elite selection")
        if any(width <= 0 for width in self.hidden_sizes):
            raise ConfigError(f"dynamics hidden_sizes must be positive, got {self.hidden_sizes}")
        if any(decay < 0 for decay in self.weight_decays):
            raise ConfigError(f"dynamics weight_decays must be >= 0, got {self.weight_decays}")
        if self.learning_rate <= 0:
            raise ConfigError(f"dynamics learning_rate must be positive, got {self.learning_rate}")

    def layer_weight_decays(self) -> tuple[float, ...]:
        """The decay of each Dense layer (hidden layers, then the output), padded with the last value."""
        num_layers = len(self.hidden_sizes) + 1
        if not self.weight_decays:
            return (0.0,) * num_layers
        return tuple(self.weight_decays[min(index, len(self.weight_decays) - 1)] for index in range(num_layers))


# --------------------------------------------------------------------------------------------
# The Gaussian member and the ensemble
# --------------------------------------------------------------------------------------------


def soft_bound_logvar(logvar: jax.Array, min_logvar: jax.Array, max_logvar: jax.Array) -> jax.Array:
    """Squash ``logvar`` smoothly below ``max_logvar`` and above ``min_logvar``:
    ``l = max − softplus(max − x)``, then ``l = min + softplus(l − min)``.

    :param logvar: raw network output.
    :param min_logvar: lower soft bound (broadcast against ``logvar``).
    :param max_logvar: upper soft bound.
    """
    bounded = max_logvar - jax.nn.softplus(max_logvar - logvar)
    return min_logvar + jax.nn.softplus(bounded - min_logvar)


def gaussian_nll(mean: jax.Array, logvar: jax.Array, targets: jax.Array) -> jax.Array:
    """The Gaussian negative log-likelihood up to constants and a factor 2, averaged over every axis:
    ``mean((μ − y)² exp(−logvar) + logvar)``.

    :param mean: predicted means.
    :param logvar: predicted log-variances (same shape).
    :param targets: observed values (same shape).
    """
    return jnp.mean(jnp.square(mean - targets) * jnp.exp(-logvar) + logvar)


class GaussianDynamicsMember(nn.Module):
    """One member: an MLP from standardised ``[s, a]`` to the mean and bounded log-variance of
    ``(Δs, r)``.

    :param output_dim: size of ``(Δs, r)``, i.e. ``observation_dim + 1``.
    :param hidden_sizes: MLP widths.
    :param activation: hidden activation.
    """

    output_dim: int
    hidden_sizes: tuple[int, ...] = (200, 200, 200, 200)
    activation: str = "silu"

    @nn.compact
    def __call__(self, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        outputs = MLP(self.hidden_sizes, 2 * self.output_dim, self.activation, name="mlp")(inputs)
        mean, raw_logvar = jnp.split(outputs, 2, axis=-1)
        max_logvar = self.param("max_logvar", nn.initializers.constant(0.5), (self.output_dim,))
        min_logvar = self.param("min_logvar", nn.initializers.constant(-10.0), (self.output_dim,))
        return mean, soft_bound_logvar(raw_logvar, min_logvar, max_logvar)


@dataclass(frozen=True)
class DynamicsModel:
    """The ensemble's architecture and training settings; hashable, so it can be a static argument
    of jitted functions. Build one with :func:`make_dynamics_model`.

    :param settings: the ensemble's options.
    :param observation_dim: size of a (flat) observation.
    :param action_dim: size of an action.
    """

    settings: DynamicsSettings
    observation_dim: int
    action_dim: int

    @property
    def output_dim(self) -> int:
        """Size of a member's target ``(Δs, r)``."""
        return self.observation_dim + 1

    @property
    def member(self) -> GaussianDynamicsMember:
        """One member's module (apply it to one member's parameters)."""
        return GaussianDynamicsMember(self.output_dim, tuple(self.settings.hidden_sizes), self.settings.activation)

    def ensemble(self, shared_inputs: bool = True) -> Ensemble:
        """The batched ensemble module: every member sees the same inputs (``shared_inputs``), or
        member ``k`` sees slice ``k`` of inputs with a leading member axis."""
        return Ensemble(self.member, self.settings.num_members, shared_inputs=shared_inputs)

    def init(self, key: jax.Array) -> Params:
        """Fresh ensemble parameters (each member from its own key), ``{"members": stacked}``."""
        dummy = jnp.zeros((1, self.observation_dim + self.action_dim), jnp.float32)
        return self.ensemble().init(key, dummy)["params"]


def make_dynamics_model(settings: DynamicsSettings, observation_dim: int, action_dim: int) -> DynamicsModel:
    """The dynamics model of an environment with flat observations and actions.

    :param settings: the ensemble's options.
    :param observation_dim: size of an observation.
    :param action_dim: size of an action.
    """
    if observation_dim <= 0 or action_dim <= 0:
        raise ConfigError(f"the dynamics model needs flat observations and actions, got observation_dim="
                          f"{observation_dim}, action_dim={action_dim}")
    return DynamicsModel(settings, int(observation_dim), int(action_dim))


@struct.dataclass
class DynamicsState:
    """A trained ensemble: everything a checkpoint needs, as a pytree of arrays.

    :param params: ensemble parameters, ``{"members": ...}`` with every leaf stacked on axis 0
        (the snapshot of each member at its best holdout MSE).
    :param input_mean: mean of the training inputs ``[s, a]``.
    :param input_std: their standard deviation (entries below 1e-12 replaced by 1).
    :param elites: int32 indices of the elite members, best first.
    :param holdout_mse: each member's best holdout MSE of its mean prediction of ``(Δs, r)``.
    """

    params: Params
    input_mean: jax.Array
    input_std: jax.Array
    elites: jax.Array
    holdout_mse: jax.Array


def init_dynamics_state(model: DynamicsModel, key: jax.Array) -> DynamicsState:
    """An untrained state of ``model``'s shapes: the template to restore a checkpoint into.

    :param model: the ensemble's architecture.
    :param key: PRNG key of the initialisation.
    """
    input_dim = model.observation_dim + model.action_dim
    return DynamicsState(params=model.init(key), input_mean=jnp.zeros(input_dim, jnp.float32),
                         input_std=jnp.ones(input_dim, jnp.float32),
                         elites=jnp.arange(model.settings.num_elites, dtype=jnp.int32),
                         holdout_mse=jnp.full((model.settings.num_members,), jnp.inf, jnp.float32))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@struct.dataclass
class _TrainCarry:
    params: Params
    opt_state: optax.OptState
    best_params: Params
    best_holdout_mse: jax.Array
    key: jax.Array


@struct.dataclass
class _Splits:
    train_inputs: jax.Array
    train_targets: jax.Array
    bootstrap_indices: jax.Array  # (M, N_train): member k's resample of the training split
    holdout_inputs: jax.Array
    holdout_targets: jax.Array


def _weight_decay(params: Params, decays: tuple[float, ...]) -> jax.Array:
    """``Σ_l ½ λ_l ‖W_l‖²`` over the kernels of the MLP (summed over members when stacked)."""
    mlp = params["members"]["mlp"]
    names = [f"hidden_{index}" for index in range(len(decays) - 1)] + ["output"]
    penalty = jnp.zeros(())
    for name, decay in zip(names, decays, strict=True):
        penalty = penalty + 0.5 * decay * jnp.sum(jnp.square(mlp[name]["kernel"]))
    return penalty


def _ensemble_loss(model: DynamicsModel, params: Params, inputs: jax.Array,
                   targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``Σ_k L_k`` for member-split ``inputs`` (M, B, in) and ``targets`` (M, B, out); also the NLLs (M,)."""
    settings = model.settings
    mean, logvar = cast(tuple[jax.Array, jax.Array],
                        model.ensemble(shared_inputs=False).apply({"params": params}, inputs))
    nll = jax.vmap(gaussian_nll)(mean, logvar, targets)
    members = params["members"]
    bound_penalty = settings.logvar_loss_coef * (jnp.sum(members["max_logvar"]) - jnp.sum(members["min_logvar"]))
    loss = jnp.sum(nll) + _weight_decay(params, settings.layer_weight_decays()) + bound_penalty
    return loss, nll


def _holdout_mse(model: DynamicsModel, params: Params, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Each member's MSE of its mean on the holdout split, (M,)."""
    mean, _ = cast(tuple[jax.Array, jax.Array], model.ensemble().apply({"params": params}, inputs))
    return jnp.mean(jnp.square(mean - targets[None]), axis=(1, 2))


def _optimizer(settings: DynamicsSettings) -> optax.GradientTransformation:
    return optax.adam(settings.learning_rate)


@functools.partial(jax.jit, static_argnames=("model", "num_steps"))
def _train_chunk(model: DynamicsModel, carry: _TrainCarry, splits: _Splits,
                 num_steps: int) -> tuple[_TrainCarry, dict[str, jax.Array]]:
    """``num_steps`` gradient steps as one ``lax.scan``, then the holdout check and snapshots."""
    settings = model.settings
    optimizer = _optimizer(settings)
    num_train = splits.train_inputs.shape[0]

    def gradient_step(state: tuple[Params, optax.OptState, jax.Array],
                      _: None) -> tuple[tuple[Params, optax.OptState, jax.Array], tuple[jax.Array, jax.Array]]:
        params, opt_state, key = state
        key, batch_key = jax.random.split(key)
        # Each member draws its batch from its own bootstrap resample of the training split.
        positions = jax.random.randint(batch_key, (settings.num_members, settings.batch_size), 0, num_train)
        indices = jnp.take_along_axis(splits.bootstrap_indices, positions, axis=1)
        (loss, nll), grads = jax.value_and_grad(_ensemble_loss, argnums=1, has_aux=True)(
            model, params, splits.train_inputs[indices], splits.train_targets[indices])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), (loss, jnp.mean(nll))

    (params, opt_state, key), (losses, nlls) = jax.lax.scan(
        gradient_step, (carry.params, carry.opt_state, carry.key), None, length=num_steps)

    holdout_mse = _holdout_mse(model, params, splits.holdout_inputs, splits.holdout_targets)
    # Relative improvement (best − new) / best > threshold, written so that best = inf works;
    # a non-finite MSE never counts as an improvement.
    improved = holdout_mse < carry.best_holdout_mse * (1.0 - settings.improvement_threshold)
    best_params = jax.tree_util.tree_map(
        lambda new, old: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
        params, carry.best_params)
    best_holdout_mse = jnp.where(improved, holdout_mse, carry.best_holdout_mse)
    metrics = {
        "train_loss": jnp.mean(losses) / settings.num_members,
        "train_nll": jnp.mean(nlls),
        "holdout_mse": jnp.mean(jnp.sort(holdout_mse)[: settings.num_elites]),
        "best_holdout_mse": jnp.mean(jnp.sort(best_holdout_mse)[: settings.num_elites]),
        "any_improved": jnp.any(improved),
    }
    return _TrainCarry(params, opt_state, best_params, best_holdout_mse, key), metrics


def _as_2d(array: Any, name: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float32)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ConfigError(f"dynamics training needs flat {name} of shape (N, dim), got shape {values.shape}")
    return values


@struct.dataclass
class DynamicsTraining:
    """A training in progress, between two holdout checks: what a checkpoint needs to continue it
    exactly (the splits are derived again from the data and the key).

    :param carry: the parameters, Adam state, best snapshots and PRNG key.
    :param steps: gradient steps done (int32).
    :param checks: holdout checks done (int32).
    :param checks_without_improvement: consecutive checks in which no member improved (int32).
    :param train_loss: mean per-member loss of the last chunk (NaN before the first).
    """

    carry: _TrainCarry
    steps: jax.Array
    checks: jax.Array
    checks_without_improvement: jax.Array
    train_loss: jax.Array


class DynamicsFit:
    """One fit of the ensemble to a dataset's transitions, with holdout early stopping and elite
    selection, that can be run in pieces (:meth:`train`) and checkpointed between them
    (:attr:`training`); :func:`train_dynamics` runs it whole. The host syncs once per chunk of
    ``settings.eval_every`` gradient steps.

    :param observations: raw (un-normalised) states, shape (N, observation_dim), numpy or JAX.
    :param actions: actions, shape (N, action_dim).
    :param rewards: rewards, shape (N,) or (N, 1), unscaled.
    :param next_observations: raw next states, shape (N, observation_dim).
    :param settings: the ensemble's options.
    :param key: PRNG key for the holdout split, the initialisation and the batches.
    """

    def __init__(self, observations: Any, actions: Any, rewards: Any, next_observations: Any,
                 settings: DynamicsSettings, key: jax.Array) -> None:
        observation_array = _as_2d(observations, "observations")
        action_array = _as_2d(actions, "actions")
        reward_array = np.asarray(rewards, dtype=np.float32).reshape(-1, 1)
        next_observation_array = _as_2d(next_observations, "next_observations")
        num_transitions = observation_array.shape[0]
        if not (action_array.shape[0] == reward_array.shape[0] == next_observation_array.shape[0] == num_transitions):
            raise ConfigError("dynamics training needs one action, reward and next observation per observation; "
                              f"got {num_transitions} observations, {action_array.shape[0]} actions, "
                              f"{reward_array.shape[0]} rewards, {next_observation_array.shape[0]} next observations")
        if next_observation_array.shape[1] != observation_array.shape[1]:
            raise ConfigError(f"next_observations have {next_observation_array.shape[1]} dims, observations "
                              f"{observation_array.shape[1]}")
        holdout_size = max(1, min(int(num_transitions * settings.holdout_fraction), settings.max_holdout))
        if num_transitions - holdout_size < 1:
            raise ConfigError(f"dynamics training needs at least 2 transitions (one to train on, one to hold out), "
                              f"got {num_transitions}")

        self.settings = settings
        self.holdout_size = holdout_size
        self.model = make_dynamics_model(settings, observation_array.shape[1], action_array.shape[1])
        split_key, bootstrap_key, init_key, train_key = jax.random.split(key, 4)
        inputs = np.concatenate([observation_array, action_array], axis=1)
        targets = np.concatenate([next_observation_array - observation_array, reward_array], axis=1)
        permutation = np.asarray(jax.random.permutation(split_key, num_transitions))
        train_index, holdout_index = permutation[holdout_size:], permutation[:holdout_size]

        train_inputs = inputs[train_index]
        input_mean = train_inputs.mean(axis=0, dtype=np.float64).astype(np.float32)
        input_std = train_inputs.std(axis=0, dtype=np.float64)
        self.input_mean = input_mean
        self.input_std = np.where(input_std < 1e-12, 1.0, input_std).astype(np.float32)

        def standardise(values: np.ndarray) -> jax.Array:
            return jnp.asarray((values - self.input_mean) / self.input_std, dtype=jnp.float32)

        # As the reference: one resample (with replacement) of the training split per member, drawn
        # once; the members differ in data as well as in initialisation.
        bootstrap_indices = jax.random.randint(bootstrap_key, (settings.num_members, train_index.size), 0,
                                               train_index.size)
        self.splits = _Splits(train_inputs=standardise(train_inputs), train_targets=jnp.asarray(targets[train_index]),
                              bootstrap_indices=bootstrap_indices,
                              holdout_inputs=standardise(inputs[holdout_index]),
                              holdout_targets=jnp.asarray(targets[holdout_index]))
        params = self.model.init(init_key)
        carry = _TrainCarry(params=params, opt_state=_optimizer(settings).init(params), best_params=params,
                            best_holdout_mse=jnp.full((settings.num_members,), jnp.inf, jnp.float32), key=train_key)
        self.training = DynamicsTraining(carry=carry, steps=jnp.zeros((), jnp.int32),
                                         checks=jnp.zeros((), jnp.int32),
                                         checks_without_improvement=jnp.zeros((), jnp.int32),
                                         train_loss=jnp.full((), jnp.nan, jnp.float32))

    @property
    def done(self) -> bool:
        """Whether training has stopped: at ``max_steps`` or after ``patience`` checks without improvement."""
        return (int(self.training.steps) >= self.settings.max_steps
                or int(self.training.checks_without_improvement) >= self.settings.patience)

    def train(self, num_steps: int | None = None, log: Callable[[int, dict[str, float]], None] | None = None,
              on_check: Callable[[int, DynamicsState], None] | None = None) -> None:
        """Train on, in whole chunks of ``eval_every`` steps, until :attr:`done` or ``num_steps``
        more steps have been taken (the last chunk may pass it: the checks fall where they would in
        one uninterrupted fit, so a fit run in pieces equals one run whole).

        :param num_steps: at most this many more steps (rounded up to whole checks); all if None.
        :param log: called as ``log(step, scalars)`` after every chunk with ``dynamics/train_loss``
            (mean per-member loss), ``dynamics/train_nll``, ``dynamics/holdout_mse`` (mean over the
            ``num_elites`` best members now), ``dynamics/best_holdout_mse`` (same, over snapshots)
            and ``dynamics/checks_without_improvement``.
        :param on_check: called as ``on_check(step, state)`` after every chunk with the model
            training would return if it stopped there (snapshots and elites so far), e.g. to measure
            how a model's rollouts change with training length in one run.
        """
        settings = self.settings
        steps = int(self.training.steps)
        target = settings.max_steps if num_steps is None else min(settings.max_steps, steps + num_steps)
        checks = int(self.training.checks)
        checks_without_improvement = int(self.training.checks_without_improvement)
        carry, train_loss = self.training.carry, self.training.train_loss
        while steps < target and checks_without_improvement < settings.patience:
            chunk_steps = min(settings.eval_every, settings.max_steps - steps)
            carry, chunk_metrics = _train_chunk(self.model, carry, self.splits, chunk_steps)
            host_metrics = jax.device_get(chunk_metrics)  # the one host sync per chunk
            steps += chunk_steps
            checks += 1
            checks_without_improvement = 0 if bool(host_metrics["any_improved"]) else checks_without_improvement + 1
            train_loss = host_metrics["train_loss"]
            self.training = DynamicsTraining(carry=carry, steps=jnp.asarray(steps, jnp.int32),
                                             checks=jnp.asarray(checks, jnp.int32),
                                             checks_without_improvement=jnp.asarray(checks_without_improvement,
                                                                                    jnp.int32),
                                             train_loss=jnp.asarray(train_loss, jnp.float32))
            if log is not None:
                log(steps, {"dynamics/train_loss": float(train_loss),
                            "dynamics/train_nll": float(host_metrics["train_nll"]),
                            "dynamics/holdout_mse": float(host_metrics["holdout_mse"]),
                            "dynamics/best_holdout_mse": float(host_metrics["best_holdout_mse"]),
                            "dynamics/checks_without_improvement": float(checks_without_improvement)})
            if on_check is not None:
                on_check(steps, self.state())

    def state(self) -> DynamicsState:
        """The model training returns if it stops now: each member's snapshot at its best holdout
        MSE, and the ``num_elites`` best members as elites."""
        carry = self.training.carry
        elites = jnp.argsort(carry.best_holdout_mse)[: self.settings.num_elites].astype(jnp.int32)
        return DynamicsState(params=carry.best_params, input_mean=jnp.asarray(self.input_mean),
                             input_std=jnp.asarray(self.input_std), elites=elites, holdout_mse=carry.best_holdout_mse)

    def metrics(self) -> dict[str, float]:
        """``dynamics/holdout_mse`` (mean over the elites of their snapshots' holdout MSE),
        ``dynamics/holdout_mse_best_member``, ``dynamics/train_loss``, ``dynamics/steps``,
        ``dynamics/holdout_checks``, ``dynamics/stopped_early`` (1 or 0), ``dynamics/holdout_size``."""
        training = self.training
        elite_mse = np.asarray(training.carry.best_holdout_mse)[np.asarray(self.state().elites)]
        return {
            "dynamics/holdout_mse": float(elite_mse.mean()),
            "dynamics/holdout_mse_best_member": float(elite_mse[0]),
            "dynamics/train_loss": float(training.train_loss),
            "dynamics/steps": float(training.steps),
            "dynamics/holdout_checks": float(training.checks),
            "dynamics/stopped_early": float(int(training.checks_without_improvement) >= self.settings.patience),
            "dynamics/holdout_size": float(self.holdout_size),
        }


def train_dynamics(observations: Any, actions: Any, rewards: Any, next_observations: Any, settings: DynamicsSettings,
                   key: jax.Array, log: Callable[[int, dict[str, float]], None] | None = None,
                   on_check: Callable[[int, DynamicsState], None] | None = None,
                   ) -> tuple[DynamicsState, dict[str, float]]:
    """Fit the ensemble to a dataset's transitions, whole (:class:`DynamicsFit`, which takes the
    same data arguments; ``log`` and ``on_check`` as its :meth:`~DynamicsFit.train`).

    :returns: the trained state and :meth:`DynamicsFit.metrics`.
    """
    fit = DynamicsFit(observations, actions, rewards, next_observations, settings, key)
    fit.train(log=log, on_check=on_check)
    return fit.state(), fit.metrics()


# --------------------------------------------------------------------------------------------
# Model steps
# --------------------------------------------------------------------------------------------


def elite_predictions(model: DynamicsModel, state: DynamicsState, observations: jax.Array,
                      actions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every elite's Gaussian over ``(Δs, r)``: means and log-variances of shape (E, B, obs_dim + 1).

    Only the elites are computed: their parameters are gathered from the stacked ensemble and the
    member module is vmapped over them.

    :param model: the ensemble's architecture.
    :param state: the trained ensemble.
    :param observations: raw observations (B, obs_dim).
    :param actions: actions (B, action_dim).
    """
    inputs = (jnp.concatenate([observations, actions], axis=-1) - state.input_mean) / state.input_std
    elite_params = jax.tree_util.tree_map(lambda leaf: leaf[state.elites], state.params["members"])
    member = model.member
    mean, logvar = jax.vmap(lambda params: member.apply({"params": params}, inputs))(elite_params)
    return cast(jax.Array, mean), cast(jax.Array, logvar)


@functools.partial(jax.jit, static_argnames=("model", "sample"))
def dynamics_step(model: DynamicsModel, state: DynamicsState, observations: jax.Array, actions: jax.Array,
                  key: jax.Array, sample: bool) -> tuple[jax.Array, jax.Array]:
    """One model step for a batch of raw observations and actions.

    With ``sample`` (the reference code), every elite predicts, each transition picks a random
    elite and draws ``(Δs, r)`` from its Gaussian. Without it, ``(Δs, r)`` is the mean over the
    elites of their means, and ``key`` is unused.

    :param model: the ensemble's architecture (static).
    :param state: the trained ensemble.
    :param observations: raw observations (B, obs_dim).
    :param actions: actions (B, action_dim).
    :param key: PRNG key of the draw.
    :param sample: draw from a random elite's Gaussian instead of averaging the elites' means (static).
    :returns: raw next observations (B, obs_dim) and rewards (B,).
    """
    mean, logvar = elite_predictions(model, state, observations, actions)
    if sample:
        noise_key, choice_key = jax.random.split(key)
        draws = mean + jnp.exp(0.5 * logvar) * jax.random.normal(noise_key, mean.shape, mean.dtype)
        choice = jax.random.randint(choice_key, mean.shape[1:2], 0, mean.shape[0])
        prediction = draws[choice, jnp.arange(mean.shape[1])]
    else:
        prediction = jnp.mean(mean, axis=0)
    return observations + prediction[..., : model.observation_dim], prediction[..., model.observation_dim]


# --------------------------------------------------------------------------------------------
# Termination functions
# --------------------------------------------------------------------------------------------
# Facts from Gymnasium 1.x's ``envs/mujoco/{hopper,walker2d,ant}_v5.py`` (``is_healthy`` and the
# default constructor arguments; the v4 files agree). With the default
# ``exclude_current_positions_from_observation=True`` the observation starts at qpos[1] (Hopper,
# Walker2d) or qpos[2] (Ant), so obs[0] is the torso height z and, for Hopper and Walker2d,
# obs[1] is the torso angle. A NaN fails every comparison, so a non-finite prediction of z
# always terminates.


def hopper_terminated(next_observations: jax.Array) -> jax.Array:
    """Hopper-v5: healthy iff ``z > 0.7``, ``−0.2 < angle < 0.2`` and ``−100 < obs[1:] < 100``
    elementwise (all strict, as ``HopperEnv.is_healthy``); terminated = not healthy.

    Gymnasium checks the state range on ``qpos[2:]`` and the *unclipped* ``qvel``, whereas the
    observation holds velocities clipped to ±10; on real data the velocity part of the check
    can therefore never fire, on model predictions it can.

    :param next_observations: raw observations (..., 11).
    """
    height, angle = next_observations[..., 0], next_observations[..., 1]
    healthy_state = jnp.all(jnp.abs(next_observations[..., 1:]) < 100.0, axis=-1)
    healthy = (height > 0.7) & (jnp.abs(angle) < 0.2) & healthy_state
    return ~healthy


def walker2d_terminated(next_observations: jax.Array) -> jax.Array:
    """Walker2d-v5: healthy iff ``0.8 < z < 2.0`` and ``−1 < angle < 1`` (strict, as
    ``Walker2dEnv.is_healthy``); terminated = not healthy.

    :param next_observations: raw observations (..., 17).
    """
    height, angle = next_observations[..., 0], next_observations[..., 1]
    return ~((height > 0.8) & (height < 2.0) & (jnp.abs(angle) < 1.0))


def ant_terminated(next_observations: jax.Array) -> jax.Array:
    """Ant-v5: healthy iff ``0.2 <= z <= 1.0`` (inclusive) and the state is finite (``AntEnv.is_healthy``);
    terminated = not healthy.

    Gymnasium checks finiteness of ``qpos`` (x, y included) and ``qvel``; we check every
    observation entry, which also covers the contact forces Ant-v5 appends by default.

    :param next_observations: raw observations (..., 105 by default, 27 without contact forces).
    """
    height = next_observations[..., 0]
    finite = jnp.all(jnp.isfinite(next_observations), axis=-1)
    return ~(finite & (height >= 0.2) & (height <= 1.0))


def never_terminated(next_observations: jax.Array) -> jax.Array:
    """HalfCheetah-v5, Swimmer-v5 (and any task without terminal states): always false.

    :param next_observations: raw observations (..., obs_dim).
    """
    return jnp.zeros(next_observations.shape[:-1], dtype=bool)


TERMINATION_FUNCTIONS: Mapping[str, TerminationFn] = {
    "Hopper": hopper_terminated,
    "Walker2d": walker2d_terminated,
    "Ant": ant_terminated,
    "HalfCheetah": never_terminated,
    "Swimmer": never_terminated,
}
"""Termination function of each Gymnasium MuJoCo family (the id before ``-v``), for versions in
:data:`CHECKED_VERSIONS`."""

CHECKED_VERSIONS: tuple[str, ...] = ("v4", "v5")
"""Environment versions whose ``is_healthy`` and observation layout the functions were checked against."""

_ENV_ID = re.compile(r"^(?P<family>[A-Za-z0-9]+)-(?P<version>v\d+)$")


def termination_function(env_id: str) -> TerminationFn:
    """The termination function of a Gymnasium MuJoCo environment id, e.g. ``"Hopper-v5"``.

    The id is split into family and version at ``-v`` and matched exactly (case-sensitive); a
    dataset name like ``"hopper"`` or ``"hopper-medium-v2"`` is not an environment id.

    :param env_id: a Gymnasium id such as ``Hopper-v5``, ``Walker2d-v5``, ``HalfCheetah-v5``,
        ``Ant-v5`` or ``Swimmer-v5`` (v4 ids map to the same functions).
    :raises ConfigError: for any other id, naming the known ones.
    """
    match = _ENV_ID.match(env_id)
    if match is None or match["family"] not in TERMINATION_FUNCTIONS or match["version"] not in CHECKED_VERSIONS:
        known = ", ".join(f"{family}-{CHECKED_VERSIONS[-1]}" for family in sorted(TERMINATION_FUNCTIONS))
        raise ConfigError(
            f"no termination function for environment {env_id!r}; known ids: {known} (and their "
            f"{', '.join(CHECKED_VERSIONS[:-1])} versions). Pass the Gymnasium id the dataset was collected in "
            "(e.g. 'Hopper-v5', not a dataset name), or write a function next_observations -> terminated "
            "for your task (hybridrl.offline.dynamics.never_terminated if it has no terminal states)."
        )
    return TERMINATION_FUNCTIONS[match["family"]]
