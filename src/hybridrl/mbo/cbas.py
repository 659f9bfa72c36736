"""CbAS: conditioning by adaptive sampling (Brookes, Park & Listgarten, ICML 2019), as Design-Bench's
baseline and IGNITE's ``cbas`` scripts run it.

CbAS searches with a generative model of designs instead of moving designs one by one:

1. Fit a VAE p to the offline designs (``offline_epochs`` of the ELBO, every design weighted 1).
2. Start a second VAE q from p. For ``iterations`` rounds:
   a. draw ``online_batches × batch_size`` designs x from q's decoder at latent z ~ N(0, I);
   b. weigh each by ``p(x|z) / q(x|z)`` (the decoders' likelihoods at the same z, as in the code)
      times the surrogate's probability that its score exceeds γ, the ``percentile``-th percentile
      of the batch's predicted scores (Gaussian predictive: the ensemble members' mean, variance the
      members' mean variance plus the variance of their means);
   c. fit q to these designs by the weighted ELBO for ``online_epochs``.
3. The candidates are designs drawn from q's decoder.

Discrete designs are token sequences: the encoder reads their one-hot vectors, the decoder gives
independent categoricals per position. Continuous designs live in the surrogate's (z-scored) input
space: the decoder is a Gaussian with a learned per-dimension log-std. Everything per round is
jitted; the rounds loop in Python (20 at every scale).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.scipy.stats import norm

from hybridrl.core.networks import MLP
from hybridrl.errors import ConfigError
from hybridrl.mbo.optimizers import Aggregation

#: ``(params of one model, z (n, D)) -> (mean (n,), std (n,))``: one surrogate's Gaussian prediction.
PredictGaussian = Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]


@dataclass(frozen=True)
class CbASSettings:
    """CbAS's hyper-parameters (IGNITE's ``cbas`` TF-Bind-8 config: latent 32, one hidden layer of
    256, batch 100, Adam 3e-4, β = 1, 200 offline epochs, 20 rounds of 10 batches and 10 epochs,
    percentile 80).

    :param aggregation: ``"single"`` (one surrogate) or ``"mean"`` (an ensemble's Gaussian mixture
        moments); ``"min"`` is refused.
    """

    latent_size: int = 32
    hidden_size: int = 256
    batch_size: int = 100
    learning_rate: float = 3e-4
    beta: float = 1.0
    offline_epochs: int = 200
    iterations: int = 20
    online_batches: int = 10
    online_epochs: int = 10
    percentile: float = 80.0
    aggregation: Aggregation = "mean"

    def __post_init__(self) -> None:
        for name in ("latent_size", "hidden_size", "batch_size", "offline_epochs", "iterations", "online_batches",
                     "online_epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"CbASSettings.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.percentile < 100.0 or self.learning_rate <= 0 or self.beta < 0:
            raise ConfigError("CbAS percentile must be in (0, 100), learning_rate > 0 and beta >= 0")
        if self.aggregation not in ("single", "mean"):
            raise ConfigError(f"CbAS weighs by a Gaussian predictive: aggregation single or mean, not "
                              f"{self.aggregation!r}")


class DesignVAE(nn.Module):
    """Encoder q(z|x) and decoder p(x|z) over designs (see the module docstring).

    :param shape: a design's shape: ``(L,)`` tokens or ``(D,)`` encoded coordinates.
    :param num_classes: the alphabet size (discrete), or None (continuous).
    """

    shape: tuple[int, ...]
    num_classes: int | None
    latent_size: int
    hidden_size: int

    def setup(self) -> None:
        width = self.shape[0] * (self.num_classes or 1)
        self.encoder = MLP((self.hidden_size,), 2 * self.latent_size, "relu")
        self.decoder = MLP((self.hidden_size,), width, "relu")
        self.log_std = self.param("log_std", nn.initializers.constant(-1.0), self.shape)

    def _features(self, x: jax.Array) -> jax.Array:
        if self.num_classes is None:
            return x
        return jax.nn.one_hot(x, self.num_classes).reshape(x.shape[0], -1)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """q(z|x): mean and log-std, each (n, latent)."""
        output = self.encoder(self._features(x))
        return output[:, :self.latent_size], jnp.clip(output[:, self.latent_size:], -10.0, 2.0)

    def decoder_output(self, z: jax.Array) -> jax.Array:
        """Logits (n, L, V) of the categoricals, or the Gaussian's mean (n, D)."""
        output = self.decoder(z)
        return output.reshape(z.shape[0], self.shape[0], -1) if self.num_classes else output

    def log_likelihood(self, z: jax.Array, x: jax.Array) -> jax.Array:
        """log p(x|z) per design, (n,)."""
        output = self.decoder_output(z)
        if self.num_classes:
            log_probs = jax.nn.log_softmax(output)
            return jnp.take_along_axis(log_probs, x[..., None], axis=-1)[..., 0].sum(axis=-1)
        log_std = jnp.clip(self.log_std, -5.0, 1.0)
        return jnp.sum(norm.logpdf(x, output, jnp.exp(log_std)), axis=-1)

    def sample(self, z: jax.Array, key: jax.Array) -> jax.Array:
        """x ~ p(x|z)."""
        output = self.decoder_output(z)
        if self.num_classes:
            return jax.random.categorical(key, output)
        return output + jnp.exp(jnp.clip(self.log_std, -5.0, 1.0)) * jax.random.normal(key, output.shape)

    def __call__(self, x: jax.Array, key: jax.Array, beta: float) -> jax.Array:
        """The ELBO per design, log p(x|z) − β KL(q(z|x) ‖ N(0, I)) with one reparameterised z."""
        mean, log_std = self.encode(x)
        z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        kl = 0.5 * jnp.sum(jnp.exp(2 * log_std) + mean**2 - 1.0 - 2 * log_std, axis=-1)
        return self.log_likelihood(z, x) - beta * kl


