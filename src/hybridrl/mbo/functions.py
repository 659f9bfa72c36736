"""Closed-form test functions for continuous offline model-based optimisation: Ackley, Levy, Styblinski-Tang.

Each is the standard definition (Surjanovic & Bingham's Virtual Library of Simulation Experiments, the
same as botorch's ``Ackley``, ``Levy`` and ``StyblinskiTang``), written in JAX, jitted, and batched over
the last axis: ``x`` of shape ``(n, d)`` (or any ``(..., d)``) gives values of shape ``(n,)``. All three
are to be *minimised*; :mod:`hybridrl.mbo.tasks` negates them to get maximisation tasks.

================  ==========================  ===================  ==========================
function          standard box (every axis)   minimiser            minimum
================  ==========================  ===================  ==========================
Ackley            [-32.768, 32.768]           (0, ..., 0)          0
Levy              [-10, 10]                   (1, ..., 1)          0
Styblinski-Tang   [-5, 5]                     (-2.9035..., ...)    -39.16616570377141 * d
================  ==========================  ===================  ==========================

Values are computed in JAX's default float32, so at a minimiser they match the minimum to float32
round-off (about 1e-6 relative), not exactly.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from hybridrl.errors import ConfigError

#: The Styblinski-Tang minimiser per coordinate: the smallest root of 4 x^3 - 32 x + 5 = 0 (the derivative of
#: x^4 - 16 x^2 + 5 x), polished by Newton's method in float64.
STYBLINSKI_TANG_MINIMISER = -2.903534027771177
#: The Styblinski-Tang minimum per dimension, 0.5 (x^4 - 16 x^2 + 5 x) at :data:`STYBLINSKI_TANG_MINIMISER`.
STYBLINSKI_TANG_MINIMUM_PER_DIM = -39.16616570377141


@jax.jit
def ackley(x: ArrayLike) -> jax.Array:
    """Ackley's function with a = 20, b = 0.2, c = 2 pi.

    f(x) = -a exp(-b sqrt(mean_i x_i^2)) - exp(mean_i cos(c x_i)) + a + e

    :param x: points, shape ``(..., d)``.
    :return: values, shape ``(...)``; minimum 0 at the origin.
    """
    x = jnp.asarray(x)
    a, b, c = 20.0, 0.2, 2.0 * math.pi
    radius_term = -a * jnp.exp(-b * jnp.sqrt(jnp.mean(x**2, axis=-1)))
    cosine_term = -jnp.exp(jnp.mean(jnp.cos(c * x), axis=-1))
    return radius_term + cosine_term + a + math.e


@jax.jit
def levy(x: ArrayLike) -> jax.Array:
    """Levy's function.

    With w_i = 1 + (x_i - 1) / 4:
    f(x) = sin^2(pi w_1) + sum_{i<d} (w_i - 1)^2 (1 + 10 sin^2(pi w_i + 1)) + (w_d - 1)^2 (1 + sin^2(2 pi w_d))

    :param x: points, shape ``(..., d)``.
    :return: values, shape ``(...)``; minimum 0 at (1, ..., 1).
    """
    w = 1.0 + (jnp.asarray(x) - 1.0) / 4.0
    first = jnp.sin(math.pi * w[..., 0]) ** 2
    inner = w[..., :-1]
    middle = jnp.sum((inner - 1.0) ** 2 * (1.0 + 10.0 * jnp.sin(math.pi * inner + 1.0) ** 2), axis=-1)
    last = w[..., -1]
    return first + middle + (last - 1.0) ** 2 * (1.0 + jnp.sin(2.0 * math.pi * last) ** 2)


@jax.jit
def styblinski_tang(x: ArrayLike) -> jax.Array:
    """The Styblinski-Tang function, f(x) = 0.5 sum_i (x_i^4 - 16 x_i^2 + 5 x_i).

    :param x: points, shape ``(..., d)``.
    :return: values, shape ``(...)``; minimum -39.16616570377141 d at x_i = -2.903534027771177.
    """
    x = jnp.asarray(x)
    return 0.5 * jnp.sum(x**4 - 16.0 * x**2 + 5.0 * x, axis=-1)


@dataclass(frozen=True)
class SyntheticFunction:
    """A closed-form function to minimise, with its standard box and its known minimum for any dimension.

    :param name: the registry name (``ackley``, ``levy``, ``styblinski-tang``).
    :param evaluate: the jitted function, ``(..., d) -> (...)``.
    :param lower: the lower bound of the standard box, the same on every axis.
    :param upper: the upper bound of the standard box, the same on every axis.
    :param minimiser_coordinate: every coordinate of the (unique) global minimiser.
    :param minimum_per_dim: the global minimum divided by the dimension (the minimum is 0 when this is 0).
    """

    name: str
    evaluate: Callable[[ArrayLike], jax.Array]
    lower: float
    upper: float
    minimiser_coordinate: float
    minimum_per_dim: float

    def minimum(self, dim: int) -> float:
        """The global minimum in ``dim`` dimensions.

        :param dim: the number of dimensions, at least 1.
        """
        _check_dim(dim)
        return self.minimum_per_dim * dim

    def minimiser(self, dim: int) -> np.ndarray:
        """The global minimiser in ``dim`` dimensions, float64 of shape ``(dim,)``.

        :param dim: the number of dimensions, at least 1.
        """
        _check_dim(dim)
        return np.full(dim, self.minimiser_coordinate, dtype=np.float64)

    def bounds(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """The standard box in ``dim`` dimensions as float64 ``(lower, upper)`` arrays of shape ``(dim,)``.

        :param dim: the number of dimensions, at least 1.
        """
        _check_dim(dim)
        return np.full(dim, self.lower, dtype=np.float64), np.full(dim, self.upper, dtype=np.float64)


def _check_dim(dim: int) -> None:
    if dim < 1:
        raise ConfigError(f"a synthetic function needs at least 1 dimension, got dim={dim}")


_FUNCTIONS: dict[str, SyntheticFunction] = {
    "ackley": SyntheticFunction("ackley", ackley, -32.768, 32.768, 0.0, 0.0),
    "levy": SyntheticFunction("levy", levy, -10.0, 10.0, 1.0, 0.0),
    "styblinski-tang": SyntheticFunction("styblinski-tang", styblinski_tang, -5.0, 5.0, STYBLINSKI_TANG_MINIMISER,
                                    STYBLINSKI_TANG_MINIMUM_PER_DIM),
}


def function_names() -> list[str]:
    """The names :func:`get_function` accepts."""
    return sorted(_FUNCTIONS)


def get_function(name: str) -> SyntheticFunction:
    """The :class:`SyntheticFunction` registered as ``name``; a :class:`ConfigError` lists the others.

    :param name: one of :func:`function_names`.
    """
    if name not in _FUNCTIONS:
        close = difflib.get_close_matches(name, _FUNCTIONS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown synthetic function {name!r}; available: {', '.join(function_names())}.{hint}")
    return _FUNCTIONS[name]
