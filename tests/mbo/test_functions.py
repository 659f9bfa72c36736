"""The synthetic test functions: known minima, hand-computed values, batching and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridrl.errors import ConfigError
from hybridrl.mbo.functions import (
    STYBLINSKI_TANG_MINIMISER,
    STYBLINSKI_TANG_MINIMUM_PER_DIM,
    ackley,
    function_names,
    get_function,
    levy,
    styblinski_tang,
)


@pytest.mark.parametrize("name", function_names())
@pytest.mark.parametrize("dim", [1, 2, 20])
def test_value_at_the_minimiser_is_the_minimum(name: str, dim: int) -> None:
    function = get_function(name)
    value = float(function.evaluate(function.minimiser(dim)[None])[0])
    # float32 round-off: about 1e-7 relative to the terms, which reach 40 d for Styblinski-Tang.
    assert value == pytest.approx(function.minimum(dim), abs=1e-5 * max(1.0, abs(function.minimum(dim))))


@pytest.mark.parametrize("name", function_names())
def test_random_points_lie_above_the_minimum(name: str) -> None:
    function = get_function(name)
    lower, upper = function.bounds(20)
    points = np.random.default_rng(0).uniform(lower, upper, (1000, 20))
    values = np.asarray(function.evaluate(points))
    assert values.shape == (1000,)
    assert np.all(values > function.minimum(20))


def test_hand_computed_values() -> None:
    # Ackley at (1, 1): -20 exp(-0.2 sqrt(1)) - exp(cos(2 pi)) + 20 + e = 20 - 20 exp(-0.2).
    assert float(ackley(np.array([[1.0, 1.0]]))[0]) == pytest.approx(20.0 - 20.0 * math.exp(-0.2), rel=1e-6)
    # Levy at (0, 0): w = 0.75, sin^2(0.75 pi) = 0.5, then 0.0625 (1 + 10 sin^2(0.75 pi + 1)) and 0.0625 * 2.
    expected_levy = 0.5 + 0.0625 * (1.0 + 10.0 * math.sin(0.75 * math.pi + 1.0) ** 2) + 0.125
    assert float(levy(np.array([[0.0, 0.0]]))[0]) == pytest.approx(expected_levy, rel=1e-6)
    # Styblinski-Tang: 0 at the origin; at (1, 1), 0.5 * 2 * (1 - 16 + 5) = -10.
    np.testing.assert_allclose(styblinski_tang(np.array([[0.0, 0.0], [1.0, 1.0]])), [0.0, -10.0], atol=1e-6)


def test_styblinski_tang_constants() -> None:
    x = STYBLINSKI_TANG_MINIMISER
    assert 4 * x**3 - 32 * x + 5 == pytest.approx(0.0, abs=1e-12)  # a stationary point
    assert 0.5 * (x**4 - 16 * x**2 + 5 * x) == pytest.approx(STYBLINSKI_TANG_MINIMUM_PER_DIM, abs=1e-12)


def test_standard_bounds() -> None:
    assert (get_function("ackley").lower, get_function("ackley").upper) == (-32.768, 32.768)
    assert (get_function("levy").lower, get_function("levy").upper) == (-10.0, 10.0)
    assert (get_function("styblinski-tang").lower, get_function("styblinski-tang").upper) == (-5.0, 5.0)
    lower, upper = get_function("levy").bounds(3)
    np.testing.assert_array_equal(lower, [-10.0] * 3)
    np.testing.assert_array_equal(upper, [10.0] * 3)


@pytest.mark.parametrize("name", function_names())
def test_batched_equals_one_at_a_time(name: str) -> None:
    function = get_function(name)
    points = np.random.default_rng(1).uniform(-2.0, 2.0, (5, 4)).astype(np.float32)
    batched = np.asarray(function.evaluate(points))
    single = np.array([float(function.evaluate(point)) for point in points])  # (d,) -> scalar
    np.testing.assert_allclose(batched, single, rtol=1e-6)


def test_unknown_function_and_bad_dimension() -> None:
    with pytest.raises(ConfigError, match="Did you mean ackley"):
        get_function("ackly")
    with pytest.raises(ConfigError, match="at least 1 dimension"):
        get_function("levy").minimum(0)
