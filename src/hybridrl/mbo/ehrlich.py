"""Ehrlich functions: closed-form test functions for biological sequence design.

Stanton et al. (2024), "Closed-Form Test Functions for Biophysical Sequence Optimization Algorithms"
(arXiv 2407.00236). This module implements them from their definition and matches the reference
implementation, ``pytorch-holo`` 0.0.5 (``holo.test_functions.closed_form.Ehrlich``): given the same
parameters, :func:`ehrlich_values` equals holo's value wherever holo's is finite, and
:func:`is_feasible` is true exactly where holo's value is finite (``tests/mbo/test_ehrlich.py``
checks this against values exported from holo).

Definition
----------
A design is a sequence ``x`` of ``L`` (``dim``) tokens from an alphabet of ``V`` (``num_states``) states.

* **Feasibility.** A discrete Markov process (DMP) with initial distribution ``π`` and transition matrix
  ``A`` defines which sequences exist: ``x`` is feasible iff ``π[x_0] > 0`` and ``A[x_t, x_{t+1}] > 0``
  for every ``t``. Some transitions are *banned* (``A[i, j] = 0``); self-transitions never are.
* **Motifs.** There are ``c`` (``num_motifs``) motifs ``a⁽ⁱ⁾`` of ``k`` (``motif_length``) states, each
  with offsets ``s⁽ⁱ⁾`` (``spacings``; ``s₁ = 0 < s₂ < … < s_k``). Motif ``i`` is present at position
  ``l`` when ``x[l + s_j] = a_j`` for all ``j``.
* **Quantised presence.** With ``q`` (``quantization``) levels, ``q`` dividing ``k``,

      h_q(x, a, s) = max_l  ⌊ (Σ_j 1[x_{l+s_j} = a_j]) / (k/q) ⌋ / q ,   l = 0 … L - 1 - s_k,

  i.e. the best fraction of the motif found anywhere in ``x``, rounded down to a multiple of ``1/q``.
* **Value.** ``f(x) = Π_i h_q(x, a⁽ⁱ⁾, s⁽ⁱ⁾)`` if ``x`` is feasible. holo returns ``-inf`` for
  infeasible ``x``; we return ``0.0`` (the floor of the feasible range) and expose :func:`is_feasible`.
  ``f`` lies in ``[0, 1]`` and its maximum, 1.0, is reached by :func:`optimal_solution`.

Parameter construction (:func:`make_ehrlich`), following holo's procedure step by step
------------------------------------------------------------------------------------------
1. Transition matrix: a dense matrix ``softmax(N / 0.5)`` row-wise, ``N`` standard normal ``V × V``. A
   banded 0/1 mask allows ``j ∈ {i - b, …, i + b} (mod V)`` in row ``i``, with bandwidth
   ``b = int(0.4 V)``; the mask's rows are shuffled by a random permutation, and the diagonal is then
   always allowed (repeats are always possible). Masked-out entries are banned (exactly 0) and rows are
   renormalised. The chain must be ergodic (``A^m > 0`` with ``m = (V - 1)² + 1``, Wielandt's bound).
2. Initial distribution: holo samples the first state from the chain's stationary distribution
   ``π A = π`` (and scores feasibility against a uniform one; both are strictly positive, so they ban
   nothing). ``initial_probs`` is this stationary distribution.
3. Motifs: one DMP sample of length ``c k`` (first state from ``π``), cut into ``c`` motifs of length
   ``k``. Because consecutive motif states are allowed transitions and self-transitions always are, the
   motifs are feasible under the DMP and so is the optimal solution below.
4. Spacings: with slack ``S = L - c k``, each motif draws weights ``w ~ U[0, 1)^(k-1)``, normalised to
   sum 1, and gaps ``1 + ⌊(S // c) w⌋``; the offsets are ``s = [0, cumsum(gaps)]``. Each spaced motif
   then spans at most ``k + S // c`` positions, so all ``c`` fit side by side in ``L``.
5. Optimal solution: the spaced motifs are laid side by side from position 0, each state repeated until
   the next motif element's offset, and the tail is filled with the last motif's last state.

Deviations from holo
--------------------
* Random numbers come from numpy (``np.random.default_rng(seed)``), holo's from torch, so
  ``make_ehrlich(..., seed=0)`` gives different parameters than holo's ``random_seed=0``. The function
  given its parameters is the same.
* holo raises when the sampled chain is not ergodic (possible for tiny ``V``); we redraw the matrix
  (deterministically, from the same generator) up to :data:`MAX_MATRIX_DRAWS` times.
* ``quantization`` must divide ``motif_length``. holo accepts any ``q`` and uses ``⌊n / ⌈k/q⌉⌋ /
  (k / ⌈k/q⌉)``, which equals the formula above when ``q`` divides ``k``; for other ``q`` its levels are
  not multiples of ``1/q`` (``k = 4, q = 3`` gives 0, 1/2, 1) and, when ``⌈k/q⌉`` does not divide ``k``,
  the optimum 1.0 is unreachable. We reject those ``q``.
* ``motif_length`` must be at least 2 (holo divides by ``k - 1``). holo's ``epistasis_factor`` and
  ``noise_std`` are not implemented (both default to 0 in holo).
* ``spacings`` stores the offsets ``s`` (first column 0), not holo's gaps ``s_{j+1} - s_j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from hybridrl.errors import ConfigError

#: How many transition matrices :func:`make_ehrlich` draws before giving up on an ergodic one.
MAX_MATRIX_DRAWS = 100

#: Softmax temperature and band fraction of holo's transition-matrix construction.
SOFTMAX_TEMPERATURE = 0.5
BANDWIDTH_FRACTION = 0.4

#: Tolerance on probability vectors summing to 1 (loose enough for float32 parameters, e.g. from holo).
PROBABILITY_TOLERANCE = 1e-5


@dataclass(frozen=True, eq=False)
class EhrlichFunction:
    """The parameters of one Ehrlich function; evaluate it with :func:`ehrlich_values`.

    Build one with :func:`make_ehrlich`, or from known parameters (e.g. exported from holo). Arrays are
    copied and made read-only. Instances compare and hash by identity.

    :param num_states: alphabet size ``V``.
    :param dim: sequence length ``L``.
    :param num_motifs: number of motifs ``c``.
    :param motif_length: states per motif ``k``.
    :param quantization: number of quantisation levels ``q`` of each motif's presence; divides ``k``.
    :param initial_probs: ``(V,)`` DMP initial state distribution.
    :param transition_matrix: ``(V, V)`` DMP transition matrix; rows sum to 1, banned transitions are 0.
    :param motifs: ``(c, k)`` motif states.
    :param spacings: ``(c, k)`` offsets of each motif's elements from its first one; first column 0,
        strictly increasing along each row.
    """

    num_states: int
    dim: int
    num_motifs: int
    motif_length: int
    quantization: int
    initial_probs: np.ndarray
    transition_matrix: np.ndarray
    motifs: np.ndarray
    spacings: np.ndarray

    def __post_init__(self) -> None:
        _check_sizes(self.num_states, self.dim, self.num_motifs, self.motif_length, self.quantization)
        states, c, k = self.num_states, self.num_motifs, self.motif_length
        initial_probs = _read_only(np.asarray(self.initial_probs, dtype=np.float64))
        transition_matrix = _read_only(np.asarray(self.transition_matrix, dtype=np.float64))
        motifs = _read_only(_as_int64(self.motifs, "motifs"))
        spacings = _read_only(_as_int64(self.spacings, "spacings"))
        for name, array, shape in [("initial_probs", initial_probs, (states,)),
                                   ("transition_matrix", transition_matrix, (states, states)),
                                   ("motifs", motifs, (c, k)), ("spacings", spacings, (c, k))]:
            if array.shape != shape:
                raise ConfigError(f"{name} must have shape {shape} (from num_states={states}, num_motifs={c}, "
                                  f"motif_length={k}), got {array.shape}")
        _check_distribution(initial_probs, "initial_probs")
        _check_distribution(transition_matrix, "transition_matrix rows")
        if np.any(np.diag(transition_matrix) <= 0):
            raise ConfigError("transition_matrix must allow every self-transition (positive diagonal): "
                              "the optimal solution repeats states between spaced motif elements")
        if motifs.min() < 0 or motifs.max() >= states:
            raise ConfigError(f"motif states must lie in [0, {states}), got values in "
                              f"[{motifs.min()}, {motifs.max()}]")
        if np.any(spacings[:, 0] != 0) or np.any(np.diff(spacings, axis=1) <= 0):
            raise ConfigError(f"each row of spacings must start at 0 and increase strictly, got {spacings.tolist()}")
        if int(np.sum(spacings[:, -1] + 1)) > self.dim:
            raise ConfigError(f"the spaced motifs span {int(np.sum(spacings[:, -1] + 1))} positions side by side, "
                              f"more than dim={self.dim}: no sequence would reach the optimum 1.0")
        if not _chain_feasible(motifs.reshape(-1), initial_probs, transition_matrix):
            raise ConfigError("the motifs, read one after the other, must be a feasible DMP sequence "
                              "(no banned transition), else the optimum 1.0 may be infeasible")
        object.__setattr__(self, "initial_probs", initial_probs)
        object.__setattr__(self, "transition_matrix", transition_matrix)
        object.__setattr__(self, "motifs", motifs)
        object.__setattr__(self, "spacings", spacings)

    @property
    def banned_transitions(self) -> np.ndarray:
        """``(V, V)`` bool: ``True`` where the transition ``i → j`` is banned."""
        return self.transition_matrix <= 0


def make_ehrlich(num_states: int, dim: int, num_motifs: int, motif_length: int, quantization: int | None = None,
                 seed: int = 0) -> EhrlichFunction:
    """Draw an Ehrlich function the way holo does, from a numpy generator (see the module docstring).

    :param num_states: alphabet size ``V`` (at least 2).
    :param dim: sequence length ``L``; must hold the motifs, ``num_motifs * motif_length <= dim``.
    :param num_motifs: number of motifs ``c`` (at least 1).
    :param motif_length: states per motif ``k`` (at least 2).
    :param quantization: quantisation levels ``q``, a divisor of ``motif_length``; ``None`` means ``k``.
    :param seed: seed of the numpy generator; the same arguments and seed give the same function.
    :returns: the function's parameters.
    :raises ConfigError: for sizes that do not fit, or a quantisation that does not divide ``motif_length``.
    """
    if quantization is None:
        quantization = motif_length
    _check_sizes(num_states, dim, num_motifs, motif_length, quantization)
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, got {seed}")
    rng = np.random.default_rng(seed)
    transition_matrix = _sample_transition_matrix(num_states, rng)
    stationary = _stationary_distribution(transition_matrix)
    all_motif_states = _sample_chains(stationary, transition_matrix, num_motifs * motif_length, 1, rng)[0]
    motifs = all_motif_states.reshape(num_motifs, motif_length)
    slack_per_motif = (dim - num_motifs * motif_length) // num_motifs
    spacings = np.zeros((num_motifs, motif_length), dtype=np.int64)
    for motif_index in range(num_motifs):
        weights = rng.random(motif_length - 1)
        weights /= weights.sum()
        gaps = 1 + np.floor(slack_per_motif * weights).astype(np.int64)
        spacings[motif_index, 1:] = np.cumsum(gaps)
    return EhrlichFunction(num_states=num_states, dim=dim, num_motifs=num_motifs, motif_length=motif_length,
                           quantization=quantization, initial_probs=stationary, transition_matrix=transition_matrix,
                           motifs=motifs, spacings=spacings)


def is_feasible(fn: EhrlichFunction, x: ArrayLike) -> np.ndarray:
    """Whether each design is a possible DMP sequence: positive initial probability, no banned transition.

    :param fn: the Ehrlich function.
    :param x: ``(n, L)`` integer designs with tokens in ``[0, V)``; an ``(L,)`` design is a batch of one.
    :returns: ``(n,)`` bool.
    :raises ConfigError: for a wrong shape, non-integer values or tokens outside ``[0, V)``.
    """
    return _feasible(fn, _check_designs(fn, x))


def ehrlich_values(fn: EhrlichFunction, x: ArrayLike) -> np.ndarray:
    """The Ehrlich function's values: product over motifs of their quantised presence; infeasible → 0.0.

    Vectorised numpy: for each motif element ``(i, j)`` one comparison of the ``(n, L - s_k)`` window
    starts against ``a_j``, so 100k designs of length 32 take a few tens of milliseconds.

    :param fn: the Ehrlich function.
    :param x: ``(n, L)`` integer designs with tokens in ``[0, V)``; an ``(L,)`` design is a batch of one.
    :returns: ``(n,)`` float64 in ``[0, 1]``.
    :raises ConfigError: for a wrong shape, non-integer values or tokens outside ``[0, V)``.
    """
    designs = _check_designs(fn, x)
    values = np.ones(designs.shape[0], dtype=np.float64)
    elements_per_level = fn.motif_length // fn.quantization
    for motif, offsets in zip(fn.motifs, fn.spacings, strict=True):
        num_starts = fn.dim - int(offsets[-1])
        present = np.zeros((designs.shape[0], num_starts), dtype=np.int16)
        for state, offset in zip(motif, offsets, strict=True):
            present += designs[:, offset : offset + num_starts] == state
        best_count = present.max(axis=1)
        values *= (best_count // elements_per_level) / fn.quantization
    return np.where(_feasible(fn, designs), values, 0.0)


def sample_dmp(fn: EhrlichFunction, n: int, seed: int) -> np.ndarray:
    """Sample designs from the function's DMP (what holo's ``initial_solution`` does); all are feasible.

    :param fn: the Ehrlich function.
    :param n: number of designs (non-negative).
    :param seed: seed of the numpy generator.
    :returns: ``(n, L)`` int64.
    :raises ConfigError: for a negative ``n`` or ``seed``.
    """
    if n < 0:
        raise ConfigError(f"the number of samples must be non-negative, got {n}")
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, got {seed}")
    return _sample_chains(fn.initial_probs, fn.transition_matrix, fn.dim, n, np.random.default_rng(seed))


def optimal_solution(fn: EhrlichFunction) -> np.ndarray:
    """A design scoring 1.0: the spaced motifs side by side, gaps and tail filled by repeating states.

    :param fn: the Ehrlich function.
    :returns: ``(L,)`` int64.
    """
    solution = np.empty(fn.dim, dtype=np.int64)
    position = 0
    for motif, offsets in zip(fn.motifs, fn.spacings, strict=True):
        span = int(offsets[-1]) + 1
        # Element j holds from its offset until the next element's offset.
        element_index = np.searchsorted(offsets, np.arange(span), side="right") - 1
        solution[position : position + span] = motif[element_index]
        position += span
    solution[position:] = solution[position - 1]
    return solution


def _check_sizes(num_states: int, dim: int, num_motifs: int, motif_length: int, quantization: int) -> None:
    for name, value, minimum in [("num_states", num_states, 2), ("dim", dim, 1), ("num_motifs", num_motifs, 1),
                                 ("motif_length", motif_length, 2), ("quantization", quantization, 1)]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if num_motifs * motif_length > dim:
        raise ConfigError(f"num_motifs * motif_length = {num_motifs * motif_length} must not exceed dim = {dim}: "
                          "the motifs must fit side by side in one sequence; lower them or raise dim")
    if motif_length % quantization != 0:
        divisors = [q for q in range(1, motif_length + 1) if motif_length % q == 0]
        raise ConfigError(f"quantization must divide motif_length = {motif_length}, got {quantization}; "
                          f"choose one of {divisors}")


def _as_int64(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ConfigError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.setflags(write=False)
    return array


def _check_distribution(probs: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ConfigError(f"{name} must be finite and non-negative")
    sums = probs.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > PROBABILITY_TOLERANCE):
        raise ConfigError(f"{name} must sum to 1, got sums {np.round(np.atleast_1d(sums), 6).tolist()}")


def _chain_feasible(states: np.ndarray, initial_probs: np.ndarray, transition_matrix: np.ndarray) -> bool:
    return bool(initial_probs[states[0]] > 0 and np.all(transition_matrix[states[:-1], states[1:]] > 0))


def _check_designs(fn: EhrlichFunction, x: ArrayLike) -> np.ndarray:
    designs = np.asarray(x)
    if designs.ndim == 1:
        designs = designs[None, :]
    if designs.ndim != 2 or designs.shape[1] != fn.dim:
        raise ConfigError(f"designs must have shape (n, {fn.dim}) or ({fn.dim},), got {np.shape(x)}")
    if designs.dtype.kind == "f":
        # Accept integral floats (holo casts to long); reject anything else rather than truncating it.
        if not np.all(np.isfinite(designs)) or np.any(designs != np.round(designs)):
            raise ConfigError("designs must hold integer tokens; got non-integral or non-finite floats")
    elif designs.dtype.kind not in "iub":
        raise ConfigError(f"designs must hold integer tokens, got dtype {designs.dtype}")
    if designs.size and (designs.min() < 0 or designs.max() >= fn.num_states):
        raise ConfigError(f"design tokens must lie in [0, {fn.num_states}), got values in "
                          f"[{designs.min()}, {designs.max()}]")
    return designs.astype(np.int64, copy=False)


def _feasible(fn: EhrlichFunction, designs: np.ndarray) -> np.ndarray:
    allowed = fn.transition_matrix > 0
    return (fn.initial_probs[designs[:, 0]] > 0) & np.all(allowed[designs[:, :-1], designs[:, 1:]], axis=1)


def _banded_mask(num_states: int, bandwidth: int) -> np.ndarray:
    # Row i allows columns i - b … i + b, wrapping around (holo's banded_square_matrix).
    distance = (np.arange(num_states)[None, :] - np.arange(num_states)[:, None]) % num_states
    return (distance <= bandwidth) | (distance >= num_states - bandwidth)


def _is_ergodic(transition_matrix: np.ndarray) -> bool:
    # Irreducible and aperiodic iff A^m > 0 for m = (V - 1)^2 + 1 (Wielandt); checked on the 0/1
    # pattern by repeated squaring, which overshoots m harmlessly (A^m > 0 implies A^(m+1) > 0).
    num_states = transition_matrix.shape[0]
    reach = (transition_matrix > 0).astype(np.int64)
    power = 1
    while power < (num_states - 1) ** 2 + 1:
        reach = np.minimum(reach @ reach, 1)
        power *= 2
    return bool(np.all(reach > 0))


def _sample_transition_matrix(num_states: int, rng: np.random.Generator) -> np.ndarray:
    bandwidth = int(num_states * BANDWIDTH_FRACTION)
    for _ in range(MAX_MATRIX_DRAWS):
        logits = rng.standard_normal((num_states, num_states)) / SOFTMAX_TEMPERATURE
        dense = np.exp(logits - logits.max(axis=1, keepdims=True))
        dense /= dense.sum(axis=1, keepdims=True)
        mask = _banded_mask(num_states, bandwidth)[rng.permutation(num_states)]
        mask |= np.eye(num_states, dtype=bool)
        transition_matrix = np.where(mask, dense, 0.0)
        transition_matrix /= transition_matrix.sum(axis=1, keepdims=True)
        if _is_ergodic(transition_matrix):
            return transition_matrix
    raise ConfigError(f"no ergodic transition matrix for num_states={num_states} in {MAX_MATRIX_DRAWS} draws; "
                      "try another seed or more states")


def _stationary_distribution(transition_matrix: np.ndarray) -> np.ndarray:
    # Solve π (I - A) = 0 with Σ π = 1 in the least-squares sense, like holo's QR solve.
    num_states = transition_matrix.shape[0]
    system = np.vstack([(np.eye(num_states) - transition_matrix).T, np.ones((1, num_states))])
    target = np.zeros(num_states + 1)
    target[-1] = 1.0
    stationary = np.linalg.lstsq(system, target, rcond=None)[0]
    stationary = np.clip(stationary, 0.0, None)
    return stationary / stationary.sum()


def _sample_chains(initial_probs: np.ndarray, transition_matrix: np.ndarray, length: int, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    # Inverse-CDF sampling. Normalising each CDF by its last entry makes it end at exactly 1.0, so a
    # uniform draw in [0, 1) never lands past the last state, and a zero-probability state (a flat step
    # of the CDF) is never the first entry above the draw.
    initial_cdf = np.cumsum(initial_probs)
    initial_cdf /= initial_cdf[-1]
    transition_cdf = np.cumsum(transition_matrix, axis=1)
    transition_cdf /= transition_cdf[:, -1:]
    chains = np.empty((n, length), dtype=np.int64)
    chains[:, 0] = np.sum(rng.random(n)[:, None] >= initial_cdf[None, :], axis=1)
    for t in range(1, length):
        draws = rng.random(n)
        chains[:, t] = np.sum(draws[:, None] >= transition_cdf[chains[:, t - 1]], axis=1)
    return chains
