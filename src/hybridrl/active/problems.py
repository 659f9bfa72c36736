"""Active-learning problems: queries, hypotheses, answer noise, losses and the complexity classes Θ^(r).

Every problem is a transductive linear identification problem (Fiez et al. 2019; lal.md §1.1)::

    problem = make_problem("thresholds")               # 16 points, T = 12, classes r ∈ (0.5, 1, 2, 4)
    theta = problem.sample_class(key, 256, problem.classes[0])   # (256, 16) instances with ρ*(θ) = 0.5
    y = problem.sample_answer(key, theta[0], query=3)  # a noisy answer with mean <x_3, θ>
    loss = problem.decision_loss(theta[0], probs)      # 1 - probs[z*(θ)] (identification) or scaled regret

Notation: queries X ``(n, d)``, hypotheses Z ``(m, d)``, offsets b ``(m,)``, an instance θ ``(d,)``. The score
of hypothesis z is ``s_z(θ) = <z, θ> + b_z`` and the target is ``z*(θ) = argmax_z s_z(θ)``. A query x_i answers
with mean ``<x_i, θ>``: Gaussian ``N(<x_i, θ>, σ²)`` or Bernoulli with ``P(y = 1) = <x_i, θ>``.

The complexity of an instance (lal.md §1.3) is

    ρ*(θ) = σ² · min_{λ ∈ Δ_n} max_{z ≠ z*} ||z* − z||²_{A(λ)^{-1}} / (s_{z*}(θ) − s_z(θ))²,
    A(λ) = Σ_i λ_i x_i x_iᵀ (+ 1e-6·I for general X),

with σ² = 1/4 as the Gaussian proxy for Bernoulli answers. The classes are Θ^(r) = {θ ∈ Θ : ρ*(θ) ≤ r}. Ties
(several optimal hypotheses) have ρ* = +inf (``jnp.inf``); :meth:`ActiveProblem.sample_instances` never
produces them.

The four problems (:data:`PROBLEMS`, built by :func:`make_problem`):

- ``thresholds``: 1-D threshold classification on n points, monotone (realisable) instances.
- ``bandit``: best-arm identification with Gaussian rewards.
- ``twenty-questions``: a synthetic stand-in for the Q20 data (Bernoulli answers, nearest-profile target).
- ``jester``: a synthetic low-rank joke-rating linear bandit scored by regret.

Every method that takes θ is a pure JAX function, batched over the leading axes of θ, and safe under ``jit``
and ``vmap`` with the problem closed over or passed as a static argument (the dataclass is hashed by identity,
so its numpy arrays become compile-time constants).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from hybridrl.errors import ConfigError

NoiseModel = Literal["gaussian", "bernoulli"]
LossKind = Literal["identification", "regret"]

#: The names :func:`make_problem` accepts.
PROBLEMS: tuple[str, ...] = ("thresholds", "bandit", "twenty-questions", "jester")

#: Default budgets T (lal.md §5).
DEFAULT_BUDGETS: dict[str, int] = {"thresholds": 12, "bandit": 20, "twenty-questions": 8, "jester": 10}
#: Default sizes: points (thresholds), arms (bandit), objects = questions (twenty-questions), jokes (jester).
DEFAULT_SIZES: dict[str, int] = {"thresholds": 16, "bandit": 4, "twenty-questions": 32, "jester": 20}
#: Default class grids r_1 < ... < r_K; see each builder's docstring for how they were calibrated.
DEFAULT_CLASSES: dict[str, tuple[float, ...]] = {
    "thresholds": (0.5, 1.0, 2.0, 4.0),
    "bandit": (2.0, 6.0, 18.0),
    "twenty-questions": (6.0, 8.0, 12.0),
    "jester": (0.5, 2.0, 8.0),
}

#: The box of Bernoulli means: answers never become deterministic, so likelihoods stay finite.
BOX_LOW = 0.02
BOX_HIGH = 0.98
#: Ridge added to A(λ) when X is not the identity, so that A(λ) stays invertible at the simplex's faces.
RIDGE = 1e-6
#: Ridge of the least-squares plug-in estimate of general Gaussian problems (jester).
PLUGIN_RIDGE = 1e-3
#: Bisection steps of the ray search in :meth:`ActiveProblem.project` for Bernoulli problems: 2^-24 of the
#: ray length, far below the 1% accuracy of ρ* itself.
BISECTION_STEPS = 24
#: Mirror-descent step size η_t = STEP / sqrt(t + 1), on the gradient divided by its largest entry. General X
#: takes larger steps: its optimal designs are sparse (about d of the n queries), far from the uniform start.
RHO_STEP = 0.7
RHO_STEP_GENERAL = 1.5
#: Temperature schedule τ_t = TEMPERATURE_START + TEMPERATURE_SLOPE · t of the soft max over z ≠ z*.
TEMPERATURE_START = 10.0
TEMPERATURE_SLOPE = 2.0

# Synthetic 20 Questions (lal.md §4): profile p_{j,q} = sigmoid(s <a_j, b_q> + c_q), a, b ~ N(0, I_3).
TWENTY_QUESTIONS_LATENT_DIM = 3
TWENTY_QUESTIONS_SHARPNESS = 3.0
TWENTY_QUESTIONS_BIAS_STD = 0.5
# Synthetic Jester (lal.md §4).
JESTER_USERS = 2000
JESTER_TRAINING_USERS = 1600
JESTER_RANK = 4
JESTER_MIXTURE_WEIGHTS = (0.5, 0.3, 0.2)
JESTER_MIXTURE_MEAN_STD = 1.5
JESTER_MIXTURE_COMPONENT_STD = 1.0
JESTER_RATING_NOISE_STD = 1.0
JESTER_RATING_RANGE = 20.0


@dataclass(frozen=True, eq=False)
class ActiveProblem:
    """One active-learning problem: who can be asked what, what is to be found, and how it is scored.

    ``eq=False`` makes the object hashable by identity, so it can be a static argument of ``jax.jit``.
    Arrays are stored as read-only float32 numpy arrays.

    :param name: the registry name (:data:`PROBLEMS`).
    :param queries: X, ``(n, d)``.
    :param hypotheses: Z, ``(m, d)``.
    :param offsets: b, ``(m,)``: scores are ``<z, θ> + b_z`` (zero except twenty-questions).
    :param noise: ``"gaussian"`` (``N(<x, θ>, σ²)``) or ``"bernoulli"`` (``P(y = 1) = <x, θ>``).
    :param noise_std: Gaussian σ; for Bernoulli answers 0.5, the sub-Gaussian proxy used in ρ*.
    :param loss: ``"identification"`` (``1 - p[z*]``) or ``"regret"`` (``Σ_z p_z (s_{z*} - s_z) / regret_scale``).
    :param budget: T, the number of queries before the decision.
    :param classes: the default grid of class radii r, strictly increasing.
    :param regret_scale: divides the regret, so that it is a fraction of the score range.
    :param answer_center: policy features centre the answers: ``sums - answer_center * counts``.
    :param answer_scale: ... and divide by ``answer_scale * sqrt(counts)`` (σ, or 0.5 for Bernoulli).
    :param rho_steps: mirror-descent steps of :meth:`rho_star` (and :meth:`project`) when not given.
    :param prior_pool: instances that :meth:`prior` draws from (``None``: projected random instances).
    :param natural_pool: instances that :meth:`natural` draws from (``None``: projected random instances).
    """

    name: str
    queries: np.ndarray
    hypotheses: np.ndarray
    offsets: np.ndarray
    noise: NoiseModel
    noise_std: float
    loss: LossKind
    budget: int
    classes: tuple[float, ...]
    regret_scale: float = 1.0
    answer_center: float = 0.0
    answer_scale: float = 1.0
    rho_steps: int = 150
    prior_pool: np.ndarray | None = None
    natural_pool: np.ndarray | None = None

    def __post_init__(self) -> None:
        for field in ("queries", "hypotheses", "offsets", "prior_pool", "natural_pool"):
            value = getattr(self, field)
            if value is None:
                continue
            array = np.array(value, dtype=np.float32)  # a private copy, so freezing it cannot affect the caller
            array.flags.writeable = False
            object.__setattr__(self, field, array)
        object.__setattr__(self, "classes", tuple(float(r) for r in self.classes))
        if self.queries.ndim != 2 or self.hypotheses.ndim != 2:
            raise ConfigError(f"problem {self.name!r}: queries and hypotheses must be 2-D (n, d) and (m, d), got "
                              f"{self.queries.shape} and {self.hypotheses.shape}")
        d = self.queries.shape[1]
        m = self.hypotheses.shape[0]
        if self.hypotheses.shape != (m, d) or self.offsets.shape != (m,):
            raise ConfigError(f"problem {self.name!r}: hypotheses {self.hypotheses.shape} and offsets "
                              f"{self.offsets.shape} must be (m, {d}) and (m,) to match queries {self.queries.shape}")
        if m < 2:
            raise ConfigError(f"problem {self.name!r}: needs at least 2 hypotheses, got {m}")
        if self.noise not in ("gaussian", "bernoulli"):
            raise ConfigError(f"problem {self.name!r}: noise must be 'gaussian' or 'bernoulli', got {self.noise!r}")
        if self.loss not in ("identification", "regret"):
            raise ConfigError(f"problem {self.name!r}: loss must be 'identification' or 'regret', got {self.loss!r}")
        _check_budget(self.budget)
        _check_classes(self.classes)
        if self.rho_steps < 1:
            raise ConfigError(f"problem {self.name!r}: rho_steps must be >= 1, got {self.rho_steps}")

    # ------------------------------------------------------------------------------------------------------
    # Sizes

    @property
    def num_queries(self) -> int:
        """n, the number of queries."""
        return int(self.queries.shape[0])

    @property
    def num_hypotheses(self) -> int:
        """m, the number of hypotheses."""
        return int(self.hypotheses.shape[0])

    @property
    def dim(self) -> int:
        """d, the dimension of instances."""
        return int(self.queries.shape[1])

    @property
    def identity_queries(self) -> bool:
        """Whether X = I, so that A(λ)^{-1} = diag(1/λ) (the fast path of :meth:`rho_star`)."""
        return self.num_queries == self.dim and bool(np.array_equal(self.queries, np.eye(self.dim)))

    # ------------------------------------------------------------------------------------------------------
    # Scores, answers, losses

    def scores(self, theta: ArrayLike) -> jax.Array:
        """Hypothesis scores ``s_z(θ) = <z, θ> + b_z``.

        :param theta: instances, ``(..., d)``.
        :return: ``(..., m)``.
        """
        return jnp.asarray(theta, jnp.float32) @ jnp.asarray(self.hypotheses).T + jnp.asarray(self.offsets)

    def best(self, theta: ArrayLike) -> jax.Array:
        """The target ``z*(θ)``: index of the best hypothesis (the lowest index on exact ties).

        :param theta: instances, ``(..., d)``.
        :return: int32 ``(...)``.
        """
        return jnp.argmax(self.scores(theta), axis=-1).astype(jnp.int32)

    def answer_mean(self, theta: ArrayLike) -> jax.Array:
        """Mean answer of every query, ``<x_i, θ>``.

        :param theta: instances, ``(..., d)``.
        :return: ``(..., n)``.
        """
        return jnp.asarray(theta, jnp.float32) @ jnp.asarray(self.queries).T

    def sample_answer(self, key: jax.Array, theta: ArrayLike, query: ArrayLike) -> jax.Array:
        """One noisy answer to query ``query`` under instance θ.

        :param key: PRNG key.
        :param theta: one instance, ``(d,)``.
        :param query: int scalar, the query index.
        :return: float32 scalar: ``<x, θ> + σ ε`` (Gaussian) or ``1{u < <x, θ>}`` (Bernoulli, 0.0 or 1.0).
        """
        mean = jnp.asarray(self.queries)[query] @ jnp.asarray(theta, jnp.float32)
        if self.noise == "gaussian":
            return mean + self.noise_std * jax.random.normal(key, (), jnp.float32)
        return (jax.random.uniform(key, (), jnp.float32) < mean).astype(jnp.float32)

    def log_likelihood(self, theta: ArrayLike, query: ArrayLike, answer: ArrayLike) -> jax.Array:
        """``log p_θ(y | x_query)``, differentiable in θ (the adversary's score function, lal.md §1.5).

        :param theta: one instance, ``(d,)``.
        :param query: int scalar, the query index.
        :param answer: the observed answer y.
        :return: float32 scalar. Bernoulli means are clipped to [1e-6, 1 - 1e-6] so the log stays finite.
        """
        mean = jnp.asarray(self.queries)[query] @ jnp.asarray(theta, jnp.float32)
        answer = jnp.asarray(answer, jnp.float32)
        if self.noise == "gaussian":
            residual = (answer - mean) / self.noise_std
            return -0.5 * residual**2 - math.log(self.noise_std) - 0.5 * math.log(2.0 * math.pi)
        mean = jnp.clip(mean, 1e-6, 1.0 - 1e-6)
        return answer * jnp.log(mean) + (1.0 - answer) * jnp.log1p(-mean)

    def decision_loss(self, theta: ArrayLike, decision_probs: ArrayLike) -> jax.Array:
        """Expected loss of a randomised decision (Rao-Blackwellised over the decision, lal.md §1.5).

        identification: ``1 - p[z*(θ)]``; regret: ``Σ_z p_z (s_{z*}(θ) - s_z(θ)) / regret_scale``.

        :param theta: one instance, ``(d,)`` (leading batch axes are also accepted, matched with the probs').
        :param decision_probs: a distribution over hypotheses, ``(m,)``.
        :return: float32 scalar.
        """
        probs = jnp.asarray(decision_probs, jnp.float32)
        scores = self.scores(theta)
        if self.loss == "identification":
            star = jnp.argmax(scores, axis=-1)
            return 1.0 - jnp.take_along_axis(probs, star[..., None], axis=-1)[..., 0]
        gaps = jnp.max(scores, axis=-1, keepdims=True) - scores
        return jnp.sum(probs * gaps, axis=-1) / self.regret_scale

    def plugin_scores(self, counts: ArrayLike, sums: ArrayLike) -> jax.Array:
        """A plug-in decision score per hypothesis from the history summary; its argmax is the plug-in decision.

        - thresholds: ``<z, Σ_t y_t x_t>`` (= ``Z @ (Xᵀ sums)``), the sign-agreement of z with the answers.
        - bandit: the empirical means ``sums / counts``; an unasked arm scores the lowest asked mean (0 before
          any answer), so the scores shift with the means and never prefer an arm nobody asked about.
        - twenty-questions: the Bernoulli log-likelihood of the answers under each profile p_j.
        - jester (and any other Gaussian problem): ``<z, θ̂> + b_z`` with the least-squares estimate
          ``θ̂ = (Xᵀ diag(counts) X + 1e-3 I)^{-1} Xᵀ sums``.

        :param counts: ``(n,)`` times each query was asked.
        :param sums: ``(n,)`` sum of each query's answers.
        :return: ``(m,)`` float32.
        """
        counts = jnp.asarray(counts, jnp.float32)
        sums = jnp.asarray(sums, jnp.float32)
        queries = jnp.asarray(self.queries)
        hypotheses = jnp.asarray(self.hypotheses)
        if self.name == "thresholds":
            return hypotheses @ (queries.T @ sums)
        if self.name == "bandit":
            means = sums / jnp.maximum(counts, 1.0)
            asked = counts > 0
            lowest = jnp.where(asked.any(), jnp.min(jnp.where(asked, means, jnp.inf)), 0.0)
            return jnp.where(asked, means, lowest)
        if self.noise == "bernoulli":
            # Σ_q [sums_q log p_jq + (counts_q - sums_q) log(1 - p_jq)], with the profiles as P(y = 1).
            profiles = jnp.clip(hypotheses, 1e-6, 1.0 - 1e-6)
            return jnp.log(profiles) @ sums + jnp.log1p(-profiles) @ (counts - sums)
        # A tiny ridge only keeps θ̂ defined before d independent queries: a prior-sized ridge would bias θ̂'s
        # direction on large instances (small classes), making the plug-in wrong even without noise.
        gram = (queries.T * counts) @ queries + PLUGIN_RIDGE * jnp.eye(self.dim, dtype=jnp.float32)
        estimate = jnp.linalg.solve(gram, queries.T @ sums)
        return hypotheses @ estimate + jnp.asarray(self.offsets)

    # ------------------------------------------------------------------------------------------------------
    # Complexity ρ* and the classes

    def rho_star(self, theta: ArrayLike, steps: int | None = None) -> jax.Array:
        """The complexity ρ*(θ), by mirror descent over the design λ (lal.md §1.3).

        Exponentiated gradient on λ = softmax(logits): each step moves the logits by
        ``-η_t g / max|g|`` with ``η_t = 0.7 / sqrt(t + 1)`` (1.5 for general X), where g is the gradient
        in λ of a soft max (temperature ``10 + 2t``, so it sharpens towards the hard max) of
        ``log(||z* - z||²_{A(λ)^{-1}} / gap_z²)``.
        The log makes the step invariant to the scale of θ in exact arithmetic; dividing by ``max|g|`` keeps float32
        steps bounded when some λ_i is tiny. The returned value is the smallest hard-max objective seen, an upper
        bound on ρ*. Its error is measured against a certified lower bound (weak duality, in the tests): with X = I,
        mean 0.1-0.2% and max 0.5-1% after 100-150 steps; for Jester's general X, max 4% after 100 steps, 2.5% after
        150, 1% after 400. The value is not a smooth function of θ: float32 round-off of one ulp in θ (a rescaling,
        another CPU's kernels) moves the solver's path and the result anywhere within that accuracy, so
        ``ρ*(cθ) = ρ*(θ)/c²`` and :meth:`project` hold to the solver's accuracy, not to round-off.
        512 thresholds instances (n = 16) take about 0.03 s after compilation on one CPU core.
        With X = I the start is λ_i ∝ Σ_z |z*_i - z_i| / gap_z (optimal when only one z is active; exact for two
        arms, where ρ* = 4σ²/Δ²), and A(λ)^{-1} = diag(1/λ); otherwise λ starts uniform and A(λ) is solved
        (d × d, ridge 1e-6).

        :param theta: instances, ``(..., d)``.
        :param steps: mirror-descent steps (default :attr:`rho_steps`; 400 for evaluation).
        :return: float32 ``(...)``; ``+inf`` where two hypotheses tie for the best score.
        """
        steps = self.rho_steps if steps is None else int(steps)
        theta = jnp.asarray(theta, jnp.float32)
        flat = theta.reshape(-1, self.dim)
        values = _rho_batch(self, _pad_batch(flat), steps)[: flat.shape[0]]
        return values.reshape(theta.shape[:-1])

    def _rho_single(self, theta: jax.Array, steps: int | jax.Array) -> jax.Array:
        hypotheses = jnp.asarray(self.hypotheses)
        scores = hypotheses @ theta + jnp.asarray(self.offsets)
        star = jnp.argmax(scores)
        others = jnp.arange(self.num_hypotheses) != star
        gaps = scores[star] - scores
        tie = jnp.any(others & (gaps <= 0.0))
        inv_gap2 = jnp.where(others, 1.0 / jnp.where(others, gaps, 1.0) ** 2, 0.0)
        differences = hypotheses[star] - hypotheses  # (m, d), row z* is zero
        numerators: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
        if self.identity_queries:
            squared = differences**2  # (m, n)

            def numerators(lam: jax.Array) -> tuple[jax.Array, jax.Array]:
                # ||w||²_{diag(1/λ)} = Σ_i w_i²/λ_i, whose λ-gradient is -w_i²/λ_i².
                return squared @ (1.0 / lam), -squared.T / lam[:, None] ** 2

            start = jnp.log(jnp.sum(jnp.sqrt(squared) * jnp.sqrt(inv_gap2)[:, None], axis=0) + 1e-30)
            step_size = RHO_STEP
        else:
            queries = jnp.asarray(self.queries)
            ridge = RIDGE * jnp.eye(self.dim, dtype=jnp.float32)

            def numerators(lam: jax.Array) -> tuple[jax.Array, jax.Array]:
                solved = jnp.linalg.solve((queries.T * lam) @ queries + ridge, differences.T)  # (d, m)
                # ∂/∂λ_i of wᵀA^{-1}w = -(x_iᵀ A^{-1} w)².
                return jnp.sum(differences.T * solved, axis=0), -((queries @ solved) ** 2)

            # The X = I start, generalised: |x_iᵀ A^{-1} w_z| at the uniform design replaces |w_{z,i}|.
            uniform_solved = jnp.linalg.solve(queries.T @ queries / self.num_queries + ridge, differences.T)
            start = jnp.log(jnp.abs(queries @ uniform_solved) @ jnp.sqrt(inv_gap2) + 1e-30)
            step_size = RHO_STEP_GENERAL

        def objective(lam: jax.Array) -> jax.Array:
            return jnp.max(jnp.where(others, numerators(lam)[0] * inv_gap2, -jnp.inf))

        def step(t: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            logits, best = carry
            lam = jax.nn.softmax(logits)
            numerator, gradient = numerators(lam)
            safe_numerator = jnp.where(others, numerator, 1.0)
            log_values = jnp.where(others, jnp.log(safe_numerator) + jnp.log(jnp.where(others, inv_gap2, 1.0)),
                                   -jnp.inf)
            best = jnp.minimum(best, jnp.max(jnp.where(others, numerator * inv_gap2, -jnp.inf)))
            temperature = TEMPERATURE_START + TEMPERATURE_SLOPE * t
            weights = jax.nn.softmax(temperature * log_values)  # zero at z*
            direction = gradient @ (weights / safe_numerator)  # (n,) gradient of the soft max of log-values
            scale = jnp.maximum(jnp.max(jnp.abs(direction)), 1e-30)
            logits = logits - step_size / jnp.sqrt(t + 1.0) * direction / scale
            return logits, best

        logits, best = jax.lax.fori_loop(0, steps, step, (start, jnp.asarray(jnp.inf, jnp.float32)))
        best = jnp.minimum(best, objective(jax.nn.softmax(logits)))
        return jnp.where(tie, jnp.inf, self.noise_std**2 * best)

    def constrain(self, theta: ArrayLike) -> jax.Array:
        """Map instances into Θ: sort ascending (thresholds), clip to [0.02, 0.98] (Bernoulli), else identity.

        :param theta: instances, ``(..., d)``.
        :return: ``(..., d)``.
        """
        theta = jnp.asarray(theta, jnp.float32)
        if self.name == "thresholds":
            return jnp.sort(theta, axis=-1)
        if self.noise == "bernoulli":
            return jnp.clip(theta, BOX_LOW, BOX_HIGH)
        return theta

    def project(self, theta: ArrayLike, r: float | ArrayLike, steps: int | None = None) -> jax.Array:
        """Move instances onto the boundary {ρ* = r} of Θ, keeping their target z*.

        θ is first mapped into Θ (:meth:`constrain`). Gaussian linear problems (zero offsets) use the
        rescale ``θ · sqrt(ρ*(θ)/r)`` (ρ*(cθ) = ρ*(θ)/c²), which keeps monotonicity and z*; the result's true ρ* is at
        most r and short of it by the solver's error at θ (see :meth:`rho_star`). Bernoulli problems
        bisect (24 fixed steps) c on the segment ``p_{j*} + c (θ − p_{j*})`` from the target's profile through θ,
        up to where it leaves the box or z* would change, keeping the invariant ρ*(lo) ≤ r < ρ*(hi); the result is
        the inner end, so ρ* ≤ r up to the solver's accuracy. If even the segment's far end has ρ* ≤ r it is
        returned (the farthest point, still in the class); if the profile itself has ρ* > r the profile is returned.
        Instances with ties (ρ* = inf) are returned unchanged.

        :param theta: instances, ``(..., d)``.
        :param r: class radius, a scalar or an array broadcastable to θ's leading shape.
        :param steps: mirror-descent steps of every ρ* evaluation (default :attr:`rho_steps`).
        :return: ``(..., d)`` instances in Θ.
        """
        theta = self.constrain(theta)
        radius = jnp.broadcast_to(jnp.asarray(r, jnp.float32), theta.shape[:-1])
        if self.noise == "gaussian" and not np.any(self.offsets):
            rho = self.rho_star(theta, steps)
            factor = jnp.sqrt(rho / radius)
            return jnp.where(jnp.isfinite(factor)[..., None], theta * factor[..., None], theta)
        flat = theta.reshape(-1, self.dim)
        steps = self.rho_steps if steps is None else int(steps)
        stars = self.best(flat)
        count = flat.shape[0]
        projected = _bisect_batch(self, _pad_batch(flat), _pad_batch(radius.reshape(-1)), _pad_batch(stars),
                                  steps)[:count]
        return projected.reshape(theta.shape)

    def _bisect_ray(self, theta: jax.Array, radius: jax.Array, star: jax.Array,
                    steps: int | jax.Array) -> jax.Array:
        """Bisect c on the segment from profile ``star`` through θ (see :meth:`project`)."""
        hypotheses = jnp.asarray(self.hypotheses)
        offsets = jnp.asarray(self.offsets)
        origin = hypotheses[star]
        direction = theta - origin
        # Largest c keeping origin + c·direction inside the box (the box is convex and holds both ends at c ≤ 1).
        to_face = jnp.where(direction > 0, (BOX_HIGH - origin) / jnp.where(direction > 0, direction, 1.0),
                            jnp.where(direction < 0, (BOX_LOW - origin) / jnp.where(direction < 0, direction, 1.0),
                                      jnp.inf))
        c_box = jnp.min(to_face)
        # Gaps are affine in c: gap_z(c) = gap_z(0) + c·<p_{j*} - p_z, direction>; the first zero is a tie.
        gap_start = (hypotheses[star] @ origin + offsets[star]) - (hypotheses @ origin + offsets)
        gap_slope = (hypotheses[star] - hypotheses) @ direction
        others = jnp.arange(self.num_hypotheses) != star
        shrinking = others & (gap_slope < 0)
        c_tie = jnp.min(jnp.where(shrinking, gap_start / jnp.where(shrinking, -gap_slope, 1.0), jnp.inf))
        c_far = jnp.minimum(c_box, c_tie)
        c_far = jnp.where(jnp.isfinite(c_far), c_far, 0.0)  # direction = 0: stay at the profile

        def rho_at(c: jax.Array) -> jax.Array:
            return self._rho_single(jnp.clip(origin + c * direction, BOX_LOW, BOX_HIGH), steps)

        def bisect(_: int, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            low, high = bounds
            middle = 0.5 * (low + high)
            inside = rho_at(middle) <= radius
            return jnp.where(inside, middle, low), jnp.where(inside, high, middle)

        low, _ = jax.lax.fori_loop(0, BISECTION_STEPS, bisect, (jnp.zeros(()), c_far))
        c = jnp.where(rho_at(c_far) <= radius, c_far, low)
        return jnp.clip(origin + c * direction, BOX_LOW, BOX_HIGH)

    # ------------------------------------------------------------------------------------------------------
    # Invariances

    def invariance_copies(self, key: jax.Array, theta: ArrayLike, copies: int) -> jax.Array:
        """Transformed copies of instances under the problem's symmetries: same loss for every hypothesis
        relabelled accordingly, same ρ*, so the copies lie on the originals' class boundaries.

        - bandit: a random permutation of the arms and a common shift of every mean by ``c``, with ``|c|``
          log-uniform in [0.1, 100] times the instance's spread (max − min) and a random sign;
        - thresholds: the reflection ``θ ↦ −reverse(θ)`` (threshold k ↦ n − k), one copy whatever ``copies``;
        - jester: a common shift of every joke's score, if the all-ones vector is in the span of the joke
          factors (rarely; otherwise none);
        - twenty-questions: none (the profiles fix every question and answer).

        :param key: PRNG key.
        :param theta: instances, ``(B, d)``.
        :param copies: copies per instance (bandit, jester).
        :return: ``(B', d)`` (possibly empty).
        """
        theta = jnp.asarray(theta, jnp.float32)
        if self.name == "thresholds":
            return -theta[:, ::-1]
        if self.name == "bandit":
            count = theta.shape[0] * copies
            repeated = jnp.repeat(theta, copies, axis=0)
            permute_key, magnitude_key, sign_key = jax.random.split(key, 3)
            orders = jax.vmap(lambda k: jax.random.permutation(k, self.dim))(jax.random.split(permute_key, count))
            permuted = jnp.take_along_axis(repeated, orders, axis=-1)
            spread = jnp.max(repeated, axis=-1) - jnp.min(repeated, axis=-1)
            magnitude = 10.0 ** jax.random.uniform(magnitude_key, (count,), jnp.float32, -1.0, 2.0)
            sign = jnp.where(jax.random.bernoulli(sign_key, 0.5, (count,)), 1.0, -1.0)
            return permuted + (sign * magnitude * spread)[:, None]
        if self.name == "jester":
            shift = _common_shift_direction(self)
            if shift is None:
                return theta[:0]
            repeated = jnp.repeat(theta, copies, axis=0)
            scale = jnp.linalg.norm(repeated, axis=-1, keepdims=True)
            amount = jax.random.normal(key, (repeated.shape[0], 1), jnp.float32) * scale
            return repeated + amount * jnp.asarray(shift)[None, :]
        return theta[:0]

    # ------------------------------------------------------------------------------------------------------
    # Instance distributions

    def sample_instances(self, key: jax.Array, count: int) -> jax.Array:
        """Random instances of Θ of every shape (not on any class boundary); the adversary's refresh pool.

        - thresholds: k* uniform in 0..n; θ = cumulative Exp(1) increments shifted to a uniformly random point
          strictly between the (k*-1)-th and k*-th of them, so exactly k* entries are negative and none is zero.
        - bandit: means N(0, 1); the best arm is lifted to at least 1e-3 above the runner-up (no ties).
        - twenty-questions: a random profile p_j moved a fraction U(0, 1) of the way to a point u ~ U[0.02, 0.98]^n.
        - jester: random training users (= :meth:`prior`).

        :param key: PRNG key.
        :param count: number of instances.
        :return: ``(count, d)`` float32.
        """
        # Drawn at a bucketed batch size and cut, so that varying counts share a few compilations.
        return _sample_instances(self, key, _bucket(count))[:count]

    def _sample_instances(self, key: jax.Array, count: int) -> jax.Array:
        if self.name == "thresholds":
            return self._sample_thresholds(key, count)
        if self.name == "twenty-questions":
            pick_key, target_key, fraction_key = jax.random.split(key, 3)
            profiles = jnp.asarray(self.hypotheses)[jax.random.randint(pick_key, (count,), 0, self.num_hypotheses)]
            target = jax.random.uniform(target_key, (count, self.dim), jnp.float32, BOX_LOW, BOX_HIGH)
            fraction = jax.random.uniform(fraction_key, (count, 1), jnp.float32)
            return profiles + fraction * (target - profiles)
        if self.prior_pool is not None:
            return self.prior(key, count)
        means = jax.random.normal(key, (count, self.dim), jnp.float32)
        return _separate_best(means)

    def _sample_thresholds(self, key: jax.Array, count: int) -> jax.Array:
        n = self.dim
        threshold_key, increment_key, end_key, position_key = jax.random.split(key, 4)
        k = jax.random.randint(threshold_key, (count,), 0, n + 1)
        levels = jnp.cumsum(jax.random.exponential(increment_key, (count, n), jnp.float32), axis=-1)
        ends = jax.random.exponential(end_key, (count, 2), jnp.float32)
        # Padded levels: a point below the first and one above the last, so k = 0 and k = n need no special case.
        padded = jnp.concatenate([levels[:, :1] - ends[:, :1], levels, levels[:, -1:] + ends[:, 1:]], axis=-1)
        below = jnp.take_along_axis(padded, k[:, None], axis=-1)
        above = jnp.take_along_axis(padded, k[:, None] + 1, axis=-1)
        position = jax.random.uniform(position_key, (count, 1), jnp.float32, 0.05, 0.95)
        return levels - (below + position * (above - below))

    def sample_class(self, key: jax.Array, count: int, r: float | ArrayLike) -> jax.Array:
        """Random instances on the boundary of class r: ``project(sample_instances(key, count), r)``.

        :param key: PRNG key.
        :param count: number of instances.
        For Bernoulli problems (twenty-questions) the rays start only at profiles that lie inside the class
        (ρ*(p_j) ≤ r; all profiles if none does, and then the instances are the profiles, outside the class), and
        head for a point u ~ U[0.02, 0.98]^n, so that every instance lands on the boundary; a ray from a profile
        outside the class could not reach it.

        :param key: PRNG key.
        :param count: number of instances.
        :param r: class radius (scalar or ``(count,)``).
        :return: ``(count, d)``.
        """
        if self.noise == "gaussian":
            return self.project(self.sample_instances(key, count), r)
        steps = self.rho_steps
        radius = jnp.broadcast_to(jnp.asarray(r, jnp.float32), (count,))
        profiles = jnp.asarray(self.hypotheses)
        profile_rho = self.rho_star(profiles, steps)  # (m,), ρ*(p_j) at the target j itself
        pick_key, target_key = jax.random.split(key)
        inside = profile_rho[None, :] <= radius[:, None]  # (count, m)
        logits = jnp.where(inside | ~jnp.any(inside, axis=-1, keepdims=True), 0.0, -jnp.inf)
        stars = jax.random.categorical(pick_key, logits, axis=-1)
        targets = jax.random.uniform(target_key, (count, self.dim), jnp.float32, BOX_LOW, BOX_HIGH)
        return _bisect_batch(self, targets, radius, stars, steps)

    def prior(self, key: jax.Array, count: int) -> jax.Array:
        """The "natural" training distribution of the meta-learning baseline.

        twenty-questions: the profiles p_j (uniform j); jester: training users (the first 1600 refitted users);
        thresholds and bandit: :meth:`sample_instances` projected onto r drawn log-uniformly in
        ``[classes[0] / 2, 2 · classes[-1]]``.

        :param key: PRNG key.
        :param count: number of instances.
        :return: ``(count, d)``.
        """
        return self._draw(key, count, self.prior_pool)

    def natural(self, key: jax.Array, count: int) -> jax.Array:
        """Natural instances for the average-loss evaluation.

        twenty-questions: the profiles p_j; jester: held-out users (the last 400); thresholds and bandit: as
        :meth:`prior` (with an independent key).

        :param key: PRNG key.
        :param count: number of instances.
        :return: ``(count, d)``.
        """
        return self._draw(key, count, self.natural_pool)

    def _draw(self, key: jax.Array, count: int, pool: np.ndarray | None) -> jax.Array:
        if pool is not None:
            return jnp.asarray(pool)[jax.random.randint(key, (count,), 0, pool.shape[0])]
        instance_key, radius_key = jax.random.split(key)
        low, high = math.log(self.classes[0] / 2.0), math.log(self.classes[-1] * 2.0)
        radius = jnp.exp(jax.random.uniform(radius_key, (count,), jnp.float32, low, high))
        return self.project(self.sample_instances(instance_key, count), radius)


def _common_shift_direction(problem: ActiveProblem) -> np.ndarray | None:
    """u with ``<z, u> = 1`` for every hypothesis and ``<x, u>`` equal for every query (a common shift of every
    score and answer), or None if the factors span no such direction (to 1e-4 relative)."""
    hypotheses = np.asarray(problem.hypotheses, np.float64)
    ones = np.ones(hypotheses.shape[0])
    shift, *_ = np.linalg.lstsq(hypotheses, ones, rcond=None)
    if np.linalg.norm(hypotheses @ shift - ones) > 1e-4 * np.sqrt(len(ones)):
        return None
    return shift.astype(np.float32)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample_instances(problem: ActiveProblem, key: jax.Array, count: int) -> jax.Array:
    return problem._sample_instances(key, count)


def _bucket(count: int) -> int:
    """The compiled batch size serving ``count`` instances: the next power of two, at least 64."""
    return max(64, 1 << max(count - 1, 0).bit_length())


def _pad_batch(values: jax.Array) -> jax.Array:
    """Pad the leading axis to a power of two (at least 64) by repeating the first row, so that callers with
    varying batch sizes share a few compilations of the solvers."""
    count = values.shape[0]
    size = _bucket(count)
    if count == 0 or size == count:
        return values
    return jnp.concatenate([values, jnp.repeat(values[:1], size - count, axis=0)], axis=0)


# The solvers are jitted once per (problem, steps): the problem is hashed by identity, so eager calls reuse the
# compiled loop instead of re-tracing it, and calls inside an outer jit simply inline it.
# The step count is traced (a while loop), so 150 and 400 steps share one compilation.
@functools.partial(jax.jit, static_argnums=0)
def _rho_batch(problem: ActiveProblem, theta: jax.Array, steps: int | jax.Array) -> jax.Array:
    return jax.vmap(lambda instance: problem._rho_single(instance, steps))(theta)


@functools.partial(jax.jit, static_argnums=0)
def _bisect_batch(problem: ActiveProblem, theta: jax.Array, radius: jax.Array, stars: jax.Array,
                  steps: int | jax.Array) -> jax.Array:
    return jax.vmap(lambda instance, rad, star: problem._bisect_ray(instance, rad, star, steps))(theta, radius, stars)


def _separate_best(means: jax.Array, margin: float = 1e-3) -> jax.Array:
    """Lift each row's best entry to at least ``margin`` above the runner-up, so no instance has a tie."""
    best = jnp.argmax(means, axis=-1)
    is_best = jax.nn.one_hot(best, means.shape[-1], dtype=bool)
    runner_up = jnp.max(jnp.where(is_best, -jnp.inf, means), axis=-1, keepdims=True)
    return jnp.where(is_best, jnp.maximum(means, runner_up + margin), means)


# ----------------------------------------------------------------------------------------------------------
# Factory


def make_problem(name: str, *, budget: int | None = None, size: int | None = None,
                 classes: Sequence[float] | None = None, seed: int = 0) -> ActiveProblem:
    """Build a problem of :data:`PROBLEMS`.

    :param name: ``"thresholds"``, ``"bandit"``, ``"twenty-questions"`` or ``"jester"``.
    :param budget: T (defaults: thresholds 12, bandit 20, twenty-questions 8, jester 10).
    :param size: points (thresholds, 16), arms (bandit, 4), objects = questions (twenty-questions, 32), jokes
        (jester, 20). The default class grids were calibrated for the default sizes and budgets.
    :param classes: the class grid r_1 < ... < r_K (defaults: :data:`DEFAULT_CLASSES`).
    :param seed: seed of the synthetic data of twenty-questions and jester (profiles, factors, users).
    :raises ConfigError: unknown name (with close matches), budget < 1, size < 2 (jester: < 4), or classes not
        positive and strictly increasing.
    """
    if name not in PROBLEMS:
        close = difflib.get_close_matches(name, PROBLEMS, n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown active-learning problem {name!r}; choose one of {', '.join(PROBLEMS)}.{hint}")
    budget = DEFAULT_BUDGETS[name] if budget is None else budget
    _check_budget(budget)
    size = DEFAULT_SIZES[name] if size is None else size
    minimum_size = JESTER_RANK if name == "jester" else 2
    if not isinstance(size, (int, np.integer)) or size < minimum_size:
        raise ConfigError(f"problem {name!r}: size must be an integer >= {minimum_size}, got {size!r}")
    grid = DEFAULT_CLASSES[name] if classes is None else tuple(float(r) for r in classes)
    _check_classes(grid)
    return _build(name, int(budget), int(size), grid, int(seed))


@functools.lru_cache(maxsize=32)
def _build(name: str, budget: int, size: int, classes: tuple[float, ...], seed: int) -> ActiveProblem:
    # One object per distinct problem: compiled functions take the problem as a static argument hashed
    # by identity, so sharing it lets every run of the same problem in a process reuse their compilations.
    # The problem's arrays are read-only, so sharing is safe.
    builders = {"thresholds": _thresholds, "bandit": _bandit, "twenty-questions": _twenty_questions,
                "jester": _jester}
    return builders[name](budget=budget, size=size, classes=classes, seed=seed)


def _check_budget(budget: int) -> None:
    if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 1:
        raise ConfigError(f"budget must be an integer >= 1 (the number of queries before deciding), got {budget!r}")


def _check_classes(classes: Sequence[float]) -> None:
    values = np.asarray(classes, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0) \
            or np.any(np.diff(values) <= 0):
        raise ConfigError(f"classes must be a non-empty, strictly increasing sequence of positive finite radii r "
                          f"(e.g. (0.5, 1, 2, 4)), got {tuple(classes)!r}")


def _thresholds(*, budget: int, size: int, classes: tuple[float, ...], seed: int) -> ActiveProblem:
    """1-D thresholds on ``size`` points (lal.md §1.1, E1): X = I_n, z_{k,i} = +1 if i >= k else -1 (k = 0..n).

    Gaussian answers (σ = 1), identification loss, Θ = non-decreasing θ (realisable: k*(θ) is the number of
    negative entries). Classes (0.5, 1, 2, 4) as in lal.md §5. ``seed`` is unused (no synthetic data).
    """
    del seed
    hypotheses = np.where(np.arange(size)[None, :] >= np.arange(size + 1)[:, None], 1.0, -1.0)
    return ActiveProblem(name="thresholds", queries=np.eye(size), hypotheses=hypotheses,
                         offsets=np.zeros(size + 1), noise="gaussian", noise_std=1.0, loss="identification",
                         budget=budget, classes=classes)


def _bandit(*, budget: int, size: int, classes: tuple[float, ...], seed: int) -> ActiveProblem:
    """Best-arm identification with ``size`` Gaussian arms (σ = 1): X = Z = I, identification loss, Θ = R^arms.

    Class calibration (4 arms, T = 20; uniform round-robin, i.e. 5 pulls per arm, and the empirical-best
    decision; worst case = max over 384 boundary instances (:meth:`ActiveProblem.sample_class`) of the mean 0/1
    loss over 64 rollouts, so slightly inflated by the max over noisy means): r = 2 → 0.078, 4 → 0.125,
    6 → 0.22, 8 → 0.27, 16 → 0.44, 18 → 0.45, 32 → 0.55. The default grid (2, 6, 18) spans ~0.05-0.5 as
    lal.md §1.6 asks. ``seed`` is unused (no synthetic data).
    """
    del seed
    eye = np.eye(size)
    return ActiveProblem(name="bandit", queries=eye, hypotheses=eye, offsets=np.zeros(size), noise="gaussian",
                         noise_std=1.0, loss="identification", budget=budget, classes=classes)


def _twenty_questions(*, budget: int, size: int, classes: tuple[float, ...], seed: int) -> ActiveProblem:
    """Synthetic 20 Questions (lal.md §4): ``size`` objects answering ``size`` yes/no questions.

    Profiles p_{j,q} = sigmoid(3 <a_j, b_q> + c_q) with a_j, b_q ~ N(0, I_3) and c_q ~ N(0, 0.5²), clipped to
    [0.02, 0.98] (mostly near-deterministic answers, some ambiguous ones). X = I, Z = the profiles, offsets
    b_j = -||p_j||²/2, so z*(θ) = argmin_j ||θ − p_j||² (the nearest profile). Bernoulli answers, identification
    loss, ρ* with the Gaussian proxy σ² = 1/4; Θ = [0.02, 0.98]^n. Prior and natural instances: the profiles.

    Class calibration (seed 0, T = 8, MAP decision; worst case = max over 384 boundary instances of
    :meth:`ActiveProblem.sample_class` of the mean 0/1 loss over 64 rollouts). ρ*(p_j) of the 32 profiles runs
    from 5.1 to 57.7 (median 16), so classes with r < 5.1 are empty. Worst case (mean) per r:

    ======  ============================  =======================  =========================
    r       uniform round-robin (q 0..7)  uniformly random queries  greedy information gain
    ======  ============================  =======================  =========================
    6       0.39 (0.23)                   0.48 (0.33)              0.30 (0.15)
    8       0.80 (0.54)                   0.64 (0.46)              0.50 (0.27)
    12      0.89 (0.55)                   0.92 (0.58)              0.72 (0.38)
    20      1.00 (0.65)                   0.94 (0.70)              0.89 (0.54)
    ======  ============================  =======================  =========================

    At the profiles themselves uniform round-robin errs 0.59 on average (information gain 0.35): 8 questions are
    too few for a worst-case error near 0.1 in any non-empty class. The default grid (6, 8, 12) is the lowest
    non-trivial range. With T = 16 uniform round-robin gives 0.31 at r = 6 and 0.47 at r = 8 (information gain
    0.11 and 0.31).
    """
    rng = np.random.default_rng(seed)
    objects = rng.normal(size=(size, TWENTY_QUESTIONS_LATENT_DIM))
    questions = rng.normal(size=(size, TWENTY_QUESTIONS_LATENT_DIM))
    biases = rng.normal(scale=TWENTY_QUESTIONS_BIAS_STD, size=size)
    logits = TWENTY_QUESTIONS_SHARPNESS * objects @ questions.T + biases[None, :]
    profiles = np.clip(1.0 / (1.0 + np.exp(-logits)), BOX_LOW, BOX_HIGH).astype(np.float32)
    return ActiveProblem(name="twenty-questions", queries=np.eye(size), hypotheses=profiles,
                         offsets=-0.5 * np.sum(profiles.astype(np.float64) ** 2, axis=1), noise="bernoulli",
                         noise_std=0.5, loss="identification", budget=budget, classes=classes, answer_center=0.5,
                         answer_scale=0.5, prior_pool=profiles, natural_pool=profiles)


def _jester(*, budget: int, size: int, classes: tuple[float, ...], seed: int) -> ActiveProblem:
    """Synthetic Jester (lal.md §4): a linear bandit over ``size`` jokes with rank-4 factors.

    2000 users u ~ a 3-component Gaussian mixture in R⁴ (weights 0.5/0.3/0.2, means N(0, 1.5² I), unit
    component covariance); joke factors N(0, I); ratings R = U Vᵀ + N(0, 1), clipped to [-10, 10]. The factors
    are refitted by a rank-4 truncated SVD R ≈ U_4 S_4 V_4ᵀ: users = sqrt(2000) U_4 (second moment exactly I),
    jokes = V_4 S_4 / sqrt(2000). X = Z = the refitted joke factors, θ = a user vector, Gaussian answers (σ = 1),
    regret loss divided by 20 (the rating range). Prior (= sample_instances): the first 1600 refitted users;
    natural: the last 400.

    Class calibration (seed 0, T = 10; uniform round-robin asks jokes 0..9 once each, least-squares plug-in
    decision; worst case = max over 384 boundary instances of the mean loss over 64 rollouts). Worst-case
    identification error (the 0/1 loss of the same decision, used to place the grid) and worst-case regret loss:
    r = 0.25 → 0.03 / 0.004, 0.5 → 0.17 / 0.015, 1 → 0.30 / 0.021, 2 → 0.36 / 0.021, 4 → 0.48 / 0.028,
    8 → 0.75 / 0.030, 16 → 0.84 / 0.030. The regret stays small in every class (boundary instances of small
    classes are large but rarely misjudged, those of large classes are misjudged but small), so the grid
    (0.5, 2, 8) is placed by the identification error.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=JESTER_MIXTURE_MEAN_STD, size=(len(JESTER_MIXTURE_WEIGHTS), JESTER_RANK))
    component = rng.choice(len(JESTER_MIXTURE_WEIGHTS), size=JESTER_USERS, p=JESTER_MIXTURE_WEIGHTS)
    users = centres[component] + rng.normal(scale=JESTER_MIXTURE_COMPONENT_STD, size=(JESTER_USERS, JESTER_RANK))
    jokes = rng.normal(size=(size, JESTER_RANK))
    ratings = users @ jokes.T + rng.normal(scale=JESTER_RATING_NOISE_STD, size=(JESTER_USERS, size))
    ratings = np.clip(ratings, -JESTER_RATING_RANGE / 2, JESTER_RATING_RANGE / 2)
    left, singular, right = np.linalg.svd(ratings, full_matrices=False)
    fitted_users = left[:, :JESTER_RANK] * math.sqrt(JESTER_USERS)
    fitted_jokes = right[:JESTER_RANK].T * singular[:JESTER_RANK] / math.sqrt(JESTER_USERS)
    return ActiveProblem(name="jester", queries=fitted_jokes, hypotheses=fitted_jokes, offsets=np.zeros(size),
                         noise="gaussian", noise_std=1.0, loss="regret", budget=budget, classes=classes,
                         regret_scale=JESTER_RATING_RANGE, prior_pool=fitted_users[:JESTER_TRAINING_USERS],
                         natural_pool=fitted_users[JESTER_TRAINING_USERS:])
