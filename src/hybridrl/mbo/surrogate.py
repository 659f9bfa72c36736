"""Surrogates for offline model-based optimisation: design encoding, Gaussian MLPs, their training.

**Encoding (Design-Bench's).** A discrete design (L tokens over V letters) becomes a soft one-hot
distribution per position, 0.6·one-hot + 0.4·uniform, whose log-probabilities minus letter 0's give
V − 1 logits per position (one degree of freedom is redundant); the L·(V − 1) logits are then
z-scored with the offline data's statistics. Decoding pads letter 0's zero logit back and takes the
argmax. Continuous designs are z-scored coordinates; decoding clips to the task's box. Scores are
z-scored with the offline data's mean and standard deviation.

**Surrogates.** ``objective="nll"``: a Gaussian MLP (leaky-ReLU, Keras slope 0.3) trained by
negative log-likelihood, whose log-std is softly bounded by two learned limits initialised at
log 0.2 and log 0.1 (Design-Bench's ``ForwardModel``); the predictive mean is the score. Used by
gradient ascent, its ensemble forms and evolutionary search. ``objective="coms"``: Conservative
Objective Models (Trabucco et al. 2021): a deterministic MLP trained by

    MSE(f(x), y) + α (E[f(x⁻)] − E[f(x)]),    α ← Adam on log α for α (τ − (E[f(x⁻)] − E[f(x)]))

where x⁻ are ``coms_particle_steps`` gradient-ascent steps from the batch (the adversarial designs
the model must not overestimate) and τ the overestimation limit.

**Training.** Many surrogates train at once: every leaf of :class:`SurrogateState` has a leading
model axis (seeds × ensemble members), and one jitted epoch (a ``lax.scan`` over minibatches) is
``vmap``-ped over it, each model with its own training split, shuffles and noise. The optional
IGNITE regulariser (:mod:`hybridrl.mbo.ignite`) wraps the base objective's gradient inside the step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal, cast

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hybridrl.core.networks import MLP
from hybridrl.data.validation import DatasetError
from hybridrl.errors import ConfigError
from hybridrl.mbo.ignite import IgniteSettings, prediction_sharpness, regularized_gradients
from hybridrl.mbo.optimizers import GradientAscentSettings, gradient_ascent

Objective = Literal["nll", "coms"]

#: Design-Bench's soft one-hot: this much mass on the letter, the rest spread uniformly.
SOFT_INTERPOLATION = 0.6


# --- Encoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesignEncoder:
    """Maps designs to the surrogate's continuous input space and back (see the module docstring).

    :param kind: ``"discrete"`` or ``"continuous"``.
    :param mean: per-dimension mean of the encoded offline designs, shape (D,).
    :param std: per-dimension standard deviation (zeros replaced by 1), shape (D,).
    :param num_classes: the alphabet size V (discrete).
    :param length: the sequence length L (discrete).
    :param lower: the box's lower corner (continuous).
    :param upper: the box's upper corner (continuous).
    """

    kind: str
    mean: np.ndarray
    std: np.ndarray
    num_classes: int | None = None
    length: int | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    @classmethod
    def fit(cls, x: np.ndarray, kind: str, *, num_classes: int | None = None,
            lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> DesignEncoder:
        """The encoder whose z-scoring matches the offline designs ``x``."""
        if kind == "discrete":
            if num_classes is None or num_classes < 2 or x.ndim != 2:
                raise DatasetError("discrete designs must be an (n, L) integer array with an alphabet of >= 2 "
                                   f"letters; got shape {x.shape} and num_classes={num_classes}")
            raw = np.asarray(_soft_logits(jnp.asarray(x), num_classes))
            encoder_fields: dict[str, Any] = {"num_classes": num_classes, "length": x.shape[1]}
        elif kind == "continuous":
            if lower is None or upper is None or x.ndim != 2:
                raise DatasetError(f"continuous designs must be an (n, d) array with bounds; got shape {x.shape}")
            raw = np.asarray(x, dtype=np.float32)
            encoder_fields = {"lower": np.asarray(lower, np.float32), "upper": np.asarray(upper, np.float32)}
        else:
            raise ConfigError(f"unknown design kind {kind!r}; expected 'discrete' or 'continuous'")
        mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        # Design-Bench: a constant dimension keeps scale 1 instead of dividing by zero.
        std = np.where(std == 0, 1.0, std).astype(np.float32)
        return cls(kind=kind, mean=mean.astype(np.float32), std=std, **encoder_fields)

    @property
    def dim(self) -> int:
        """D, the width of an encoded design."""
        return int(self.mean.shape[0])

    def encode(self, x: jax.Array) -> jax.Array:
        """Designs (n, L) tokens or (n, d) points -> encoded (n, D) float32; works inside ``jit``."""
        raw = _soft_logits(x, self.num_classes) if self.kind == "discrete" and self.num_classes else \
            jnp.asarray(x, jnp.float32)
        return (raw - self.mean) / self.std

    def decode(self, z: jax.Array) -> jax.Array:
        """Encoded (n, D) -> designs: argmax tokens (discrete) or points clipped to the box."""
        raw = z * self.std + self.mean
        if self.kind == "discrete" and self.num_classes and self.length:
            logits = raw.reshape(raw.shape[0], self.length, self.num_classes - 1)
            padded = jnp.pad(logits, ((0, 0), (0, 0), (1, 0)))
            return jnp.argmax(padded, axis=-1)
        return jnp.clip(raw, self.lower, self.upper)


def _soft_logits(x: jax.Array, num_classes: int | None) -> jax.Array:
    assert num_classes is not None
    one_hot = jax.nn.one_hot(x, num_classes)
    soft = SOFT_INTERPOLATION * one_hot + (1.0 - SOFT_INTERPOLATION) / num_classes
    log_probs = jnp.log(soft)
    return (log_probs[..., 1:] - log_probs[..., :1]).reshape(x.shape[0], -1)


@dataclass(frozen=True)
class ScoreScaler:
    """z-scoring of scores with the offline data's statistics."""

    mean: float
    std: float

    @classmethod
    def fit(cls, y: np.ndarray) -> ScoreScaler:
        """The scaler of the offline scores ``y``."""
        std = float(np.std(y))
        return cls(mean=float(np.mean(y)), std=std if std > 0 else 1.0)

    def scale(self, y: Any) -> Any:
        """Scores -> z-scores."""
        return (y - self.mean) / self.std

    def unscale(self, z: Any) -> Any:
        """z-scores -> scores."""
        return z * self.std + self.mean


