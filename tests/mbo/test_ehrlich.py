"""Ehrlich functions: equivalence with pytorch-holo 0.0.5, properties of our construction, argument checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridrl.errors import ConfigError
from hybridrl.mbo.ehrlich import (
    EhrlichFunction,
    ehrlich_values,
    is_feasible,
    make_ehrlich,
    optimal_solution,
    sample_dmp,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ehrlich_holo.npz"
#: Kind codes of the fixture's designs (see tools/export_ehrlich_fixture.py).
DMP, DMP_MUTANT, UNIFORM, OPTIMAL, OPTIMAL_MUTANT = range(5)

CONFIGS = [(20, 32, 2, 4, 4), (32, 32, 4, 4, 4), (4, 8, 2, 2, 2), (20, 32, 2, 4, 2), (12, 40, 3, 6, 3)]


def _holo_cases() -> dict[str, dict[str, np.ndarray]]:
    with np.load(FIXTURE) as data:
        return {str(name): {key.split("__", 1)[1]: data[key] for key in data.files if key.startswith(f"{name}__")}
                for name in data["cases"]}


HOLO_CASES = _holo_cases()


def _from_holo(case: dict[str, np.ndarray]) -> EhrlichFunction:
    num_states, dim, num_motifs, motif_length, quantization, _ = case["sizes"].tolist()
    gaps = case["gaps"]
    offsets = np.concatenate([np.zeros((gaps.shape[0], 1), dtype=np.int64), np.cumsum(gaps, axis=1)], axis=1)
    return EhrlichFunction(num_states=num_states, dim=dim, num_motifs=num_motifs, motif_length=motif_length,
                           quantization=quantization, initial_probs=case["stationary_dist"],
                           transition_matrix=case["transition_matrix"], motifs=case["motifs"], spacings=offsets)


@pytest.mark.parametrize("name", sorted(HOLO_CASES))
def test_matches_holo(name: str) -> None:
    case = HOLO_CASES[name]
    fn = _from_holo(case)
    holo_values, designs, kinds = case["values"].astype(np.float64), case["x"], case["kind"]
    holo_feasible = np.isfinite(holo_values)
    # The fixture must exercise both branches, from every source of designs that has them.
    assert holo_feasible[kinds == DMP].all()
    assert 0 < holo_feasible[kinds == DMP_MUTANT].mean() < 1
    assert not holo_feasible.all()

    np.testing.assert_array_equal(is_feasible(fn, designs), holo_feasible)
    values = ehrlich_values(fn, designs)
    np.testing.assert_allclose(values[holo_feasible], holo_values[holo_feasible], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(values[~holo_feasible], 0.0)
    # holo's optimal solution is ours too (same construction, same parameters).
    np.testing.assert_array_equal(optimal_solution(fn), designs[kinds == OPTIMAL][0])
    # Holo's DMP initial distribution is uniform and its first-state distribution the stationary one:
    # both positive, so neither bans a first state.
    assert (case["initial_dist"] > 0).all() and (case["stationary_dist"] > 0).all()


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda config: "v{}_l{}_c{}_k{}_q{}".format(*config))
def function(request: pytest.FixtureRequest) -> EhrlichFunction:
    num_states, dim, num_motifs, motif_length, quantization = request.param
    return make_ehrlich(num_states, dim, num_motifs, motif_length, quantization, seed=3)


def test_construction(function: EhrlichFunction) -> None:
    matrix = function.transition_matrix
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
    assert (np.diag(matrix) > 0).all()
    band = 2 * int(0.4 * function.num_states) + 1
    if band < function.num_states:  # otherwise the band covers every column and nothing is banned
        assert function.banned_transitions.any()
        assert (function.banned_transitions.sum(axis=1) <= function.num_states - band).all()
    np.testing.assert_allclose(function.initial_probs @ matrix, function.initial_probs, atol=1e-10)
    motif_chain = function.motifs.reshape(1, -1)
    assert motif_chain.shape[1] <= function.dim
    padded = np.concatenate([motif_chain, np.repeat(motif_chain[:, -1:], function.dim - motif_chain.shape[1], 1)], 1)
    assert is_feasible(function, padded).all()  # the motifs, one after the other, are a DMP path
    assert (function.spacings[:, 0] == 0).all() and (np.diff(function.spacings, axis=1) >= 1).all()
    slack_per_motif = (function.dim - function.num_motifs * function.motif_length) // function.num_motifs
    assert (function.spacings[:, -1] <= function.motif_length - 1 + slack_per_motif).all()


def test_values(function: EhrlichFunction) -> None:
    designs = sample_dmp(function, 2000, seed=7)
    assert designs.dtype == np.int64 and designs.shape == (2000, function.dim)
    assert is_feasible(function, designs).all()
    values = ehrlich_values(function, designs)
    assert values.dtype == np.float64 and ((values >= 0) & (values <= 1)).all()
    # Each motif contributes a multiple of 1/q, so q^c * value is an integer.
    scaled = values * function.quantization**function.num_motifs
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-9)
    best = optimal_solution(function)
    assert best.dtype == np.int64 and best.shape == (function.dim,)
    assert ehrlich_values(function, best).tolist() == [1.0]
    assert is_feasible(function, best).tolist() == [True]
    uniform = np.random.default_rng(0).integers(function.num_states, size=(500, function.dim))
    uniform_values = ehrlich_values(function, uniform)
    assert (uniform_values[~is_feasible(function, uniform)] == 0.0).all()


def _reference_value(fn: EhrlichFunction, design: np.ndarray) -> float:
    """The definition, written as loops: product over motifs of the best quantised fraction present."""
    value = 1.0
    for motif, offsets in zip(fn.motifs, fn.spacings, strict=True):
        best = 0.0
        for start in range(fn.dim - offsets[-1]):
            matches = sum(int(design[start + offset] == state) for state, offset in zip(motif, offsets, strict=True))
            best = max(best, np.floor(fn.quantization * matches / fn.motif_length) / fn.quantization)
        value *= best
    return value


def test_hand_built_function() -> None:
    # V = 3 with 0 -> 2 banned; motifs (0, 1, 1, 2) at offsets (0, 1, 2, 3) and (2, 2, 0, 0) at (0, 1, 2, 4).
    matrix = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]])
    fn = EhrlichFunction(num_states=3, dim=9, num_motifs=2, motif_length=4, quantization=2,
                         initial_probs=np.full(3, 1 / 3), transition_matrix=matrix,
                         motifs=np.array([[0, 1, 1, 2], [2, 2, 0, 0]]),
                         spacings=np.array([[0, 1, 2, 3], [0, 1, 2, 4]]))
    best = optimal_solution(fn)
    np.testing.assert_array_equal(best, [0, 1, 1, 2, 2, 2, 0, 0, 0])
    designs = np.array([best,
                        [0, 1, 1, 2, 2, 2, 0, 0, 1],  # second motif 3 of 4 -> 1/2
                        [0, 1, 1, 1, 2, 2, 0, 0, 0],  # first motif 3 of 4 -> 1/2
                        [0, 1, 1, 1, 2, 2, 1, 0, 0],  # 3 of 4 and 3 of 4 -> 1/4
                        [1, 1, 1, 1, 1, 1, 1, 1, 1],  # at most 2 of 4 and 0 of 4 -> 0
                        [0, 2, 1, 2, 2, 2, 0, 0, 0]])  # banned 0 -> 2: infeasible
    np.testing.assert_array_equal(ehrlich_values(fn, designs), [1.0, 0.5, 0.5, 0.25, 0.0, 0.0])
    np.testing.assert_array_equal(is_feasible(fn, designs), [True, True, True, True, True, False])
    random_designs = sample_dmp(fn, 300, seed=0)
    expected = [_reference_value(fn, design) for design in random_designs]
    np.testing.assert_allclose(ehrlich_values(fn, random_designs), expected)


def test_deterministic_per_seed() -> None:
    first, second, other = (make_ehrlich(20, 32, 2, 4, seed=seed) for seed in (5, 5, 6))
    for field in ("initial_probs", "transition_matrix", "motifs", "spacings"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert not np.array_equal(first.transition_matrix, other.transition_matrix)
    np.testing.assert_array_equal(sample_dmp(first, 50, seed=1), sample_dmp(second, 50, seed=1))
    assert not np.array_equal(sample_dmp(first, 50, seed=1), sample_dmp(first, 50, seed=2))
    assert make_ehrlich(20, 32, 2, 4).quantization == 4


def test_parameters_are_read_only() -> None:
    fn = make_ehrlich(8, 16, 2, 2, seed=0)
    with pytest.raises(ValueError, match="read-only"):
        fn.motifs[0, 0] = 1


def test_fast() -> None:
    import time

    fn = make_ehrlich(32, 32, 4, 4, seed=0)
    designs = np.random.default_rng(0).integers(32, size=(100_000, 32))
    start = time.perf_counter()
    ehrlich_values(fn, designs)
    assert time.perf_counter() - start < 2.0  # typically ~0.1 s; loose for shared CI machines


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_motifs": 3, "motif_length": 4, "dim": 10}, "must not exceed dim"),
    ({"quantization": 3}, "quantization must divide motif_length = 4"),
    ({"quantization": 8}, "quantization must divide"),
    ({"quantization": 0}, "quantization must be at least 1"),
    ({"motif_length": 1}, "motif_length must be at least 2"),
    ({"num_states": 1}, "num_states must be at least 2"),
    ({"dim": 32.0}, "dim must be an integer"),
    ({"seed": -1}, "seed must be non-negative"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"num_states": 20, "dim": 32, "num_motifs": 2, "motif_length": 4, **kwargs}
    with pytest.raises(ConfigError, match=message):
        make_ehrlich(**arguments)


def test_bad_designs() -> None:
    fn = make_ehrlich(20, 32, 2, 4, seed=0)
    best = optimal_solution(fn)
    with pytest.raises(ConfigError, match=r"tokens must lie in \[0, 20\)"):
        ehrlich_values(fn, np.full((2, 32), 20))
    with pytest.raises(ConfigError, match=r"tokens must lie in \[0, 20\)"):
        is_feasible(fn, np.full((2, 32), -1))
    with pytest.raises(ConfigError, match=r"shape \(n, 32\)"):
        ehrlich_values(fn, np.zeros((2, 31), dtype=np.int64))
    with pytest.raises(ConfigError, match="integer tokens"):
        ehrlich_values(fn, best + 0.5)
    with pytest.raises(ConfigError, match="integer tokens"):
        ehrlich_values(fn, best.astype(str))
    assert ehrlich_values(fn, best.astype(np.float32)).tolist() == [1.0]  # integral floats are fine
    assert ehrlich_values(fn, np.zeros((0, 32), dtype=np.int64)).shape == (0,)
    with pytest.raises(ConfigError, match="non-negative"):
        sample_dmp(fn, -1, seed=0)


def test_bad_parameters() -> None:
    fn = make_ehrlich(20, 32, 2, 4, seed=0)
    fields = {name: getattr(fn, name) for name in ("num_states", "dim", "num_motifs", "motif_length",
                                                   "quantization", "initial_probs", "transition_matrix",
                                                   "motifs", "spacings")}
    no_self_loop = fn.transition_matrix.copy()
    no_self_loop[0] = np.roll(np.eye(20)[0], 1)
    banned = np.argwhere(fn.banned_transitions)[0]
    infeasible_motifs = fn.motifs.copy()
    infeasible_motifs[0, :2] = banned
    for override, message in [
        ({"transition_matrix": fn.transition_matrix * 2}, "must sum to 1"),
        ({"transition_matrix": no_self_loop}, "self-transition"),
        ({"initial_probs": np.ones(19) / 19}, r"initial_probs must have shape \(20,\)"),
        ({"motifs": fn.motifs + 20}, r"motif states must lie in \[0, 20\)"),
        ({"motifs": fn.motifs.astype(float)}, "motifs must be integers"),
        ({"spacings": fn.spacings[:, ::-1].copy()}, "start at 0 and increase strictly"),
        ({"spacings": fn.spacings * 3}, "more than dim=32"),
        ({"motifs": infeasible_motifs}, "feasible DMP sequence"),
    ]:
        with pytest.raises(ConfigError, match=message):
            EhrlichFunction(**{**fields, **override})
