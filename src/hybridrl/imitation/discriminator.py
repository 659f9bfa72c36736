"""The discriminator of adversarial imitation (DAC, AILBoost): network, losses, gradient penalty, reward.

A discriminator ``D(s, a)`` scores state-action pairs: high on the expert's demonstrations, low on
the learner's own data. The network is an MLP on ``x = concat(s, a)`` (two hidden layers of 64,
ReLU, orthogonal init with gain sqrt(2), a linear output with gain 1, zero biases) followed by
``tanh``, so ``D`` lies in ``[-1, 1]``; the bound keeps the reward, and the ``exp(-D)`` of the
reverse-KL loss, on a fixed scale. Writing ``D_E`` for its values on expert rows and ``D_pi`` on
policy rows, the divergence losses are

* ``"js"`` (Jensen-Shannon; GAIL/DAC, Kostrikov et al. 2019): binary cross-entropy with logits ``D``,
  expert label 1 and policy label 0::

      L_js = mean_E[softplus(-D_E)] + mean_pi[softplus(D_pi)]

  Its unbounded optimum is ``D* = log(d_E / d_pi)``. The original code sums the per-row
  cross-entropies of both halves and divides by the (shared) batch size, which is exactly this sum
  of two means, i.e. twice the mean over the concatenated batch.
* ``"rkl"`` (reverse KL; AILBoost, Chang et al. 2024): the f-divergence variational bound
  (Nowozin et al. 2016) for ``KL(d_pi || d_E)`` with the critic ``T = -exp(-D)``. Maximising the
  bound ``-E_E[exp(-D)] - E_pi[D] + 1`` is minimising::

      L_rkl = mean_E[exp(-D_E)] + mean_pi[D_pi]

  Its unbounded optimum is ``D* = log(d_E / d_pi)`` too, where ``L_rkl = 1 - KL(d_pi || d_E)``. It
  starts near 1 (``D = 0``); with ``D`` in ``[-1, 1]`` its floor is ``exp(-1) - 1 ~ -0.632``
  (``D_E = 1``, ``D_pi = -1``).

Both make ``D`` an estimate of ``log(d_E / d_pi)`` (clipped to ``[-1, 1]`` by the tanh), so the
reward handed to the RL learner is ``r(s, a) = D(s, a)`` for either loss, with no further
transform: maximising ``E_pi[log(d_E / d_pi)]`` is minimising ``KL(d_pi || d_E)``, and for ``"js"``
it is DAC's ``log D - log(1 - D)`` written with logits.

The gradient penalty (WGAN-GP, Gulrajani et al. 2017, as DAC uses it) keeps ``D`` 1-Lipschitz
along lines between expert and policy rows, which stops the discriminator from overfitting the
few demonstrations and keeps the reward smooth::

    GP = mean_i (||grad_x D(x_hat_i)||_2 - 1)^2,   x_hat_i = u_i x_E,i + (1 - u_i) x_pi,i,   u_i ~ U(0, 1)

Expert row ``i`` is paired with policy row ``i``, so both halves of a batch must have the same
size. The total loss is ``L_div + gradient_penalty * GP`` (coefficient 10 by default), minimised
with Adam (learning rate 1e-4, default betas); the discriminator is trained continually, never
re-initialised.

References: Kostrikov et al. 2019, "Discriminator-Actor-Critic: Addressing Sample Inefficiency and
Reward Bias in Adversarial Imitation Learning" (ICLR); Chang et al. 2024, "Adversarial Imitation
Learning via Boosting" (ICLR); Gulrajani et al. 2017, "Improved Training of Wasserstein GANs";
Nowozin et al. 2016, "f-GAN".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hybridrl.core.networks import MLP, Params
from hybridrl.errors import ConfigError

Metrics = dict[str, jax.Array]
DivergenceName = Literal["js", "rkl"]
DIVERGENCES: tuple[DivergenceName, ...] = ("js", "rkl")

# --------------------------------------------------------------------------------------------
# Settings, network and train state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscriminatorSettings:
    """Hyper-parameters of the discriminator (frozen, so hashable and usable as a static argument).

    Defaults follow the AILBoost code.

    :param divergence: ``"js"`` (DAC's binary cross-entropy) or ``"rkl"`` (AILBoost's reverse-KL
        bound); see the module docstring.
    :param hidden_sizes: hidden widths of the MLP.
    :param learning_rate: Adam step size (constant).
    :param gradient_penalty: coefficient of the gradient-penalty term; 0 disables it (and then the
        expert and policy halves of a batch may differ in size).
    """

    divergence: DivergenceName = "js"
    hidden_sizes: tuple[int, ...] = (64, 64)
    learning_rate: float = 1e-4
    gradient_penalty: float = 10.0

    def __post_init__(self) -> None:
        if self.divergence not in DIVERGENCES:
            raise ConfigError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        if not self.hidden_sizes or any(width < 1 for width in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes must be one or more positive widths, got {self.hidden_sizes}")
        if self.learning_rate <= 0.0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.gradient_penalty < 0.0:
            raise ConfigError(f"gradient_penalty must be >= 0 (0 disables it), got {self.gradient_penalty}")


def _score_mlp(hidden_sizes: Sequence[int]) -> MLP:
    # One definition for the Flax path and the numpy path, so the two cannot drift apart.
    return MLP(tuple(hidden_sizes), output_size=1, activation="relu", hidden_gain=math.sqrt(2.0), output_gain=1.0)


class Discriminator(nn.Module):
    """``D(s, a) = tanh(MLP(concat(s, a)))``, one value in ``[-1, 1]`` per row.

    :param hidden_sizes: hidden widths of the ReLU MLP.
    """

    hidden_sizes: Sequence[int] = (64, 64)

    def setup(self) -> None:
        self.mlp = _score_mlp(self.hidden_sizes)

    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        """``D`` for each row of ``observations`` ``(B, obs_dim)`` and ``actions`` ``(B, act_dim)``;
        shape ``(B,)``."""
        return self.score(jnp.concatenate([observations, actions], axis=-1))

    def score(self, inputs: jax.Array) -> jax.Array:
        """``D`` on already concatenated rows ``concat(s, a)``, shape ``(B,)``; the gradient penalty
        differentiates this with respect to ``inputs``."""
        return jnp.tanh(self.mlp(inputs)[..., 0])

    @nn.nowrap
    def apply_numpy(self, params: Params, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``apply`` in numpy; ``params`` is this module's parameter dict (without ``"params"``)."""
        inputs = np.concatenate([observations, actions], axis=-1)
        return cast(np.ndarray, np.tanh(_score_mlp(self.hidden_sizes).apply_numpy(params["mlp"], inputs)[..., 0]))


