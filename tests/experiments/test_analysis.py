"""Per-run scores, normalisation, aggregates and learning curves on run directories with known values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridrl.errors import ConfigError
from hybridrl.experiments.analysis import (
    aggregate,
    improvement_over,
    learning_curves,
    normalize_scores,
    run_scores,
    score_profiles,
)
from hybridrl.experiments.results import load_results

RunWriter = Callable[..., Path]
STEPS = (100, 200, 300)


@pytest.fixture
def results(run_writer: RunWriter, tmp_path: Path) -> pd.DataFrame:
    """ppo on CartPole (no reference scores) and Hopper (reference scores); ppo:no-norm on CartPole only."""
    run_writer(seed=0, steps=STEPS, returns=(0.0, 50.0, 100.0))
    run_writer(seed=1, steps=STEPS, returns=(0.0, 100.0, 50.0))
    run_writer(seed=0, variant="no-norm", steps=STEPS, returns=(0.0, 20.0, 40.0))
    run_writer(seed=1, variant="no-norm", steps=STEPS, returns=(0.0, 10.0, 20.0))
    run_writer(seed=2, variant="no-norm", steps=STEPS, returns=(0.0, 90.0, 99.0), finished=False)
    run_writer(env="Hopper-v5", seed=0, steps=STEPS, returns=(1.0, 2.0, 3.0), normalized=(20.0, 40.0, 60.0))
    run_writer(env="Hopper-v5", seed=1, steps=STEPS, returns=(1.0, 2.0, 4.0), normalized=(10.0, 30.0, 80.0))
    return load_results(tmp_path / "runs")


def test_normalization_per_task(results: pd.DataFrame) -> None:
    normalized = normalize_scores(results)
    rules = normalized.groupby("task")["normalization"].first().to_dict()
    assert rules == {"CartPole-v1": "minmax", "Hopper-v5": "reference"}
    # CartPole: lowest return 0, highest 100 (the unfinished run's 99 counts too), so score = return.
    cartpole = normalized[normalized["task"] == "CartPole-v1"]
    np.testing.assert_allclose(cartpole["normalized"], cartpole["eval/return_mean"])
    hopper = normalized[normalized["task"] == "Hopper-v5"]
    np.testing.assert_allclose(hopper["normalized"], hopper["eval/normalized_score"])
    # Forced min-max ignores Hopper's reference scores: returns 1..4 map onto 0..100.
    forced = normalize_scores(results, "minmax")
    hopper_final = forced[(forced["task"] == "Hopper-v5") & forced["is_final"]].sort_values("seed")
    np.testing.assert_allclose(hopper_final["normalized"], [200 / 3, 100.0])
    with pytest.raises(ConfigError, match="CartPole-v1 has no reference scores"):
        normalize_scores(results, "reference")


def test_final_best_and_area_under_curve_per_run(results: pd.DataFrame) -> None:
    scores = run_scores(results).set_index("run")
    assert len(scores) == 6  # the unfinished run is left out
    seed0 = scores.loc["ppo/CartPole-v1/default/seed0"]
    seed1 = scores.loc["ppo/CartPole-v1/default/seed1"]
    assert (seed0["final_return"], seed0["best_return"]) == (100.0, 100.0)
    assert (seed1["final_return"], seed1["best_return"]) == (50.0, 100.0)
    # Trapezoids over 200 steps: (0+50)/2*100 + (50+100)/2*100 = 10000 and
    # (0+100)/2*100 + (100+50)/2*100 = 12500.
    assert seed0["auc_return"] == pytest.approx(50.0)
    assert seed1["auc_return"] == pytest.approx(62.5)
    hopper = scores.loc["ppo/Hopper-v5/default/seed1"]
    assert (hopper["final_normalized"], hopper["best_normalized"]) == (80.0, 80.0)
    assert hopper["auc_normalized"] == pytest.approx(((10 + 30) / 2 * 100 + (30 + 80) / 2 * 100) / 200)
    assert len(run_scores(results, finished_only=False)) == 7


def test_aggregates_by_hand(results: pd.DataFrame) -> None:
    scores = run_scores(results)
    over_tasks = aggregate(scores, score="final", reps=500).set_index(["method", "metric"])
    # Only ppo ran both tasks. Final scores: CartPole [100, 50], Hopper [60, 80].
    assert set(over_tasks.index.get_level_values("method")) == {"ppo"}
    assert over_tasks.at[("ppo", "Mean"), "estimate"] == pytest.approx((75 + 70) / 2)
    assert over_tasks.at[("ppo", "Median"), "estimate"] == pytest.approx(72.5)
    # The IQM keeps the middle two of [50, 60, 80, 100].
    assert over_tasks.at[("ppo", "IQM"), "estimate"] == pytest.approx((60 + 80) / 2)
    assert over_tasks.at[("ppo", "Optimality gap"), "estimate"] == pytest.approx(100 - 72.5)
    assert over_tasks.at[("ppo", "IQM"), "runs"] == 4
    assert (over_tasks["lower"] <= over_tasks["estimate"] + 1e-9).all()
    assert (over_tasks["estimate"] <= over_tasks["upper"] + 1e-9).all()

    per_task = aggregate(scores, score="best", scale="return", per_task=True, reps=500)
    per_task = per_task.set_index(["method", "task", "metric"])
    assert "Optimality gap" not in per_task.index.get_level_values("metric")
    assert per_task.at[("ppo:no-norm", "CartPole-v1", "Mean"), "estimate"] == pytest.approx(30.0)
    assert per_task.at[("ppo", "Hopper-v5", "IQM"), "estimate"] == pytest.approx(3.5)

    with pytest.raises(ConfigError, match="not comparable over tasks"):
        aggregate(scores, scale="return")
    with pytest.raises(ConfigError, match="unknown metric"):
        aggregate(scores, metrics=["Maximum"])


def test_improvement_over_baseline(results: pd.DataFrame) -> None:
    table = improvement_over(run_scores(results), "ppo:no-norm", reps=300).set_index("task")
    # Both ppo runs beat both no-norm runs on CartPole, the only task both ran.
    assert list(table.index) == ["all", "CartPole-v1"]
    assert table.at["all", "estimate"] == 1.0
    with pytest.raises(ConfigError, match="not a method"):
        improvement_over(run_scores(results), "sac")


def test_learning_curves_iqm_per_step(results: pd.DataFrame) -> None:
    curves = learning_curves(results, reps=300)
    ppo = curves[(curves["method"] == "ppo") & (curves["task"] == "CartPole-v1")]
    assert ppo["step"].tolist() == list(STEPS)
    np.testing.assert_allclose(ppo["estimate"], [0.0, 75.0, 75.0])
    assert (ppo["runs"] == 2).all()
    assert ppo.iloc[0]["lower"] == ppo.iloc[0]["upper"] == 0.0


def test_learning_curves_interpolate_runs_evaluated_at_different_steps(run_writer: RunWriter,
                                                                      tmp_path: Path) -> None:
    run_writer(seed=0, steps=(0, 100), returns=(0.0, 10.0))
    run_writer(seed=1, steps=(0, 40, 100, 120), returns=(0.0, 4.0, 10.0, 12.0))
    curves = learning_curves(load_results(tmp_path / "runs"), points=3, reps=100)
    # The common range is [0, 100]; both runs are linear with slope 0.1 there.
    np.testing.assert_allclose(curves["step"], [0.0, 50.0, 100.0])
    np.testing.assert_allclose(curves["estimate"], [0.0, 5.0, 10.0])


def test_performance_profiles(results: pd.DataFrame) -> None:
    profiles = score_profiles(run_scores(results), np.array([0.0, 55.0, 90.0]), reps=200)
    ppo = profiles[profiles["method"] == "ppo"]
    # CartPole [100, 50]: above 0 both, above 55 one, above 90 one; Hopper [60, 80]: 2, 2, 0.
    np.testing.assert_allclose(ppo["estimate"], [1.0, 0.75, 0.25])
    assert set(profiles["method"]) == {"ppo"}  # no-norm lacks Hopper
