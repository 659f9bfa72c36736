"""IGNITE: a surrogate-sharpness regulariser for offline model-based optimisation (NeurIPS 2024).

IGNITE limits how sharply the surrogate's *prediction* changes with its parameters β. With
G(β) = mean over the minibatch of the predicted score ĝ(x; β), the worst-case increase of G in a
parameter ball of radius ρ is, to first order, ρ‖∇_β G(β)‖. Training adds the constraint

    ρ ‖∇_β G(β)‖ ≤ ε

to the surrogate's own objective L(β) and solves it with a Lagrangian, one primal and one dual step
per minibatch::

    g      = ∇_β L(β) + λ · ρ ∇_β ‖∇_β G(β)‖           (primal: the optimiser's step on g)
    λ     ← λ + η_λ (ρ ‖∇_β G(β)‖ − ε)                  (dual ascent, every minibatch)

* **IGNITE** (the Lagrangian): λ₀ = 1e-3, η_λ = 1e-3, ε = 0.1, ρ = 0.05 (finite-difference radius
  r = 0.05), the only values in the released scripts, for every task and base method.
* **IGNITE2** (a fixed penalty, no dual step): λ = 0.01, ρ = r = 0.2.

**The regulariser's gradient.** ∇_β ‖∇_β G‖ = H_G ∇_β G / ‖∇_β G‖ (H_G the Hessian of G). We compute
it exactly with JAX, as the gradient of the gradient norm (``gradient="exact"``, the default). The
released code approximates the Hessian-vector product by finite differences,
(∇G(β + r ∇G/‖∇G‖) − ∇G(β)) / r, one extra backward pass at perturbed parameters
(``gradient="finite-difference"``); the two agree as r → 0 (tested).

**λ ≥ 0.** The released code never clamps λ, so while the constraint holds (ρ‖∇G‖ < ε) λ drifts
below zero and the term then *rewards* sharpness. A Lagrange multiplier of an inequality constraint
is non-negative, so by default we project λ onto λ ≥ 0 after each dual step (the paper's
formulation); ``clamp_multiplier=False`` restores the code's behaviour, which shaped the published
numbers. With the default λ₀ = η_λ = 1e-3 and ε = 0.1 the difference is small over 100 epochs (λ
moves by at most about 1e-4 per minibatch), but it is documented in ``docs/algorithms/ignite.md``.

The sharpness G uses the *clean* inputs and the *predictive mean* (for Gaussian surrogates), as in
the code; the norm is the L2 norm over every parameter (``optax.tree.norm``), guarded by a tiny
constant where the code divides by it unguarded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from hybridrl.errors import ConfigError

Regularizer = Literal["none", "ignite", "ignite2"]
GradientMode = Literal["exact", "finite-difference"]

#: (params, z (n, D)) -> (n,) predictive mean of one surrogate.
Predict = Callable[[Any, jax.Array], jax.Array]

REGULARIZERS: tuple[Regularizer, ...] = ("none", "ignite", "ignite2")

#: Guards the division by ‖∇G‖ (the code divides unguarded).
_NORM_EPS = 1e-12


@dataclass(frozen=True)
class IgniteSettings:
    """The regulariser's hyper-parameters.

    :param regularizer: ``"none"`` (the base method), ``"ignite"`` (Lagrangian with dual ascent on
        λ) or ``"ignite2"`` (fixed penalty λ).
    :param rho: ρ, the radius of the parameter ball the sharpness is measured in.
    :param epsilon: ε, the bound on ρ‖∇G‖, on the z-scored score scale (IGNITE only).
    :param multiplier_init: λ₀ (IGNITE) or the fixed λ (IGNITE2).
    :param multiplier_lr: η_λ, the dual step size (IGNITE only).
    :param clamp_multiplier: project λ onto λ ≥ 0 after each dual step (the paper's Lagrangian);
        ``False`` is the released code's unclamped λ.
    :param gradient: ``"exact"`` (JAX's gradient of the gradient norm) or ``"finite-difference"``
        (the released code's Hessian-vector product with radius ``radius``).
    :param radius: r, the finite-difference radius (``gradient="finite-difference"`` only).
    """

    regularizer: Regularizer = "none"
    rho: float = 0.05
    epsilon: float = 0.1
    multiplier_init: float = 1e-3
    multiplier_lr: float = 1e-3
    clamp_multiplier: bool = True
    gradient: GradientMode = "exact"
    radius: float = 0.05

    def __post_init__(self) -> None:
        if self.regularizer not in REGULARIZERS:
            raise ConfigError(f"unknown regularizer {self.regularizer!r}; choose one of {', '.join(REGULARIZERS)}")
        if self.gradient not in ("exact", "finite-difference"):
            raise ConfigError(f"unknown IGNITE gradient {self.gradient!r}; choose exact or finite-difference")
        for name in ("rho", "radius"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"IGNITE {name} must be > 0, got {getattr(self, name)}")
        if self.epsilon < 0 or self.multiplier_lr < 0:
            raise ConfigError("IGNITE epsilon and multiplier_lr must be >= 0")
        if self.regularizer == "ignite2" and self.multiplier_init < 0:
            raise ConfigError(f"IGNITE2's fixed penalty must be >= 0, got {self.multiplier_init}")

    @property
    def active(self) -> bool:
        """Whether the regulariser changes training at all."""
        return self.regularizer != "none"

    @classmethod
    def preset(cls, regularizer: Regularizer, **overrides: Any) -> IgniteSettings:
        """The released hyper-parameters of ``regularizer`` (see the module docstring), then ``overrides``."""
        if regularizer == "ignite2":
            values: dict[str, Any] = {"rho": 0.2, "radius": 0.2, "multiplier_init": 0.01, "multiplier_lr": 0.0}
        else:
            values = {}
        return cls(regularizer=regularizer, **{**values, **overrides})


def prediction_sharpness(predict: Predict, params: Any, z: jax.Array) -> tuple[jax.Array, Any]:
    """‖∇_β G(β)‖ and ∇_β G(β), with G the mean predicted score over the batch ``z``."""
    gradient = jax.grad(lambda p: jnp.mean(predict(p, z)))(params)
    return optax.tree.norm(gradient), gradient


def sharpness_gradient(predict: Predict, params: Any, z: jax.Array,
                       settings: IgniteSettings) -> tuple[Any, jax.Array]:
    """ρ ∇_β ‖∇_β G(β)‖ and ‖∇_β G(β)‖ (the latter for the dual step and logging).

    ``settings.gradient`` picks JAX's exact gradient of the norm or the released code's finite
    difference (ρ/r)(∇G(β + r ∇G/‖∇G‖) − ∇G(β)).
    """
    if settings.gradient == "exact":
        (norm, _), norm_gradient = jax.value_and_grad(
            lambda p: _guarded_norm(prediction_sharpness(predict, p, z)), has_aux=True)(params)
        return jax.tree_util.tree_map(lambda g: settings.rho * g, norm_gradient), norm
    norm, gradient = prediction_sharpness(predict, params, z)
    step = settings.radius / jnp.maximum(norm, _NORM_EPS)
    perturbed = jax.tree_util.tree_map(lambda p, g: p + step * g, params, gradient)
    _, perturbed_gradient = prediction_sharpness(predict, perturbed, z)
    scale = settings.rho / settings.radius
    return jax.tree_util.tree_map(lambda gp, g: scale * (gp - g), perturbed_gradient, gradient), norm


def _guarded_norm(norm_and_gradient: tuple[jax.Array, Any]) -> tuple[jax.Array, jax.Array]:
    # The gradient of sqrt(s) at s = 0 is infinite: square, guard, then take the root.
    _, gradient = norm_and_gradient
    squared = sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(gradient))
    norm = jnp.sqrt(squared + _NORM_EPS)
    return norm, norm


def regularized_gradients(loss_gradients: Any, predict: Predict, params: Any, z: jax.Array,
                          multiplier: jax.Array, settings: IgniteSettings
                          ) -> tuple[Any, jax.Array, dict[str, jax.Array]]:
    """The primal gradient with the regulariser, the next λ, and metrics.

    :param loss_gradients: ∇_β L(β) of the base method's loss on this minibatch.
    :param predict: the surrogate's predictive mean, ``(params, z) -> (n,)``.
    :param params: the surrogate parameters β.
    :param z: the minibatch's clean (noise-free) encoded designs.
    :param multiplier: the current λ (a scalar array).
    :param settings: the regulariser; with ``regularizer="none"`` the gradients pass through.
    :returns: ``(gradients, next λ, {"sharpness": ρ‖∇G‖, "multiplier": λ used})``.
    """
    if not settings.active:
        return loss_gradients, multiplier, {}
    regularizer_gradient, norm = sharpness_gradient(predict, params, z, settings)
    gradients = jax.tree_util.tree_map(lambda gl, gr: gl + multiplier * gr, loss_gradients, regularizer_gradient)
    sharpness = settings.rho * norm
    next_multiplier = multiplier
    if settings.regularizer == "ignite":
        next_multiplier = multiplier + settings.multiplier_lr * (sharpness - settings.epsilon)
        if settings.clamp_multiplier:
            next_multiplier = jnp.maximum(next_multiplier, 0.0)
    return gradients, next_multiplier, {"sharpness": sharpness, "multiplier": multiplier}
