"""PPO: the loss against an independent computation, learning, determinism, exact resume."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from hybridrl import runs
from hybridrl.algorithms import get_algorithm
from hybridrl.cli import main
from hybridrl.core.checkpoint import load_checkpoint
from hybridrl.errors import ConfigError
from hybridrl.rl.ppo import (
    PPOConfig,
    PPOSeedGroup,
    PPOTrainer,
    RolloutBatch,
    UpdateSettings,
    init_train_state,
    make_networks,
    ppo_loss,
    train_seeds,
)
from hybridrl.testing import (
    assert_trees_equal,
    metrics_without_timing,
    pause_then_resume_seeds,
    roundoff_tolerance,
)

SPEC = get_algorithm("ppo")


def smoke_config(**overrides: Any) -> PPOConfig:
    config: PPOConfig = SPEC.make_config("smoke", **overrides)
    return config


def _final_params(run_dir: Path, config: PPOConfig) -> Any:
    trainer = PPOTrainer(config, run_dir)
    try:
        state, _, _, _ = load_checkpoint(run_dir / "checkpoint.ckpt", algorithm="ppo", template=trainer.state)
    finally:
        trainer.close()
    return jax.device_get(state.params)


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("clip_value_loss", [True, False])
def test_loss_matches_independent_numpy_computation(env: str, clip_value_loss: bool) -> None:
    import gymnasium as gym

    config = smoke_config(env=env, clip_value_loss=clip_value_loss)
    space = gym.make(env).action_space
    networks = make_networks(config, space)
    state = init_train_state(config, networks, gym.make(env).observation_space.shape, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    size, obs_dim = 32, gym.make(env).observation_space.shape[0]
    observations = rng.normal(size=(size, obs_dim)).astype(np.float32)
    params = jax.device_get(state.params)
    dist = networks.policy.apply_numpy(params["policy"], observations)
    noise = rng.standard_normal(dist.noise_shape()).astype(np.float32) if env == "Pendulum-v1" \
        else rng.random(dist.noise_shape()).astype(np.float32)
    actions = dist.sample_from_noise(noise)
    # Old log-probs and values perturbed so ratios and value clipping are exercised on both sides.
    old_log_probs = dist.log_prob(actions) + rng.normal(scale=0.3, size=size).astype(np.float32)
    old_values = rng.normal(size=size).astype(np.float32)
    advantages = rng.normal(size=size).astype(np.float32)
    returns = rng.normal(size=size).astype(np.float32)
    settings = UpdateSettings(1, 1, 0.2, clip_value_loss, True, 0.01, 0.5, None)
    batch = RolloutBatch(observations, actions, old_log_probs, old_values, advantages, returns)
    loss, metrics = ppo_loss(state.params, batch, networks, settings)

    ratio = np.exp(dist.log_prob(actions) - old_log_probs)
    normalized = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = np.mean(np.maximum(-normalized * ratio, -normalized * np.clip(ratio, 0.8, 1.2)))
    values = networks.value.apply_numpy(params["value"], observations)
    if clip_value_loss:
        clipped = old_values + np.clip(values - old_values, -0.2, 0.2)
        value_loss = 0.5 * np.mean(np.maximum((values - returns) ** 2, (clipped - returns) ** 2))
    else:
        value_loss = 0.5 * np.mean((values - returns) ** 2)
    entropy = np.mean(dist.entropy())
    np.testing.assert_allclose(float(metrics["loss/policy"]), policy_loss, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["loss/value"]), value_loss, rtol=1e-4)
    np.testing.assert_allclose(float(loss), policy_loss - 0.01 * entropy + 0.5 * value_loss, rtol=1e-4, atol=1e-6)


def test_target_kl_stops_epochs_early(tmp_path: Path) -> None:
    config = smoke_config(env="CartPole-v1", update_epochs=8, learning_rate=0.05, target_kl=1e-4,
                          total_steps=256)
    trainer = PPOTrainer(config, tmp_path)
    try:
        trainer.collect_rollout()
        metrics = trainer.update()
    finally:
        trainer.close()
    assert 0 < metrics["update/minibatch_steps"] < config.update_epochs * config.num_minibatches


def test_target_kl_checked_per_minibatch_stops_at_the_first_minibatch_over_it(tmp_path: Path) -> None:
    # A large step makes every minibatch after the first exceed the KL: the epoch check still takes
    # the whole first epoch, the minibatch check stops before the second minibatch's step.
    steps = {}
    for check in ("epoch", "minibatch"):
        config = smoke_config(env="CartPole-v1", update_epochs=4, learning_rate=0.5, target_kl=1e-6,
                              total_steps=256, target_kl_check=check)
        trainer = PPOTrainer(config, tmp_path / check)
        try:
            trainer.collect_rollout()
            steps[check] = trainer.update()["update/minibatch_steps"]
        finally:
            trainer.close()
    assert steps == {"epoch": config.num_minibatches, "minibatch": 1}
    with pytest.raises(ConfigError, match="--target-kl-check"):
        smoke_config(env="CartPole-v1", target_kl_check="step")


@pytest.mark.slow
def test_learns_cartpole(tmp_path: Path) -> None:
    result = runs.train("ppo", preset="cpu", env="CartPole-v1", seed=1, run_dir=tmp_path / "run",
                        total_steps=61_440, num_envs=8, num_steps=128, learning_rate=2.5e-3, update_epochs=4,
                        num_minibatches=4, entropy_coef=0.01, eval_interval=0, eval_episodes=20)
    assert result.final["eval/return_mean"] >= 475


@pytest.mark.slow
def test_improves_on_pendulum(tmp_path: Path) -> None:
    result = runs.train("ppo", preset="cpu", env="Pendulum-v1", seed=1, run_dir=tmp_path / "run",
                        total_steps=61_440, num_envs=4, num_steps=512, learning_rate=1e-3, gamma=0.9,
                        num_minibatches=16, eval_interval=0, eval_episodes=10)
    # A random or untrained policy scores about -1200 to -1500 on Pendulum-v1; seeds 0-4 reached -236 to -308.
    assert result.final["eval/return_mean"] > -600


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_same_seed_gives_identical_runs(tmp_path: Path, env: str) -> None:
    first = runs.train("ppo", preset="smoke", env=env, seed=3, run_dir=tmp_path / "a")
    second = runs.train("ppo", preset="smoke", env=env, seed=3, run_dir=tmp_path / "b")
    other = runs.train("ppo", preset="smoke", env=env, seed=4, run_dir=tmp_path / "c")
    assert metrics_without_timing(first.run_dir) == metrics_without_timing(second.run_dir)
    assert metrics_without_timing(first.run_dir) != metrics_without_timing(other.run_dir)
    config = smoke_config(env=env, seed=3)
    assert_trees_equal(_final_params(first.run_dir, config), _final_params(second.run_dir, config))


@pytest.mark.parametrize("env", ["Pendulum-v1", "Hopper-v5", "CartPole-v1"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path: Path, env: str) -> None:
    # 8 iterations of 2 envs x 128 steps; Pendulum's 200-step time limit and Hopper's falls end
    # episodes mid-rollout, so the resumed envs must continue exactly where they stopped.
    config = smoke_config(env=env, seed=5, total_steps=2_048, checkpoint_interval=0)
    uninterrupted = runs.start(SPEC, config, tmp_path / "whole")

    interrupted_dir = tmp_path / "interrupted"
    interrupted_dir.mkdir()
    runs.write_run_config(interrupted_dir, SPEC, config)
    trainer = PPOTrainer(config, interrupted_dir)
    try:
        paused = trainer.train(stop_at_step=768)  # pause (with a checkpoint) after 3 iterations
    finally:
        trainer.close()
    assert paused["paused"] and not runs.is_finished(interrupted_dir)
    resumed = runs.resume(interrupted_dir)

    assert resumed.final["step"] == uninterrupted.final["step"] == 2_048
    assert_trees_equal(_final_params(uninterrupted.run_dir, config), _final_params(interrupted_dir, config))
    assert metrics_without_timing(uninterrupted.run_dir) == metrics_without_timing(interrupted_dir)
    assert resumed.final["eval/return_mean"] == uninterrupted.final["eval/return_mean"]


def test_checkpoint_round_trip_restores_every_field(tmp_path: Path) -> None:
    config = smoke_config(env="Pendulum-v1", total_steps=512)
    trainer = PPOTrainer(config, tmp_path)
    restored = PPOTrainer(dataclasses.replace(config), tmp_path)
    try:
        trainer.train()
        path = trainer.save_checkpoint()
        restored.load_checkpoint(path)
        assert_trees_equal(trainer.state, restored.state)
        assert restored.global_step == trainer.global_step == 512
        assert restored.iteration == trainer.iteration
        assert restored.rng.random() == trainer.rng.random()
        np.testing.assert_array_equal(restored.observation_stats.mean, trainer.observation_stats.mean)
        np.testing.assert_array_equal(restored.observation_stats.var, trainer.observation_stats.var)
        assert restored.observation_stats.count == trainer.observation_stats.count
        np.testing.assert_array_equal(restored.return_normalizer.discounted_returns,
                                      trainer.return_normalizer.discounted_returns)
        np.testing.assert_array_equal(restored.episode_returns, trainer.episode_returns)
        np.testing.assert_array_equal(restored.next_observations, trainer.next_observations)
        assert restored.last_eval == trainer.last_eval
        assert float(restored.state.opt_state.hyperparams["learning_rate"]) == float(
            trainer.state.opt_state.hyperparams["learning_rate"])
        # The restored envs continue exactly like the originals.
        actions = np.full((config.num_envs, 1), 0.5, dtype=np.float32)
        for _ in range(5):
            expected = trainer.envs.step(actions)
            actual = restored.envs.step(actions)
            np.testing.assert_array_equal(actual[0], expected[0])
            np.testing.assert_array_equal(actual[1], expected[1])
    finally:
        trainer.close()
        restored.close()


def test_learning_rate_anneals_to_zero(tmp_path: Path) -> None:
    result = runs.train("ppo", preset="smoke", env="CartPole-v1", run_dir=tmp_path / "run")
    entries = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [e["update/learning_rate"] for e in entries if "update/learning_rate" in e]
    assert rates[0] == pytest.approx(3e-4)
    assert all(a > b for a, b in itertools.pairwise(rates))
    assert rates[-1] == pytest.approx(3e-4 / len(rates), rel=1e-5)


def test_config_validation_messages() -> None:
    from hybridrl.errors import ConfigError

    with pytest.raises(ConfigError, match="total-steps must be positive"):
        smoke_config(total_steps=0)
    with pytest.raises(ConfigError, match="not divisible"):
        smoke_config(num_minibatches=7)
    with pytest.raises(ConfigError, match="unknown preset"):
        SPEC.make_config("huge")
    with pytest.raises(ConfigError, match="did you mean total_steps"):
        SPEC.make_config("smoke", total_step=5)


def test_list_options_become_tuples_so_runs_resume(tmp_path: Path) -> None:
    config = smoke_config(policy_hidden=[16, 16], total_steps=256)
    assert config.policy_hidden == (16, 16)
    first = runs.train("ppo", preset="smoke", policy_hidden=[16, 16], total_steps=256, run_dir=tmp_path / "r")
    again = runs.train("ppo", preset="smoke", policy_hidden=[16, 16], total_steps=256, run_dir=tmp_path / "r")
    assert again.final["step"] == first.final["step"] == 256


# --------------------------------------------------------------------------------------------
# Seeds trained together
# --------------------------------------------------------------------------------------------

#: Seeds trained together in these tests: smoke PPO on Pendulum-v1 (2 envs x 128 steps per iteration,
#: 2 epochs x 4 minibatches of 64), 8 iterations, 64 minibatch steps.
SEEDS, GROUP_STEPS, MINIBATCH_STEPS = [1, 2], 2_048, 64


def group_config(seed: int = 1) -> PPOConfig:
    return smoke_config(env="Pendulum-v1", seed=seed, total_steps=GROUP_STEPS)


def _checkpoint(run_dir: Path, config: PPOConfig) -> tuple[Any, dict[str, Any]]:
    trainer = PPOTrainer(config, run_dir)
    try:
        state, host, _, _ = load_checkpoint(run_dir / "checkpoint.ckpt", algorithm="ppo", template=trainer.state)
    finally:
        trainer.close()
    return jax.device_get(state), host


def _flat(params: Any) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for leaf in jax.tree_util.tree_leaves(params)])


@pytest.fixture(scope="module")
def group_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeds 1 and 2 in one process, by ``hybridrl train ppo --seeds 2``."""
    root = tmp_path_factory.mktemp("ppo-seeds") / "group"
    assert main(["train", "ppo", "--env", "Pendulum-v1", "--preset", "smoke", "--total-steps", str(GROUP_STEPS),
                 "--seeds", "2", "--first-seed", "1", "--run-dir", str(root), "--no-progress"]) == 0
    return root


