"""Tests of PROPS (hybridrl.rl.props): the behaviour objective, the bandit behaviour it is built
for, the FIFO buffer, every sampling scheme end to end, fixed targets, presets, determinism and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl import runs
from hybridrl.algorithms import get_algorithm
from hybridrl.core.checkpoint import load_checkpoint
from hybridrl.core.distributions import DiagGaussian
from hybridrl.core.networks import CategoricalPolicy, GaussianPolicy
from hybridrl.core.sampling_error import sampling_error
from hybridrl.errors import ConfigError
from hybridrl.rl.ppo import make_optimizer
from hybridrl.rl.props import (
    BatchFIFO,
    BehaviourBatch,
    BehaviourSettings,
    BehaviourState,
    PROPSConfig,
    PROPSTrainer,
    behaviour_loss,
    behaviour_update,
    ros_behaviour,
)
from hybridrl.testing import assert_trees_equal, metrics_without_timing

SPEC = get_algorithm("props")


def smoke_config(**overrides: Any) -> PROPSConfig:
    config: PROPSConfig = SPEC.make_config("smoke", **overrides)
    return config


def settings(**overrides: Any) -> BehaviourSettings:
    values: dict[str, Any] = dict(objective="props", update_epochs=16, num_minibatches=4, clip_coef=0.3,
                                  target_kl=0.1, kl_coef=0.1, kl_per_dimension=True, learning_rate=1e-2,
                                  max_grad_norm=0.5)
    return BehaviourSettings(**{**values, **overrides})


def _gaussian(mean: float, log_std: float) -> tuple[GaussianPolicy, dict[str, Any]]:
    """A one-dimensional Gaussian policy that ignores its (scalar) observation."""
    policy = GaussianPolicy(action_dim=1, hidden_sizes=())
    params = jax.device_get(policy.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))["params"])
    params["mean"] = {"kernel": np.zeros((1, 1), np.float32), "bias": np.array([mean], np.float32)}
    params["log_std"] = np.array([log_std], np.float32)
    return policy, params


def _bandit(probabilities: list[float]) -> tuple[CategoricalPolicy, dict[str, Any]]:
    policy = CategoricalPolicy(num_actions=len(probabilities), hidden_sizes=())
    params = jax.device_get(policy.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))["params"])
    params["mlp"]["output"]["kernel"] = np.zeros_like(params["mlp"]["output"]["kernel"])
    params["mlp"]["output"]["bias"] = np.log(np.asarray(probabilities, np.float32))
    return policy, params


def _normal_density(x: float, mean: float, std: float) -> float:
    return math.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


# -- the behaviour objective ------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["props", "ros-original"])
def test_behaviour_loss_matches_hand_computed_values(objective: str) -> None:
    policy, behaviour = _gaussian(mean=0.5, log_std=-0.2)
    target = DiagGaussian(mean=jnp.zeros((4, 1)), log_std=jnp.zeros((4, 1)))
    actions = np.array([[-1.0], [0.0], [0.5], [2.0]], np.float32)
    weights = np.array([1.0, 1.0, 1.0, 0.0], np.float32)  # the last entry is padding
    loss, metrics = behaviour_loss(behaviour, jnp.zeros((4, 1)), jnp.asarray(actions), target, jnp.asarray(weights),
                                   policy=policy, settings=settings(objective=objective, kl_coef=0.3))

    std = math.exp(-0.2)
    ratios = [_normal_density(a, 0.5, std) / _normal_density(a, 0.0, 1.0) for a in (-1.0, 0.0, 0.5)]
    if objective == "props":
        surrogate = sum(max(r, min(max(r, 0.7), 1.3)) for r in ratios) / 3
    else:
        surrogate = -sum(math.log(r) for r in ratios) / 3
    kl = math.log(1.0 / std) + (std**2 + 0.5**2) / 2.0 - 0.5  # KL(N(.5, std) || N(0, 1))
    assert float(metrics["behaviour/surrogate"]) == pytest.approx(surrogate, rel=1e-5)
    assert float(metrics["behaviour/kl_regularizer"]) == pytest.approx(kl, rel=1e-5)
    assert float(loss) == pytest.approx(surrogate + 0.3 * kl, rel=1e-5)
    approx_kl = sum((r - 1) - math.log(r) for r in ratios) / 3
    assert float(metrics["behaviour/approx_kl"]) == pytest.approx(approx_kl, rel=1e-5)
    assert float(metrics["behaviour/clip_fraction"]) == pytest.approx(sum(abs(r - 1) > 0.3 for r in ratios) / 3)


def test_kl_is_averaged_over_action_dimensions_unless_asked_not_to() -> None:
    policy = GaussianPolicy(action_dim=3, hidden_sizes=())
    params = jax.device_get(policy.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))["params"])
    params["log_std"] = np.full(3, -0.5, np.float32)
    target = DiagGaussian(mean=jnp.ones((2, 3)), log_std=jnp.zeros((2, 3)))
    args = (params, jnp.zeros((2, 1)), jnp.zeros((2, 3)), target, jnp.ones(2))
    _, averaged = behaviour_loss(*args, policy=policy, settings=settings())
    _, summed = behaviour_loss(*args, policy=policy, settings=settings(kl_per_dimension=False))
    assert float(summed["behaviour/kl_regularizer"]) == pytest.approx(3 * float(averaged["behaviour/kl_regularizer"]))


# -- the bandit: what the behaviour policy is for ---------------------------------------------


def _behaviour_state(params: Any, seed: int = 0) -> BehaviourState:
    return BehaviourState(params=params, opt_state=make_optimizer(0.5, 1e-2).init(params),
                          key=jax.random.PRNGKey(seed))


def test_behaviour_update_raises_the_probability_of_an_under_sampled_action() -> None:
    policy, theta = _bandit([0.4, 0.3, 0.2, 0.1])
    actions = np.array([1] * 30 + [2] * 20 + [3] * 10 + [0] * 4)  # action 0: 6% of the data, 40% of pi
    batch = BehaviourBatch(observations=jnp.zeros((64, 1)), actions=jnp.asarray(actions), num_valid=jnp.asarray(64))
    state, metrics = behaviour_update(_behaviour_state(theta), theta, theta, batch, policy=policy, settings=settings())
    before = np.asarray(jax.nn.softmax(theta["mlp"]["output"]["bias"]))
    after = np.asarray(jax.nn.softmax(state.params["mlp"]["output"]["bias"]))
    assert after[0] > before[0] + 0.1
    assert np.all(after[1:] < before[1:])
    assert 0 < float(metrics["behaviour/minibatch_steps"]) <= 16 * 4


def _bandit_sampling_errors(scheme: str, seed: int, capacity: int = 64, batch: int = 8) -> np.ndarray:
    """Sampling error of a growing buffer collected from a fixed target by ``scheme``."""
    policy, theta = _bandit([0.4, 0.3, 0.2, 0.1])
    rng = np.random.default_rng(seed)
    state, behaviour = _behaviour_state(theta, seed), theta
    buffer: list[int] = []
    errors = []
    for _ in range(capacity // batch):
        probabilities = np.asarray(jax.nn.softmax(behaviour["mlp"]["output"]["bias"]), np.float64)
        buffer += list(rng.choice(4, size=batch, p=probabilities / probabilities.sum()))
        errors.append(sampling_error(policy, theta, np.zeros((len(buffer), 1), np.float32), np.array(buffer)))
        padded = np.zeros(capacity, np.int64)
        padded[: len(buffer)] = buffer
        data = BehaviourBatch(observations=jnp.zeros((capacity, 1)), actions=jnp.asarray(padded),
                              num_valid=jnp.asarray(len(buffer)))
        if scheme == "props":
            state, _ = behaviour_update(state, theta, theta, data, policy=policy, settings=settings())
            behaviour = state.params
        elif scheme == "ros":
            behaviour = ros_behaviour(theta, data, 0.5, policy=policy)
    return np.array(errors)


def test_props_sampling_error_falls_faster_than_on_policy_on_a_bandit() -> None:
    on_policy = np.mean([_bandit_sampling_errors("on-policy", seed) for seed in range(16)], axis=0)
    props = np.mean([_bandit_sampling_errors("props", seed) for seed in range(16)], axis=0)
    assert props[0] == pytest.approx(on_policy[0])  # the first batch is on-policy in both
    assert np.all(props[2:] < 0.8 * on_policy[2:])
    assert props[-1] < 0.6 * on_policy[-1]


def test_ros_step_lowers_the_likelihood_of_buffered_actions() -> None:
    policy, theta = _bandit([0.25, 0.25, 0.25, 0.25])
    actions = np.array([0, 0, 0, 1, 2, 3, 9, 9])  # the last two entries are padding (never read)
    batch = BehaviourBatch(observations=jnp.zeros((8, 1)), actions=jnp.asarray(np.minimum(actions, 3)),
                           num_valid=jnp.asarray(6))
    phi = ros_behaviour(theta, batch, 1.0, policy=policy)
    probabilities = np.asarray(jax.nn.softmax(phi["mlp"]["output"]["bias"]))
    assert probabilities[0] < 0.25 < probabilities[1]
    np.testing.assert_allclose(probabilities[1:], probabilities[1], rtol=1e-6)


def test_stale_reference_starts_away_from_ratio_one_and_can_stop_at_once() -> None:
    policy, theta = _bandit([0.4, 0.3, 0.2, 0.1])
    _, stale = _bandit([0.1, 0.2, 0.3, 0.4])
    batch = BehaviourBatch(observations=jnp.zeros((16, 1)), actions=jnp.asarray(np.arange(16) % 4),
                           num_valid=jnp.asarray(16))
    state, metrics = behaviour_update(_behaviour_state(theta), theta, stale, batch, policy=policy,
                                      settings=settings(target_kl=0.01))
    assert float(metrics["behaviour/minibatch_steps"]) == 0.0
    assert_trees_equal(jax.device_get(state.params), theta)  # stopped before the first step: phi = theta


def test_std_reference_scales_the_mean_steps_by_the_target_width_and_not_the_log_std() -> None:
    policy, theta = _gaussian(mean=0.0, log_std=math.log(0.25))
    batch = BehaviourBatch(observations=jnp.zeros((8, 1)), actions=jnp.linspace(-0.5, 0.5, 8)[:, None],
                           num_valid=jnp.asarray(8))
    one_step = dict(update_epochs=1, num_minibatches=1, target_kl=None)
    steps = {}
    for reference in (None, 0.5):
        state, _ = behaviour_update(_behaviour_state(theta), theta, theta, batch, policy=policy,
                                    settings=settings(**one_step, std_reference=reference))
        steps[reference] = jax.tree_util.tree_map(lambda new, old: np.asarray(new) - np.asarray(old),
                                                  jax.device_get(state.params), theta)
    # sigma_theta / reference = 0.25 / 0.5: the mean's step halves, the log-std's does not change.
    assert np.abs(steps[None]["mean"]["bias"]).max() > 0
    np.testing.assert_allclose(steps[0.5]["mean"]["bias"], 0.5 * steps[None]["mean"]["bias"], rtol=1e-5)
    np.testing.assert_allclose(steps[0.5]["log_std"], steps[None]["log_std"], rtol=1e-6)


def test_behaviour_update_compiles_once_while_the_buffer_fills() -> None:
    policy, theta = _bandit([0.4, 0.3, 0.2, 0.1])
    # Device arrays from the start, as in the trainer (host arrays would add a dispatch-cache entry).
    theta = jax.device_put(theta)
    state = jax.device_put(_behaviour_state(theta))
    custom = settings(update_epochs=3, target_kl=None)
    compiled = []
    for valid in (8, 24, 64):
        batch = BehaviourBatch(observations=jnp.zeros((64, 1)), actions=jnp.asarray(np.arange(64) % 4),
                               num_valid=jnp.asarray(valid))
        state, metrics = behaviour_update(state, theta, theta, batch, policy=policy, settings=custom)
        compiled.append(behaviour_update._cache_size())
        # Fixed minibatch size 16: only the minibatches holding real entries run.
        assert float(metrics["behaviour/minibatch_steps"]) == 3 * math.ceil(valid / 16)
    assert compiled[0] == compiled[1] == compiled[2]


# -- the FIFO buffer --------------------------------------------------------------------------


def test_fifo_keeps_the_latest_rows_oldest_first() -> None:
    fifo = BatchFIFO.allocate(4, 1, (1,), (), np.int64)
    for step in range(6):
        fifo.add(np.full((1, 1), step), np.array([step]), np.array([float(step)]), np.array([False]),
                 np.array([False]))
    assert fifo.size == 4
    np.testing.assert_array_equal(fifo.observations[fifo.ordered_rows(), 0, 0], [2, 3, 4, 5])
    restored = BatchFIFO.allocate(4, 1, (1,), (), np.int64)
    restored.load_state_dict(fifo.state_dict())
    np.testing.assert_array_equal(restored.rewards[restored.ordered_rows(), 0], [2, 3, 4, 5])


def test_buffer_holds_raw_data_renormalised_with_current_statistics(tmp_path: Path) -> None:
    trainer = PROPSTrainer(smoke_config(env="Hopper-v5"), tmp_path)
    try:
        trainer.collect_steps(64)
        rows = trainer.fifo.ordered_rows()
        raw = trainer.fifo.observations[rows]
        first_view, _ = trainer._buffer_view(rows)
        np.testing.assert_allclose(first_view, trainer.observation_stats.normalize(raw, clip=10.0))
        trainer.collect_steps(64)  # statistics move on; the stored raw data does not
        np.testing.assert_array_equal(trainer.fifo.observations[rows], raw)
        second_view, _ = trainer._buffer_view(rows)
        assert not np.allclose(first_view, second_view)
        behaviour = trainer.behaviour_batch()
        assert int(behaviour.num_valid) == 128 * 2  # D' = every stored step while the buffer fills
    finally:
        trainer.close()


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.parametrize("env, overrides", [
    ("Hopper-v5", {}),
    ("CartPole-v1", {}),
    ("Hopper-v5", {"sampling": "on-policy", "buffer_batches": 1}),
    ("CartPole-v1", {"sampling": "on-policy", "buffer_batches": 2}),
    ("Hopper-v5", {"sampling": "ros"}),
    ("CartPole-v1", {"sampling": "ros", "ros_original": True}),
    ("Pendulum-v1", {"stale_target": False, "sampling_error_interval": 256}),
    ("Hopper-v5", {"behaviour_lr_std_reference": 0.5}),
    ("Pendulum-v1", {"sampling_error_interval": 256, "sampling_error_reference": True}),
])
def test_every_scheme_runs_and_logs(tmp_path: Path, env: str, overrides: dict[str, Any]) -> None:
    result = runs.train("props", preset="smoke", run_dir=tmp_path, env=env, **overrides)
    assert result.final["step"] == 1_024
    assert np.isfinite(result.final["eval/return_mean"])
    logged = metrics_without_timing(tmp_path)
    updates = [entry for entry in logged if "loss/policy" in entry]
    assert len(updates) == 4
    assert updates[-1]["buffer/transitions"] == 256 * overrides.get("buffer_batches", 2)
    if overrides.get("sampling", "props") == "props" or overrides.get("ros_original"):
        assert all(entry["behaviour/minibatch_steps"] > 0 for entry in updates)
    if "sampling_error_interval" in overrides:
        assert all(entry["sampling_error"] > 0 for entry in updates)
    if overrides.get("sampling_error_reference"):
        assert all(entry["sampling_error_reference"] > 0 for entry in updates)


def test_reference_replay_samples_the_stored_targets_on_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    # The replay holds b x n x envs transitions, each action drawn from the target of its batch: with
    # a fixed target, (a - mu(s)) / sigma is standard normal (its mean and std within 5 standard errors).
    from hybridrl.rl import props

    expert = runs.train("ppo", preset="smoke", run_dir=tmp_path / "expert", env="Pendulum-v1")
    config = smoke_config(env="Pendulum-v1", sampling="on-policy", fixed_target=str(expert.run_dir),
                          sampling_error_interval=256, sampling_error_reference=True, buffer_batches=4)
    measured: list[tuple[Any, np.ndarray, np.ndarray]] = []
    monkeypatch.setattr(props, "sampling_error", lambda policy, params, observations, actions, fit_epochs:
                        measured.append((params, observations, actions)) or 1.0)
    trainer = PROPSTrainer(config, tmp_path / "run")
    try:
        for _ in range(config.buffer_batches + 1):
            trainer.collect_rollout()
        assert len(trainer.target_history) == config.buffer_batches
        restored = PROPSTrainer(config, tmp_path / "restored")  # the history survives a checkpoint
        try:
            restored.load_checkpoint(trainer.save_checkpoint())
            assert_trees_equal(restored.target_history, trainer.target_history)
        finally:
            restored.close()
        assert trainer.reference_sampling_error() == 1.0
        params, observations, actions = measured[-1]
        assert len(observations) == len(actions) == config.buffer_batches * config.num_steps * config.num_envs
        distribution = trainer.networks.policy.apply_numpy(params, observations)
        residuals = ((actions - distribution.mean) / np.exp(distribution.log_std)).ravel()
    finally:
        trainer.close()
    bound = 5.0 / math.sqrt(len(residuals))
    assert abs(residuals.mean()) < bound and abs(residuals.std() - 1.0) < bound * math.sqrt(0.5) + 0.01
    with pytest.raises(ConfigError, match="--sampling-error-interval N"):
        smoke_config(env="Pendulum-v1", sampling_error_reference=True)


def test_sampling_error_is_measured_under_the_target_the_buffer_was_collected_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the released code: before the target update, so neither the buffer nor the on-policy
    # reference is scored under a target already trained on the buffer.
    from hybridrl.rl import props

    config = smoke_config(env="Pendulum-v1", sampling_error_interval=256, sampling_error_reference=True)
    scored_under: list[Any] = []
    monkeypatch.setattr(props, "sampling_error", lambda policy, params, observations, actions, fit_epochs:
                        scored_under.append(params) or 1.0)
    trainer = PROPSTrainer(config, tmp_path / "run")
    try:
        trainer.collect_rollout()
        collected_for = trainer.target_history[-1]
        scalars = trainer.update()
        updated = jax.device_get(trainer.state.params["policy"])
    finally:
        trainer.close()
    assert scalars["sampling_error"] == scalars["sampling_error_reference"] == 1.0
    assert len(scored_under) == 2
    for params in scored_under:
        assert_trees_equal(params, collected_for)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(updated),
                                                         jax.tree_util.tree_leaves(collected_for), strict=True))


def test_fixed_target_is_never_updated_and_sampling_error_is_logged(tmp_path: Path) -> None:
    expert = runs.train("ppo", preset="smoke", run_dir=tmp_path / "expert", env="Pendulum-v1")
    result = runs.train("props", preset="smoke", run_dir=tmp_path / "fixed", env="Pendulum-v1",
                        fixed_target=str(expert.run_dir), sampling_error_interval=256, buffer_batches=4)
    logged = metrics_without_timing(result.run_dir)
    assert not any("loss/policy" in entry for entry in logged)
    assert all(entry["sampling_error"] > 0 for entry in logged if "behaviour/minibatch_steps" in entry)
    trainer = PROPSTrainer(smoke_config(env="Pendulum-v1"), tmp_path / "probe")
    try:
        ppo_trainer_state = trainer.state
        state, _, _, _ = load_checkpoint(expert.run_dir / "checkpoint.ckpt", algorithm="ppo",
                                            template=ppo_trainer_state)
        saved, _, _, _ = load_checkpoint(result.run_dir / "checkpoint.ckpt", algorithm="props",
                                         template=trainer.checkpoint_state())
    finally:
        trainer.close()
    assert_trees_equal(jax.device_get(saved["target"].params["policy"]), jax.device_get(state.params["policy"]))


def test_fixed_target_std_scale_narrows_the_target_and_nothing_else(tmp_path: Path) -> None:
    expert = runs.train("ppo", preset="smoke", run_dir=tmp_path / "expert", env="Pendulum-v1")
    policies = {}
    for scale in (1.0, math.exp(-1.0)):
        trainer = PROPSTrainer(smoke_config(env="Pendulum-v1", fixed_target=str(expert.run_dir),
                                            fixed_target_std_scale=scale), tmp_path / f"scale{scale}")
        try:
            policies[scale] = jax.device_get(trainer.state.params["policy"])
        finally:
            trainer.close()
    wide, narrow = policies[1.0], policies[math.exp(-1.0)]
    np.testing.assert_allclose(narrow["log_std"], wide["log_std"] - 1.0, atol=1e-6)
    assert_trees_equal({k: v for k, v in narrow.items() if k != "log_std"},
                       {k: v for k, v in wide.items() if k != "log_std"})
    with pytest.raises(ConfigError, match="--fixed-target RUN_DIR"):
        smoke_config(env="Pendulum-v1", fixed_target_std_scale=0.5)
    with pytest.raises(ConfigError, match="must be positive"):
        smoke_config(env="Pendulum-v1", fixed_target=str(expert.run_dir), fixed_target_std_scale=0.0)


def test_fixed_target_must_match_env_and_network(tmp_path: Path) -> None:
    expert = runs.train("ppo", preset="smoke", run_dir=tmp_path / "expert", env="Pendulum-v1")
    with pytest.raises(ConfigError, match="trained on Pendulum-v1"):
        PROPSTrainer(smoke_config(env="MountainCarContinuous-v0", fixed_target=str(expert.run_dir)), tmp_path / "a")
    with pytest.raises(ConfigError, match="--policy-tanh-mean False"):
        PROPSTrainer(smoke_config(env="Pendulum-v1", policy_tanh_mean=True, fixed_target=str(expert.run_dir)),
                     tmp_path / "b")
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        smoke_config(env="Pendulum-v1", fixed_target=str(tmp_path / "nowhere"))


@pytest.mark.parametrize("env", ["Hopper-v5", "CartPole-v1"])
def test_same_seed_gives_identical_runs(tmp_path: Path, env: str) -> None:
    first = runs.train("props", preset="smoke", env=env, seed=3, run_dir=tmp_path / "a")
    second = runs.train("props", preset="smoke", env=env, seed=3, run_dir=tmp_path / "b")
    other = runs.train("props", preset="smoke", env=env, seed=4, run_dir=tmp_path / "c")
    assert metrics_without_timing(first.run_dir) == metrics_without_timing(second.run_dir)
    assert metrics_without_timing(first.run_dir) != metrics_without_timing(other.run_dir)


@pytest.mark.parametrize("env", ["Hopper-v5", "CartPole-v1"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path: Path, env: str) -> None:
    config = smoke_config(env=env, seed=5, total_steps=2_048, checkpoint_interval=0, buffer_batches=3)
    uninterrupted = runs.start(SPEC, config, tmp_path / "whole")

    interrupted_dir = tmp_path / "interrupted"
    interrupted_dir.mkdir()
    runs.write_run_config(interrupted_dir, SPEC, config)
    trainer = PROPSTrainer(config, interrupted_dir)
    try:
        paused = trainer.train(stop_at_step=1_024)  # after 4 iterations: the buffer is full and wrapping
    finally:
        trainer.close()
    assert paused["paused"]
    resumed = runs.resume(interrupted_dir)
    assert resumed.final["step"] == uninterrupted.final["step"] == 2_048
    assert metrics_without_timing(uninterrupted.run_dir) == metrics_without_timing(interrupted_dir)
    probe = PROPSTrainer(config, tmp_path / "probe")
    try:
        template = probe.checkpoint_state()
    finally:
        probe.close()
    whole, _, _, _ = load_checkpoint(uninterrupted.run_dir / "checkpoint.ckpt", algorithm="props", template=template)
    parts, _, _, _ = load_checkpoint(interrupted_dir / "checkpoint.ckpt", algorithm="props", template=template)
    assert_trees_equal(jax.device_get(whole), jax.device_get(parts))


# -- presets and validation -------------------------------------------------------------------


def test_paper_presets_follow_the_task_table_and_the_scheme() -> None:
    hopper = SPEC.make_config("paper", env="Hopper-v5")
    assert (hopper.num_envs, hopper.num_steps, hopper.behaviour_num_steps, hopper.learning_rate) == (1, 2048, 256, 1e-3)
    assert (hopper.behaviour_target_kl, hopper.behaviour_kl_coef, hopper.total_steps) == (0.05, 0.3, 1_000_000)
    assert hopper.eval_interval == 20_480 and hopper.policy_tanh_mean and hopper.target_kl == 0.03
    # The released code: PPO's KL checked on every minibatch; the stale behaviour reference.
    assert hopper.target_kl_check == "minibatch" and hopper.stale_target
    walker = SPEC.make_config("paper", env="Walker2d-v5")
    assert (walker.behaviour_target_kl, walker.behaviour_num_minibatches, walker.total_steps) == (0.1, 32, 2_000_000)
    assert SPEC.make_config("paper", env="Ant-v5").behaviour_clip_coef == 0.05
    ppo = SPEC.make_config("paper", env="Hopper-v5", sampling="on-policy", buffer_batches=1)
    ppo_buffer = SPEC.make_config("paper", env="Hopper-v5", sampling="on-policy", buffer_batches=2)
    assert (ppo.num_steps, ppo.learning_rate) == (2048, 1e-3)
    assert (ppo_buffer.num_steps, ppo_buffer.learning_rate) == (1024, 1e-4)
    cpu = SPEC.make_config("cpu", env="Hopper-v5")
    assert (cpu.num_envs, cpu.num_steps, cpu.behaviour_num_steps) == (8, 256, 32)  # n = 2048, m = 256 in total
    # The user's options win over the table; tasks outside it keep the preset.
    assert SPEC.make_config("paper", env="Hopper-v5", learning_rate=3e-4).learning_rate == 3e-4
    assert SPEC.make_config("paper", env="Pendulum-v1").num_steps == 2048


def test_config_validation_messages() -> None:
    with pytest.raises(ConfigError, match="must divide --num-steps"):
        smoke_config(behaviour_num_steps=48)
    with pytest.raises(ConfigError, match="--buffer-batches must be positive"):
        smoke_config(buffer_batches=0)
    with pytest.raises(ConfigError, match="--sampling must be"):
        smoke_config(sampling="uniform")
    with pytest.raises(ConfigError, match="--behaviour-lr-std-reference must be positive"):
        smoke_config(behaviour_lr_std_reference=0.0)
    with pytest.raises(ConfigError, match="behaviour_num_stepz"):
        smoke_config(behaviour_num_stepz=4)
    smoke_config(sampling="on-policy", behaviour_num_steps=48)  # ignored without a behaviour policy


def test_std_reference_needs_a_state_independent_log_std(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="state-independent log-std"):
        runs.train("props", preset="smoke", run_dir=tmp_path, env="CartPole-v1", behaviour_lr_std_reference=1.0)


def test_example_sweep_spec_is_valid() -> None:
    from hybridrl.experiments.spec import expand_sweep, load_sweep_spec

    example = Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "props-vs-ppo.yaml"
    runs_of_sweep = expand_sweep(load_sweep_spec(example))
    assert len(runs_of_sweep) == 30
    buffer_runs = [run for run in runs_of_sweep if run.variant == "ppo-buffer" and run.task == "Hopper-v5"]
    configs = [SPEC.make_config(run.preset, **run.overrides) for run in buffer_runs]
    assert {config.num_steps * config.num_envs for config in configs} == {1024}  # the tuned PPO-Buffer row


SHIPPED_TARGETS = sorted((Path(__file__).resolve().parents[2] / "src/hybridrl/data/assets/props-targets").glob("*"))


@pytest.mark.parametrize("folder", SHIPPED_TARGETS, ids=[folder.name for folder in SHIPPED_TARGETS])
def test_shipped_targets_load_as_fixed_targets_with_their_recorded_width(folder: Path, tmp_path: Path) -> None:
    record = json.loads((Path(__file__).resolve().parents[2] / "benchmarks/results/props_targets.json").read_text())
    expected = record["targets"][folder.name]
    config = smoke_config(env=folder.name, fixed_target=str(folder), policy_tanh_mean=True)
    trainer = PROPSTrainer(config, tmp_path)
    try:
        std = np.exp(np.asarray(jax.device_get(trainer.state.params["policy"]["log_std"])))
    finally:
        trainer.close()
    np.testing.assert_allclose(std, expected["policy_std"], atol=1e-4)
    assert expected["recipe"]["entropy_coef"] == 0.01 and expected["recipe"]["learning_rate"] == 1e-4
