"""Surrogates (hybridrl.mbo.surrogate): Design-Bench's encoding and its round trip, score scaling,
the softly bounded std head, and vmapped training that learns (NLL and COMs, with and without
IGNITE)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.data.validation import DatasetError
from hybridrl.mbo.ignite import IgniteSettings
from hybridrl.mbo.surrogate import (
    DesignEncoder,
    GaussianMLP,
    ScoreScaler,
    SurrogateSettings,
    init_surrogates,
    predict_mean,
    split_rows,
    train_epoch,
    validation_metrics,
)


def test_discrete_encoding_is_design_benchs_soft_one_hot_logits_and_decodes_back() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(500, 8))
    encoder = DesignEncoder.fit(x, "discrete", num_classes=4)
    assert encoder.dim == 8 * 3
    z = np.asarray(encoder.encode(jnp.asarray(x)))
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-4)
    # Raw logits: log(0.7) - log(0.1) for the letter itself (0.6 + 0.4/4 vs 0.4/4), relative to letter 0.
    raw = z * encoder.std + encoder.mean
    first = raw[0].reshape(8, 3)
    for position, letter in enumerate(x[0]):
        expected = np.full(3, 0.0 if letter != 0 else np.log(0.1 / 0.7))
        if letter != 0:
            expected[letter - 1] = np.log(0.7 / 0.1)
        np.testing.assert_allclose(first[position], expected, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(encoder.decode(jnp.asarray(z))), x)


def test_continuous_encoding_z_scores_and_decoding_clips_to_the_box() -> None:
    rng = np.random.default_rng(0)
    lower, upper = -np.ones(3, np.float32), np.ones(3, np.float32)
    x = rng.uniform(-1, 1, size=(400, 3)).astype(np.float32)
    encoder = DesignEncoder.fit(x, "continuous", lower=lower, upper=upper)
    z = encoder.encode(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(encoder.decode(z)), x, atol=1e-5)
    far = encoder.decode(jnp.full((2, 3), 100.0))
    np.testing.assert_array_equal(np.asarray(far), 1.0)


def test_constant_dimensions_keep_unit_scale_and_malformed_designs_are_rejected() -> None:
    x = np.zeros((10, 2), np.int64)
    encoder = DesignEncoder.fit(x, "discrete", num_classes=3)
    np.testing.assert_array_equal(encoder.std, 1.0)
    with pytest.raises(DatasetError, match="alphabet"):
        DesignEncoder.fit(np.zeros((10, 2), np.int64), "discrete", num_classes=None)
    with pytest.raises(DatasetError, match="bounds"):
        DesignEncoder.fit(np.zeros((10, 2)), "continuous")


def test_score_scaler_round_trips() -> None:
    y = np.array([1.0, 2.0, 4.0])
    scaler = ScoreScaler.fit(y)
    np.testing.assert_allclose(scaler.unscale(scaler.scale(y)), y)
    assert np.mean(scaler.scale(y)) == pytest.approx(0.0, abs=1e-12)


def test_gaussian_head_keeps_std_within_its_soft_bounds() -> None:
    # Two soft clips in sequence (Design-Bench's ForwardModel): below log 0.2, then above log 0.1,
    # so the std ends up in (0.1, 0.1 + 0.2) = (0.1, 0.3).
    model = GaussianMLP((8,))
    params = model.init(jax.random.key(0), jnp.zeros((1, 4)))
    _, log_std = model.apply(params, 10 * jax.random.normal(jax.random.key(1), (100, 4)))
    std = np.exp(np.asarray(log_std))
    assert np.all(std > 0.1) and np.all(std < 0.3)


def quadratic_data(n: int = 512, dim: int = 4) -> tuple[jax.Array, jax.Array]:
    z = jax.random.normal(jax.random.key(3), (n, dim))
    y = -jnp.sum(jnp.square(z - 0.5), axis=-1)
    return z, (y - y.mean()) / y.std()


@pytest.mark.parametrize("objective, regularizer", [("nll", "none"), ("nll", "ignite"), ("coms", "ignite2")])
def test_vmapped_training_learns_every_model(objective: str, regularizer: str) -> None:
    z, y = quadratic_data()
    settings = SurrogateSettings(objective=objective, hidden_sizes=(32, 32),  # type: ignore[arg-type]
                                 activation="relu" if objective == "coms" else "leaky_relu",
                                 learning_rate=3e-3, batch_size=64, epochs=1, validation_size=64,
                                 coms_particle_steps=3, coms_particle_lr=0.05)
    ignite = IgniteSettings.preset(regularizer)  # type: ignore[arg-type]
    models = 3
    states = init_surrogates(settings, ignite, jax.random.split(jax.random.key(0), models), z.shape[1])
    splits = [split_rows(z.shape[0], settings.validation_size, np.random.default_rng(i)) for i in range(models)]
    train_rows = jnp.asarray(np.stack([s[0] for s in splits]))
    validation_rows = jnp.asarray(np.stack([s[1] for s in splits]))
    before = validation_metrics(states, validation_rows, z, y, settings=settings)
    for epoch in range(15):
        states, metrics = train_epoch(states, train_rows, jax.random.split(jax.random.key(epoch), models), z, y,
                                      settings=settings, ignite=ignite)
    after = validation_metrics(states, validation_rows, z, y, settings=settings)
    assert np.all(np.asarray(after["rank_correlation"]) > 0.8)
    assert np.all(np.asarray(after["mse"]) < np.asarray(before["mse"]))
    if regularizer == "ignite":
        assert metrics["sharpness"].shape == (models,)
    if objective == "coms":
        assert "overestimation" in metrics and "alpha" in metrics
    # Models differ: each had its own initialisation and shuffles.
    predictions = jax.vmap(lambda p: predict_mean(settings.model(), p, z[:5]))(states.params)
    assert not np.allclose(predictions[0], predictions[1])


def test_split_refuses_a_validation_set_that_leaves_no_training_data() -> None:
    from hybridrl.errors import ConfigError

    with pytest.raises(ConfigError, match="validation_size"):
        split_rows(100, 100, np.random.default_rng(0))
