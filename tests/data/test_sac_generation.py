"""SAC-made datasets (D4RL's recipe) at smoke scale: behaviour training, choice of medium and expert,
squashed actions, the replay buffer as medium-replay and its regeneration, resume, the data card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from hybridrl.cli import main
from hybridrl.data import load_dataset, sac_behaviour
from hybridrl.data.dataset import Dataset
from hybridrl.data.generation import (
    ASSETS,
    BEHAVIOUR_FILE,
    SAC_PRESETS,
    BehaviourPolicies,
    make_dataset,
    parse_dataset_name,
)
from hybridrl.data.summary import actions_at_bounds, stages, summarize
from hybridrl.errors import ConfigError

SMOKE = SAC_PRESETS["smoke"]
SEED = 2


def test_sac_dataset_names() -> None:
    assert parse_dataset_name("hopper-medium-replay-sac-v5") == ("hopper", "medium-replay", "Hopper-v5", "sac")
    assert parse_dataset_name("walker2d-expert-sac-v5").learner == "sac"
    assert parse_dataset_name("hopper-medium-v5").learner == "ppo"  # the legacy PPO-made recipe
    with pytest.raises(ConfigError, match="hopper-medium-sac-v5"):
        parse_dataset_name("hopper-medium-td3-v5")


def test_medium_is_the_first_to_hold_a_third_of_the_expert() -> None:
    # Expert: the best (the latest of equals); medium: closest to 300 / 3 up to the first snapshot that
    # reaches it and is followed by one that does too.
    assert sac_behaviour.choose_medium_and_expert([0, 40, 90, 130, 300, 100, 300]) == (2, 6)
    assert sac_behaviour.choose_medium_and_expert([0, 60, 120, 300]) == (2, 3)
    assert sac_behaviour.choose_medium_and_expert([5.0]) == (0, 0)
    # A lucky rating that is not held does not stop the run: Walker2d-v5 seed 0's ratings chose step 80k.
    walker = [-6, 681, 275, 320, 319, 287, 335, 320, 538, 504, 486, 717, 508, 372, 603, 555, 1054, 619,
              1273, 1395, 1593]
    assert sac_behaviour.choose_medium_and_expert(walker) == (8, 20)
    assert sac_behaviour.choose_medium_and_expert([0, 200, 90, 300]) == (2, 3)  # none held before the expert


def test_episode_starts_of_a_buffer() -> None:
    terminations = np.array([0, 0, 1, 0, 0, 0, 0], bool)
    truncations = np.array([0, 0, 0, 0, 1, 0, 0], bool)
    np.testing.assert_array_equal(sac_behaviour.episode_starts(terminations, truncations), [0, 3, 5, 7])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smoke SAC behaviour policies for Hopper-v5, seed 2 (about 10 s of training)."""
    folder = tmp_path_factory.mktemp("sac-data")
    make_dataset("hopper-random-sac-v5", preset="smoke", seed=SEED, work_dir=folder)
    return folder


def policies_folder(work: Path) -> Path:
    return work / f"Hopper-v5-sac-smoke-s{SEED}"


def test_behaviour_policies_record_the_run(work: Path) -> None:
    policies = BehaviourPolicies.load(policies_folder(work))
    record = policies.record
    assert policies.learner == "sac" and policies.medium.algorithm == "sac"
    steps = [snapshot["step"] for snapshot in record["snapshots"]]
    assert steps == list(range(0, SMOKE.behaviour.total_steps + 1, SMOKE.behaviour.snapshot_interval))
    for snapshot in record["snapshots"]:  # the diagnostics of every snapshot
        assert set(snapshot) >= {"eval_return", "stochastic_return", "temperature"}
    medium, expert = sac_behaviour.choose_medium_and_expert([s["eval_return"] for s in record["snapshots"]])
    assert record["medium"] == record["snapshots"][medium]["file"]
    assert record["expert"] == record["snapshots"][expert]["file"]
    assert record["medium_step"] == policies.medium.step
    assert record["reference_returns"]["random"] < record["reference_returns"]["expert"]


def dataset_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in dataset.to_numpy().items()}


