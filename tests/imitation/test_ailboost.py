"""AILBoost (hybridrl.imitation.ailboost) on Pendulum-v1 demonstrations: a smoke run with the true
mixture's evaluation, the stored weak learners being independent copies, the weighted buffer's
blocks and weights, drawing learners by weight, an exactly resumable run, and demonstrations that
do not fit the run."""

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
from hybridrl.cli import main
from hybridrl.core.replay import mixture_weights
from hybridrl.data import Dataset, load_dataset, write_minari
from hybridrl.data.demos import demos_id
from hybridrl.data.minari_format import HYBRIDRL_NAMESPACE
from hybridrl.data.validation import DatasetError
from hybridrl.imitation import ailboost
from hybridrl.imitation.ailboost import AILBoostConfig, AILBoostTrainer, LearnerStore, draw_learners
from hybridrl.testing import assert_trees_equal, metrics_without_timing, pause_then_resume

SPEC = get_algorithm("ailboost")
PENDULUM_DEMOS = f"{HYBRIDRL_NAMESPACE}/{demos_id('Pendulum-v1')}"
# The smoke preset (300 warm-up steps, rounds of 100 collected + 200 online steps), cut to three
# rounds: at steps 300, 600 and 900, each followed by 100 collection steps, then 200 online steps.
TOTAL_STEPS, NUM_ROUNDS, BLOCK, ONLINE_AFTER_LAST_ROUND = 1_200, 3, 100, 200


def smoke_config(**overrides: Any) -> AILBoostConfig:
    config: AILBoostConfig = SPEC.make_config("smoke", **{"env": "Pendulum-v1", "total_steps": TOTAL_STEPS,
                                                          **overrides})
    return config


def host_copy(tree: Any) -> Any:
    """A host copy of ``tree`` that nothing else references."""
    return jax.tree_util.tree_map(np.array, jax.device_get(tree))


class RecordingAILBoost(AILBoostTrainer):
    """AILBoost that keeps, per round, the actor it adds, the block it collected, and the learner
    store and replay size after the round."""

    def __init__(self, config: AILBoostConfig, run_dir: Path, progress: bool = False) -> None:
        super().__init__(config, run_dir, progress)
        self.actors: list[Any] = []
        self.stores: list[Any] = []
        self.blocks: list[Any] = []
        self.replay_sizes: list[int] = []

    def boosting_round(self) -> None:
        self.actors.append(host_copy(self.state.params["actor"]))
        super().boosting_round()
        self.stores.append(host_copy(self.learners.params))
        self.replay_sizes.append(int(self.buffer.size))

    def collect(self, steps: int) -> Any:
        block = super().collect(steps)
        self.blocks.append(host_copy(block))
        return block


@dataclasses.dataclass
class RecordedRun:
    result: runs.RunResult
    trainer: RecordingAILBoost
    log_weights: list[np.ndarray]


