"""Action distributions that work on JAX arrays (for updates) and numpy arrays (for rollouts).

Each distribution holds its parameters and picks its array module from them, so one
implementation serves the jitted update and the host-side rollout, which runs in numpy because a
jitted call per environment step costs as much as a MuJoCo step. Randomness enters as explicit
noise (``sample_from_noise``) or an explicit JAX key (``sample``); nothing global.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = Any  # a jax.Array or a numpy.ndarray
_LOG_2PI = math.log(2.0 * math.pi)


def array_module(value: Array) -> Any:
    """``numpy`` for numpy inputs, ``jax.numpy`` otherwise."""
    return np if isinstance(value, np.ndarray | np.generic) else jnp


@struct.dataclass
class DiagGaussian:
    """Diagonal Gaussian over actions, optionally squashed by tanh into (-1, 1).

    With ``squash`` the density of ``a = tanh(u)`` includes the change-of-variables term
    ``-sum log(1 - tanh(u)^2)`` (SAC, Haarnoja et al. 2018, appendix C).
    """

    mean: Array
    log_std: Array
    squash: bool = struct.field(pytree_node=False, default=False)

    def noise_shape(self) -> tuple[int, ...]:
        """Shape of the standard-normal noise :meth:`sample_from_noise` takes."""
        return tuple(self.mean.shape)

    def sample_from_noise(self, noise: Array) -> Array:
        """The action for standard-normal ``noise`` (reparameterised)."""
        xp = array_module(self.mean)
        pre_squash = self.mean + xp.exp(self.log_std) * noise
        return xp.tanh(pre_squash) if self.squash else pre_squash

    def sample(self, key: jax.Array) -> jax.Array:
        """An action drawn with a JAX key."""
        return self.sample_from_noise(jax.random.normal(key, self.mean.shape, dtype=self.mean.dtype))

    def sample_numpy(self, rng: np.random.Generator) -> Array:
        """An action drawn with a numpy generator (float32 standard-normal noise), for host rollouts."""
        return self.sample_from_noise(rng.standard_normal(self.noise_shape(), dtype=np.float32))

    def sample_with_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A reparameterised sample and its log-density, computed from the pre-squash value.

        For squashed distributions prefer this to ``log_prob(sample(key))``: recovering the
        pre-squash value with ``arctanh`` fails once ``tanh`` rounds to +-1 in float32, which turns
        a likely action into a hugely unlikely one (and SAC's entropy term into an outlier).
        ``log(1 - tanh(u)^2)`` is evaluated as ``2 (log 2 - u - softplus(-2u))``, exact for any ``u``.
        """
        noise = jax.random.normal(key, self.mean.shape, dtype=self.mean.dtype)
        pre_squash = self.mean + jnp.exp(self.log_std) * noise
        log_prob = _gaussian_log_prob(jnp, pre_squash, self.mean, self.log_std)
        if not self.squash:
            return pre_squash, log_prob
        log_det = jnp.sum(2.0 * (jnp.log(2.0) - pre_squash - jax.nn.softplus(-2.0 * pre_squash)), axis=-1)
        return jnp.tanh(pre_squash), log_prob - log_det

    def log_prob(self, action: Array) -> Array:
        """Log-density of ``action`` summed over action dimensions."""
        xp = array_module(self.mean)
        if self.squash:
            # Clip away from +-1 so atanh stays finite for actions that hit the bound.
            limit = 1.0 - 1e-6
            clipped = xp.clip(action, -limit, limit)
            pre_squash = xp.arctanh(clipped)
            log_det = xp.sum(xp.log(1.0 - clipped**2 + 1e-6), axis=-1)
            return _gaussian_log_prob(xp, pre_squash, self.mean, self.log_std) - log_det
        return _gaussian_log_prob(xp, action, self.mean, self.log_std)

    def entropy(self) -> Array:
        """Entropy of the unsquashed Gaussian (the squashed one has no closed form)."""
        xp = array_module(self.mean)
        log_std = xp.broadcast_to(self.log_std, self.mean.shape)
        return xp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)

    def mode(self) -> Array:
        """The deterministic (mean) action, squashed if the distribution is."""
        xp = array_module(self.mean)
        return xp.tanh(self.mean) if self.squash else self.mean


def _gaussian_log_prob(xp: Any, value: Array, mean: Array, log_std: Array) -> Array:
    z = (value - mean) * xp.exp(-log_std)
    # The method, not xp.sum: the same reduction without numpy's Python-level dispatch (host rollouts).
    return (-0.5 * z**2 - log_std - 0.5 * _LOG_2PI).sum(axis=-1)


@struct.dataclass
class Categorical:
    """Categorical distribution over ``n`` discrete actions, from unnormalised logits."""

    logits: Array

    def noise_shape(self) -> tuple[int, ...]:
        """Shape of the uniform(0, 1) noise :meth:`sample_from_noise` takes (Gumbel-max trick)."""
        return tuple(self.logits.shape)

    def sample_from_noise(self, noise: Array) -> Array:
        """The action for uniform(0, 1) ``noise`` via the Gumbel-max trick."""
        xp = array_module(self.logits)
        gumbel = -xp.log(-xp.log(xp.clip(noise, 1e-12, 1.0 - 1e-12)))
        return xp.argmax(self.logits + gumbel, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        """An action drawn with a JAX key."""
        return jax.random.categorical(key, self.logits, axis=-1)

    def sample_numpy(self, rng: np.random.Generator) -> Array:
        """An action drawn with a numpy generator (float32 uniform noise), for host rollouts."""
        return self.sample_from_noise(rng.random(self.noise_shape(), dtype=np.float32))

    def log_probs(self) -> Array:
        """Normalised log-probabilities of every action."""
        xp = array_module(self.logits)
        shifted = self.logits - xp.max(self.logits, axis=-1, keepdims=True)
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))

    def log_prob(self, action: Array) -> Array:
        """Log-probability of integer ``action``."""
        xp = array_module(self.logits)
        index = xp.asarray(action).astype(np.int32)[..., None]
        return xp.take_along_axis(self.log_probs(), index, axis=-1)[..., 0]

    def entropy(self) -> Array:
        """Entropy in nats."""
        xp = array_module(self.logits)
        log_probs = self.log_probs()
        return -xp.sum(xp.exp(log_probs) * log_probs, axis=-1)

    def mode(self) -> Array:
        """The most likely action."""
        return array_module(self.logits).argmax(self.logits, axis=-1)


Distribution = DiagGaussian | Categorical


def kl_divergence(p: Distribution, q: Distribution) -> Array:
    """Exact ``KL(p || q)`` per batch element, summed over action dimensions.

    Both must be of the same kind. For tanh-squashed Gaussians the value is that of the
    underlying Gaussians, since KL is invariant under an invertible map of the variable.
    """
    if isinstance(p, DiagGaussian) and isinstance(q, DiagGaussian):
        xp = array_module(p.mean)
        # Per dimension: log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2.
        variance_ratio = xp.exp(2.0 * (p.log_std - q.log_std))
        mean_term = (p.mean - q.mean) ** 2 * xp.exp(-2.0 * q.log_std)
        return xp.sum(q.log_std - p.log_std + 0.5 * (variance_ratio + mean_term) - 0.5, axis=-1)
    if isinstance(p, Categorical) and isinstance(q, Categorical):
        xp = array_module(p.logits)
        p_log = p.log_probs()
        return xp.sum(xp.exp(p_log) * (p_log - q.log_probs()), axis=-1)
    raise TypeError(f"no KL between {type(p).__name__} and {type(q).__name__}")