def test_a_seed_trained_with_others_follows_its_run_alone(group_run: Path, tmp_path: Path) -> None:
    config = group_config(seed=2)
    alone = runs.train("ppo", preset="smoke", env="Pendulum-v1", seed=2, total_steps=GROUP_STEPS,
                       run_dir=tmp_path / "alone")
    grouped = group_run / "seed2"
    for name in ("config.json", "metrics.jsonl", "checkpoint.ckpt", "final.json"):
        assert (grouped / name).is_file(), name
    assert runs.read_run_config(grouped) == runs.read_run_config(alone.run_dir) == (SPEC, config)
    final = json.loads((grouped / "final.json").read_text())
    assert final["seed"] == 2 and final["step"] == GROUP_STEPS

    together, together_host = _checkpoint(grouped, config)
    single, single_host = _checkpoint(alone.run_dir, config)
    # The same random streams after the same draws: the action generator and the minibatch key.
    assert together_host["rng"] == single_host["rng"]
    assert_trees_equal(together.key, single.key)
    # The same computation but for the order of float32 sums in the batched matrix products (rollout
    # passes and updates), within the round-off bound of 64 minibatch steps through sums of 64 terms...
    tolerance = roundoff_tolerance(MINIBATCH_STEPS, summation_length=64)
    difference = np.linalg.norm(_flat(together.params) - _flat(single.params))
    assert difference <= tolerance * np.linalg.norm(_flat(single.params))
    # ... far below what another seed changes, so a mixed-up seed would fail.
    other, _ = _checkpoint(group_run / "seed1", group_config(seed=1))
    assert tolerance * np.linalg.norm(_flat(single.params)) < 1e-2 * np.linalg.norm(
        _flat(other.params) - _flat(single.params))
    # The same log lines (steps and metrics).
    grouped_metrics, alone_metrics = metrics_without_timing(grouped), metrics_without_timing(alone.run_dir)
    assert [sorted(line) for line in grouped_metrics] == [sorted(line) for line in alone_metrics]
    # `hybridrl eval` and `resume` treat a seed's directory as any run's.
    assert runs.evaluate(grouped)["eval/return_mean"] == final["eval/return_mean"]
    assert runs.resume(grouped).final == final


