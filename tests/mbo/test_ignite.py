"""The IGNITE regulariser (hybridrl.mbo.ignite): its exact gradient against finite differences of
ρ‖∇G‖, the released code's finite-difference form against the exact one, the dual step's direction
and clamping, IGNITE2's fixed penalty, and settings validation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.errors import ConfigError
from hybridrl.mbo import ignite
from hybridrl.mbo.ignite import IgniteSettings, prediction_sharpness, regularized_gradients
from hybridrl.mbo.surrogate import GaussianMLP, predict_mean

MODEL = GaussianMLP((16, 16))
PREDICT = functools.partial(predict_mean, MODEL)
# Compiled, as the optimisers call it: an eager second-order gradient dispatches op by op (seconds per call).
sharpness_gradient = jax.jit(ignite.sharpness_gradient, static_argnums=(0, 3))


def model_and_batch(dtype: jnp.dtype = jnp.float32) -> tuple[object, jax.Array]:
    z = jax.random.normal(jax.random.key(1), (32, 5), dtype)
    params = MODEL.init(jax.random.key(0), z[:1])
    return jax.tree_util.tree_map(lambda leaf: leaf.astype(dtype), params), z


def flat(tree: object) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(tree)])


def test_exact_gradient_matches_finite_differences_of_rho_times_gradient_norm() -> None:
    settings = IgniteSettings.preset("ignite")
    with jax.enable_x64(True):
        params, z = model_and_batch(jnp.float64)
        gradient, norm = sharpness_gradient(PREDICT, params, z, settings)

        sharpness = jax.jit(lambda p: prediction_sharpness(PREDICT, p, z)[0])  # one compilation for 7 calls

        def objective(p: object) -> float:
            return float(settings.rho * sharpness(p))

        rng = np.random.default_rng(0)
        step = 1e-5
        for _ in range(3):
            direction = jax.tree_util.tree_map(lambda leaf: jnp.asarray(rng.normal(size=leaf.shape)), params)
            plus = jax.tree_util.tree_map(lambda p, d: p + step * d, params, direction)
            minus = jax.tree_util.tree_map(lambda p, d: p - step * d, params, direction)
            numeric = (objective(plus) - objective(minus)) / (2 * step)
            analytic = float(flat(gradient) @ flat(direction))
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
        assert float(norm) == pytest.approx(objective(params) / settings.rho, rel=1e-9)


@pytest.mark.parametrize("radius, tolerance", [(1e-2, 0.05), (1e-4, 5e-4)])
def test_finite_difference_form_agrees_with_the_exact_gradient_for_small_radius(radius: float,
                                                                                tolerance: float) -> None:
    with jax.enable_x64(True):
        params, z = model_and_batch(jnp.float64)
        exact, _ = sharpness_gradient(PREDICT, params, z, IgniteSettings.preset("ignite"))
        approximate, _ = sharpness_gradient(
            PREDICT, params, z, IgniteSettings.preset("ignite", gradient="finite-difference", radius=radius))
        exact_flat, approximate_flat = flat(exact), flat(approximate)
        relative_error = np.linalg.norm(approximate_flat - exact_flat) / np.linalg.norm(exact_flat)
        assert relative_error < tolerance


def test_multiplier_rises_when_the_constraint_is_violated_and_falls_when_it_holds() -> None:
    params, z = model_and_batch()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    sharpness = float(0.05 * prediction_sharpness(PREDICT, params, z)[0])
    multiplier = jnp.asarray(0.5)

    tight = IgniteSettings.preset("ignite", epsilon=sharpness / 2, multiplier_lr=0.1)
    _, raised, metrics = regularized_gradients(zeros, PREDICT, params, z, multiplier, tight)
    assert float(raised) == pytest.approx(0.5 + 0.1 * (sharpness - sharpness / 2), rel=1e-4)
    assert float(metrics["sharpness"]) == pytest.approx(sharpness, rel=1e-5)

    loose = IgniteSettings.preset("ignite", epsilon=sharpness * 2, multiplier_lr=0.1)
    _, lowered, _ = regularized_gradients(zeros, PREDICT, params, z, multiplier, loose)
    assert float(lowered) < 0.5


def test_multiplier_is_clamped_at_zero_unless_asked_to_follow_the_released_code() -> None:
    params, z = model_and_batch()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    start = jnp.asarray(1e-3)
    clamped = IgniteSettings.preset("ignite", epsilon=100.0, multiplier_lr=1.0)
    _, next_clamped, _ = regularized_gradients(zeros, PREDICT, params, z, start, clamped)
    assert float(next_clamped) == 0.0
    unclamped = IgniteSettings.preset("ignite", epsilon=100.0, multiplier_lr=1.0, clamp_multiplier=False)
    _, next_unclamped, _ = regularized_gradients(zeros, PREDICT, params, z, start, unclamped)
    assert float(next_unclamped) < -90.0


def test_gradients_add_lambda_times_the_regularizer_and_ignite2_keeps_lambda_fixed() -> None:
    params, z = model_and_batch()
    loss_gradients = jax.tree_util.tree_map(jnp.ones_like, params)
    settings = IgniteSettings.preset("ignite2")
    assert (settings.rho, settings.radius, settings.multiplier_init) == (0.2, 0.2, 0.01)
    multiplier = jnp.asarray(settings.multiplier_init)
    gradients, next_multiplier, _ = regularized_gradients(loss_gradients, PREDICT, params, z, multiplier, settings)
    regularizer, _ = sharpness_gradient(PREDICT, params, z, settings)
    np.testing.assert_allclose(flat(gradients), 1.0 + 0.01 * flat(regularizer), rtol=1e-5, atol=1e-7)
    assert float(next_multiplier) == pytest.approx(0.01)


def test_without_a_regularizer_the_gradients_pass_through() -> None:
    params, z = model_and_batch()
    loss_gradients = jax.tree_util.tree_map(jnp.ones_like, params)
    gradients, multiplier, metrics = regularized_gradients(loss_gradients, PREDICT, params, z, jnp.asarray(0.3),
                                                           IgniteSettings())
    assert metrics == {}
    assert float(multiplier) == pytest.approx(0.3)
    np.testing.assert_array_equal(flat(gradients), flat(loss_gradients))


@pytest.mark.parametrize("overrides, message", [
    ({"regularizer": "sam"}, "unknown regularizer"),
    ({"gradient": "hessian"}, "unknown IGNITE gradient"),
    ({"rho": 0.0}, "rho must be > 0"),
    ({"epsilon": -1.0}, "epsilon"),
])
def test_bad_settings_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        IgniteSettings(**overrides)  # type: ignore[arg-type]