@struct.dataclass
class DiscriminatorState:
    """Everything a discriminator step changes.

    :param params: the discriminator's parameters (without the ``"params"`` key).
    :param opt_state: Adam state over ``params``.
    """

    params: Any
    opt_state: optax.OptState


def make_discriminator(settings: DiscriminatorSettings) -> Discriminator:
    """The discriminator network of ``settings`` (hashable, so jitted functions take it statically).

    :param settings: hyper-parameters; only ``hidden_sizes`` is read.
    """
    return Discriminator(hidden_sizes=tuple(settings.hidden_sizes))


def discriminator_optimizer(settings: DiscriminatorSettings) -> optax.GradientTransformation:
    """Adam with ``settings.learning_rate`` and default betas (the AILBoost code's optimiser).

    :param settings: hyper-parameters.
    """
    return optax.adam(settings.learning_rate)


@functools.partial(jax.jit, static_argnames=("network", "observation_dim", "action_dim"))
def _init_params(network: Discriminator, observation_dim: int, action_dim: int, key: jax.Array) -> Any:
    # Jitted: one compilation instead of one per eager operation of Flax's init.
    return network.init(key, jnp.zeros((1, observation_dim), jnp.float32),
                        jnp.zeros((1, action_dim), jnp.float32))["params"]


