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


def test_demos_of_a_sac_run_record_its_action_repeat(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.data.demos import generate_demos, make_demos
    from hybridrl.errors import ConfigError

    # An untrained SAC run (warm-up only) is expert enough; DMC tasks act with action repeat 2.
    run_dir = tmp_path / "sac"
    runs.train("sac", preset="smoke", env="dmc:cartpole-balance", run_dir=run_dir, total_steps=200,
               learning_starts=200)
    generate_demos("dmc:cartpole-balance", episodes=1, seed=0, run_dir=run_dir, reference_episodes=1)
    demos = load_dataset("demos/dmc-cartpole-balance-v0", env="dmc:cartpole-balance")
    assert demos.info.algorithm == "sac" and "SAC run" in demos.info.description
    assert demos.info.extra["action_repeat"] == 2 and demos.action_repeat == 2
    assert demos.episode_lengths.tolist() == [500]  # 1000 control steps, 2 per action
    assert demos.info.reference_returns is not None
    assert demos.info.reference_returns[1] == pytest.approx(float(demos.episode_returns()[0]))
    with pytest.raises(ConfigError, match="trained on dmc:cartpole-balance, not Pendulum-v1"):
        make_demos("Pendulum-v1", episodes=1, run_dir=run_dir)