def test_medium_data_are_squashed_samples_and_deterministic(work: Path, tmp_path: Path) -> None:
    medium = make_dataset("hopper-medium-sac-v5", preset="smoke", seed=SEED, work_dir=work)
    assert len(medium) == SMOKE.transitions and medium.info.algorithm == "sac"
    actions = dataset_arrays(medium)["actions"]
    # tanh-squashed samples: inside the bounds, not piled up on them as clipped Gaussian samples are.
    assert np.all(np.abs(actions) <= 1.0)
    assert actions_at_bounds(actions, "Hopper-v5") < 0.01
    again = make_dataset("hopper-medium-sac-v5", preset="smoke", seed=SEED, work_dir=work)
    for key, value in dataset_arrays(medium).items():
        np.testing.assert_array_equal(value, dataset_arrays(again)[key], err_msg=key)
    expert = make_dataset("hopper-expert-sac-v5", preset="smoke", seed=SEED, work_dir=work)
    both = make_dataset("hopper-medium-expert-sac-v5", preset="smoke", seed=SEED, work_dir=work)
    np.testing.assert_array_equal(dataset_arrays(both)["actions"],
                                  np.concatenate([actions, dataset_arrays(expert)["actions"]]))


def test_medium_replay_is_the_runs_buffer_up_to_the_medium_policy(work: Path) -> None:
    policies = BehaviourPolicies.load(policies_folder(work))
    replay = make_dataset("hopper-medium-replay-sac-v5", preset="smoke", seed=SEED, work_dir=work)
    arrays = dataset_arrays(replay)
    step = policies.record["medium_step"]
    assert len(replay) == step
    assert "training run's replay buffer" in replay.info.extra["medium_replay_source"]
    # Time-ordered transitions of one env: each next observation is the following observation within an episode.
    ends = arrays["terminations"] | arrays["truncations"]
    np.testing.assert_array_equal(arrays["next_observations"][:-1][~ends[:-1]], arrays["observations"][1:][~ends[:-1]])
    assert ends[-1]
    # The warm-up's uniform actions come first (spread to the bounds' neighbourhood, unlike the actor's).
    warm_up = min(step, policies.record["sac_config"]["learning_starts"])
    assert np.abs(arrays["actions"][:warm_up]).max() > 0.9


def test_medium_replay_regenerates_by_rerunning_the_sac_run(work: Path, tmp_path: Path) -> None:
    """As with shipped policies, which come without the buffer: the same run again, bit for bit here."""
    original = dataset_arrays(make_dataset("hopper-medium-replay-sac-v5", preset="smoke", seed=SEED, work_dir=work))
    shipped = tmp_path / "shipped"
    source = policies_folder(work)
    shipped.mkdir()
    for name in ("behaviour.json", *{BehaviourPolicies.load(source).record[key] for key in ("medium", "expert")}):
        shutil.copy(source / name, shipped / name)
    policies = BehaviourPolicies.load(shipped)
    arrays, how = make_replay(policies, tmp_path / "elsewhere")
    assert "bit for bit" in how
    for key, value in original.items():
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)


def make_replay(policies: BehaviourPolicies, work_dir: Path) -> tuple[dict[str, Any], str]:
    from hybridrl.data.generation import _sac_medium_replay

    return _sac_medium_replay("Hopper-v5", "smoke", SEED, work_dir, policies, False)