@functools.partial(jax.jit, static_argnames=("vae", "settings", "epochs"))
def fit_vae(vae: DesignVAE, params: Any, x: jax.Array, weights: jax.Array, key: jax.Array,
            settings: CbASSettings, epochs: int) -> tuple[Any, jax.Array]:
    """``epochs`` of Adam on the weighted ELBO, −Σ w·ELBO / Σ w per minibatch (fresh Adam state, as
    each of the code's ``launch`` calls builds its optimiser); returns the parameters and the last
    epoch's mean loss."""
    optimizer = optax.adam(settings.learning_rate)
    size = x.shape[0]
    batches = max(size // settings.batch_size, 1)
    batch = min(settings.batch_size, size)

    def loss(parameters: Any, rows: jax.Array, loss_key: jax.Array) -> jax.Array:
        elbo = cast(jax.Array, vae.apply(parameters, x[rows], loss_key, settings.beta))
        w = weights[rows]
        return -jnp.sum(w * elbo) / jnp.maximum(jnp.sum(w), 1e-12)

    def epoch(carry: tuple[Any, Any], epoch_key: jax.Array) -> tuple[tuple[Any, Any], jax.Array]:
        shuffle_key, step_key = jax.random.split(epoch_key)
        order = jax.random.permutation(shuffle_key, size)[:batches * batch].reshape(batches, batch)

        def step(inner: tuple[Any, Any], inputs: tuple[jax.Array, jax.Array]) -> tuple[tuple[Any, Any], jax.Array]:
            parameters, opt_state = inner
            rows, loss_key = inputs
            value, gradient = jax.value_and_grad(loss)(parameters, rows, loss_key)
            updates, opt_state = optimizer.update(gradient, opt_state, parameters)
            return (optax.apply_updates(parameters, updates), opt_state), value

        carry, losses = jax.lax.scan(step, carry, (order, jax.random.split(step_key, batches)))
        return carry, losses.mean()

    (params, _), losses = jax.lax.scan(epoch, (params, optimizer.init(params)), jax.random.split(key, epochs))
    return params, losses[-1]


def gaussian_prediction(predict: PredictGaussian, params: Any, z: jax.Array, aggregation: Aggregation
                        ) -> tuple[jax.Array, jax.Array]:
    """The surrogate's Gaussian predictive: one model's, or an ensemble's mixture moments."""
    if aggregation == "single":
        return predict(params, z)
    means, stds = jax.vmap(predict, in_axes=(0, None))(params, z)
    mean = means.mean(axis=0)
    return mean, jnp.sqrt(jnp.mean(stds**2, axis=0) + jnp.var(means, axis=0))


def cbas_search(predict: PredictGaussian, params: Any, designs: jax.Array, encode: Callable[[jax.Array], jax.Array],
                key: jax.Array, settings: CbASSettings, *, num_classes: int | None, count: int,
                on_round: Callable[[int, dict[str, float]], None] | None = None) -> tuple[jax.Array, jax.Array]:
    """Run CbAS (module docstring) from the offline ``designs`` (tokens ``(N, L)``, or encoded ``(N, D)``).

    :param predict: one surrogate's Gaussian prediction of encoded designs.
    :param encode: designs -> the surrogate's input (identity for encoded continuous designs).
    :param count: candidates drawn from the final q.
    :param on_round: called with ``(round, {"gamma", "weight_ess", "predicted_mean", "vae_loss"})``.
    :returns: the candidates, and the mean predicted score of each round's samples.
    """
    vae = DesignVAE(tuple(designs.shape[1:]), num_classes, settings.latent_size, settings.hidden_size)
    init_key, offline_key, search_key, final_key = jax.random.split(key, 4)
    p_params = vae.init(init_key, designs[:2], init_key, settings.beta)
    p_params, _ = fit_vae(vae, p_params, designs, jnp.ones(designs.shape[0]), offline_key, settings,
                          settings.offline_epochs)
    q_params = p_params
    round_size = settings.online_batches * settings.batch_size
    curve = []
    for round_index in range(settings.iterations):
        q_params, metrics = _cbas_round(vae, p_params, q_params, predict, params, encode,
                                        jax.random.fold_in(search_key, round_index), settings, round_size)
        host = {name: float(value) for name, value in jax.device_get(metrics).items()}
        curve.append(host["predicted_mean"])
        if on_round is not None:
            on_round(round_index + 1, host)
    latent_key, sample_key = jax.random.split(final_key)
    z = jax.random.normal(latent_key, (count, settings.latent_size))
    candidates = cast(jax.Array, vae.apply(q_params, z, sample_key, method=DesignVAE.sample))
    return candidates, jnp.asarray(curve, jnp.float32)


@functools.partial(jax.jit, static_argnames=("vae", "predict", "encode", "settings", "size"))
def _cbas_round(vae: DesignVAE, p_params: Any, q_params: Any, predict: PredictGaussian, params: Any,
                encode: Callable[[jax.Array], jax.Array], key: jax.Array, settings: CbASSettings, size: int
                ) -> tuple[Any, dict[str, jax.Array]]:
    latent_key, sample_key, fit_key = jax.random.split(key, 3)
    z = jax.random.normal(latent_key, (size, settings.latent_size))
    x = cast(jax.Array, vae.apply(q_params, z, sample_key, method=DesignVAE.sample))
    log_ratio = (cast(jax.Array, vae.apply(p_params, z, x, method=DesignVAE.log_likelihood))
                 - cast(jax.Array, vae.apply(q_params, z, x, method=DesignVAE.log_likelihood)))
    mean, std = gaussian_prediction(predict, params, encode(x), settings.aggregation)
    gamma = jnp.percentile(mean, settings.percentile)
    # The loss normalises by the weights' sum, so subtracting the largest log-ratio changes nothing but
    # keeps exp() finite (the ratio of two decoders' likelihoods over hundreds of positions overflows).
    weights = jnp.exp(log_ratio - jnp.max(log_ratio)) * norm.sf(gamma, mean, jnp.maximum(std, 1e-6))
    q_params, vae_loss = fit_vae(vae, q_params, x, weights, fit_key, settings, settings.online_epochs)
    effective = jnp.sum(weights) ** 2 / jnp.maximum(jnp.sum(weights**2), 1e-30)
    return q_params, {"gamma": gamma, "weight_ess": effective, "predicted_mean": mean.mean(), "vae_loss": vae_loss}
