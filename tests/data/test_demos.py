"""Demonstrations: whole episodes of the expert, with the expert's return recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridrl.cli import main
from hybridrl.core.seeding import Seeder
from hybridrl.data import load_dataset
from hybridrl.data.demos import demos_id
from hybridrl.data.generation import BehaviourPolicies
from hybridrl.envs import make_env


def test_demos_have_the_expert_returns(tmp_path: Path) -> None:
    work = str(tmp_path / "work")
    assert main(["data", "demos", "dmc:cartpole-balance", "--episodes", "2", "--preset", "smoke",
                 "--work-dir", work]) == 0
    assert demos_id("dmc:cartpole-balance") == "demos/dmc-cartpole-balance-v0"
    demos = load_dataset("demos/dmc-cartpole-balance-v0", env="dmc:cartpole-balance")
    assert demos.num_episodes == 2 and demos.episode_lengths.tolist() == [1000, 1000]
    returns = demos.episode_returns()
    assert demos.info.reference_returns is not None
    assert demos.info.reference_returns[1] == pytest.approx(returns.mean())
    assert demos.normalized_score(returns.mean()) == pytest.approx(100.0)
    # Replaying the expert on the same seeds gives the same returns.
    expert = BehaviourPolicies.load(Path(work) / "dmc-cartpole-balance-smoke-s0").expert
    env = make_env("dmc:cartpole-balance")
    act = expert.bind(env.action_space)
    for episode_seed, recorded in zip(Seeder(0).env_seeds("demos", 2), returns, strict=True):
        observation, _ = env.reset(seed=episode_seed)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(act(observation[None])[0])
            total, done = total + float(reward), terminated or truncated
        assert total == pytest.approx(recorded, rel=1e-5)
    env.close()
    np.testing.assert_array_equal(np.asarray(demos.episode(0).truncations)[-1], True)
