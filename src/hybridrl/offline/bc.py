"""Behaviour cloning, single or as Uni-O4's ensemble with a disagreement term: the functional core.

``num_members`` Gaussian policies (one batched :class:`Ensemble`, stacked parameters) are fitted
on one shared minibatch ``(s, a)`` per step. With ``lp_i = log pi_i(a|s)``, member ``i`` minimises
the batch mean of

* ``"none"``: ``-lp_i`` (plain BC);
* ``"paper"`` (Uni-O4 Eq. 6 as the official code implements it, ``BC_ensemble.py: joint_loss``)::

      -lp_i - alpha * (lp_i - sg[max_{j != i} lp_j])

  The max term is detached, so the gradient is exactly ``(1 + alpha) * grad(-lp_i)``: plain BC with
  the step size scaled by ``1 + alpha`` under SGD, and under Adam (invariant to a constant gradient
  scale up to its ``eps``) plain BC itself. Members differ only through their initialisation.
  The code updates members one after another in random order, refreshing the others' log-probs;
  because those enter only through the detached max, updating all members at once (vmapped, as
  here) gives exactly the same gradients.
* ``"kl"`` (a real disagreement gradient, the code's ``kl_type='distribution'`` idea)::

      -lp_i - alpha * min(KL(pi_i(.|s) || sg[pi_{j*}(.|s)]), max_kl),   j* = argmax_{j != i} lp_j

  Each member is pushed away from the other member that explains the data action best, while the
  likelihood term keeps it on the data. Clipping the per-sample KL at ``max_kl`` bounds the bonus
  (and stops its gradient once reached), so a member gives up at most ``alpha * max_kl`` nats of
  likelihood per sample for diversity.

With one member there is no ``j != i`` and every mode is plain BC.

The policy is Uni-O4's ``GaussPolicyMLP``: tanh-bounded mean, state-dependent
``log sigma = low + (high - low) (tanh(x) + 1) / 2`` in ``log_std_bounds`` = [-5, 0], and a plain
(unsquashed) Normal. Differences from the code: hidden layers use orthogonal gain sqrt(2) (the code:
gain 1) and the two heads gain ``mean_gain`` (1, as the code).

Conventions: observations are already normalised by the caller; the dataset lives on the device as
one :class:`TransitionBatch`; :func:`bc_train_steps` runs a chunk of steps as one jitted ``lax.scan``
that samples minibatches (uniformly, with replacement) from ``state.key``. One Adam over the
stacked parameters keeps separate moments per member, as the code's one optimiser per policy.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
import optax
from flax import struct

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.distributions import DiagGaussian, kl_divergence
from hybridrl.core.evaluation import ActFunction
from hybridrl.core.networks import Ensemble, GaussianPolicy, member_params
from hybridrl.core.seeding import Seeder
from hybridrl.data.dataset import TransitionBatch, sample_transitions
from hybridrl.errors import ConfigError
from hybridrl.offline.common import (
    OfflineConfig,
    OfflineData,
    OfflineTrainer,
    Stage,
    gaussian_mean_policy,
    host_scalars,
    train_seeds,
)

Metrics = dict[str, jax.Array]
Diversity = Literal["paper", "kl", "none"]
DIVERSITY_MODES: tuple[Diversity, ...] = ("paper", "kl", "none")

# --------------------------------------------------------------------------------------------
# Settings, networks and train state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BCSettings:
    """Hyper-parameters of ensemble BC (frozen, so hashable and usable as a static argument).

    Defaults follow the Uni-O4 code except ``batch_size`` (the code: 512) and the widths (the code:
    3 x 256).

    :param num_members: ensemble size ``n`` (Uni-O4: 4; 1 = single-policy BC).
    :param hidden: hidden widths of each member.
    :param activation: hidden activation (Uni-O4: relu; tanh for halfcheetah).
    :param learning_rate: Adam step size (constant).
    :param batch_size: minibatch size, shared by all members.
    :param alpha: weight of the disagreement term (Uni-O4: 0.1).
    :param diversity: ``"paper"`` (the official code; gradient = BC x (1 + alpha)), ``"kl"`` (a real
        disagreement gradient) or ``"none"`` (plain BC per member); see the module docstring.
    :param log_std_bounds: ``(low, high)`` of the smoothly bounded, state-dependent log-std.
    :param max_kl: clip of the per-sample KL in ``"kl"`` mode, in nats.
    :param mean_gain: orthogonal-init gain of the mean and log-std heads.
    """

    num_members: int = 4
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    learning_rate: float = 1e-4
    batch_size: int = 256
    alpha: float = 0.1
    diversity: Diversity = "paper"
    log_std_bounds: tuple[float, float] = (-5.0, 0.0)
    max_kl: float = 10.0
    mean_gain: float = 1.0

    def __post_init__(self) -> None:
        if self.num_members < 1:
            raise ConfigError(f"num_members must be >= 1 (1 = single-policy BC), got {self.num_members}")
        if self.diversity not in DIVERSITY_MODES:
            raise ConfigError(f"diversity must be one of {DIVERSITY_MODES}, got {self.diversity!r}")
        if self.batch_size < 1 or self.learning_rate <= 0.0:
            raise ConfigError(f"batch_size and learning_rate must be positive, got {self.batch_size}, "
                              f"{self.learning_rate}")
        if self.alpha < 0.0 or self.max_kl <= 0.0:
            raise ConfigError(f"need alpha >= 0 and max_kl > 0, got {self.alpha}, {self.max_kl}")
        low, high = self.log_std_bounds
        if not low < high:
            raise ConfigError(f"log_std_bounds must be (low, high) with low < high, got {self.log_std_bounds}")


@dataclass(frozen=True)
class BCNetworks:
    """The member policy and the ensemble of it (hashable, so jitted functions take them statically).

    :param policy: one member; use it with :func:`hybridrl.core.networks.member_params` to act with
        a single member (``policy.apply`` or ``policy.apply_numpy``).
    :param ensemble: ``Ensemble(policy, num_members)``; ``ensemble.apply`` returns a
        :class:`DiagGaussian` with a leading member axis.
    """

    policy: GaussianPolicy
    ensemble: Ensemble


@struct.dataclass
class BCState:
    """Everything a BC step changes.

    :param params: the ensemble's stacked parameters (leading member axis).
    :param opt_state: Adam state over the stacked parameters.
    :param key: PRNG key of minibatch sampling in :func:`bc_train_steps`.
    :param step: int32 scalar, steps taken.
    """

    params: Any
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array


def make_bc_policy(settings: BCSettings, action_dim: int) -> GaussianPolicy:
    """One Uni-O4 BC policy: tanh mean, state-dependent log-std smoothly bounded in
    ``settings.log_std_bounds``, unsquashed Normal.

    :param settings: widths, activation, log-std bounds, head gain.
    :param action_dim: number of action dimensions.
    """
    return GaussianPolicy(action_dim=action_dim, hidden_sizes=settings.hidden, activation=settings.activation,
                          state_dependent_std=True, log_std_bounds=settings.log_std_bounds,
                          soft_log_std_bounds=True, tanh_mean=True, mean_gain=settings.mean_gain)


def make_bc_networks(settings: BCSettings, action_dim: int) -> BCNetworks:
    """The member policy and ``Ensemble(policy, settings.num_members)``.

    :param settings: hyper-parameters.
    :param action_dim: number of action dimensions.
    """
    policy = make_bc_policy(settings, action_dim)
    return BCNetworks(policy=policy, ensemble=Ensemble(policy, settings.num_members))


def _optimizer(settings: BCSettings) -> optax.GradientTransformation:
    return optax.adam(settings.learning_rate)


@functools.partial(jax.jit, static_argnames=("ensemble", "observation_dim"))
def _init_params(ensemble: Ensemble, observation_dim: int, key: jax.Array) -> tuple[Any, jax.Array]:
    # Jitted: one compilation instead of one per eager operation of Flax's init.
    init_key, state_key = jax.random.split(key)
    return ensemble.init(init_key, jnp.zeros((1, observation_dim), jnp.float32))["params"], state_key


def init_bc_state(settings: BCSettings, action_dim: int, observation_dim: int, key: jax.Array) -> BCState:
    """A fresh state: each member initialised with its own key, zeroed Adam, ``step = 0``.

    :param settings: hyper-parameters.
    :param action_dim: number of action dimensions.
    :param observation_dim: size of a (flat, normalised) observation.
    :param key: PRNG key; split into the initialisation key and the sampling key of the state.
    """
    params, state_key = _init_params(make_bc_networks(settings, action_dim).ensemble, observation_dim, key)
    return BCState(params=params, opt_state=_optimizer(settings).init(params), key=state_key,
                   step=jnp.zeros((), jnp.int32))


# --------------------------------------------------------------------------------------------
# Losses (pure functions of the members' log-probs and distributions)
# --------------------------------------------------------------------------------------------


def _others(log_probs: jax.Array) -> jax.Array:
    """``(M, M, B)``: entry ``[i, j]`` is ``lp_j``, or ``-inf`` where ``j == i``."""
    num_members = log_probs.shape[0]
    own = jnp.eye(num_members, dtype=bool)[:, :, None]
    return jnp.where(own, -jnp.inf, jnp.broadcast_to(log_probs[None], (num_members, *log_probs.shape)))


def max_other_log_prob(log_probs: jax.Array) -> jax.Array:
    """``max_{j != i} lp_j`` per member ``i`` and sample, shape ``(M, B)`` (needs ``M >= 2``).

    :param log_probs: ``lp[i, b] = log pi_i(a_b|s_b)``, shape ``(M, B)``.
    """
    return jnp.max(_others(log_probs), axis=1)


def best_other_member(log_probs: jax.Array) -> jax.Array:
    """``j* = argmax_{j != i} lp_j`` per member ``i`` and sample, int ``(M, B)`` (needs ``M >= 2``).

    :param log_probs: ``(M, B)``.
    """
    return jnp.argmax(_others(log_probs), axis=1)


def plain_bc_loss(log_probs: jax.Array) -> jax.Array:
    """Per-member negative log-likelihood ``mean_b(-lp_i)``, shape ``(M,)``.

    :param log_probs: ``(M, B)``.
    """
    return -jnp.mean(log_probs, axis=1)


def paper_bc_loss(log_probs: jax.Array, alpha: float) -> jax.Array:
    """Uni-O4's ensemble loss as coded: ``mean_b(-lp_i - alpha (lp_i - sg[max_{j != i} lp_j]))``,
    shape ``(M,)``. Its gradient is ``(1 + alpha)`` times plain BC's. One member: plain BC.

    :param log_probs: ``(M, B)``, differentiable.
    :param alpha: weight of the disagreement term.
    """
    if log_probs.shape[0] == 1:
        return plain_bc_loss(log_probs)
    others_best = max_other_log_prob(jax.lax.stop_gradient(log_probs))
    return jnp.mean(-log_probs - alpha * (log_probs - others_best), axis=1)


def kl_bc_loss(log_probs: jax.Array, kl_to_others: jax.Array, alpha: float, max_kl: float) -> jax.Array:
    """The KL-disagreement loss ``mean_b(-lp_i - alpha min(KL_b(pi_i || sg[pi_{j*}]), max_kl))``,
    ``j* = argmax_{j != i} lp_j``, shape ``(M,)``. One member: plain BC.

    :param log_probs: ``(M, B)``.
    :param kl_to_others: ``KL(pi_i(.|s_b) || sg[pi_j(.|s_b)])``, ``(M, M, B)`` (see :func:`pairwise_kl`);
        the diagonal is never selected.
    :param alpha: weight of the disagreement term.
    :param max_kl: per-sample clip of the KL.
    """
    if log_probs.shape[0] == 1:
        return plain_bc_loss(log_probs)
    partner = best_other_member(jax.lax.stop_gradient(log_probs))
    kl = jnp.take_along_axis(kl_to_others, partner[:, None, :], axis=1)[:, 0, :]
    return jnp.mean(-log_probs - alpha * jnp.minimum(kl, max_kl), axis=1)


def pairwise_kl(distribution: DiagGaussian, stop_gradient_second: bool = False) -> jax.Array:
    """``KL(pi_i(.|s_b) || pi_j(.|s_b))`` for every member pair, shape ``(M, M, B)``.

    :param distribution: the ensemble's output, mean and log-std of shape ``(M, B, A)``.
    :param stop_gradient_second: detach ``pi_j`` (the loss of ``"kl"`` mode moves only ``pi_i``).
    """
    mean, log_std = distribution.mean, distribution.log_std
    if stop_gradient_second:
        other_mean, other_log_std = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(log_std)
    else:
        other_mean, other_log_std = mean, log_std
    first = DiagGaussian(mean=mean[:, None], log_std=log_std[:, None])
    second = DiagGaussian(mean=other_mean[None], log_std=other_log_std[None])
    return cast(jax.Array, kl_divergence(first, second))


def mean_pairwise_kl(distribution: DiagGaussian) -> jax.Array:
    """Disagreement: ``KL(pi_i || pi_j)`` averaged over ordered pairs ``i != j`` and states; 0 for
    one member.

    :param distribution: the ensemble's output, ``(M, B, A)``.
    """
    num_members = distribution.mean.shape[0]
    if num_members == 1:
        return jnp.zeros((), distribution.mean.dtype)
    kl = pairwise_kl(distribution)
    off_diagonal = 1.0 - jnp.eye(num_members, dtype=kl.dtype)
    return jnp.sum(jnp.mean(kl, axis=2) * off_diagonal) / (num_members * (num_members - 1))


def member_losses(distribution: DiagGaussian, actions: jax.Array, settings: BCSettings) -> jax.Array:
    """Each member's loss under ``settings.diversity``, shape ``(M,)``.

    :param distribution: the ensemble's output at the batch states, ``(M, B, A)``.
    :param actions: the data's actions ``(B, A)``.
    :param settings: ``diversity``, ``alpha``, ``max_kl``.
    """
    log_probs = distribution.log_prob(actions)
    if settings.diversity == "paper":
        return paper_bc_loss(log_probs, settings.alpha)
    if settings.diversity == "kl":
        return kl_bc_loss(log_probs, pairwise_kl(distribution, stop_gradient_second=True), settings.alpha,
                          settings.max_kl)
    return plain_bc_loss(log_probs)


# --------------------------------------------------------------------------------------------
# Update
# --------------------------------------------------------------------------------------------


def ensemble_distribution(networks: BCNetworks, params: Any, observations: jax.Array) -> DiagGaussian:
    """Every member's action distribution at ``observations``: mean and log-std ``(M, B, A)``.

    :param networks: from :func:`make_bc_networks`.
    :param params: the ensemble's stacked parameters.
    :param observations: normalised observations ``(B, obs_dim)``.
    """
    return cast(DiagGaussian, networks.ensemble.apply({"params": params}, observations))


@functools.partial(jax.jit, static_argnames=("networks", "settings"))
def bc_update(state: BCState, batch: TransitionBatch, *, networks: BCNetworks,
              settings: BCSettings) -> tuple[BCState, Metrics]:
    """One Adam step of every member on the shared ``batch`` (only observations and actions are read).

    The gradient is that of ``sum_i loss_i``; each member's parameters reach only its own loss (the
    others enter detached), so member ``i`` gets exactly ``grad loss_i``.

    :param state: the current state; ``state.key`` is not used (sampling lives in :func:`bc_train_steps`).
    :param batch: a minibatch of normalised transitions.
    :param networks: from :func:`make_bc_networks`.
    :param settings: hyper-parameters.
    :return: the new state and scalar metrics measured before the step: ``bc/loss`` (mean over
        members), ``bc/nll`` (mean NLL), ``bc/nll_member_{i}``, ``bc/disagreement_kl``
        (:func:`mean_pairwise_kl`), ``bc/mean_abs_error`` (``|mu_i(s) - a|``, mean over members,
        samples and dimensions) and ``bc/log_std_mean``.
    """

    def objective(params: Any) -> tuple[jax.Array, tuple[jax.Array, DiagGaussian]]:
        distribution = ensemble_distribution(networks, params, batch.observations)
        losses = member_losses(distribution, batch.actions, settings)
        return jnp.sum(losses), (losses, distribution)

    (_, (losses, distribution)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = _optimizer(settings).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    nll = -jnp.mean(distribution.log_prob(batch.actions), axis=1)
    metrics: Metrics = {
        "bc/loss": jnp.mean(losses),
        "bc/nll": jnp.mean(nll),
        "bc/disagreement_kl": mean_pairwise_kl(distribution),
        "bc/mean_abs_error": jnp.mean(jnp.abs(distribution.mean - batch.actions[None])),
        "bc/log_std_mean": jnp.mean(distribution.log_std),
    }
    for member in range(settings.num_members):
        metrics[f"bc/nll_member_{member}"] = nll[member]
    new_state = BCState(params=params, opt_state=opt_state, key=state.key, step=state.step + 1)
    return new_state, metrics


@functools.partial(jax.jit, static_argnames=("num_steps", "networks", "settings"))
def bc_train_steps(state: BCState, data: TransitionBatch, num_steps: int, *, networks: BCNetworks,
                   settings: BCSettings) -> tuple[BCState, Metrics]:
    """``num_steps`` :func:`bc_update` steps as one jitted ``lax.scan``, each on a minibatch of
    ``settings.batch_size`` transitions drawn from ``data`` with a key split off ``state.key``.

    :param state: the current state.
    :param data: the whole (normalised) dataset on the device.
    :param num_steps: steps in this chunk (static: each distinct value compiles once).
    :param networks: from :func:`make_bc_networks`.
    :param settings: hyper-parameters.
    :return: the new state and each metric averaged over the chunk.
    """

    def one_step(carry: BCState, _: None) -> tuple[BCState, Metrics]:
        key, sample_key = jax.random.split(carry.key)
        batch = sample_transitions(data, sample_key, settings.batch_size)
        return bc_update(dataclasses.replace(carry, key=key), batch, networks=networks, settings=settings)

    state, metrics = jax.lax.scan(one_step, state, None, length=num_steps)
    return state, {name: jnp.mean(values) for name, values in metrics.items()}


# --------------------------------------------------------------------------------------------
# The BC baseline: `hybridrl train bc --dataset ...`
# --------------------------------------------------------------------------------------------


@dataclass
class BCConfig(OfflineConfig):
    """Behaviour-cloning options. ``hybridrl train bc --help`` shows each with its preset default."""

    steps: int = 400_000
    """Gradient steps."""
    batch_size: int = 512
    """Minibatch size."""
    learning_rate: float = 1e-4
    """Adam step size."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the policy."""
    activation: str = "relu"
    """Hidden activation."""
    num_members: int = 1
    """Ensemble size (1: plain BC; the evaluated policy is member 0)."""
    alpha: float = 0.1
    """Weight of the disagreement term when num_members > 1."""
    diversity: Literal["paper", "kl", "none"] = "paper"
    """Disagreement term when num_members > 1 (see docs/algorithms/uni-o4.md)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix for every impossible setting."""
        self.validate_offline()
        for name in ("steps", "batch_size", "num_members"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning-rate must be positive, got {self.learning_rate}")


BC_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(steps=200, batch_size=64, hidden=(32, 32), eval_interval=0, eval_episodes=1,
                  checkpoint_interval=100, log_interval=100),
    # Uni-O4's BC stage at its cpu size, so the baseline is the starting point of Uni-O4.
    "cpu": dict(steps=20_000, batch_size=256, learning_rate=3e-4, hidden=(256, 256), eval_interval=10_000,
                checkpoint_interval=10_000),
    # Uni-O4's BC settings (reference section 2).
    "paper": dict(eval_interval=50_000, checkpoint_interval=50_000),
}


