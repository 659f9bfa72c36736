"""Search strategies of offline model-based optimisation: move designs uphill on a trained surrogate.

Both searchers start from the designs the caller gives (the top-128 offline designs in the
Design-Bench protocol) and only ever query the surrogate, never the oracle:

* :func:`gradient_ascent` works on the *encoded* designs ``z`` (z-scored soft-one-hot logits for
  discrete tasks, z-scored coordinates for continuous ones), as Design-Bench's gradient ascent and
  COMs do;
* :func:`evolutionary_search` works in *design* space (tokens, or points inside the box), for
  discrete tasks with feasibility constraints (Ehrlich functions) where logit ascent leaves the
  feasible set (a prototype of logit ascent on Ehrlich-S gave 0% feasible designs).

The surrogate is any ``predict(params, z) -> (n,)`` function; with ``aggregation="mean"`` or
``"min"`` the ``params`` carry a leading ensemble-member axis (the Ens-Mean and Ens-Min baselines).
Both searchers are jitted, loop with :func:`jax.lax.scan` and make no host syncs.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from hybridrl.errors import ConfigError

#: ``(params of one model, z (n, D)) -> (n,)`` predicted (z-scored) score of each design.
Predict = Callable[[Any, jax.Array], jax.Array]
#: How an ensemble's predictions are combined: one model, or the mean / min over members.
Aggregation = Literal["single", "mean", "min"]

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


def _check_aggregation(aggregation: str) -> None:
    """Raise :class:`ConfigError` unless ``aggregation`` is one of :data:`AGGREGATIONS`."""
    if aggregation not in AGGREGATIONS:
        close = difflib.get_close_matches(str(aggregation), AGGREGATIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}.{hint}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def _check_positive_float(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}.")


def aggregate_prediction(predict: Predict, params: Any, z: jax.Array, aggregation: Aggregation) -> jax.Array:
    """The surrogate's prediction for each design, combined over ensemble members.

    ``"mean"`` is the mean over members, as the Ens-Mean baseline is described in the Design-Bench
    paper. The original code (design-baselines ``gradient_ascent/__init__.py``, copied into
    IGNITE) computes ``reduce_min`` for ``"mean"`` by mistake; we do not copy that bug.

    :param predict: ``(params of one model, z) -> (n,)`` predictions.
    :param params: one model's parameters for ``"single"``; for ``"mean"`` and ``"min"`` a pytree
        whose leaves are stacked over members along a leading axis (e.g. from ``jax.vmap(init)``).
    :param z: encoded designs, shape ``(n, D)``.
    :param aggregation: ``"single"``, ``"mean"`` or ``"min"``.
    :returns: ``(n,)`` aggregated predictions.
    """
    _check_aggregation(aggregation)
    if aggregation == "single":
        return predict(params, z)
    per_member = jax.vmap(predict, in_axes=(0, None))(params, z)  # (members, n)
    return jnp.mean(per_member, axis=0) if aggregation == "mean" else jnp.min(per_member, axis=0)


# ----------------------------------------------------------------------------------------------
# Gradient ascent on the encoded designs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientAscentSettings:
    """Hyper-parameters of :func:`gradient_ascent` (hashable: the jitted search is specialised on them).

    The defaults are Design-Bench's gradient ascent as run by design-baselines and IGNITE
    (``gradient_ascent_IGNITE/experiments.py``): 200 steps of ``0.01 * sqrt(D)``. COMs uses 50 steps
    of ``2.0 * sqrt(D)`` with entropy coefficient 0 (``scripts/IGNITE/coms/*.py``), which is the
    same plain ascent: ``GradientAscentSettings(steps=50, learning_rate=2.0)``.

    :param steps: number of ascent steps (Design-Bench GA: 200; COMs: 50).
    :param learning_rate: step size before scaling (GA: 0.01; COMs: 2.0).
    :param scale_by_sqrt_dim: multiply the step size by ``sqrt(D)``, ``D`` the encoded design size
        (design-baselines: ``solver_lr *= np.sqrt(np.prod(x.shape[1:]))``).
    :param aggregation: ``"single"`` (GA), ``"mean"`` (Ens-Mean) or ``"min"`` (Ens-Min).
    """

    steps: int = 200
    learning_rate: float = 0.01
    scale_by_sqrt_dim: bool = True
    aggregation: Aggregation = "single"

    def __post_init__(self) -> None:
        _check_positive_int("GradientAscentSettings.steps", self.steps)
        _check_positive_float("GradientAscentSettings.learning_rate", self.learning_rate)
        _check_aggregation(self.aggregation)


def gradient_ascent(
    predict: Predict, params: Any, z0: ArrayLike, settings: GradientAscentSettings
) -> tuple[jax.Array, jax.Array]:
    """Plain gradient ascent of the aggregated prediction, from each starting design independently.

    Each step is ``z <- z + lr * d/dz sum_i f(z_i)`` with ``f`` the aggregated prediction and
    ``lr = learning_rate * sqrt(D)`` (or ``learning_rate`` when ``scale_by_sqrt_dim`` is off). As in
    design-baselines there is no optimiser state (no momentum, no Adam) and no clipping; the caller
    decodes (argmax of logits) or clips to the box afterwards.

    :param predict: ``(params of one model, z) -> (n,)``; must be hashable (a top-level function or
        a bound ``flax`` method), as it is a static argument of the jitted search.
    :param params: surrogate parameters (stacked over members for ``"mean"``/``"min"``).
    :param z0: starting encoded designs, shape ``(n, D)``, floating point.
    :param settings: see :class:`GradientAscentSettings`.
    :returns: the final designs ``(n, D)`` and the mean aggregated prediction over the ``n``
        designs after each step, shape ``(steps,)``; the last entry is the prediction of the
        returned designs.
    """
    if not isinstance(settings, GradientAscentSettings):
        raise ConfigError(f"settings must be a GradientAscentSettings, got {type(settings).__name__}.")
    z0 = jnp.asarray(z0)
    if z0.ndim < 2 or not jnp.issubdtype(z0.dtype, jnp.floating):
        raise ConfigError(f"z0 must be floating point of shape (n, D), got {z0.dtype} {z0.shape}.")
    return _gradient_ascent(predict, params, z0, settings)


@functools.partial(jax.jit, static_argnames=("predict", "settings"))
def _gradient_ascent(
    predict: Predict, params: Any, z0: jax.Array, settings: GradientAscentSettings
) -> tuple[jax.Array, jax.Array]:
    dim = math.prod(z0.shape[1:])
    learning_rate = settings.learning_rate * (math.sqrt(dim) if settings.scale_by_sqrt_dim else 1.0)

    def mean_prediction(z: jax.Array) -> jax.Array:
        return jnp.mean(aggregate_prediction(predict, params, z, settings.aggregation))

    def total_prediction(z: jax.Array) -> tuple[jax.Array, jax.Array]:
        predictions = aggregate_prediction(predict, params, z, settings.aggregation)
        return jnp.sum(predictions), jnp.mean(predictions)

    def step(z: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        gradient, mean_before = jax.grad(total_prediction, has_aux=True)(z)
        return z + learning_rate * gradient, mean_before

    z_final, means_before = jax.lax.scan(step, z0, None, length=settings.steps)
    # The value at step t is computed for free while taking step t, i.e. *before* it; shift by one
    # and add the final designs' prediction so entry t is the prediction after step t.
    curve = jnp.concatenate([means_before[1:], mean_prediction(z_final)[None]])
    return z_final, curve


# ----------------------------------------------------------------------------------------------
# Evolutionary search in design space
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvolutionSettings:
    """Hyper-parameters of :func:`evolutionary_search` (hashable: the jitted search is specialised on them).

    A plain (mu + lambda) genetic algorithm with tournament selection and mutation only, in the
    spirit of holo's ``DiscreteEvolution`` (pytorch-holo), which the Ehrlich-function paper uses as
    its baseline. The defaults are ours: ``offspring = 128`` matches the 128-candidate budget of
    the Design-Bench protocol and ``generations = 50`` the COMs step count.

    :param generations: number of generations.
    :param offspring: children per generation (lambda); the population size (mu) is ``len(x0)``.
    :param mutation_rate: discrete designs: probability that each token is resampled; ``None``
        means ``1/L``. Whatever the rate, one uniformly chosen token of every child is always
        mutated, so no child is a wasted copy of its parent.
    :param mutation_scale: continuous designs: Gaussian noise std as a fraction of ``upper - lower``.
    :param tournament_size: candidates drawn (with replacement) per tournament; 1 is uniform
        parent selection.
    :param aggregation: ``"single"``, ``"mean"`` or ``"min"`` over ensemble members.
    """

    generations: int = 50
    offspring: int = 128
    mutation_rate: float | None = None
    mutation_scale: float = 0.05
    tournament_size: int = 2
    aggregation: Aggregation = "single"

    def __post_init__(self) -> None:
        _check_positive_int("EvolutionSettings.generations", self.generations)
        _check_positive_int("EvolutionSettings.offspring", self.offspring)
        _check_positive_int("EvolutionSettings.tournament_size", self.tournament_size)
        if self.mutation_rate is not None:
            _check_positive_float("EvolutionSettings.mutation_rate", self.mutation_rate)
            if self.mutation_rate > 1:
                raise ConfigError(
                    f"EvolutionSettings.mutation_rate is a per-token probability in (0, 1], got {self.mutation_rate!r}."
                )
        _check_positive_float("EvolutionSettings.mutation_scale", self.mutation_scale)
        _check_aggregation(self.aggregation)


def evolutionary_search(
    predict: Predict,
    params: Any,
    x0: ArrayLike,
    encode: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    settings: EvolutionSettings,
    *,
    num_classes: int | None = None,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Gradient-free (mu + lambda) search in design space, scored by the surrogate.

    Each generation draws ``offspring`` parents by tournament on the surrogate score
    ``aggregate_prediction(predict, params, encode(x))``, mutates them (discrete: each token is
    resampled with probability ``mutation_rate`` to a *different* token, at least one per child;
    continuous: Gaussian noise of std ``mutation_scale * (upper - lower)``, then clipped to the
    box), scores the children and keeps the best ``n`` of parents and children (elitism: the best
    score never decreases). Ties keep the lower index, parents first.

    :param predict: ``(params of one model, z) -> (n,)``; hashable (static argument).
    :param params: surrogate parameters (stacked over members for ``"mean"``/``"min"``).
    :param x0: starting population: int ``(n, L)`` tokens in ``[0, num_classes)`` for discrete
        designs, or float ``(n, d)`` inside ``[lower, upper]`` for continuous ones.
    :param encode: designs -> encoded ``z`` the surrogate reads (one-hot logits, z-scoring);
        hashable (static argument).
    :param key: PRNG key of tournaments and mutations.
    :param settings: see :class:`EvolutionSettings`.
    :param num_classes: alphabet size of discrete designs (>= 2).
    :param lower: lower bounds ``(d,)`` of continuous designs.
    :param upper: upper bounds ``(d,)`` of continuous designs.
    :returns: the final population ``(n, ...)`` sorted by predicted score, best first, as a JAX
        array of ``x0``'s dtype, and the best predicted score after each generation, shape
        ``(generations,)``. The population may hold duplicates (elitism lets a strong design's
        copies crowd out others); deduplicate before spending oracle calls if that matters.
    """
    if not isinstance(settings, EvolutionSettings):
        raise ConfigError(f"settings must be an EvolutionSettings, got {type(settings).__name__}.")
    x0 = jnp.asarray(x0)  # numpy input: JAX's default dtypes (int32 / float32 unless x64 is on)
    discrete = num_classes is not None
    has_bounds = lower is not None or upper is not None
    if discrete == has_bounds:
        raise ConfigError(
            "give exactly one of num_classes (discrete designs) or lower and upper (continuous designs)."
        )
    if x0.ndim != 2 or x0.shape[0] < 1:
        raise ConfigError(f"x0 must have shape (n, L) or (n, d) with n >= 1, got {x0.shape}.")
    if discrete:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        if not jnp.issubdtype(x0.dtype, jnp.integer):
            raise ConfigError(f"discrete x0 must hold integer tokens, got dtype {x0.dtype}.")
        return _evolve_discrete(predict, params, x0, encode, key, settings, num_classes)
    if lower is None or upper is None:
        raise ConfigError("continuous designs need both lower and upper bounds.")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ConfigError(f"continuous x0 must be floating point, got dtype {x0.dtype}.")
    lower = jnp.asarray(lower, x0.dtype)
    upper = jnp.asarray(upper, x0.dtype)
    if lower.shape not in ((), x0.shape[1:]) or upper.shape not in ((), x0.shape[1:]):
        raise ConfigError(
            f"lower and upper must have shape {x0.shape[1:]} (one bound per coordinate), "
            f"got {lower.shape} and {upper.shape}."
        )
    return _evolve_continuous(predict, params, x0, encode, key, settings, lower, upper)


def _evolve(
    score: Callable[[jax.Array], jax.Array],
    mutate: Callable[[jax.Array, jax.Array], jax.Array],
    x0: jax.Array,
    key: jax.Array,
    settings: EvolutionSettings,
) -> tuple[jax.Array, jax.Array]:
    """The (mu + lambda) loop shared by both design kinds; ``mutate(key, parents) -> children``."""
    population_size = x0.shape[0]

    def generation(
        carry: tuple[jax.Array, jax.Array], generation_key: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        population, scores = carry
        tournament_key, mutation_key = jax.random.split(generation_key)
        entrants = jax.random.randint(
            tournament_key, (settings.offspring, settings.tournament_size), 0, population_size
        )
        winners = jnp.take_along_axis(entrants, jnp.argmax(scores[entrants], axis=1)[:, None], axis=1)[:, 0]
        children = mutate(mutation_key, population[winners])
        pool = jnp.concatenate([population, children])
        pool_scores = jnp.concatenate([scores, score(children)])
        best_scores, best = jax.lax.top_k(pool_scores, population_size)  # sorted, best first
        return (pool[best], best_scores), best_scores[0]

    scores0 = score(x0)
    order = jnp.argsort(-scores0, stable=True)
    init = (x0[order], scores0[order])
    (population, _), best_per_generation = jax.lax.scan(
        generation, init, jax.random.split(key, settings.generations)
    )
    return population, best_per_generation


@functools.partial(jax.jit, static_argnames=("predict", "encode", "settings", "num_classes"))
def _evolve_discrete(
    predict: Predict,
    params: Any,
    x0: jax.Array,
    encode: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    settings: EvolutionSettings,
    num_classes: int,
) -> tuple[jax.Array, jax.Array]:
    length = x0.shape[1]
    rate = 1.0 / length if settings.mutation_rate is None else settings.mutation_rate

    def score(x: jax.Array) -> jax.Array:
        return aggregate_prediction(predict, params, encode(x), settings.aggregation)

    def mutate(mutation_key: jax.Array, parents: jax.Array) -> jax.Array:
        mask_key, forced_key, shift_key = jax.random.split(mutation_key, 3)
        mask = jax.random.bernoulli(mask_key, rate, parents.shape)
        forced = jax.random.randint(forced_key, (parents.shape[0],), 0, length)
        mask = mask | jax.nn.one_hot(forced, length, dtype=jnp.bool_)
        # A shift in [1, V) modulo V lands uniformly on one of the V - 1 *other* tokens.
        shift = jax.random.randint(shift_key, parents.shape, 1, num_classes, dtype=parents.dtype)
        return jnp.where(mask, (parents + shift) % num_classes, parents)

    return _evolve(score, mutate, x0, key, settings)


@functools.partial(jax.jit, static_argnames=("predict", "encode", "settings"))
def _evolve_continuous(
    predict: Predict,
    params: Any,
    x0: jax.Array,
    encode: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    settings: EvolutionSettings,
    lower: jax.Array,
    upper: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    noise_std = settings.mutation_scale * (upper - lower)

    def score(x: jax.Array) -> jax.Array:
        return aggregate_prediction(predict, params, encode(x), settings.aggregation)

    def mutate(mutation_key: jax.Array, parents: jax.Array) -> jax.Array:
        noise = jax.random.normal(mutation_key, parents.shape, parents.dtype)
        return jnp.clip(parents + noise_std * noise, lower, upper)

    return _evolve(score, mutate, x0, key, settings)


# ----------------------------------------------------------------------------------------------
# CMA-ES in the encoded space (the ``cma`` library)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CMAESSettings:
    """Hyper-parameters of :func:`cma_es_search`.

    Design-Bench's CMA-ES baseline (design-baselines ``cma_es``, run by IGNITE's scripts): one CMA-ES
    per starting design, in the surrogate's input space, initial step size ``sigma`` 0.5, fitness the
    ensemble's mean prediction, each run to the ``cma`` library's own stopping rule; the result of
    each is its best solution. The library's default population (4 + 3 ln D) is kept.

    :param sigma: initial step size, in encoded (z-scored) units.
    :param max_iterations: generations per run (``None``: the library's stopping rule only, which can
        take thousands of generations; ours caps it for CPU budgets, a documented deviation).
    :param aggregation: ``"single"``, ``"mean"`` or ``"min"`` over ensemble members.
    :param diagonal_above: above this many dimensions, the separable (diagonal-covariance) CMA-ES
        (``cma``'s ``CMA_diagonal``), whose update costs O(D) per sample instead of O(D²): 128 full
        CMA-ES runs on Ehrlich-S (D = 608) took 12 minutes per seed on one core. ``None``: always full.
    """

    sigma: float = 0.5
    max_iterations: int | None = 100
    aggregation: Aggregation = "mean"
    diagonal_above: int | None = 100

    def __post_init__(self) -> None:
        _check_positive_float("CMAESSettings.sigma", self.sigma)
        if self.diagonal_above is not None:
            _check_positive_int("CMAESSettings.diagonal_above", self.diagonal_above)
        if self.max_iterations is not None:
            _check_positive_int("CMAESSettings.max_iterations", self.max_iterations)
        _check_aggregation(self.aggregation)


def cma_es_search(predict: Predict, params: Any, z0: ArrayLike, seed: int, settings: CMAESSettings
                  ) -> tuple[jax.Array, jax.Array]:
    """Independent CMA-ES runs (``cma.CMAEvolutionStrategy``), one from each row of ``z0``, maximising
    the surrogate; every generation of every run is scored in one batched surrogate call of fixed
    shape (runs that stopped contribute their best solution again, so nothing recompiles).

    :param predict: ``(params of one model, z) -> (n,)``.
    :param params: surrogate parameters (stacked over members for ``"mean"``/``"min"``).
    :param z0: ``(n, D)`` encoded starting designs.
    :param seed: seeds run ``i`` with ``(seed * 100_003 + i + 1) mod 2**32`` (the library's own generator).
    :param settings: see :class:`CMAESSettings`.
    :returns: each run's best solution ``(n, D)`` and the mean over runs of the best predicted score
        after each generation.
    """
    import cma  # an optional dependency of the search only
    import numpy as np

    starts = np.asarray(z0, np.float64)
    options: dict[str, Any] = {"verbose": -9}
    if settings.max_iterations is not None:
        options["maxiter"] = settings.max_iterations
    if settings.diagonal_above is not None and starts.shape[1] > settings.diagonal_above:
        options["CMA_diagonal"] = True
    runs = [cma.CMAEvolutionStrategy(start.tolist(), settings.sigma,
                                     {**options, "seed": (seed * 100_003 + index + 1) % 2**32})
            for index, start in enumerate(starts)]
    popsize = runs[0].popsize
    score = jax.jit(lambda z: aggregate_prediction(predict, params, z, settings.aggregation))
    best = np.asarray(score(jnp.asarray(starts, jnp.float32)), np.float64)
    best_z = starts.copy()
    curve = []
    while not all(run.stop() for run in runs):
        asked = [run.ask() if not run.stop() else [best_z[index]] * popsize for index, run in enumerate(runs)]
        batch = np.asarray(asked, np.float64).reshape(len(runs) * popsize, -1)
        fitness = np.asarray(score(jnp.asarray(batch, jnp.float32)), np.float64).reshape(len(runs), popsize)
        for index, run in enumerate(runs):
            if run.stop():
                continue
            run.tell(asked[index], (-fitness[index]).tolist())  # cma minimises
            top = int(np.argmax(fitness[index]))
            if fitness[index, top] > best[index]:
                best[index], best_z[index] = fitness[index, top], np.asarray(asked[index][top])
        curve.append(float(best.mean()))
    return jnp.asarray(best_z, jnp.float32), jnp.asarray(curve, jnp.float32)


# ----------------------------------------------------------------------------------------------
# REINFORCE over a distribution of designs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReinforceSettings:
    """Hyper-parameters of :func:`reinforce_search` (IGNITE's ``reinforce`` scripts: 200 iterations of
    2048 samples, Adam at 0.01, exploration std 0.1).

    :param iterations: policy-gradient steps.
    :param batch_size: designs sampled per step.
    :param learning_rate: Adam step size of the distribution's parameters.
    :param exploration_std: continuous designs: the Gaussian's initial std, in encoded units.
    :param letter_floor: discrete designs: the initial probability of a letter no starting design
        has at a position (the released code starts it at 0, so such a letter can never be drawn;
        design-baselines floored it at 1e-3).
    :param aggregation: ``"single"``, ``"mean"`` or ``"min"`` over ensemble members.
    """

    iterations: int = 200
    batch_size: int = 2048
    learning_rate: float = 0.01
    exploration_std: float = 0.1
    letter_floor: float = 1e-3
    aggregation: Aggregation = "mean"

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size"):
            _check_positive_int(f"ReinforceSettings.{name}", getattr(self, name))
        for name in ("learning_rate", "exploration_std", "letter_floor"):
            _check_positive_float(f"ReinforceSettings.{name}", getattr(self, name))
        _check_aggregation(self.aggregation)


@functools.partial(jax.jit, static_argnames=("predict", "encode", "settings", "num_classes", "count"))
def reinforce_search(predict: Predict, params: Any, start: jax.Array, encode: Callable[[jax.Array], jax.Array],
                     key: jax.Array, settings: ReinforceSettings, *, num_classes: int | None, count: int
                     ) -> tuple[jax.Array, jax.Array]:
    """REINFORCE (Williams 1992) on a distribution over designs, as Design-Bench's baseline: maximise
    the surrogate's expected prediction, with the batch's standardised predictions as the reward.

    Discrete designs: independent categoricals per position, started at the letter frequencies of
    the starting designs (``start``: int tokens ``(n, L)``), scored through ``encode``. Continuous
    designs: a Gaussian with a learned mean and log-std in the encoded space (``start``: encoded
    ``(n, D)``), started at the starting designs' mean and ``exploration_std``.

    :returns: ``count`` designs drawn from the final distribution (tokens, or encoded points), and
        the mean predicted score of each step's batch.
    """
    discrete = num_classes is not None

    def score(samples: jax.Array) -> jax.Array:
        z = encode(samples) if discrete else samples
        return aggregate_prediction(predict, params, z, settings.aggregation)

    if num_classes is not None:
        frequencies = jax.nn.one_hot(start, num_classes).mean(axis=0)
        distribution: dict[str, jax.Array] = {"logits": jnp.log(jnp.maximum(frequencies, settings.letter_floor))}

        def sample(parameters: dict[str, jax.Array], sample_key: jax.Array, size: int) -> jax.Array:
            return jax.random.categorical(sample_key, parameters["logits"], shape=(size, *frequencies.shape[:1]))

        def log_prob(parameters: dict[str, jax.Array], samples: jax.Array) -> jax.Array:
            log_probs = jax.nn.log_softmax(parameters["logits"])
            return jnp.take_along_axis(log_probs[None], samples[..., None], axis=-1)[..., 0].sum(axis=-1)
    else:
        distribution = {"mean": start.mean(axis=0),
                        "log_std": jnp.full(start.shape[1:], math.log(settings.exploration_std), start.dtype)}

        def sample(parameters: dict[str, jax.Array], sample_key: jax.Array, size: int) -> jax.Array:
            noise = jax.random.normal(sample_key, (size, *parameters["mean"].shape), parameters["mean"].dtype)
            return parameters["mean"] + jnp.exp(parameters["log_std"]) * noise

        def log_prob(parameters: dict[str, jax.Array], samples: jax.Array) -> jax.Array:
            standardized = (samples - parameters["mean"]) * jnp.exp(-parameters["log_std"])
            return jnp.sum(-0.5 * standardized**2 - parameters["log_std"], axis=-1)

    optimizer = optax.adam(settings.learning_rate)

    def step(carry: tuple[dict[str, jax.Array], Any], step_key: jax.Array
             ) -> tuple[tuple[dict[str, jax.Array], Any], jax.Array]:
        parameters, opt_state = carry
        samples = jax.lax.stop_gradient(sample(parameters, step_key, settings.batch_size))
        predictions = score(samples)
        reward = (predictions - predictions.mean()) / jnp.maximum(predictions.std(), 1e-8)

        def loss(parameters: dict[str, jax.Array]) -> jax.Array:
            return -jnp.mean(log_prob(parameters, samples) * jax.lax.stop_gradient(reward))

        updates, opt_state = optimizer.update(jax.grad(loss)(parameters), opt_state, parameters)
        return (optax.apply_updates(parameters, updates), opt_state), predictions.mean()

    sample_key, *step_keys = jax.random.split(key, settings.iterations + 1)
    (distribution, _), curve = jax.lax.scan(step, (distribution, optimizer.init(distribution)), jnp.stack(step_keys))
    return sample(distribution, sample_key, count), curve
