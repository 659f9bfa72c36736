"""Statistics against values computed by hand, and the stratified bootstrap's defining properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.experiments.statistics import (
    area_under_curve,
    as_task_scores,
    confidence_interval,
    interquartile_mean,
    interval_estimate,
    mean_score,
    median_of_runs,
    median_score,
    optimality_gap,
    performance_profile,
    probability_of_improvement,
    probability_of_improvement_interval,
    stratified_bootstrap,
)

# Four runs on three tasks; the values worked by hand below.
TASK_A = [0.2, 0.4, 0.6, 1.2]
TASK_B = [0.0, 0.5, 1.0, 1.5]
TASK_C = [2.0, 2.0, 2.0, 2.0]
THREE_TASKS = as_task_scores(np.array([TASK_A, TASK_B, TASK_C]).T)


def test_interquartile_mean_by_hand() -> None:
    # 8 runs: drop floor(0.25 * 8) = 2 at each end -> mean(3, 4, 5, 6).
    assert float(interquartile_mean(as_task_scores(np.arange(1.0, 9.0)))) == pytest.approx(4.5)
    # 5 runs: drop 1 at each end of [0, 1, 2, 10, 100] -> mean(1, 2, 10).
    assert float(interquartile_mean(as_task_scores([10.0, 0.0, 1.0, 2.0, 100.0]))) == pytest.approx(13 / 3)
    # 12 scores pooled over tasks, sorted [0, .2, .4, .5, .6, 1, 1.2, 1.5, 2, 2, 2, 2]: keep the middle 6.
    assert float(interquartile_mean(THREE_TASKS)) == pytest.approx((0.5 + 0.6 + 1.0 + 1.2 + 1.5 + 2.0) / 6)


def test_mean_median_and_optimality_gap_by_hand() -> None:
    # Task means: 0.6, 0.75, 2.0.
    assert float(mean_score(THREE_TASKS)) == pytest.approx((0.6 + 0.75 + 2.0) / 3)
    assert float(median_score(THREE_TASKS)) == pytest.approx(0.75)
    # The median of the 12 pooled scores: mean of the 6th and 7th, 1.0 and 1.2.
    assert float(median_of_runs(THREE_TASKS)) == pytest.approx(1.1)
    # min(x, 1) per task: means 0.55, 0.625, 1.0.
    assert float(optimality_gap(THREE_TASKS)) == pytest.approx(1.0 - (0.55 + 0.625 + 1.0) / 3)
    # On the 0-100 scale with target 100 the gap scales with it.
    scaled = [task * 100 for task in THREE_TASKS]
    expected_gap = 100 * (1.0 - (0.55 + 0.625 + 1.0) / 3)
    assert float(optimality_gap(scaled, target=100.0)) == pytest.approx(expected_gap)


def test_interquartile_mean_matches_scipy_trim_mean() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for runs in (3, 4, 7, 10, 33):
        scores = rng.normal(size=runs)
        assert float(interquartile_mean([scores])) == pytest.approx(stats.trim_mean(scores, 0.25))


def test_performance_profile_by_hand() -> None:
    # Fraction above 0.5: A 2/4, B 2/4, C 4/4; above 1.0: A 1/4, B 1/4, C 4/4.
    profile = performance_profile(THREE_TASKS, [0.5, 1.0])
    np.testing.assert_allclose(profile, [(0.5 + 0.5 + 1.0) / 3, (0.25 + 0.25 + 1.0) / 3])


def test_probability_of_improvement_by_hand() -> None:
    # Task 1: X = [1, 2, 3] vs Y = [2, 2]: 2 wins, 2 ties, 2 losses -> (2 + 0.5 * 2) / 6 = 0.5.
    # Task 2: X = [3, 4] beats Y = [1, 2] always -> 1.0. Average over tasks 0.75.
    x_scores = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0])]
    y_scores = [np.array([2.0, 2.0]), np.array([1.0, 2.0])]
    assert float(probability_of_improvement(x_scores, y_scores)) == pytest.approx(0.75)
    interval = probability_of_improvement_interval(x_scores, y_scores, reps=500)
    assert interval.estimate == pytest.approx(0.75)
    assert interval.lower <= 0.75 <= interval.upper


def test_area_under_curve_by_hand() -> None:
    # Trapezoids: (0 + 10) / 2 * 100 + (10 + 10) / 2 * 200 = 2500 over 300 steps.
    assert area_under_curve([0, 100, 300], [0.0, 10.0, 10.0]) == pytest.approx(2500 / 300)
    assert area_under_curve([300, 0, 100], [10.0, 0.0, 10.0]) == pytest.approx(2500 / 300)  # any order
    assert area_under_curve([500], [7.0]) == 7.0


def test_bootstrap_percentile_interval_by_hand() -> None:
    # Two runs [0, 1]: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles are 0 and 1.
    interval = interval_estimate([0.0, 1.0], mean_score, reps=4000, rng=np.random.default_rng(0))
    assert (interval.estimate, interval.lower, interval.upper) == (0.5, 0.0, 1.0)


def test_bootstrap_resamples_within_each_task() -> None:
    # Task 1 has one run (0); task 2 has runs 10 and 20. A stratified resample keeps task 1's run and
    # draws two of task 2's, so the mean over tasks can only be (0 + 10) / 2, (0 + 15) / 2 or (0 + 20) / 2.
    tasks = [np.array([0.0]), np.array([10.0, 20.0])]
    resampled = stratified_bootstrap(tasks, mean_score, reps=2000, rng=np.random.default_rng(1))
    assert resampled.shape == (2000,)
    assert set(np.unique(resampled)) == {5.0, 7.5, 10.0}


def test_bootstrap_interval_width_matches_normal_theory() -> None:
    # For the mean of 200 standard normal runs the 95 % interval is about ±1.96 / sqrt(200) wide.
    scores = np.random.default_rng(7).normal(size=200)
    interval = interval_estimate(scores, mean_score, reps=4000, rng=np.random.default_rng(8))
    half_width = (interval.upper - interval.lower) / 2
    assert half_width == pytest.approx(1.96 * scores.std(ddof=1) / np.sqrt(200), rel=0.12)
    assert interval.lower < interval.estimate < interval.upper


def test_bootstrap_is_reproducible_and_degenerate_for_single_runs() -> None:
    first = interval_estimate(THREE_TASKS, interquartile_mean, rng=np.random.default_rng(5))
    second = interval_estimate(THREE_TASKS, interquartile_mean, rng=np.random.default_rng(5))
    assert first == second
    single = interval_estimate(np.array([[1.0, 2.0, 3.0]]), mean_score, reps=100)
    assert single.lower == single.estimate == single.upper == pytest.approx(2.0)


def test_batched_statistics_over_learning_curve_points() -> None:
    # Learning curves bootstrap every step at once: scores (steps, runs) -> estimates (steps,).
    curve = np.array([[0.0, 1.0, 2.0, 3.0], [10.0, 10.0, 10.0, 10.0]])
    estimate, lower, upper = confidence_interval([curve], interquartile_mean, reps=300)
    np.testing.assert_allclose(estimate, [1.5, 10.0])
    assert lower.shape == upper.shape == (2,)
    assert lower[1] == upper[1] == 10.0


def test_invalid_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="no runs"):
        as_task_scores([np.array([1.0]), np.array([])])
    with pytest.raises(ValueError, match="non-finite"):
        as_task_scores([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        confidence_interval(THREE_TASKS, mean_score, confidence=1.5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=9), min_size=1, max_size=4))
def test_statistics_are_bounded_and_order_free(task_lists: list[list[float]]) -> None:
    tasks = as_task_scores(task_lists)
    smallest = min(task.min() for task in tasks)
    largest = max(task.max() for task in tasks)
    for statistic in (interquartile_mean, mean_score, median_score):
        value = float(statistic(tasks))
        assert smallest - 1e-9 <= value <= largest + 1e-9
        shuffled = [np.random.default_rng(len(task)).permutation(task) for task in tasks]
        assert float(statistic(shuffled)) == pytest.approx(value, abs=1e-9)
    gap = float(optimality_gap(tasks, target=100.0))
    assert -1e-9 <= gap <= 100.0 - min(smallest, 100.0) + 1e-9
