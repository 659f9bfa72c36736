"""Tests of the action distributions (hybridrl.core.distributions), in numpy and in JAX."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from hybridrl.core.distributions import Categorical, DiagGaussian, array_module, kl_divergence

# Build parameters in numpy (float64) or as JAX arrays (float32).
BACKENDS: dict[str, Callable[[np.ndarray], Any]] = {
    "numpy": lambda array: np.asarray(array, dtype=np.float64),
    "jax": lambda array: jnp.asarray(array, dtype=jnp.float32),
}
TOLERANCE = {"numpy": 1e-10, "jax": 2e-5}
# A few shapes only: every new shape costs JAX a compilation per operation.
BATCHES = st.sampled_from([1, 3])
WIDTHS = st.sampled_from([1, 4])


def test_array_module_follows_the_inputs() -> None:
    assert array_module(np.zeros(2)) is np
    assert array_module(np.float32(1.0)) is np
    assert array_module(jnp.zeros(2)) is jnp


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@given(batch=BATCHES, action_dim=WIDTHS, seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_gaussian_log_prob_and_entropy_match_scipy(backend: str, batch: int, action_dim: int,
                                                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(batch, action_dim))
    log_std = rng.uniform(-2.0, 1.0, size=(batch, action_dim))
    action = rng.normal(size=(batch, action_dim)) * 2.0
    as_array = BACKENDS[backend]
    # Round through the backend's precision so scipy sees the same numbers.
    mean, log_std, action = (np.asarray(as_array(value), dtype=np.float64) for value in (mean, log_std, action))
    distribution = DiagGaussian(mean=as_array(mean), log_std=as_array(log_std))

    log_prob = distribution.log_prob(as_array(action))
    entropy = distribution.entropy()

    assert isinstance(log_prob, np.ndarray if backend == "numpy" else jax.Array)
    expected_log_prob = stats.norm.logpdf(action, loc=mean, scale=np.exp(log_std)).sum(axis=-1)
    expected_entropy = stats.norm.entropy(loc=mean, scale=np.exp(log_std)).sum(axis=-1)
    tolerance = TOLERANCE[backend]
    np.testing.assert_allclose(np.asarray(log_prob), expected_log_prob, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(np.asarray(entropy), expected_entropy, rtol=tolerance, atol=tolerance)


def test_gaussian_entropy_broadcasts_a_shared_log_std() -> None:
    distribution = DiagGaussian(mean=np.zeros((3, 2)), log_std=np.array([0.0, 1.0]))
    expected = stats.norm.entropy(scale=1.0) + stats.norm.entropy(scale=np.e)
    np.testing.assert_allclose(distribution.entropy(), np.full(3, expected), rtol=1e-12)


def _log_one_minus_tanh_squared(pre_squash: np.ndarray) -> np.ndarray:
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable for large |u|.
    return 2.0 * (np.log(2.0) - pre_squash - np.logaddexp(0.0, -2.0 * pre_squash))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@given(batch=BATCHES, action_dim=WIDTHS, seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_squashed_log_prob_is_the_change_of_variables_density(backend: str, batch: int, action_dim: int,
                                                              seed: int) -> None:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-1.0, 1.0, size=(batch, action_dim))
    log_std = rng.uniform(-1.5, -0.5, size=(batch, action_dim))
    noise = rng.normal(size=(batch, action_dim))
    as_array = BACKENDS[backend]
    mean, log_std, noise = (np.asarray(as_array(value), dtype=np.float64) for value in (mean, log_std, noise))
    distribution = DiagGaussian(mean=as_array(mean), log_std=as_array(log_std), squash=True)

    action = distribution.sample_from_noise(as_array(noise))
    log_prob = distribution.log_prob(action)

    # a = tanh(u), u ~ N(mean, std): log p(a) = log N(u) - sum log(1 - tanh(u)^2).
    pre_squash = mean + np.exp(log_std) * noise
    np.testing.assert_allclose(np.asarray(action), np.tanh(pre_squash), rtol=1e-6, atol=1e-6)
    expected = (stats.norm.logpdf(pre_squash, loc=mean, scale=np.exp(log_std))
                - _log_one_minus_tanh_squared(pre_squash)).sum(axis=-1)
    # log_prob adds 1e-6 inside log(1 - a^2) to stay finite at the bounds.
    np.testing.assert_allclose(np.asarray(log_prob), expected, rtol=1e-4, atol=1e-3)


def test_squashed_density_integrates_to_one() -> None:
    distribution = DiagGaussian(mean=np.array([[0.3]]), log_std=np.array([[np.log(0.5)]]), squash=True)
    actions = np.linspace(-1.0, 1.0, 200_001)[1:-1]
    density = np.exp(distribution.log_prob(actions[:, None, None])[:, 0])
    assert np.trapezoid(density, actions) == pytest.approx(1.0, abs=1e-3)


def test_squashed_log_prob_is_finite_at_the_bounds() -> None:
    distribution = DiagGaussian(mean=np.zeros((1, 2)), log_std=np.zeros((1, 2)), squash=True)
    assert np.isfinite(distribution.log_prob(np.array([[1.0, -1.0]]))).all()


def test_gaussian_sample_with_a_key_uses_standard_normal_noise() -> None:
    distribution = DiagGaussian(mean=jnp.array([[1.0, -2.0]]), log_std=jnp.array([[0.0, -1.0]]))
    key = jax.random.PRNGKey(3)
    noise = jax.random.normal(key, (1, 2))
    np.testing.assert_array_equal(distribution.sample(key), distribution.sample_from_noise(noise))
    assert distribution.noise_shape() == (1, 2)


def test_gaussian_samples_have_the_distributions_moments() -> None:
    mean, log_std = np.array([1.0, -2.0]), np.array([0.0, np.log(0.1)])
    distribution = DiagGaussian(mean=mean, log_std=log_std)
    noise = np.random.default_rng(0).standard_normal((200_000, 2))
    samples = distribution.sample_from_noise(noise)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(samples.std(axis=0), np.exp(log_std), rtol=0.01)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_gaussian_mode_is_the_mean_squashed_if_the_distribution_is(backend: str) -> None:
    as_array = BACKENDS[backend]
    mean = np.array([[0.5, -3.0]])
    plain = DiagGaussian(mean=as_array(mean), log_std=as_array(np.zeros((1, 2))))
    squashed = DiagGaussian(mean=as_array(mean), log_std=as_array(np.zeros((1, 2))), squash=True)
    np.testing.assert_allclose(np.asarray(plain.mode()), mean, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(squashed.mode()), np.tanh(mean), rtol=1e-6)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@given(batch=BATCHES, num_actions=st.sampled_from([2, 5]), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_categorical_log_prob_and_entropy_match_softmax(backend: str, batch: int, num_actions: int,
                                                        seed: int) -> None:
    rng = np.random.default_rng(seed)
    as_array = BACKENDS[backend]
    logits = np.asarray(as_array(rng.normal(scale=3.0, size=(batch, num_actions))), dtype=np.float64)
    actions = rng.integers(0, num_actions, size=batch)
    distribution = Categorical(logits=as_array(logits))

    expected_log_probs = special.log_softmax(logits, axis=-1)
    tolerance = TOLERANCE[backend]
    np.testing.assert_allclose(np.asarray(distribution.log_probs()), expected_log_probs,
                               rtol=tolerance, atol=tolerance)
    log_prob = distribution.log_prob(actions if backend == "numpy" else jnp.asarray(actions))
    np.testing.assert_allclose(np.asarray(log_prob), expected_log_probs[np.arange(batch), actions],
                               rtol=tolerance, atol=tolerance)
    expected_entropy = stats.entropy(special.softmax(logits, axis=-1), axis=-1)
    np.testing.assert_allclose(np.asarray(distribution.entropy()), expected_entropy,
                               rtol=tolerance, atol=tolerance)


def test_categorical_log_probs_are_stable_for_large_logits() -> None:
    distribution = Categorical(logits=np.array([[1000.0, 0.0, -1000.0]]))
    log_probs = distribution.log_probs()
    assert np.isfinite(log_probs[0, :2]).all()
    assert log_probs[0, 0] == pytest.approx(0.0)
    assert distribution.entropy()[0] == pytest.approx(0.0, abs=1e-12)


def test_gumbel_sampling_frequencies_match_softmax_probabilities() -> None:
    logits = np.array([1.0, 0.0, -1.0, 2.0])
    distribution = Categorical(logits=np.broadcast_to(logits, (200_000, 4)))
    noise = np.random.default_rng(0).random(distribution.noise_shape())

    actions = distribution.sample_from_noise(noise)

    frequencies = np.bincount(actions, minlength=4) / actions.size
    # The standard error of each frequency is below 0.0012.
    np.testing.assert_allclose(frequencies, special.softmax(logits), atol=0.005)


def test_gumbel_sampling_survives_noise_at_zero_and_one() -> None:
    distribution = Categorical(logits=np.zeros((2, 3)))
    actions = distribution.sample_from_noise(np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(actions, [1, 0])


def test_categorical_sample_with_a_key_follows_the_probabilities() -> None:
    logits = jnp.array([0.5, -0.5, 1.5])
    distribution = Categorical(logits=jnp.broadcast_to(logits, (50_000, 3)))
    actions = np.asarray(distribution.sample(jax.random.PRNGKey(0)))
    frequencies = np.bincount(actions, minlength=3) / actions.size
    np.testing.assert_allclose(frequencies, special.softmax(np.asarray(logits)), atol=0.01)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_categorical_mode_is_the_most_likely_action(backend: str) -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 2.9, 0.0]])
    distribution = Categorical(logits=BACKENDS[backend](logits))
    np.testing.assert_array_equal(np.asarray(distribution.mode()), [1, 0])


def test_distributions_are_pytrees_for_jit() -> None:
    @jax.jit
    def log_prob(distribution: DiagGaussian, action: jax.Array) -> jax.Array:
        return distribution.log_prob(action)

    distribution = DiagGaussian(mean=jnp.zeros((2, 3)), log_std=jnp.zeros((2, 3)), squash=True)
    action = jnp.full((2, 3), 0.5)
    np.testing.assert_allclose(log_prob(distribution, action), distribution.log_prob(action), rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_kl_divergence_matches_hand_computed_values(backend: str) -> None:
    xp = np if backend == "numpy" else jnp
    # KL(N(1, 1) || N(0, 1)) = 1/2;  KL(N(0, 2^2) || N(0, 1)) = log(1/2) + 4/2 - 1/2; dims add up.
    p = DiagGaussian(mean=xp.asarray([[1.0, 0.0]]), log_std=xp.asarray([[0.0, math.log(2.0)]]))
    q = DiagGaussian(mean=xp.asarray([[0.0, 0.0]]), log_std=xp.asarray([[0.0, 0.0]]))
    assert float(kl_divergence(p, q)[0]) == pytest.approx(0.5 + math.log(0.5) + 1.5, rel=1e-6)
    assert float(kl_divergence(q, q)[0]) == pytest.approx(0.0, abs=1e-7)
    # KL([.5, .5] || [.9, .1]) = .5 log(.5/.9) + .5 log(.5/.1)
    first = Categorical(logits=xp.log(xp.asarray([[0.5, 0.5]])))
    second = Categorical(logits=xp.log(xp.asarray([[0.9, 0.1]])))
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert float(kl_divergence(first, second)[0]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(TypeError):
        kl_divergence(p, first)


def test_squashed_sample_with_log_prob_matches_log_prob_and_survives_saturation() -> None:
    import jax
    import jax.numpy as jnp

    from hybridrl.core.distributions import DiagGaussian

    key = jax.random.key(0)
    moderate = DiagGaussian(mean=jnp.array([[0.3, -0.5]]), log_std=jnp.array([[-0.5, -1.0]]), squash=True)
    action, log_prob = moderate.sample_with_log_prob(key)
    np.testing.assert_allclose(log_prob, moderate.log_prob(action), rtol=1e-4, atol=1e-4)
    # A mean of 10 with a tiny std: tanh rounds to 1, so log_prob(action) can no longer recover the
    # sample; the pre-squash form stays the Gaussian density minus an exact Jacobian term.
    saturated = DiagGaussian(mean=jnp.array([[10.0]]), log_std=jnp.array([[-5.0]]), squash=True)
    _, log_prob = saturated.sample_with_log_prob(key)
    noise = jax.random.normal(key, (1, 1))
    pre_squash = 10.0 + np.exp(-5.0) * float(noise[0, 0])
    expected = (-0.5 * float(noise[0, 0]) ** 2 + 5.0 - 0.5 * np.log(2 * np.pi)
                - np.log(4.0) + 2 * pre_squash + 2 * np.log1p(np.exp(-2 * pre_squash)))
    np.testing.assert_allclose(float(log_prob[0]), expected, rtol=1e-5)
    assert float(saturated.log_prob(jnp.tanh(jnp.array([[pre_squash]])))[0]) < float(log_prob[0]) - 1000