def init_discriminator_state(settings: DiscriminatorSettings, observation_dim: int, action_dim: int,
                             key: jax.Array) -> DiscriminatorState:
    """Fresh parameters and zeroed Adam moments.

    :param settings: hyper-parameters.
    :param observation_dim: size of a (flat) observation.
    :param action_dim: number of action dimensions.
    :param key: PRNG key of the initialisation.
    """
    params = _init_params(make_discriminator(settings), observation_dim, action_dim, key)
    return DiscriminatorState(params=params, opt_state=discriminator_optimizer(settings).init(params))


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def divergence_loss(divergence: DivergenceName, expert_values: jax.Array, policy_values: jax.Array) -> jax.Array:
    """The divergence loss on discriminator values (scalar; see the module docstring).

    * ``"js"``: ``mean_E[softplus(-D_E)] + mean_pi[softplus(D_pi)]``;
    * ``"rkl"``: ``mean_E[exp(-D_E)] + mean_pi[D_pi]``.

    :param divergence: ``"js"`` or ``"rkl"``.
    :param expert_values: ``D`` on expert rows, shape ``(B_E,)``.
    :param policy_values: ``D`` on policy rows, shape ``(B_pi,)``.
    """
    if divergence == "js":
        return jnp.mean(jax.nn.softplus(-expert_values)) + jnp.mean(jax.nn.softplus(policy_values))
    if divergence == "rkl":
        return jnp.mean(jnp.exp(-expert_values)) + jnp.mean(policy_values)
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")


def _scores(network: Discriminator, params: Any, inputs: jax.Array) -> jax.Array:
    """``D`` on concatenated rows ``concat(s, a)``, shape ``(B,)``."""
    return cast(jax.Array, network.apply({"params": params}, inputs, method=Discriminator.score))


def _safe_norm(vectors: jax.Array) -> jax.Array:
    # ||v||_2 per row whose gradient is 0, not NaN, at v = 0: a ReLU network can have an exactly
    # zero input gradient (every unit on the path inactive), and d sqrt / dx is infinite at 0.
    squared = jnp.sum(jnp.square(vectors), axis=-1)
    positive = squared > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def gradient_penalty(network: Discriminator, params: Any, expert_inputs: jax.Array, policy_inputs: jax.Array,
                     key: jax.Array) -> jax.Array:
    """WGAN-GP penalty ``mean_i (||grad_x D(x_hat_i)||_2 - 1)^2`` (without its coefficient).

    ``x_hat = u * expert_inputs + (1 - u) * policy_inputs`` with ``u = jax.random.uniform(key, (B, 1))``,
    one mixing weight per row, pairing expert row ``i`` with policy row ``i``.

    :param network: the discriminator.
    :param params: its parameters (without ``"params"``).
    :param expert_inputs: expert rows ``concat(s, a)``, shape ``(B, obs_dim + act_dim)``.
    :param policy_inputs: policy rows, the same shape.
    :param key: PRNG key of ``u``.
    :raises ValueError: if the two inputs differ in shape (checked when tracing).
    """
    if expert_inputs.shape != policy_inputs.shape:
        raise ValueError(f"the gradient penalty pairs expert row i with policy row i, so both batches need the "
                         f"same shape; got expert {expert_inputs.shape} and policy {policy_inputs.shape}")
    mix = jax.random.uniform(key, (expert_inputs.shape[0], 1), dtype=expert_inputs.dtype)
    interpolates = mix * expert_inputs + (1.0 - mix) * policy_inputs

    def total_score(inputs: jax.Array) -> jax.Array:
        return jnp.sum(_scores(network, params, inputs))

    # D acts on each row alone, so the gradient of the sum holds every row's own input gradient.
    input_gradients = jax.grad(total_score)(interpolates)
    return jnp.mean(jnp.square(_safe_norm(input_gradients) - 1.0))


