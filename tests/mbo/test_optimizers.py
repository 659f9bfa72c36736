"""Tests of the MBO searchers on hand-made surrogates whose optimum is known."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.errors import ConfigError
from hybridrl.mbo.optimizers import (
    CMAESSettings,
    EvolutionSettings,
    GradientAscentSettings,
    ReinforceSettings,
    aggregate_prediction,
    cma_es_search,
    evolutionary_search,
    gradient_ascent,
    reinforce_search,
)

DIM = 4


def quadratic(params: Any, z: jax.Array) -> jax.Array:
    """Concave, maximal (0) at ``params["c"]``."""
    return -jnp.sum((z - params["c"]) ** 2, axis=-1)


class TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        hidden = nn.tanh(nn.Dense(16)(z))
        return nn.Dense(1)(hidden)[..., 0]


MLP = TinyMLP()


def mlp_predict(params: Any, z: jax.Array) -> jax.Array:
    return jnp.asarray(MLP.apply(params, z))


def mlp_ensemble(members: int, seed: int = 0) -> Any:
    keys = jax.random.split(jax.random.key(seed), members)
    return jax.vmap(lambda k: MLP.init(k, jnp.zeros((1, DIM))))(keys)


def starting_designs(n: int = 16, seed: int = 1) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (n, DIM))


# ----------------------------------------------------------------------------------------------
# aggregate_prediction
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aggregation, reduce", [("mean", np.mean), ("min", np.min)])
def test_aggregation_matches_numpy_over_members(aggregation: str, reduce: Any) -> None:
    members = 3
    params = mlp_ensemble(members)
    z = starting_designs()
    per_member = np.stack([
        np.asarray(mlp_predict(jax.tree.map(lambda leaf, i=i: leaf[i], params), z)) for i in range(members)
    ])
    aggregated = aggregate_prediction(mlp_predict, params, z, aggregation)  # type: ignore[arg-type]
    np.testing.assert_allclose(np.asarray(aggregated), reduce(per_member, axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(per_member[0], per_member[1])  # the members really differ


def test_single_aggregation_is_the_model_itself() -> None:
    params = {"c": jnp.ones(DIM)}
    z = starting_designs()
    np.testing.assert_array_equal(aggregate_prediction(quadratic, params, z, "single"), quadratic(params, z))


# ----------------------------------------------------------------------------------------------
# gradient_ascent
# ----------------------------------------------------------------------------------------------


def test_gradient_ascent_converges_to_the_quadratic_optimum() -> None:
    centre = jnp.array([1.0, -2.0, 0.5, 3.0])
    params = {"c": centre}
    z0 = starting_designs()
    z, curve = gradient_ascent(quadratic, params, z0, GradientAscentSettings())
    assert z.shape == z0.shape and curve.shape == (200,)
    # lr = 0.01 * sqrt(4): each step shrinks z - c by (1 - 2 lr) = 0.96, 0.96**200 ~ 3e-4.
    np.testing.assert_allclose(np.asarray(z), np.broadcast_to(np.asarray(centre), z.shape), atol=5e-3)
    assert np.all(np.diff(np.asarray(curve)) > 0)
    np.testing.assert_allclose(curve[-1], jnp.mean(quadratic(params, z)), rtol=1e-6)
    assert curve[0] > jnp.mean(quadratic(params, z0))


def test_gradient_ascent_step_size_scales_with_sqrt_dim() -> None:
    params = {"c": jnp.zeros(DIM)}
    z0 = jnp.ones((1, DIM))
    scaled, _ = gradient_ascent(quadratic, params, z0, GradientAscentSettings(steps=1, learning_rate=0.1))
    plain, _ = gradient_ascent(
        quadratic, params, z0, GradientAscentSettings(steps=1, learning_rate=0.1, scale_by_sqrt_dim=False)
    )
    # z1 = z0 - 2 lr z0 with lr = 0.1 * sqrt(4) = 0.2, resp. 0.1.
    np.testing.assert_allclose(np.asarray(scaled), 0.6, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(plain), 0.8, rtol=1e-6)


@pytest.mark.parametrize("aggregation", ["mean", "min"])
def test_gradient_ascent_on_a_quadratic_ensemble(aggregation: str) -> None:
    centres = jnp.array([[1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    params = {"c": centres}
    z0 = starting_designs() + 3.0
    settings = GradientAscentSettings(aggregation=aggregation)  # type: ignore[arg-type]
    z, curve = gradient_ascent(quadratic, params, z0, settings)
    before = aggregate_prediction(quadratic, params, z0, aggregation)  # type: ignore[arg-type]
    after = aggregate_prediction(quadratic, params, z, aggregation)  # type: ignore[arg-type]
    assert jnp.all(after > before)
    assert curve[-1] > curve[0]
    if aggregation == "mean":  # the mean of quadratics peaks at the mean centre
        np.testing.assert_allclose(np.asarray(z), np.broadcast_to(np.asarray(centres.mean(0)), z.shape), atol=5e-3)


@pytest.mark.parametrize("aggregation", ["single", "mean", "min"])
def test_gradient_ascent_raises_an_mlp_prediction(aggregation: str) -> None:
    params = mlp_ensemble(3) if aggregation != "single" else MLP.init(jax.random.key(0), jnp.zeros((1, DIM)))
    z0 = starting_designs()
    settings = GradientAscentSettings(steps=50, aggregation=aggregation)  # type: ignore[arg-type]
    z, curve = gradient_ascent(mlp_predict, params, z0, settings)
    before = aggregate_prediction(mlp_predict, params, z0, aggregation)  # type: ignore[arg-type]
    after = aggregate_prediction(mlp_predict, params, z, aggregation)  # type: ignore[arg-type]
    assert jnp.mean(after) > jnp.mean(before)
    assert jnp.all(jnp.isfinite(z)) and curve[-1] > curve[0]


def test_gradient_ascent_runs_inside_an_outer_jit() -> None:
    params = {"c": jnp.zeros(DIM)}
    settings = GradientAscentSettings(steps=5)
    outer = jax.jit(lambda p, z: gradient_ascent(quadratic, p, z, settings))
    z, _ = outer(params, starting_designs())
    np.testing.assert_allclose(np.asarray(z), np.asarray(gradient_ascent(quadratic, params, starting_designs(),
                                                                          settings)[0]), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# evolutionary_search
# ----------------------------------------------------------------------------------------------

LENGTH, VOCAB = 10, 5
TARGET = jnp.arange(LENGTH) % VOCAB


def one_hot_encode(x: jax.Array) -> jax.Array:
    return jax.nn.one_hot(x, VOCAB).reshape(x.shape[0], -1)


def matches(params: Any, z: jax.Array) -> jax.Array:
    """Number of tokens equal to the target sequence, read from the one-hot encoding."""
    return z @ params["target"]


MATCH_PARAMS = {"target": jax.nn.one_hot(TARGET, VOCAB).reshape(-1)}


def random_tokens(n: int = 32, seed: int = 2) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (n, LENGTH), 0, VOCAB)


def identity(x: jax.Array) -> jax.Array:
    return x


# Tests share settings and shapes where they can: each new combination is a new compilation.
DISCRETE_SETTINGS = EvolutionSettings(generations=30, offspring=32)
ONE_GENERATION = EvolutionSettings(generations=1, offspring=64)


def test_discrete_evolution_improves_the_population_and_stays_in_the_alphabet() -> None:
    x0 = random_tokens()
    x, best = evolutionary_search(matches, MATCH_PARAMS, x0, one_hot_encode, jax.random.key(0), DISCRETE_SETTINGS,
                                  num_classes=VOCAB)
    assert x.shape == x0.shape and x.dtype == x0.dtype and best.shape == (30,)
    assert jnp.all((x >= 0) & (x < VOCAB))
    before = matches(MATCH_PARAMS, one_hot_encode(x0))
    after = matches(MATCH_PARAMS, one_hot_encode(x))
    assert after.max() > before.max() and after.mean() > before.mean()
    assert jnp.all(jnp.diff(after) <= 0)  # sorted, best first
    np.testing.assert_allclose(best[-1], after[0])
    assert jnp.all(jnp.diff(best) >= 0)  # elitism


def test_discrete_mutation_changes_tokens_to_other_tokens() -> None:
    # Parents are all-zero and the score penalises token 0, so a child beats every parent iff it
    # changed at least one token to another token; parents win ties, so an unchanged child would
    # leave an all-zero row in the population.
    x0 = jnp.zeros((64, LENGTH), jnp.int32)
    penalise_zero = {"target": -jax.nn.one_hot(jnp.zeros(LENGTH, jnp.int32), VOCAB).reshape(-1)}
    x, _ = evolutionary_search(matches, penalise_zero, x0, one_hot_encode, jax.random.key(3), ONE_GENERATION,
                               num_classes=VOCAB)
    assert jnp.all(jnp.any(x != 0, axis=1))
    # Rate 1/L plus the forced token: 1 + 0.9 tokens per child on average, far from all 10.
    assert 64 <= jnp.sum(x != 0) < 3 * 64


def test_ties_keep_the_parents() -> None:
    x0 = random_tokens(64)
    flat = {"target": jnp.zeros(LENGTH * VOCAB)}
    x, best = evolutionary_search(matches, flat, x0, one_hot_encode, jax.random.key(0), ONE_GENERATION,
                                  num_classes=VOCAB)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))
    np.testing.assert_array_equal(np.asarray(best), 0.0)


def test_continuous_evolution_improves_and_stays_inside_the_bounds() -> None:
    lower, upper = -jnp.ones(DIM), 2.0 * jnp.ones(DIM)
    # Optimum outside the box on the first coordinate: the search must push against the bound.
    params = {"c": jnp.array([5.0, 0.5, 0.0, 1.0])}
    x0 = jax.random.uniform(jax.random.key(4), (32, DIM), minval=lower, maxval=upper)
    settings = EvolutionSettings(generations=40, offspring=32, mutation_scale=0.1)
    x, best = evolutionary_search(quadratic, params, x0, identity, jax.random.key(0), settings,
                                  lower=lower, upper=upper)
    assert x.shape == x0.shape and x.dtype == x0.dtype
    assert jnp.all((x >= lower) & (x <= upper))
    before, after = quadratic(params, x0), quadratic(params, x)
    assert after.max() > before.max() and after.mean() > before.mean()
    assert jnp.all(jnp.diff(best) >= 0)
    np.testing.assert_allclose(np.asarray(x[0]), [2.0, 0.5, 0.0, 1.0], atol=0.3)


def test_evolution_with_an_ensemble() -> None:
    aggregation = "min"  # gradient-ascent tests cover "mean"; each aggregation is one more compilation
    params = mlp_ensemble(3)
    lower, upper = -2 * jnp.ones(DIM), 2 * jnp.ones(DIM)
    x0 = jax.random.uniform(jax.random.key(5), (16, DIM), minval=lower, maxval=upper)
    settings = EvolutionSettings(generations=10, offspring=16, aggregation=aggregation)  # type: ignore[arg-type]
    x, best = evolutionary_search(mlp_predict, params, x0, identity, jax.random.key(0), settings,
                                  lower=lower, upper=upper)
    before = aggregate_prediction(mlp_predict, params, x0, aggregation)  # type: ignore[arg-type]
    after = aggregate_prediction(mlp_predict, params, x, aggregation)  # type: ignore[arg-type]
    assert after.max() > before.max() and after.mean() > before.mean()
    np.testing.assert_allclose(best[-1], after[0], rtol=1e-5)


def test_evolution_is_deterministic_for_a_key() -> None:
    x0 = random_tokens()

    def run(seed: int) -> tuple[jax.Array, jax.Array]:
        return evolutionary_search(matches, MATCH_PARAMS, x0, one_hot_encode, jax.random.key(seed),
                                   DISCRETE_SETTINGS, num_classes=VOCAB)

    first, second, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(np.asarray(first[0]), np.asarray(second[0]))
    np.testing.assert_array_equal(np.asarray(first[1]), np.asarray(second[1]))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"steps": 2.5}, "steps must be a positive integer"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
    ({"aggregation": "mena"}, "Did you mean 'mean'"),
])
def test_bad_gradient_ascent_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GradientAscentSettings(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"generations": 0}, "generations must be a positive integer"),
    ({"offspring": -1}, "offspring must be a positive integer"),
    ({"tournament_size": 0}, "tournament_size must be a positive integer"),
    ({"mutation_rate": 0.0}, "mutation_rate must be a finite number > 0"),
    ({"mutation_rate": 1.5}, r"per-token probability in \(0, 1\]"),
    ({"mutation_scale": -0.1}, "mutation_scale must be a finite number > 0"),
    ({"aggregation": "max"}, "unknown aggregation 'max'"),
])
def test_bad_evolution_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EvolutionSettings(**kwargs)


def test_bad_search_arguments() -> None:
    settings = EvolutionSettings(generations=1)
    key = jax.random.key(0)
    tokens = random_tokens(4)
    with pytest.raises(ConfigError, match="exactly one of num_classes"):
        evolutionary_search(matches, MATCH_PARAMS, tokens, one_hot_encode, key, settings)
    with pytest.raises(ConfigError, match="exactly one of num_classes"):
        evolutionary_search(matches, MATCH_PARAMS, tokens, one_hot_encode, key, settings, num_classes=VOCAB,
                            lower=jnp.zeros(LENGTH), upper=jnp.ones(LENGTH))
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 2"):
        evolutionary_search(matches, MATCH_PARAMS, tokens, one_hot_encode, key, settings, num_classes=1)
    with pytest.raises(ConfigError, match="integer tokens"):
        evolutionary_search(matches, MATCH_PARAMS, tokens.astype(jnp.float32), one_hot_encode, key, settings,
                            num_classes=VOCAB)
    with pytest.raises(ConfigError, match="need both lower and upper"):
        evolutionary_search(quadratic, {"c": jnp.zeros(DIM)}, starting_designs(), identity, key, settings,
                            lower=jnp.zeros(DIM))
    with pytest.raises(ConfigError, match="one bound per coordinate"):
        evolutionary_search(quadratic, {"c": jnp.zeros(DIM)}, starting_designs(), identity, key, settings,
                            lower=jnp.zeros(DIM + 1), upper=jnp.ones(DIM + 1))
    with pytest.raises(ConfigError, match="unknown aggregation"):
        aggregate_prediction(quadratic, {"c": jnp.zeros(DIM)}, starting_designs(), "avg")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shape \\(n, D\\)"):
        gradient_ascent(quadratic, {"c": jnp.zeros(DIM)}, jnp.zeros(DIM), GradientAscentSettings())


def test_numpy_inputs_are_accepted() -> None:
    x0 = np.asarray(random_tokens())
    x, _ = evolutionary_search(matches, MATCH_PARAMS, x0, one_hot_encode, jax.random.key(0), DISCRETE_SETTINGS,
                               num_classes=VOCAB)
    assert x.shape == x0.shape and jnp.issubdtype(x.dtype, jnp.integer)
    z, _ = gradient_ascent(quadratic, {"c": np.zeros(DIM, np.float32)}, np.ones((2, DIM), np.float32),
                           GradientAscentSettings(steps=5))
    assert z.shape == (2, DIM)


def test_cma_es_finds_the_optimum_of_a_quadratic_and_is_reproducible() -> None:
    params = {"c": jnp.array([1.0, -2.0, 0.5, 3.0])}
    starts = jnp.zeros((3, DIM)) + jnp.arange(3.0)[:, None]
    settings = CMAESSettings(sigma=0.5, max_iterations=60, aggregation="single")
    best, curve = cma_es_search(quadratic, params, starts, seed=7, settings=settings)
    assert best.shape == (3, DIM)
    np.testing.assert_allclose(best, np.broadcast_to(params["c"], (3, DIM)), atol=0.05)
    assert np.all(np.diff(np.asarray(curve)) >= 0)  # each run's best so far never falls
    again, _ = cma_es_search(quadratic, params, starts, seed=7, settings=settings)
    np.testing.assert_array_equal(best, again)
    # The separable CMA-ES (used above diagonal_above dimensions) finds it too.
    separable, _ = cma_es_search(quadratic, params, starts, seed=7,
                                 settings=CMAESSettings(sigma=0.5, max_iterations=60, aggregation="single",
                                                        diagonal_above=2))
    np.testing.assert_allclose(separable, np.broadcast_to(params["c"], (3, DIM)), atol=0.05)
    with pytest.raises(ConfigError, match="sigma"):
        CMAESSettings(sigma=0.0)


def _one_hot_encode(tokens: jax.Array) -> jax.Array:
    return jax.nn.one_hot(tokens, 3).reshape(tokens.shape[0], -1)


def _matches(params: Any, z: jax.Array) -> jax.Array:
    """Number of positions whose letter is the target's (one-hot encoded designs of 5 letters over 3)."""
    return jnp.sum(z.reshape(z.shape[0], 5, 3) * jax.nn.one_hot(params["target"], 3), axis=(1, 2))