# --- Models -----------------------------------------------------------------------------------


class GaussianMLP(nn.Module):
    """An MLP with a mean and a softly bounded log-std head (Design-Bench's ``ForwardModel``).

    :param hidden_sizes: hidden widths (Design-Bench: 2 × 2048).
    :param activation: hidden activation (Design-Bench: leaky ReLU).
    :param initial_max_std: initial upper bound of the predicted std (learned).
    :param initial_min_std: initial lower bound of the predicted std (learned).
    """

    hidden_sizes: tuple[int, ...]
    activation: str = "leaky_relu"
    initial_max_std: float = 0.2
    initial_min_std: float = 0.1

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        output = MLP(self.hidden_sizes, 2, self.activation, name="mlp")(z)
        max_log_std = self.param("max_log_std", nn.initializers.constant(np.log(self.initial_max_std)), ())
        min_log_std = self.param("min_log_std", nn.initializers.constant(np.log(self.initial_min_std)), ())
        mean, log_std = output[..., 0], output[..., 1]
        log_std = max_log_std - nn.softplus(max_log_std - log_std)
        log_std = min_log_std + nn.softplus(log_std - min_log_std)
        return mean, log_std


# --- Training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurrogateSettings:
    """How surrogates are built and trained.

    :param objective: ``"nll"`` (Gaussian MLP) or ``"coms"`` (conservative objective model).
    :param hidden_sizes: hidden widths.
    :param activation: hidden activation (``"leaky_relu"`` for NLL models, ``"relu"`` for COMs).
    :param learning_rate: Adam learning rate.
    :param batch_size: minibatch size.
    :param epochs: passes over the training split.
    :param validation_size: offline points held out per model for validation metrics.
    :param input_noise_std: Gaussian noise added to encoded designs in the loss (0 in the scripts).
    :param coms_alpha_init: COMs' initial α.
    :param coms_alpha_lr: Adam learning rate of log α.
    :param coms_overestimation_limit: τ, the allowed overestimation of adversarial designs.
    :param coms_particle_steps: gradient-ascent steps that make the adversarial designs.
    :param coms_particle_lr: their step size, times sqrt(D).
    """

    objective: Objective = "nll"
    hidden_sizes: tuple[int, ...] = (2048, 2048)
    activation: str = "leaky_relu"
    learning_rate: float = 3e-4
    batch_size: int = 128
    epochs: int = 100
    validation_size: int = 200
    input_noise_std: float = 0.0
    coms_alpha_init: float = 0.1
    coms_alpha_lr: float = 0.01
    coms_overestimation_limit: float = 2.0
    coms_particle_steps: int = 50
    coms_particle_lr: float = 2.0

    def model(self) -> GaussianMLP:
        """The surrogate network."""
        return GaussianMLP(tuple(self.hidden_sizes), self.activation)