def test_interrupted_behaviour_training_resumes_where_it_stopped(work: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "interrupted"
    snapshot = sac_behaviour._snapshot
    calls = {"count": 0}

    def interrupted(*args: Any) -> dict[str, Any]:
        calls["count"] += 1
        if calls["count"] == 3:  # after the checkpoint at the second interval, before its snapshot is rated
            raise KeyboardInterrupt
        return snapshot(*args)

    monkeypatch.setattr(sac_behaviour, "_snapshot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sac_behaviour.train("Hopper-v5", SMOKE.behaviour, SEED, folder)
    monkeypatch.setattr(sac_behaviour, "_snapshot", snapshot)
    records, _, _, _ = sac_behaviour.train("Hopper-v5", SMOKE.behaviour, SEED, folder)
    whole = BehaviourPolicies.load(policies_folder(work)).record["snapshots"]
    assert records == whole
    with np.load(folder / sac_behaviour.MEDIUM_REPLAY_FILE) as resumed, \
            np.load(policies_folder(work) / sac_behaviour.MEDIUM_REPLAY_FILE) as uninterrupted:
        for key in uninterrupted.files:
            np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)


def test_a_foreign_run_in_the_folder_is_refused(work: Path, tmp_path: Path) -> None:
    folder = tmp_path / "other"
    shutil.copytree(policies_folder(work) / "sac", folder / "sac")
    with pytest.raises(ConfigError, match="another config"):
        sac_behaviour.train("Hopper-v5", SMOKE.behaviour, SEED + 1, folder)


def test_data_card(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert main(["data", "make", "hopper-medium-replay-sac-v5", "--preset", "smoke", "--seed", str(SEED),
                 "--work-dir", str(work)]) == 0
    folder = tmp_path / "minari" / "hybridrl" / "hopper-medium-replay-sac-v5"
    assert (folder / "data_card.png").stat().st_size > 10_000
    (folder / "data_card.png").unlink()
    assert main(["data", "info", "hopper-medium-replay-sac-v5"]) == 0
    text = capsys.readouterr().out
    for line in ("return pct.", "at bounds", "medium pol.", "expert pol.", "stages", "buffer"):
        assert line in text, line
    assert (folder / "data_card.png").is_file()
    summary = summarize(load_dataset("hopper-medium-replay-sac-v5"))
    assert sum(stage["episodes"] for stage in summary["stages"]) == summary["episodes"]
    assert json.loads(json.dumps(summary)) == summary  # JSON-ready


def test_stages_split_the_data_in_collection_order() -> None:
    returns = np.arange(10, dtype=np.float64)
    lengths = np.full(10, 100)
    parts = stages(returns, lengths, 10)
    assert [part["episodes"] for part in parts] == [2] * 5
    assert [part["first_transition"] for part in parts] == [0, 200, 400, 600, 800]
    assert parts[-1]["return_mean"] == 8.5


def test_the_squashed_actor_snapshot_acts_like_the_trainer(work: Path) -> None:
    from hybridrl.algorithms import get_algorithm
    from hybridrl.rl.sac import SACTrainer

    policies = BehaviourPolicies.load(policies_folder(work))
    config = get_algorithm("sac").make_config("smoke", env="Hopper-v5")
    trainer = SACTrainer(config, work / "probe")
    try:
        actor = jax.tree_util.tree_map(np.asarray, policies.expert.params)
        trainer.state = trainer.state.replace(params={**trainer.state.params, "actor": actor})
        trainer.refresh_host_actor()
        observations = np.random.default_rng(0).normal(size=(4, 11)).astype(np.float32)
        act = policies.expert.bind(trainer.env.action_space)
        np.testing.assert_allclose(act(observations), trainer.act_deterministic(observations), rtol=1e-6, atol=1e-6)
    finally:
        trainer.close()


SHIPPED = sorted(path.parent for path in ASSETS.glob(f"*-sac-cpu-s0/{BEHAVIOUR_FILE}"))


@pytest.mark.parametrize("folder", SHIPPED, ids=[folder.name for folder in SHIPPED])
def test_shipped_sac_policies_are_what_their_record_says(folder: Path) -> None:
    policies = BehaviourPolicies.load(folder)
    record = policies.record
    assert policies.learner == "sac" and record["preset"] == "cpu" and record["seed"] == 0
    assert policies.medium.step == record["medium_step"] <= policies.expert.step
    # The choice rule holds on the recorded ratings...
    medium, expert = sac_behaviour.choose_medium_and_expert([s["eval_return"] for s in record["snapshots"]])
    assert (record["snapshots"][medium]["file"], record["snapshots"][expert]["file"]) == (record["medium"],
                                                                                          record["expert"])
    # ... and the shipped actors act as rated: their squashed samples almost never sit on a bound.
    rng = np.random.default_rng(0)
    from hybridrl.envs.factory import make_env

    env = make_env(record["env_id"])
    try:
        act = policies.expert.bind(env.action_space)
        observation, _ = env.reset(seed=0)
        actions = []
        for _ in range(200):
            action = act(observation[None], rng)[0]
            actions.append(action)
            observation, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                observation, _ = env.reset()
        assert actions_at_bounds(np.asarray(actions), record["env_id"]) < 0.01
    finally:
        env.close()
