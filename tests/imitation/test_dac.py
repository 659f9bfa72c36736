"""DAC (hybridrl.imitation.dac) on Pendulum-v1 demonstrations: both reward modes finish a smoke run,
what each stores in the replay, an exactly resumable run, too few demonstrations, and behaviour
cloning from the same demonstrations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from hybridrl import runs
from hybridrl.algorithms import get_algorithm
from hybridrl.data.demos import demos_id
from hybridrl.data.minari_format import HYBRIDRL_NAMESPACE
from hybridrl.data.validation import DatasetError
from hybridrl.imitation.dac import DACConfig, DACTrainer
from hybridrl.testing import assert_trees_equal, metrics_without_timing, pause_then_resume

SPEC = get_algorithm("dac")
PENDULUM_DEMOS = f"{HYBRIDRL_NAMESPACE}/{demos_id('Pendulum-v1')}"
# The smoke preset, shortened: 300 uniform-random steps, then 250 updates (one per 2 env steps).
TOTAL_STEPS = 800


def smoke_config(**overrides: Any) -> DACConfig:
    config: DACConfig = SPEC.make_config("smoke", **{"env": "Pendulum-v1", "total_steps": TOTAL_STEPS, **overrides})
    return config


class RecordingDAC(DACTrainer):
    """DAC that keeps what it stores and the discriminator parameters of that moment."""

    def __init__(self, config: DACConfig, run_dir: Path, progress: bool = False) -> None:
        super().__init__(config, run_dir, progress)
        self.stored: list[tuple[Any, Any]] = []

    def store(self, transitions: Any) -> None:
        parameters = jax.tree_util.tree_map(np.array, jax.device_get(self.discriminator_state.params))
        self.stored.append((jax.tree_util.tree_map(np.array, transitions), parameters))
        super().store(transitions)


@dataclasses.dataclass
class RecordedRun:
    result: runs.RunResult
    trainer: RecordingDAC


@pytest.fixture(scope="module")
def dac_runs(demos_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RecordedRun]:
    """One smoke run per reward mode, through :func:`hybridrl.runs.start`, with its trainer kept."""
    recorded = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(demos_root))
        for mode in ("fresh", "stale"):
            trainers: list[RecordingDAC] = []

            def make_trainer(config: Any, run_dir: Path, progress: bool, trainers: list[RecordingDAC] = trainers
                             ) -> RecordingDAC:
                trainers.append(RecordingDAC(config, run_dir, progress))
                return trainers[-1]

            spec = dataclasses.replace(SPEC, make_trainer=make_trainer)
            result = runs.start(spec, smoke_config(reward_mode=mode), tmp_path_factory.mktemp(f"dac-{mode}"))
            recorded[mode] = RecordedRun(result, trainers[0])
    return recorded


def _stored_rows(trainer: RecordingDAC) -> dict[str, np.ndarray]:
    """The replay's filled rows, by field (the replay never evicts at this budget)."""
    size = int(trainer.buffer.size)
    assert size == TOTAL_STEPS == trainer.buffer.capacity
    return {name: np.asarray(getattr(trainer.buffer.transitions, name))[:size]
            for name in ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")}


@pytest.mark.parametrize("mode", ["fresh", "stale"])
def test_smoke_run_finishes_with_a_demonstrator_normalised_score(dac_runs: dict[str, RecordedRun],
                                                                 mode: str) -> None:
    result = dac_runs[mode].result
    final = json.loads((result.run_dir / "final.json").read_text())
    assert final == result.final
    assert final["algorithm"] == "dac" and final["step"] == TOTAL_STEPS
    assert final["gradient_updates"] == (TOTAL_STEPS - 300) // 2 + 1
    assert np.isfinite(final["eval/return_mean"]) and np.isfinite(final["eval/normalized_score"])
    trainer = dac_runs[mode].trainer
    assert final["eval/normalized_score"] == pytest.approx(trainer.demos.normalized_score(final["eval/return_mean"]))
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("discriminator/loss" in entry and "train/imitation_reward" in entry for entry in logged)
    # What the learner is paid now, on the demonstrations and on its newest data, in D's range [-1, 1].
    paid = [entry for entry in logged if "discriminator/newest_data_reward" in entry]
    assert paid and all(-1.0 <= entry[name] <= 1.0 for entry in paid
                        for name in ("discriminator/newest_data_reward", "discriminator/demos_reward"))


def test_newest_data_reward_is_the_discriminator_on_the_last_rows(dac_runs: dict[str, RecordedRun]) -> None:
    from hybridrl.imitation.discriminator import discriminator_reward

    trainer = dac_runs["fresh"].trainer
    rows = _stored_rows(trainer)
    params = trainer.discriminator_state.params
    newest = discriminator_reward(trainer.discriminator, params, rows["observations"][-trainer.newest_rows:],
                                  rows["actions"][-trainer.newest_rows:])
    demos = discriminator_reward(trainer.discriminator, params, trainer.demos.transitions.observations,
                                 trainer.demos.transitions.actions)
    scalars = trainer.log_scalars()
    assert scalars["discriminator/newest_data_reward"] == pytest.approx(float(np.mean(newest)), rel=1e-5, abs=1e-6)
    assert scalars["discriminator/demos_reward"] == pytest.approx(float(np.mean(demos)), rel=1e-5, abs=1e-6)


def test_stale_mode_stores_the_discriminator_reward_of_storage_time(dac_runs: dict[str, RecordedRun]) -> None:
    trainer = dac_runs["stale"].trainer
    rows = _stored_rows(trainer)
    row, label_changes = 0, 0
    final_parameters = jax.device_get(trainer.discriminator_state.params)
    for transitions, parameters in trainer.stored:
        count = len(transitions.rewards)
        observations, actions = transitions.observations, transitions.actions
        np.testing.assert_array_equal(rows["observations"][row:row + count], observations)
        np.testing.assert_array_equal(rows["actions"][row:row + count], actions)
        stored = rows["rewards"][row:row + count]
        np.testing.assert_allclose(stored, trainer.discriminator.apply_numpy(parameters, observations, actions),
                                   atol=1e-5)
        now = trainer.discriminator.apply_numpy(final_parameters, observations, actions)
        label_changes += not np.allclose(stored, now, atol=1e-5)
        row += count
    assert row == TOTAL_STEPS
    # Not the env's rewards: those are Pendulum's costs, mostly below the discriminator's range [-1, 1].
    env_rewards = np.concatenate([transitions.rewards for transitions, _ in trainer.stored])
    assert np.all(np.abs(rows["rewards"]) <= 1.0) and np.mean(env_rewards < -1.0) > 0.5
    # The discriminator learned after most rows were stored; their labels were never refreshed.
    assert label_changes > len(trainer.stored) // 2


def test_fresh_mode_keeps_the_env_rewards(dac_runs: dict[str, RecordedRun]) -> None:
    trainer = dac_runs["fresh"].trainer
    rows = _stored_rows(trainer)
    stored = {name: np.concatenate([np.asarray(getattr(transitions, name)) for transitions, _ in trainer.stored])
              for name in rows}
    for name, values in rows.items():
        np.testing.assert_array_equal(values, stored[name], err_msg=name)
    assert rows["rewards"].min() < -1.0  # Pendulum's costs, outside the discriminator's [-1, 1]


def test_paused_and_reloaded_run_equals_uninterrupted(dac_runs: dict[str, RecordedRun], tmp_path: Path,
                                                      minari_root: Path) -> None:
    whole = dac_runs["stale"].trainer
    config = smoke_config(reward_mode="stale")
    runs.write_run_config(tmp_path, SPEC, config)
    # Mid-episode, after 100 updates: pauses at 502.
    paused, resumed, final = pause_then_resume(lambda: DACTrainer(config, tmp_path), 501)
    assert paused == {"step": 502, "paused": True}
    assert_trees_equal(jax.device_get(resumed.state.params), jax.device_get(whole.state.params))
    assert_trees_equal(jax.device_get(resumed.checkpoint_state()), jax.device_get(whole.checkpoint_state()))
    assert metrics_without_timing(tmp_path) == metrics_without_timing(dac_runs["stale"].result.run_dir)
    assert final["eval/normalized_score"] == dac_runs["stale"].result.final["eval/normalized_score"]


def test_more_demonstrations_than_recorded_is_a_dataset_error(tmp_path: Path, minari_root: Path) -> None:
    with pytest.raises(DatasetError, match="asked for 4 episodes of 'hybridrl/demos/pendulum-v1-v0', which has 3"):
        DACTrainer(smoke_config(num_demos=4), tmp_path)


def test_discriminator_batch_bigger_than_the_sac_batch_is_refused() -> None:
    from hybridrl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--discriminator-batch-size \(64\) must be at most --batch-size \(32\)"):
        smoke_config(discriminator_batch_size=64)
    with pytest.raises(ConfigError, match="--reward-mode must be fresh or stale"):
        smoke_config(reward_mode="old")


def test_behaviour_cloning_learns_from_the_first_demonstration(tmp_path: Path, minari_root: Path) -> None:
    bc = get_algorithm("bc")
    config = bc.make_config("smoke", dataset=PENDULUM_DEMOS, max_episodes=1)
    trainer = bc.make_trainer(config, tmp_path, False)
    try:
        assert trainer.data.dataset.num_episodes == 1 and len(trainer.data.dataset) == 200
        assert trainer.data.env_id == "Pendulum-v1"
        final = trainer.train()
    finally:
        trainer.close()
    assert np.isfinite(final["eval/return_mean"]) and final["eval/length_mean"] == 200