@flax.struct.dataclass
class SurrogateState:
    """The train state of one surrogate; stacked, every leaf gets a leading model axis."""

    params: Any
    opt_state: Any
    multiplier: jax.Array  # IGNITE's λ
    log_alpha: jax.Array  # COMs' log α
    alpha_opt_state: Any


def predict_mean(model: GaussianMLP, params: Any, z: jax.Array) -> jax.Array:
    """The surrogate's predicted (z-scored) score of encoded designs ``z``, shape (n,)."""
    mean, _ = model.apply(params, z)
    return mean


def predict_gaussian(model: GaussianMLP, params: Any, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The surrogate's Gaussian prediction of encoded designs ``z``: mean and std, each (n,)."""
    mean, log_std = cast(tuple[jax.Array, jax.Array], model.apply(params, z))
    return mean, jnp.exp(log_std)


def _optimizers(settings: SurrogateSettings) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    return optax.adam(settings.learning_rate), optax.adam(settings.coms_alpha_lr)


def init_surrogates(settings: SurrogateSettings, ignite: IgniteSettings, keys: jax.Array, dim: int) -> SurrogateState:
    """Fresh train states for ``len(keys)`` surrogates of input width ``dim``, stacked."""
    model = settings.model()
    optimizer, alpha_optimizer = _optimizers(settings)

    def init_one(key: jax.Array) -> SurrogateState:
        params = model.init(key, jnp.zeros((1, dim), jnp.float32))
        log_alpha = jnp.log(jnp.asarray(settings.coms_alpha_init, jnp.float32))
        return SurrogateState(params=params, opt_state=optimizer.init(params),
                              multiplier=jnp.asarray(ignite.multiplier_init, jnp.float32),
                              log_alpha=log_alpha, alpha_opt_state=alpha_optimizer.init(log_alpha))

    return jax.vmap(init_one)(keys)


def _train_step(state: SurrogateState, z: jax.Array, y: jax.Array, key: jax.Array, *,
                settings: SurrogateSettings, ignite: IgniteSettings) -> tuple[SurrogateState, dict[str, jax.Array]]:
    model = settings.model()
    optimizer, alpha_optimizer = _optimizers(settings)
    predict = functools.partial(predict_mean, model)
    noisy = z + settings.input_noise_std * jax.random.normal(key, z.shape) if settings.input_noise_std > 0 else z

    if settings.objective == "nll":
        def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            mean, log_std = cast(tuple[jax.Array, jax.Array], model.apply(params, noisy))
            nll = 0.5 * jnp.square((y - mean) / jnp.exp(log_std)) + log_std + 0.5 * jnp.log(2 * jnp.pi)
            return jnp.mean(nll), {"nll": jnp.mean(nll), "mse": jnp.mean(jnp.square(mean - y))}

        (_, metrics), gradients = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
        sharpness_inputs = z  # the code measures sharpness on the clean designs
    else:
        particle_settings = GradientAscentSettings(steps=settings.coms_particle_steps,
                                                   learning_rate=settings.coms_particle_lr)
        adversarial, _ = gradient_ascent(predict, state.params, noisy, particle_settings)
        adversarial = jax.lax.stop_gradient(adversarial)
        alpha = jnp.exp(state.log_alpha)

        def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            positive = predict(params, noisy)
            mse = jnp.mean(jnp.square(positive - y))
            overestimation = jnp.mean(predict(params, adversarial) - positive)
            return mse + alpha * overestimation, {"mse": mse, "overestimation": overestimation}

        (_, metrics), gradients = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        alpha_gradient = alpha * (settings.coms_overestimation_limit - metrics["overestimation"])
        alpha_update, alpha_opt_state = alpha_optimizer.update(alpha_gradient, state.alpha_opt_state)
        log_alpha = optax.apply_updates(state.log_alpha, alpha_update)
        metrics = {**metrics, "alpha": alpha}
        sharpness_inputs = noisy  # COMs' code overwrites x with its noisy version first

    gradients, multiplier, ignite_metrics = regularized_gradients(
        gradients, predict, state.params, sharpness_inputs, state.multiplier, ignite)
    updates, opt_state = optimizer.update(gradients, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    next_state = SurrogateState(params=params, opt_state=opt_state, multiplier=multiplier,
                                log_alpha=log_alpha, alpha_opt_state=alpha_opt_state)
    return next_state, {**metrics, **ignite_metrics}


def _train_epoch(state: SurrogateState, train_rows: jax.Array, key: jax.Array, z_all: jax.Array, y_all: jax.Array,
                 *, settings: SurrogateSettings, ignite: IgniteSettings) -> tuple[SurrogateState, dict[str, jax.Array]]:
    shuffle_key, step_key = jax.random.split(key)
    order = jax.random.permutation(shuffle_key, train_rows)
    num_batches = train_rows.shape[0] // settings.batch_size
    batches = order[:num_batches * settings.batch_size].reshape(num_batches, settings.batch_size)
    step_keys = jax.random.split(step_key, num_batches)

    def step(carry: SurrogateState, inputs: tuple[jax.Array, jax.Array]) -> tuple[SurrogateState, dict[str, jax.Array]]:
        rows, step_key = inputs
        return _train_step(carry, z_all[rows], y_all[rows], step_key, settings=settings, ignite=ignite)

    state, metrics = jax.lax.scan(step, state, (batches, step_keys))
    return state, jax.tree_util.tree_map(jnp.mean, metrics)


@functools.partial(jax.jit, static_argnames=("settings", "ignite"), donate_argnums=(0,))
def train_epoch(states: SurrogateState, train_rows: jax.Array, keys: jax.Array, z_all: jax.Array, y_all: jax.Array,
                *, settings: SurrogateSettings, ignite: IgniteSettings) -> tuple[SurrogateState, dict[str, jax.Array]]:
    """One epoch of every surrogate at once (vmapped over the leading model axis).

    :param states: stacked train states, leading axis M.
    :param train_rows: (M, n_train) row indices of each model's training split.
    :param keys: (M,) keys for each model's shuffle and noise.
    :param z_all: (N, D) every encoded offline design (shared by all models).
    :param y_all: (N,) their z-scored scores.
    :returns: the next states and per-model epoch means of the training metrics.
    """
    epoch = functools.partial(_train_epoch, settings=settings, ignite=ignite)
    return jax.vmap(epoch, in_axes=(0, 0, 0, None, None))(states, train_rows, keys, z_all, y_all)


@functools.partial(jax.jit, static_argnames=("settings",))
def validation_metrics(states: SurrogateState, validation_rows: jax.Array, z_all: jax.Array, y_all: jax.Array,
                       *, settings: SurrogateSettings, rho: float | jax.Array = 0.05) -> dict[str, jax.Array]:
    """Per-model MSE and Spearman rank correlation of the predicted mean on each held-out split, and
    the surrogate's sharpness there, ρ‖∇_β G‖ with G the mean prediction over the split (IGNITE's
    quantity, measured alike with and without the regulariser)."""
    model = settings.model()

    def one(params: Any, rows: jax.Array) -> dict[str, jax.Array]:
        prediction = predict_mean(model, params, z_all[rows])
        target = y_all[rows]
        norm, _ = prediction_sharpness(functools.partial(predict_mean, model), params, z_all[rows])
        return {"mse": jnp.mean(jnp.square(prediction - target)),
                "rank_correlation": jnp.corrcoef(_ranks(prediction), _ranks(target))[0, 1],
                "sharpness": rho * norm}

    return jax.vmap(one)(states.params, validation_rows)


def _ranks(values: jax.Array) -> jax.Array:
    return jnp.argsort(jnp.argsort(values)).astype(jnp.float32)


def split_rows(num_rows: int, validation_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random (train, validation) split of ``num_rows`` offline rows."""
    if validation_size >= num_rows:
        raise ConfigError(f"validation_size {validation_size} leaves no training data out of {num_rows} points; "
                          "lower it")
    order = rng.permutation(num_rows)
    return np.sort(order[validation_size:]), np.sort(order[:validation_size])