class BCTrainer(OfflineTrainer):
    """Behaviour cloning on a dataset, evaluated in its environment."""

    algorithm = "bc"

    def __init__(self, config: BCConfig, run_dir: Path, progress: bool = False,
                 data: OfflineData | None = None) -> None:
        super().__init__(config, run_dir, progress, data)
        self.config: BCConfig = config
        self.settings = BCSettings(num_members=config.num_members, hidden=config.hidden,
                                   activation=config.activation, learning_rate=config.learning_rate,
                                   batch_size=config.batch_size, alpha=config.alpha, diversity=config.diversity)
        self.networks = make_bc_networks(self.settings, self.data.action_dim)
        key = Seeder(config.seed).jax_key("bc")
        self.state = init_bc_state(self.settings, self.data.action_dim, self.data.observation_dim, key)

    def stages(self) -> list[Stage]:
        """One stage: ``steps`` gradient steps."""
        return [Stage("bc", self.config.steps, self._train_chunk)]

    def _train_chunk(self, steps: int) -> dict[str, float]:
        self.state, metrics = self.train_steps(self.state, self.data.transitions, steps)
        return host_scalars(metrics)

    def train_steps(self, state: BCState, data: TransitionBatch, num_steps: int) -> tuple[BCState, Metrics]:
        """``num_steps`` gradient steps from ``state`` (pure; seeds trained together vmap it)."""
        return bc_train_steps(state, data, num_steps, networks=self.networks, settings=self.settings)

    def deterministic_policy(self) -> ActFunction:
        """Member 0's mean action for raw observations."""
        return gaussian_mean_policy(self.networks.policy, member_params(self.state.params, 0), self.data.normalizer)

    def checkpoint_state(self) -> BCState:
        """The BC state."""
        return self.state

    def restore_checkpoint_state(self, state: BCState) -> None:
        """Take back :meth:`checkpoint_state` output."""
        self.state = state


def _make_trainer(config: BCConfig, run_dir: Path, progress: bool) -> BCTrainer:
    return BCTrainer(config, run_dir, progress)


def _train_seeds(configs: list[BCConfig], run_dirs: list[Path], progress: bool) -> list[dict[str, Any]]:
    return train_seeds(BCTrainer, configs, run_dirs, progress)


ALGORITHM = AlgorithmSpec(name="bc", config_cls=BCConfig, presets=BC_PRESETS, make_trainer=_make_trainer,
                          summary="Behaviour cloning (Gaussian NLL), single or a Uni-O4 ensemble",
                          train_seeds=_train_seeds)