def test_an_interrupted_group_resumes_like_an_uninterrupted_one(group_run: Path, tmp_path: Path) -> None:
    configs = [group_config(seed) for seed in SEEDS]
    # After 3 iterations: mid-episode (Pendulum's episodes are 200 steps per env).
    results = pause_then_resume_seeds(train_seeds, SPEC, configs, tmp_path / "group", stop_at_step=768)
    for config, result in zip(configs, results, strict=True):
        uninterrupted = group_run / f"seed{config.seed}"
        assert metrics_without_timing(result.run_dir) == metrics_without_timing(uninterrupted)
        resumed_state, resumed_host = _checkpoint(result.run_dir, config)
        whole_state, whole_host = _checkpoint(uninterrupted, config)
        assert_trees_equal(resumed_state, whole_state)
        assert resumed_host["rng"] == whole_host["rng"]
        np.testing.assert_array_equal(resumed_host["next_observations"], whole_host["next_observations"])


def test_seeds_paused_at_different_steps_resume_in_groups_by_step(group_run: Path, tmp_path: Path) -> None:
    root, stops = tmp_path / "group", (512, 1024)
    run_dirs = runs.seed_run_dirs(root, SEEDS)
    for seed, run_dir, stop in zip(SEEDS, run_dirs, stops, strict=True):
        assert train_seeds([group_config(seed)], [run_dir], stop_at_step=stop)[0]["step"] == stop
    results = runs.start_seeds(SPEC, group_config(), SEEDS, root)
    for seed, result, stop in zip(SEEDS, results, stops, strict=True):
        assert any(path.name.endswith(f".step{stop}") for path in (result.run_dir / "tb").iterdir())
        assert result.final["step"] == GROUP_STEPS
        assert [line["step"] for line in metrics_without_timing(result.run_dir)] == [
            line["step"] for line in metrics_without_timing(group_run / f"seed{seed}")]


def test_seeds_trained_together_must_differ_only_in_their_seed(tmp_path: Path) -> None:
    configs = [group_config(seed=1), dataclasses.replace(group_config(seed=2), clip_coef=0.1)]
    with pytest.raises(ConfigError, match="must differ only in their seed"):
        train_seeds(configs, runs.seed_run_dirs(tmp_path, [1, 2]))


def test_only_plain_ppo_trains_in_a_seed_group(tmp_path: Path) -> None:
    from hybridrl.rl.props import PROPSTrainer

    props = get_algorithm("props")
    trainer = PROPSTrainer(props.make_config("smoke", env="Pendulum-v1"), tmp_path)
    try:
        with pytest.raises(ConfigError, match="only plain PPO"):
            PPOSeedGroup([trainer])
    finally:
        trainer.close()
