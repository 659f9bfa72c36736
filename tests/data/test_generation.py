"""Dataset generation: names, determinism at smoke scale, behaviour-policy files, shipped assets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridrl.cli import main
from hybridrl.data import load_dataset
from hybridrl.data.generation import (
    ASSETS,
    BEHAVIOUR_FILE,
    PRESETS,
    BehaviourPolicies,
    _mean_return,
    make_dataset,
    parse_dataset_name,
)
from hybridrl.data.policies import BehaviourPolicy
from hybridrl.errors import ConfigError


def test_parse_dataset_name() -> None:
    assert parse_dataset_name("hopper-medium-replay-v5") == ("hopper", "medium-replay", "Hopper-v5", "ppo")
    assert parse_dataset_name("halfcheetah-expert-v5")[2] == "HalfCheetah-v5"
    with pytest.raises(ConfigError, match="family one of hopper, halfcheetah, walker2d"):
        parse_dataset_name("ant-medium-v5")
    with pytest.raises(ConfigError, match="kind one of"):
        parse_dataset_name("hopper-good-v5")


def test_smoke_generation_is_deterministic(tmp_path: Path) -> None:
    first = make_dataset("hopper-medium-replay-v5", preset="smoke", seed=3, work_dir=tmp_path / "a")
    second = make_dataset("hopper-medium-replay-v5", preset="smoke", seed=3, work_dir=tmp_path / "b")
    assert len(first) == PRESETS["smoke"].transitions
    for key, value in first.to_numpy().items():
        np.testing.assert_array_equal(value, second.to_numpy()[key], err_msg=key)
    assert first.info.reference_returns == second.info.reference_returns
    # The medium and expert datasets reuse the trained policies and are deterministic too.
    medium = make_dataset("hopper-medium-v5", preset="smoke", seed=3, work_dir=tmp_path / "a")
    expert = make_dataset("hopper-expert-v5", preset="smoke", seed=3, work_dir=tmp_path / "b")
    both = make_dataset("hopper-medium-expert-v5", preset="smoke", seed=3, work_dir=tmp_path / "b")
    np.testing.assert_array_equal(both.to_numpy()["actions"],
                                  np.concatenate([medium.to_numpy()["actions"], expert.to_numpy()["actions"]]))
    assert both.num_episodes == medium.num_episodes + expert.num_episodes
    other_seed = make_dataset("hopper-random-v5", preset="smoke", seed=4, work_dir=tmp_path / "b")
    assert not np.array_equal(other_seed.to_numpy()["actions"][:10], first.to_numpy()["actions"][:10])


def test_make_command_writes_a_loadable_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = str(tmp_path / "work")
    assert main(["data", "make", "hopper-random-v5", "--preset", "smoke", "--work-dir", work]) == 0
    dataset = load_dataset("hopper-random-v5", env="Hopper-v5")
    assert dataset.info.extra["preset"] == "smoke" and dataset.info.algorithm == "random"
    random_return, _ = dataset.info.reference_returns or (0.0, 0.0)
    assert dataset.normalized_score(random_return) == pytest.approx(0.0)
    assert main(["data", "info", "hopper-random-v5"]) == 0
    text = capsys.readouterr().out
    assert "measured by hybridrl data make" in text and "D4RL ref." in text
    assert main(["data", "make", "hopper-random-v5", "--preset", "smoke", "--work-dir", work]) == 2
    assert "already exists" in capsys.readouterr().err


def test_behaviour_policy_round_trip(tmp_path: Path) -> None:
    work = tmp_path / "work"
    make_dataset("hopper-random-v5", preset="smoke", seed=1, work_dir=work)
    folder = work / "Hopper-v5-smoke-s1"
    policies = BehaviourPolicies.load(folder)
    path = policies.expert.save(tmp_path / "copy.msgpack")
    copy = BehaviourPolicy.load(path)
    observation = np.linspace(-1, 1, 11, dtype=np.float32)[None]
    import gymnasium as gym

    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    np.testing.assert_array_equal(policies.expert.bind(space)(observation), copy.bind(space)(observation))
    (tmp_path / "junk.msgpack").write_bytes(b"junk")
    from hybridrl.data import DatasetError

    with pytest.raises(DatasetError, match="not a hybridrl behaviour policy"):
        BehaviourPolicy.load(tmp_path / "junk.msgpack")


@pytest.mark.parametrize("folder", sorted(path.parent for path in ASSETS.glob(f"*/{BEHAVIOUR_FILE}")))
def test_shipped_policies_reproduce_their_expert_return(folder: Path) -> None:
    policies = BehaviourPolicies.load(folder)
    record = policies.record
    assert policies.medium.eval_return < policies.expert.eval_return
    assert sum(path.stat().st_size for path in folder.iterdir()) < 1_000_000  # assets stay small
    # The recorded reference episodes again (the same seeds and mean actions): their mean return is the
    # recorded one up to the round-off of another machine, which can grow over an episode's 1000 steps.
    episodes = int(record["reference_returns"]["episodes"])
    measured = _mean_return(record["env_id"], policies.expert, episodes, record["seed"])
    assert measured == pytest.approx(policies.expert_return, rel=0.25)
