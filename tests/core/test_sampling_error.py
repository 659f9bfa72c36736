"""Sampling error KL(pi_D || pi_theta): exact counts, the fitted form, and its 1/|D| behaviour."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.core.networks import CategoricalPolicy, GaussianPolicy
from hybridrl.core.sampling_error import sampling_error


def _bandit(probabilities: list[float]) -> tuple[CategoricalPolicy, dict]:
    """A one-state policy (no hidden layers) whose action probabilities are ``probabilities``."""
    policy = CategoricalPolicy(num_actions=len(probabilities), hidden_sizes=())
    params = jax.device_get(policy.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))["params"])
    params["mlp"]["output"]["kernel"] = np.zeros_like(params["mlp"]["output"]["kernel"])
    params["mlp"]["output"]["bias"] = np.log(np.asarray(probabilities, dtype=np.float32))
    return policy, params


def test_counts_match_hand_computed_kl() -> None:
    policy, params = _bandit([0.5, 0.5])
    actions = np.array([0, 0, 0, 1])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    observations = np.zeros((4, 1), np.float32)
    assert sampling_error(policy, params, observations, actions, method="counts") == pytest.approx(expected, rel=1e-5)


def test_fitted_form_recovers_counts_on_a_bandit() -> None:
    policy, params = _bandit([0.4, 0.3, 0.2, 0.1])
    actions = np.random.default_rng(0).choice(4, size=200, p=[0.4, 0.3, 0.2, 0.1])
    observations = np.zeros((200, 1), np.float32)
    counted = sampling_error(policy, params, observations, actions)  # auto: the one state repeats
    fitted = sampling_error(policy, params, observations, actions, method="fitted")
    assert counted == pytest.approx(sampling_error(policy, params, observations, actions, method="counts"))
    assert fitted == pytest.approx(counted, rel=1e-3, abs=1e-5)


def test_on_policy_sampling_error_shrinks_as_the_buffer_grows() -> None:
    policy = GaussianPolicy(action_dim=2, hidden_sizes=(16,), log_std_init=-0.5)
    params = jax.device_get(policy.init(jax.random.PRNGKey(1), jnp.zeros((1, 5)))["params"])
    rng = np.random.default_rng(2)
    errors = []
    for size in (256, 1024, 4096):
        observations = rng.standard_normal((size, 5)).astype(np.float32)
        distribution = policy.apply_numpy(params, observations)
        actions = distribution.sample_from_noise(rng.standard_normal(distribution.noise_shape()).astype(np.float32))
        errors.append(sampling_error(policy, params, observations, actions, fit_epochs=500))
    assert errors[0] > errors[1] > errors[2] > 0.0
    assert errors[2] < errors[0] / 8  # roughly 1/|D|: 16x the data, well under 1/8 of the error


def test_discrete_on_policy_counts_shrink_with_buffer_size() -> None:
    policy, params = _bandit([0.4, 0.3, 0.2, 0.1])
    rng = np.random.default_rng(3)

    def mean_error(size: int) -> float:
        return float(np.mean([sampling_error(policy, params, np.zeros((size, 1), np.float32),
                                             rng.choice(4, size=size, p=[0.4, 0.3, 0.2, 0.1]))
                              for _ in range(20)]))

    assert mean_error(512) < mean_error(128) < mean_error(32)


def test_bad_requests_are_refused() -> None:
    gaussian = GaussianPolicy(action_dim=1, hidden_sizes=())
    params = gaussian.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))["params"]
    with pytest.raises(ValueError, match="discrete"):
        sampling_error(gaussian, params, np.zeros((4, 1)), np.zeros((4, 1)), method="counts")
    with pytest.raises(ValueError, match="empty"):
        sampling_error(gaussian, params, np.zeros((0, 1)), np.zeros((0, 1)))
