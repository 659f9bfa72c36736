"""Sampling error: how far the actions in a batch of data are from the policy that should have
produced them (Corrado & Hanna, "On-Policy Policy Gradient RL Without On-Policy Sampling").

``SE = KL(pi_D || pi_theta)``, where ``pi_D`` is the maximum-likelihood ("empirical") policy of
the data ``D`` and ``pi_theta`` the target policy. Two ways to get ``pi_D``:

* **counts** (discrete actions, states that repeat): ``pi_D(a|s) = n(s, a) / n(s)``, exact.
* **fitted** (any action space): a copy of the target policy whose torso is frozen and whose
  output layer (and log-std) is fitted to ``D`` by full-batch Adam (learning rate decayed
  linearly to 0), as in the authors' code, which follows the ROS paper. Freezing the torso keeps
  ``pi_D`` from memorising every state; it also means the fit runs on precomputed features, so
  thousands of epochs cost well under a second.

Either way the KL is the k1 estimate on the data, ``mean_D[log pi_D(a|s) - log pi_theta(a|s)]``
(the authors' 2025 form). Compare sampling error only at equal ``|D|``: for on-policy data it
shrinks roughly like ``1 / |D|``.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hybridrl.core.networks import CategoricalPolicy

SamplingErrorMethod = Literal["auto", "counts", "fitted"]


def sampling_error(policy: nn.Module, params: Any, observations: np.ndarray, actions: np.ndarray, *,
                   method: SamplingErrorMethod = "auto", fit_epochs: int = 2000,
                   fit_learning_rate: float = 1e-3) -> float:
    """``KL(pi_D || pi_theta)`` of the data ``(observations, actions)`` under the target policy.

    :param policy: the target's network (a :class:`~hybridrl.core.networks.GaussianPolicy` or
        :class:`~hybridrl.core.networks.CategoricalPolicy`).
    :param params: the target's parameters for ``policy``.
    :param observations: the buffer's observations, as the policy sees them (normalised), ``(N, ...)``.
    :param actions: the buffer's actions, ``(N, ...)``.
    :param method: ``"counts"`` (discrete only), ``"fitted"``, or ``"auto"``: counts for discrete
        actions when states repeat (at most half as many distinct states as samples), else fitted.
    :param fit_epochs: full-batch Adam steps of the fitted ``pi_D``.
    :param fit_learning_rate: initial Adam step size of the fit.
    """
    observations = np.asarray(observations, dtype=np.float32)
    if len(observations) == 0:
        raise ValueError("sampling error of an empty buffer is undefined")
    discrete = isinstance(policy, CategoricalPolicy)
    if method == "counts" and not discrete:
        raise ValueError("counts sampling error needs discrete actions; use method='fitted'")
    if discrete and method in ("auto", "counts"):
        states, state_index = np.unique(observations.reshape(len(observations), -1), axis=0, return_inverse=True)
        if method == "counts" or len(states) * 2 <= len(observations):
            return _counted_sampling_error(policy, params, observations, np.asarray(actions), state_index.ravel())
    return float(_fitted_sampling_error(policy, params, jnp.asarray(observations), jnp.asarray(actions),
                                        fit_epochs, fit_learning_rate))


def _counted_sampling_error(policy: nn.Module, params: Any, observations: np.ndarray, actions: np.ndarray,
                            state_index: np.ndarray) -> float:
    """Exact KL for discrete actions with ``pi_D(a|s) = n(s, a) / n(s)``."""
    num_actions = int(policy.num_actions)
    actions = actions.astype(np.int64).ravel()
    pair_counts = np.zeros((state_index.max() + 1, num_actions))
    np.add.at(pair_counts, (state_index, actions), 1.0)
    empirical_log_probs = np.log(pair_counts[state_index, actions] / pair_counts[state_index].sum(axis=1))
    target_log_probs = np.asarray(policy.apply_numpy(params, observations).log_prob(actions), dtype=np.float64)
    return float(np.mean(empirical_log_probs - target_log_probs))


@functools.partial(jax.jit, static_argnames=("policy", "epochs"))
def _fitted_sampling_error(policy: nn.Module, params: Any, observations: jax.Array, actions: jax.Array,
                           epochs: int, learning_rate: float) -> jax.Array:
    """k1 estimate of ``KL(pi_D || pi_theta)`` with ``pi_D`` = the target with a refitted output layer."""
    features = jax.lax.stop_gradient(policy.features(params, observations))
    target_log_probs = policy.head(params, features).log_prob(actions)
    optimizer = optax.adam(optax.linear_schedule(learning_rate, 0.0, epochs))

    def negative_log_likelihood(head: Any) -> jax.Array:
        return -policy.head(head, features).log_prob(actions).mean()

    def fit_step(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], None]:
        head, opt_state = carry
        gradient = jax.grad(negative_log_likelihood)(head)
        updates, opt_state = optimizer.update(gradient, opt_state, head)
        return (optax.apply_updates(head, updates), opt_state), None

    head = policy.head_params(params)
    (head, _), _ = jax.lax.scan(fit_step, (head, optimizer.init(head)), None, length=epochs)
    return (policy.head(head, features).log_prob(actions) - target_log_probs).mean()


__all__ = ["SamplingErrorMethod", "sampling_error"]