def discriminator_loss(params: Any, network: Discriminator, settings: DiscriminatorSettings,
                       expert_observations: jax.Array, expert_actions: jax.Array, policy_observations: jax.Array,
                       policy_actions: jax.Array, key: jax.Array) -> tuple[jax.Array, Metrics]:
    """``divergence_loss + settings.gradient_penalty * gradient_penalty`` on one batch.

    :param params: the discriminator's parameters (the argument differentiated).
    :param network: the discriminator.
    :param settings: hyper-parameters.
    :param expert_observations: ``(B, obs_dim)`` from the demonstrations.
    :param expert_actions: ``(B, act_dim)``.
    :param policy_observations: ``(B, obs_dim)`` from the learner's data.
    :param policy_actions: ``(B, act_dim)``.
    :param key: PRNG key of the gradient penalty's mixing weights.
    :return: the loss and the metrics ``discriminator/loss``, ``discriminator/divergence_loss``,
        ``discriminator/gradient_penalty`` (0 when disabled), ``discriminator/expert_value`` and
        ``discriminator/policy_value`` (mean ``D`` on each half).
    """
    expert_inputs = jnp.concatenate([expert_observations, expert_actions], axis=-1)
    policy_inputs = jnp.concatenate([policy_observations, policy_actions], axis=-1)
    # One forward pass over both halves instead of two.
    values = _scores(network, params, jnp.concatenate([expert_inputs, policy_inputs], axis=0))
    expert_values, policy_values = values[:expert_inputs.shape[0]], values[expert_inputs.shape[0]:]
    divergence = divergence_loss(settings.divergence, expert_values, policy_values)
    if settings.gradient_penalty > 0.0:
        penalty = gradient_penalty(network, params, expert_inputs, policy_inputs, key)
    else:  # skip the second-order pass entirely
        penalty = jnp.zeros((), divergence.dtype)
    loss = divergence + settings.gradient_penalty * penalty
    metrics: Metrics = {
        "discriminator/loss": loss,
        "discriminator/divergence_loss": divergence,
        "discriminator/gradient_penalty": penalty,
        "discriminator/expert_value": jnp.mean(expert_values),
        "discriminator/policy_value": jnp.mean(policy_values),
    }
    return loss, metrics


def discriminator_update(state: DiscriminatorState, expert_observations: jax.Array, expert_actions: jax.Array,
                         policy_observations: jax.Array, policy_actions: jax.Array, key: jax.Array, *,
                         network: Discriminator,
                         settings: DiscriminatorSettings) -> tuple[DiscriminatorState, Metrics]:
    """One Adam step on :func:`discriminator_loss`. Pure and traceable: callers jit it (with
    ``network`` and ``settings`` static) or call it inside their own jitted scans.

    :param state: parameters and Adam state.
    :param expert_observations: ``(B, obs_dim)`` from the demonstrations.
    :param expert_actions: ``(B, act_dim)``.
    :param policy_observations: ``(B, obs_dim)`` from the learner's data.
    :param policy_actions: ``(B, act_dim)``.
    :param key: PRNG key of the gradient penalty.
    :param network: the discriminator, from :func:`make_discriminator`.
    :param settings: hyper-parameters.
    :return: the new state and the metrics of :func:`discriminator_loss`, measured before the step.
    """
    grads, metrics = jax.grad(discriminator_loss, has_aux=True)(
        state.params, network, settings, expert_observations, expert_actions, policy_observations,
        policy_actions, key)
    updates, opt_state = discriminator_optimizer(settings).update(grads, state.opt_state, state.params)
    return DiscriminatorState(params=optax.apply_updates(state.params, updates), opt_state=opt_state), metrics


def discriminator_reward(network: Discriminator, params: Any, observations: jax.Array,
                         actions: jax.Array) -> jax.Array:
    """The imitation reward ``r(s, a) = D(s, a)`` in ``[-1, 1]``, shape ``(B,)``; detached, since a
    learner treats it as data, never as something to differentiate.

    :param network: the discriminator.
    :param params: its parameters (without ``"params"``).
    :param observations: ``(B, obs_dim)``.
    :param actions: ``(B, act_dim)``.
    """
    return jax.lax.stop_gradient(cast(jax.Array, network.apply({"params": params}, observations, actions)))