def test_reinforce_moves_the_design_distribution_to_the_surrogate_optimum() -> None:
    settings = ReinforceSettings(iterations=150, batch_size=256, learning_rate=0.05, aggregation="single")
    # Continuous: a Gaussian started away from the quadratic's maximum.
    params = {"c": jnp.array([1.0, -2.0, 0.5, 3.0])}
    samples, curve = reinforce_search(quadratic, params, jnp.zeros((8, DIM)), lambda z: z, jax.random.key(0),
                                      settings, num_classes=None, count=64)
    assert samples.shape == (64, DIM)
    np.testing.assert_allclose(np.asarray(samples).mean(axis=0), params["c"], atol=0.3)
    assert float(curve[-1]) > float(curve[0])
    # Discrete: per-position categoricals started at the starting designs' letter frequencies.
    target = {"target": jnp.array([2, 0, 1, 2, 1])}
    starts = jnp.array([[0, 1, 2, 0, 0], [1, 2, 0, 1, 2]])
    tokens, _ = reinforce_search(_matches, target, starts, _one_hot_encode, jax.random.key(1), settings,
                                 num_classes=3, count=64)
    assert tokens.shape == (64, 5)
    assert float(jnp.mean(tokens == target["target"])) > 0.9


def test_cbas_shifts_its_generative_model_towards_high_predictions() -> None:
    from hybridrl.mbo.cbas import CbASSettings, cbas_search

    target = {"target": jnp.array([2, 0, 1, 2, 1])}

    def gaussian(params: Any, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _matches(params, z), jnp.full(z.shape[0], 0.5)

    designs = jax.random.randint(jax.random.key(0), (2000, 5), 0, 3)
    settings = CbASSettings(latent_size=4, hidden_size=32, batch_size=100, learning_rate=3e-3, offline_epochs=10,
                            iterations=8, online_batches=5, online_epochs=10, aggregation="single")
    rounds = []
    candidates, curve = cbas_search(gaussian, target, designs, _one_hot_encode, jax.random.key(1), settings,
                                    num_classes=3, count=256, on_round=lambda index, metrics: rounds.append(metrics))
    assert candidates.shape == (256, 5) and len(rounds) == 8 and curve.shape == (8,)
    offline = float(jnp.mean(designs == target["target"]))  # 1/3 by construction
    found = float(jnp.mean(candidates == target["target"]))
    assert found > offline + 0.3
    assert all(np.isfinite(metrics["weight_ess"]) and metrics["weight_ess"] >= 1.0 for metrics in rounds)
