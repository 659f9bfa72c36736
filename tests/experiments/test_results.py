"""The results store: run directories in, one row per run and evaluation point out."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from hybridrl.errors import RunDirectoryError
from hybridrl.experiments.cli import results_main
from hybridrl.experiments.results import load_results, load_runs, method_name

RunWriter = Callable[..., Path]


def test_one_row_per_run_and_evaluation(run_writer: RunWriter, tmp_path: Path) -> None:
    run_writer(seed=0, steps=(100, 200), returns=(10.0, 20.0))
    run_writer(seed=1, variant="no-norm", steps=(100, 200), returns=(5.0, 6.0))
    run_writer(env="Hopper-v5", seed=0, steps=(100, 200), returns=(300.0, 900.0), normalized=(10.0, 28.0))

    results = load_results(tmp_path / "runs")

    assert len(results) == 6
    assert set(results["method"]) == {"ppo", "ppo:no-norm"}
    assert set(results["task"]) == {"CartPole-v1", "Hopper-v5"}
    hopper = results[results["task"] == "Hopper-v5"].sort_values("step")
    assert hopper["eval/return_mean"].tolist() == [300.0, 900.0]
    assert hopper["eval/normalized_score"].tolist() == [10.0, 28.0]
    assert hopper["is_final"].tolist() == [False, True]
    assert results.loc[results["task"] == "CartPole-v1", "eval/normalized_score"].isna().all()
    assert results["step"].dtype.kind == "i"
    # Config options with scalar values become columns; training lines are not evaluation points.
    assert set(results["config/learning_rate"]) == {3e-4}
    assert "config/policy_hidden" not in results
    assert "train/episode_return" not in results
    assert results["sweep"].eq("test-sweep").all() and results["finished"].all()


def test_resumed_steps_truncated_lines_and_final_points(run_writer: RunWriter, tmp_path: Path) -> None:
    # A run resumed from a checkpoint logs step 200 again (the last line wins); a killed writer
    # leaves half a line at the end; final.json at step 300 adds a row.
    run_dir = run_writer(steps=(100, 200), returns=(1.0, 2.0), finished=False,
                         extra_lines=[json.dumps({"step": 200, "eval/return_mean": 4.0}) + "\n",
                                      '{"step": 30'])
    final = {"step": 300, "eval/return_mean": 5.0, "eval/return_std": 0.0}
    (run_dir / "final.json").write_text(json.dumps(final))

    results = load_results(tmp_path / "runs").sort_values("step")

    assert results["step"].tolist() == [100, 200, 300]
    assert results["eval/return_mean"].tolist() == [1.0, 4.0, 5.0]
    assert results["is_final"].tolist() == [False, False, True]


def test_run_states_and_runs_outside_sweeps(run_writer: RunWriter, tmp_path: Path) -> None:
    run_writer(seed=0)
    run_writer(seed=1, finished=False)
    run_writer(seed=2, finished=False, error="CheckpointError: checkpoint.ckpt is corrupt\nmore detail")
    run_writer(seed=3, sweep=None, variant="default")  # a plain `hybridrl train` run

    runs = load_runs(tmp_path / "runs").set_index("seed")

    assert runs["status"].to_dict() == {0: "finished", 1: "unfinished", 2: "failed", 3: "finished"}
    assert runs.at[2, "error"] == "CheckpointError: checkpoint.ckpt is corrupt"
    assert runs.at[0, "final/wall_time_s"] == 30.0
    assert pd.isna(runs.at[3, "sweep"]) and runs.at[3, "method"] == "ppo"
    results = load_results(tmp_path / "runs")
    assert results.groupby("seed")["failed"].first().to_dict() == {0: False, 1: False, 2: True, 3: False}


def test_damaged_and_missing_folders_raise_clear_errors(run_writer: RunWriter, tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="does not exist"):
        load_results(tmp_path / "nowhere")
    run_writer(extra_lines=["not json\n", json.dumps({"step": 1}) + "\n"])
    with pytest.raises(RunDirectoryError, match="line 5 is not JSON"):
        load_results(tmp_path / "runs")


def test_empty_folder_gives_empty_tables(tmp_path: Path) -> None:
    assert load_results(tmp_path).empty
    assert load_runs(tmp_path).empty


def test_method_names() -> None:
    assert method_name("ppo", "default") == "ppo"
    assert method_name("ppo", None) == "ppo"
    assert method_name("ppo", "no-norm") == "ppo:no-norm"


def test_results_command_exports_csv(run_writer: RunWriter, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run_writer(seed=0, returns=(10.0, 20.0))
    run_writer(seed=1, returns=(10.0, 30.0))
    csv_path = tmp_path / "export" / "results.csv"

    assert results_main([str(tmp_path / "runs"), "--csv", str(csv_path)]) == 0

    exported = pd.read_csv(csv_path)
    assert len(exported) == 4
    assert exported.loc[exported["is_final"], "eval/return_mean"].sort_values().tolist() == [20.0, 30.0]
    output = capsys.readouterr().out
    assert "2 runs, 4 evaluation points" in output
    assert "25.00" in output  # mean final return of the two runs
    assert not math.isnan(exported["seed"].iloc[0])
