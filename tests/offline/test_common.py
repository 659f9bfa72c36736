"""Tests of the offline learners' shared machinery (hybridrl.offline.common) for seeds trained in one
process: an interrupted group resumes from its checkpoints to the result of an uninterrupted one,
runs checkpointed at different steps resume in separate groups, and only runs that differ in their
seed train together. BC stands for every one-stage learner (IQL's equivalence is in test_iql.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from hybridrl import runs
from hybridrl.algorithms import get_algorithm
from hybridrl.errors import ConfigError
from hybridrl.offline import common
from hybridrl.offline.bc import BCConfig, BCTrainer
from hybridrl.testing import metrics_without_timing

SEEDS = (1, 2)


def smoke_config() -> BCConfig:
    config: BCConfig = get_algorithm("bc").make_config("smoke", dataset="hopper-medium-v5")
    return config


def prepare(root: Path) -> tuple[list[BCConfig], list[Path]]:
    """The seeds' configs and run directories under ``root``, with their config.json written."""
    configs = [dataclasses.replace(smoke_config(), seed=seed) for seed in SEEDS]
    run_dirs = runs.seed_run_dirs(root, SEEDS)
    for config, run_dir in zip(configs, run_dirs, strict=True):
        run_dir.mkdir(parents=True)
        runs.write_run_config(run_dir, get_algorithm("bc"), config)
    return configs, run_dirs


def final_without_timing(run_dir: Path) -> dict[str, Any]:
    final = json.loads((run_dir / "final.json").read_text())
    return {key: value for key, value in final.items() if key != "wall_time_s"}


@pytest.mark.usefixtures("minari_root")
def test_an_interrupted_group_resumes_from_its_checkpoints(tmp_path: Path) -> None:
    whole = runs.train_seeds("bc", SEEDS, preset="smoke", dataset="hopper-medium-v5", run_dir=tmp_path / "whole")
    configs, run_dirs = prepare(tmp_path / "interrupted")
    data = common.load_offline_data("hopper-medium-v5")
    trainers = [BCTrainer(config, run_dir, data=data) for config, run_dir in zip(configs, run_dirs, strict=True)]
    try:
        paused = common.SeedGroup(trainers).train(stop_at_step=100)
    finally:
        for trainer in trainers:
            trainer.close()
    assert paused == [{"step": 100, "paused": True}] * len(SEEDS)
    assert not any(runs.is_finished(run_dir) for run_dir in run_dirs)
    resumed = runs.train_seeds("bc", SEEDS, preset="smoke", dataset="hopper-medium-v5",
                               run_dir=tmp_path / "interrupted")
    # The same group, stopped and restacked from its checkpoints: bit-identical metrics and finals.
    for whole_run, resumed_run in zip(whole, resumed, strict=True):
        assert metrics_without_timing(resumed_run.run_dir) == metrics_without_timing(whole_run.run_dir)
        assert final_without_timing(resumed_run.run_dir) == final_without_timing(whole_run.run_dir)
        assert resumed_run.final["step"] == 200


@pytest.mark.usefixtures("minari_root")
def test_runs_checkpointed_at_different_steps_resume_in_separate_groups(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    configs, run_dirs = prepare(tmp_path / "runs")
    trainer = BCTrainer(configs[0], run_dirs[0])  # seed 1 alone, paused at step 100; seed 2 not started
    try:
        assert trainer.train(stop_at_step=100)["paused"]
    finally:
        trainer.close()
    groups: list[tuple[list[int], int]] = []

    class RecordingGroup(common.SeedGroup):
        def __init__(self, trainers: list[common.OfflineTrainer]) -> None:
            groups.append(([trainer.config.seed for trainer in trainers], trainers[0].step))
            super().__init__(trainers)

    monkeypatch.setattr(common, "SeedGroup", RecordingGroup)
    results = runs.train_seeds("bc", SEEDS, preset="smoke", dataset="hopper-medium-v5", run_dir=tmp_path / "runs")
    assert groups == [([2], 0), ([1], 100)]
    assert [result.final["step"] for result in results] == [200, 200]
    assert [line["step"] for line in metrics_without_timing(run_dirs[0]) if "bc/loss" in line] == [100, 200]


def test_only_runs_that_differ_in_their_seed_train_together(tmp_path: Path) -> None:
    config = smoke_config()
    configs = [config, dataclasses.replace(config, seed=2, steps=300)]
    with pytest.raises(ConfigError, match="differ only in their seed"):
        common.train_seeds(BCTrainer, configs, runs.seed_run_dirs(tmp_path, SEEDS))
    with pytest.raises(ConfigError, match="distinct"):
        runs.train_seeds("bc", [1, 1], preset="smoke", run_dir=tmp_path)


@pytest.mark.usefixtures("minari_root")
def test_the_final_evaluation_uses_its_own_episode_count(tmp_path: Path) -> None:
    from hybridrl.core.logging import read_metrics

    spec = get_algorithm("bc")
    # One episode per evaluation (every 100 of 200 steps); the final evaluation asks for three.
    config = spec.make_config("smoke", dataset="hopper-medium-v5", seed=1, eval_interval=100, final_eval_episodes=3)
    run = runs.start(spec, config, tmp_path / "run")
    evaluations = [line for line in read_metrics(run.run_dir) if "eval/return_mean" in line]
    assert [line["step"] for line in evaluations].count(run.final["step"]) == 1  # not also a 1-episode one
    assert run.final["eval/return_mean"] == evaluations[-1]["eval/return_mean"]
    trainer = BCTrainer(config, run.run_dir)
    try:
        trainer.load_checkpoint(run.run_dir / "checkpoint.ckpt")
        by_hand = trainer.evaluate(3)
    finally:
        trainer.close()
    assert by_hand["eval/return_mean"] == run.final["eval/return_mean"]
    with pytest.raises(ConfigError, match="--final-eval-episodes"):
        runs.train("bc", preset="smoke", dataset="hopper-medium-v5", final_eval_episodes=-1, run_dir=tmp_path / "bad")