@pytest.fixture(scope="module")
def ailboost_run(demos_root: Path, tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    """A smoke run through :func:`hybridrl.runs.start`, with its trainer and the block weights each
    round's discriminator steps were given."""
    trainers: list[RecordingAILBoost] = []
    log_weights: list[np.ndarray] = []
    steps = ailboost.weighted_discriminator_updates

    def recording_steps(state: Any, key: Any, buffer: Any, weights: Any, *args: Any, **kwargs: Any) -> Any:
        log_weights.append(np.asarray(weights))
        return steps(state, key, buffer, weights, *args, **kwargs)

    def make_trainer(config: Any, run_dir: Path, progress: bool) -> RecordingAILBoost:
        trainers.append(RecordingAILBoost(config, run_dir, progress))
        return trainers[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(demos_root))
        patch.setattr(ailboost, "weighted_discriminator_updates", recording_steps)
        result = runs.start(dataclasses.replace(SPEC, make_trainer=make_trainer), smoke_config(),
                            tmp_path_factory.mktemp("ailboost"))
    return RecordedRun(result, trainers[0], log_weights)


def test_smoke_run_finishes_with_current_and_mixture_scores(ailboost_run: RecordedRun) -> None:
    final = json.loads((ailboost_run.result.run_dir / "final.json").read_text())
    assert final["algorithm"] == "ailboost" and final["step"] == TOTAL_STEPS
    for name in ("eval/return_mean", "eval/normalized_score", "eval/mixture_return_mean",
                 "eval/mixture_return_std", "eval/mixture_normalized_score"):
        assert np.isfinite(final[name]), name
    trainer = ailboost_run.trainer
    assert trainer.num_rounds == NUM_ROUNDS
    assert trainer.online_steps == TOTAL_STEPS - NUM_ROUNDS * BLOCK
    logged = [json.loads(line) for line in (ailboost_run.result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(entry.get("train/boosting_rounds") == NUM_ROUNDS and "discriminator/loss" in entry
               for entry in logged)


def test_stored_learners_are_independent_copies(ailboost_run: RecordedRun) -> None:
    trainer = ailboost_run.trainer
    store = trainer.learners
    np.testing.assert_array_equal(store.rounds[:NUM_ROUNDS + 1], [1, 2, 3, -1])
    final_actor = jax.device_get(trainer.state.params["actor"])
    for round_index in range(1, NUM_ROUNDS + 1):
        slot = store.slot(round_index)
        learner = store.learner(slot)
        # The actor of its round, kept unchanged while the live actor trained on and later rounds came.
        assert_trees_equal(learner, ailboost_run.trainer.actors[round_index - 1])
        for later_store in ailboost_run.trainer.stores[round_index - 1:]:
            assert_trees_equal(jax.tree_util.tree_map(lambda leaf, slot=slot: leaf[slot], later_store), learner)
        assert not np.array_equal(learner["mean"]["kernel"], final_actor["mean"]["kernel"])
    kernels = [store.learner(store.slot(index))["mean"]["kernel"] for index in range(1, NUM_ROUNDS + 1)]
    for first in range(NUM_ROUNDS):
        for second in range(first + 1, NUM_ROUNDS):
            assert not np.array_equal(kernels[first], kernels[second]), (first, second)


def test_replay_holds_the_blocks_then_the_online_steps_since_the_last_round(ailboost_run: RecordedRun) -> None:
    trainer = ailboost_run.trainer
    # Right after round k the replay is the k blocks (the online steps of the round before are dropped).
    assert trainer.replay_sizes == [BLOCK * round_index for round_index in range(1, NUM_ROUNDS + 1)]
    assert int(trainer.buffer.size) == NUM_ROUNDS * BLOCK + ONLINE_AFTER_LAST_ROUND
    assert len(ailboost_run.trainer.blocks) == NUM_ROUNDS
    for name in ("observations", "actions", "rewards", "next_observations", "terminations", "truncations"):
        stored = np.asarray(getattr(trainer.buffer.transitions, name))[: NUM_ROUNDS * BLOCK]
        collected = np.concatenate([getattr(block, name) for block in ailboost_run.trainer.blocks])
        np.testing.assert_array_equal(stored, collected, err_msg=name)
    # Each round's blocks came from a different learner, on other episodes.
    first, second = (block.observations for block in ailboost_run.trainer.blocks[:2])
    assert not np.array_equal(first, second)


def test_discriminator_steps_weigh_blocks_by_the_mixture_weights(ailboost_run: RecordedRun) -> None:
    config = ailboost_run.trainer.config
    assert len(ailboost_run.log_weights) == NUM_ROUNDS
    for round_index, log_weights in enumerate(ailboost_run.log_weights, start=1):
        assert log_weights.shape == (config.max_rounds,)
        np.testing.assert_allclose(np.exp(log_weights[:round_index]),
                                   mixture_weights(round_index, config.boosting_alpha), rtol=1e-6)
        assert np.all(np.isneginf(log_weights[round_index:]))


def test_mixture_weights_of_the_store_renormalise_over_kept_learners() -> None:
    template = {"w": np.zeros(2, np.float32)}
    store = LearnerStore(template, capacity=3)
    for round_index in range(1, 6):  # slots: round 1 -> 0 for good, rounds 2, 3, 4, 5 -> 1, 2, 1, 2
        store.add(round_index, {"w": np.full(2, round_index, np.float32)})
    np.testing.assert_array_equal(store.rounds, [1, 4, 5])
    np.testing.assert_array_equal(store.learner(0)["w"], [1.0, 1.0])
    np.testing.assert_array_equal(store.learner(2)["w"], [5.0, 5.0])
    slots, weights = store.mixture(5, 0.5)
    full = mixture_weights(5, 0.5)
    np.testing.assert_array_equal(slots, [0, 1, 2])
    np.testing.assert_allclose(weights, full[[0, 3, 4]] / full[[0, 3, 4]].sum())


def test_draw_learners_follows_the_weights() -> None:
    weights = np.array([0.7, 0.2, 0.1])
    drawn = draw_learners(weights, 20_000, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / 20_000, weights, atol=0.01)
    # Unnormalised weights are normalised.
    drawn = draw_learners(np.array([3.0, 1.0]), 20_000, np.random.default_rng(1))
    np.testing.assert_allclose(np.mean(drawn == 0), 0.75, atol=0.01)


def test_round_that_overshoots_the_budget_still_ends_with_evaluation(tmp_path: Path, minari_root: Path) -> None:
    # Round 4 starts at step 1200 and collects up to the budget of 1300; the run still takes its
    # final evaluation and checkpoint (after the one online step that follows).
    result = runs.train("ailboost", preset="smoke", env="Pendulum-v1", total_steps=1_300, run_dir=tmp_path)
    assert result.final["step"] == 1_301
    assert np.isfinite(result.final["eval/return_mean"]) and np.isfinite(result.final["eval/mixture_return_mean"])
    trainer = AILBoostTrainer(smoke_config(total_steps=1_300), tmp_path)
    try:
        trainer.load_checkpoint(tmp_path / "checkpoint.ckpt")
        assert (trainer.global_step, trainer.num_rounds) == (1_301, 4)
    finally:
        trainer.close()


def test_paused_and_reloaded_run_equals_uninterrupted(ailboost_run: RecordedRun, tmp_path: Path,
                                                      minari_root: Path) -> None:
    whole = ailboost_run.trainer
    config = smoke_config()
    runs.write_run_config(tmp_path, SPEC, config)

    def reloaded(trainer: AILBoostTrainer) -> None:
        assert (trainer.num_rounds, trainer.online_steps) == (1, 400)

    # Paused after round 1, before round 2.
    paused, resumed, final = pause_then_resume(lambda: AILBoostTrainer(config, tmp_path), 500, after_load=reloaded)
    assert paused == {"step": 500, "paused": True}
    assert_trees_equal(jax.device_get(resumed.state.params), jax.device_get(whole.state.params))
    assert_trees_equal(jax.device_get(resumed.discriminator_state), jax.device_get(whole.discriminator_state))
    assert_trees_equal(resumed.learners.params, whole.learners.params)
    np.testing.assert_array_equal(resumed.learners.rounds, whole.learners.rounds)
    assert_trees_equal(jax.device_get(resumed.checkpoint_state()), jax.device_get(whole.checkpoint_state()))
    assert metrics_without_timing(tmp_path) == metrics_without_timing(ailboost_run.result.run_dir)
    assert final["eval/mixture_return_mean"] == ailboost_run.result.final["eval/mixture_return_mean"]


# --------------------------------------------------------------------------------------------
# Demonstrations that do not fit
# --------------------------------------------------------------------------------------------


def _fails_with(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "hybridrl: error:" in error and message in error, error
    assert "Traceback" not in error


def test_demonstrations_of_another_env(tmp_path: Path, minari_root: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["train", "ailboost", "--env", "MountainCarContinuous-v0", "--preset", "smoke",
                 "--demos", PENDULUM_DEMOS, "--run-dir", str(tmp_path / "run"), "--no-progress"],
                "was collected on Pendulum-v1, not MountainCarContinuous-v0", capsys)


def test_missing_demonstrations_say_how_to_record_them(tmp_path: Path, minari_root: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Pendulum's demonstrations exist, but not under this name.
    _fails_with(["train", "ailboost", "--env", "Pendulum-v1", "--preset", "smoke", "--demos",
                 "hybridrl/demos/none-v0", "--run-dir", str(tmp_path / "run"), "--no-progress"],
                "no dataset 'hybridrl/demos/none-v0'", capsys)


def test_too_few_demonstrations(tmp_path: Path, minari_root: Path) -> None:
    with pytest.raises(DatasetError, match="asked for 5 episodes of 'hybridrl/demos/pendulum-v1-v0', which has 3"):
        AILBoostTrainer(smoke_config(num_demos=5), tmp_path)


def test_demonstrations_of_another_action_repeat(tmp_path: Path, minari_root: Path) -> None:
    demos = load_dataset(PENDULUM_DEMOS, env="Pendulum-v1")
    info = dataclasses.replace(demos.info, extra={**demos.info.extra, "action_repeat": 2})
    folder = write_minari(Dataset(demos.transitions, demos.episode_starts, info), "hybridrl/demos/repeat-2-v0",
                          root=tmp_path / "other")
    with pytest.raises(DatasetError, match="recorded with action repeat 2, but this run acts with 1"):
        AILBoostTrainer(smoke_config(demos=str(folder)), tmp_path)
