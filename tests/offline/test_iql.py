"""Tests of IQL (hybridrl.offline.iql): the losses on hand-computed values, the target update
schedule, the bootstrap mask, expectile values on a toy MDP with known answers, AWR policy
extraction on a bandit, the advantage's choice of Q, the reward scale, determinism, and online
fine-tuning with resume."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.core.distributions import DiagGaussian
from hybridrl.data.dataset import TransitionBatch
from hybridrl.errors import ConfigError
from hybridrl.offline.iql import (
    IQLCritic,
    IQLSettings,
    advantage,
    awr_policy_loss,
    awr_weights,
    critic_params,
    expectile_loss,
    init_iql_state,
    iql_train_steps,
    iql_update,
    make_iql_networks,
    min_q,
    not_done_mask,
    q_loss,
    q_targets,
    q_values,
    return_range_reward_scale,
    state_values,
    value_loss,
)
from hybridrl.testing import assert_trees_equal

GAMMA = 0.9


def small_settings(**overrides: Any) -> IQLSettings:
    values: dict[str, Any] = dict(q_hidden=(32, 32), value_hidden=(32, 32), policy_hidden=(16,), gamma=GAMMA,
                                  polyak=0.05, critic_learning_rate=1e-3, policy_learning_rate=1e-3,
                                  batch_size=256)
    return IQLSettings(**{**values, **overrides})


# Short runs share these settings (and so their compilations).
SHORT = IQLSettings(q_hidden=(32, 32), value_hidden=(32, 32), policy_hidden=(16,), gamma=GAMMA, polyak=0.25,
                    critic_learning_rate=1e-3, policy_learning_rate=1e-3, batch_size=16)


def batch(observations: Any, actions: Any, rewards: Any, next_observations: Any, terminations: Any,
          truncations: Any) -> TransitionBatch:
    return TransitionBatch(observations=jnp.asarray(observations, jnp.float32),
                           actions=jnp.asarray(actions, jnp.float32), rewards=jnp.asarray(rewards, jnp.float32),
                           next_observations=jnp.asarray(next_observations, jnp.float32),
                           terminations=jnp.asarray(terminations, bool), truncations=jnp.asarray(truncations, bool))


def two_step_chain() -> TransitionBatch:
    """States 0 -> 1 -> terminal (one-hot, the terminal state is index 2). In each state the
    behaviour picks a = +0.5 (reward 1) or a = -0.5 (reward 0) with equal probability.

    With expectile tau the V of a {0, 1} reward at equal odds is tau, so V(1) = tau,
    Q(0, +) = 1 + gamma tau, Q(0, -) = gamma tau and V(0) = tau + gamma tau = tau (1 + gamma).
    """
    eye = np.eye(3)
    return batch(observations=[eye[0], eye[0], eye[1], eye[1]], actions=[[0.5], [-0.5], [0.5], [-0.5]],
                 rewards=[1.0, 0.0, 1.0, 0.0], next_observations=[eye[1], eye[1], eye[2], eye[2]],
                 terminations=[False, False, True, True], truncations=[False] * 4)


def bandit() -> TransitionBatch:
    """One state, actions +0.5 (reward 1) and -0.5 (reward 0), every episode one step long."""
    return batch(observations=[[1.0], [1.0]], actions=[[0.5], [-0.5]], rewards=[1.0, 0.0],
                 next_observations=[[1.0], [1.0]], terminations=[True, True], truncations=[False, False])


def train(settings: IQLSettings, data: TransitionBatch, num_steps: int, train_policy: bool = False,
          seed: int = 0) -> Any:
    networks = make_iql_networks(settings, data.actions.shape[1])
    state = init_iql_state(networks, settings, data.observations.shape[1], data.actions.shape[1],
                           jax.random.PRNGKey(seed))
    state, metrics = iql_train_steps(state, data, num_steps, networks=networks, settings=settings,
                                     train_policy=train_policy)
    return networks, state, metrics


# --------------------------------------------------------------------------------------------
# Losses on hand-computed values
# --------------------------------------------------------------------------------------------


def test_expectile_loss_weights_positive_residuals_by_tau() -> None:
    # weights |0.7 - 1(u < 0)| = 0.7, 0.3, 0.7; squared residuals 1, 4, 0.25
    expected = (0.7 * 1.0 + 0.3 * 4.0 + 0.7 * 0.25) / 3.0
    assert float(expectile_loss(jnp.array([1.0, -2.0, 0.5]), 0.7)) == pytest.approx(expected, rel=1e-6)
    # tau = 0.5 is half the mean squared error
    assert float(expectile_loss(jnp.array([1.0, -2.0]), 0.5)) == pytest.approx(0.5 * 2.5, rel=1e-6)


def test_value_loss_uses_min_of_target_q_and_no_gradient_into_it() -> None:
    values = jnp.array([1.0, 2.0])
    target_q = jnp.array([[2.0, 1.0], [3.0, 0.0]])  # min over members: [2, 0] -> residuals [1, -2]
    assert float(value_loss(values, target_q, 0.7)) == pytest.approx((0.7 * 1.0 + 0.3 * 4.0) / 2.0, rel=1e-6)
    grad_values, grad_target = jax.grad(value_loss, argnums=(0, 1))(values, target_q, 0.7)
    # d/dV of mean(w u^2) = -w u: [-0.7 * 1, -0.3 * -2] / 2 * 2 = [-0.7, 0.6]
    np.testing.assert_allclose(grad_values, [-0.7, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(grad_target, np.zeros((2, 2)))


def test_bootstrap_mask_and_q_targets_follow_timeouts_as_terminals() -> None:
    terminations = jnp.array([False, True, False, False])
    truncations = jnp.array([False, False, True, False])
    as_terminal = not_done_mask(terminations, truncations, timeouts_as_terminals=True)
    bootstrap = not_done_mask(terminations, truncations, timeouts_as_terminals=False)
    np.testing.assert_array_equal(as_terminal, [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(bootstrap, [1.0, 0.0, 1.0, 1.0])
    rewards, next_values = jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.full(4, 10.0)
    # y = r + 0.5 * not_done * 10
    np.testing.assert_allclose(q_targets(rewards, next_values, as_terminal, 0.5), [6.0, 2.0, 3.0, 9.0])
    np.testing.assert_allclose(q_targets(rewards, next_values, bootstrap, 0.5), [6.0, 2.0, 8.0, 9.0])


def test_q_loss_sums_member_mean_squared_errors() -> None:
    q = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    targets = jnp.array([1.0, 1.0])
    # member 0: mean(0, 1) = 0.5; member 1: mean(1, 1) = 1
    assert float(q_loss(q, targets)) == pytest.approx(1.5, rel=1e-6)


def test_awr_weights_and_policy_loss() -> None:
    advantages = jnp.array([0.0, 1.0, 100.0, -1.0])
    weights = awr_weights(advantages, temperature=3.0, max_weight=100.0)
    np.testing.assert_allclose(weights, [1.0, math.exp(3.0), 100.0, math.exp(-3.0)], rtol=1e-6)
    log_probs = jnp.array([-1.0, -2.0, -0.5, -3.0])
    expected = -(1.0 * -1.0 + math.exp(3.0) * -2.0 + 100.0 * -0.5 + math.exp(-3.0) * -3.0) / 4.0
    assert float(awr_policy_loss(log_probs, advantages, 3.0, 100.0)) == pytest.approx(expected, rel=1e-6)
    grad_log_probs, grad_advantages = jax.grad(awr_policy_loss, argnums=(0, 1))(log_probs, advantages, 3.0, 100.0)
    np.testing.assert_allclose(grad_log_probs, -np.asarray(weights) / 4.0, rtol=1e-6)
    np.testing.assert_array_equal(grad_advantages, np.zeros(4))  # the weights are detached


def test_settings_reject_impossible_values() -> None:
    with pytest.raises(ConfigError, match="expectile"):
        IQLSettings(expectile=1.0)
    with pytest.raises(ConfigError, match="target_update_period"):
        IQLSettings(target_update_period=0)
    with pytest.raises(ConfigError, match="polyak"):
        IQLSettings(polyak=0.0)
    assert IQLSettings(critic_learning_rate=1e-4).value_step_size == 1e-4
    assert IQLSettings(value_learning_rate=2e-4).value_step_size == 2e-4


# --------------------------------------------------------------------------------------------
# The update
# --------------------------------------------------------------------------------------------


def test_target_moves_by_polyak_every_second_step_only() -> None:
    settings = SHORT
    assert settings.target_update_period == 2
    data = two_step_chain()
    networks = make_iql_networks(settings, 1)
    state = init_iql_state(networks, settings, 3, 1, jax.random.PRNGKey(0))
    assert_trees_equal(state.target_q_params, state.q_params)
    initial_target = state.target_q_params

    state, _ = iql_update(state, data, networks=networks, settings=settings, train_policy=False)
    assert int(state.step) == 1
    assert_trees_equal(state.target_q_params, initial_target)  # step 1: untouched, bit for bit
    assert not np.allclose(state.q_params["members"]["mlp"]["output"]["bias"],
                           initial_target["members"]["mlp"]["output"]["bias"])

    state, _ = iql_update(state, data, networks=networks, settings=settings, train_policy=False)
    assert int(state.step) == 2
    expected = jax.tree_util.tree_map(lambda q, target: 0.25 * q + 0.75 * target, state.q_params, initial_target)
    for got, want in zip(jax.tree_util.tree_leaves(state.target_q_params), jax.tree_util.tree_leaves(expected),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

    updated_target = state.target_q_params
    state, _ = iql_update(state, data, networks=networks, settings=settings, train_policy=False)
    assert_trees_equal(state.target_q_params, updated_target)  # step 3: untouched again


def test_critic_only_update_leaves_the_policy_alone() -> None:
    settings = SHORT
    networks = make_iql_networks(settings, 1)
    state = init_iql_state(networks, settings, 3, 1, jax.random.PRNGKey(1))
    new_state, metrics = iql_update(state, two_step_chain(), networks=networks, settings=settings,
                                    train_policy=False)
    assert_trees_equal(new_state.policy_params, state.policy_params)
    assert "iql/policy_loss" not in metrics
    _, metrics = iql_update(state, two_step_chain(), networks=networks, settings=settings, train_policy=True)
    assert {"iql/policy_loss", "iql/awr_weight_mean", "iql/value_loss", "iql/q_loss"} <= set(metrics)
    assert all(np.isfinite(float(value)) for value in metrics.values())


@pytest.mark.parametrize("expectile", [0.5, 0.9])
def test_expectile_values_on_a_two_step_chain(expectile: float) -> None:
    data = two_step_chain()
    networks, state, metrics = train(small_settings(expectile=expectile), data, 3000)
    values = np.asarray(state_values(networks, state.value_params, jnp.eye(3)[:2]))
    # tau = 0.5: the behaviour's (SARSA) values V(1) = 0.5, V(0) = 0.5 (1 + gamma); tau = 0.9 higher.
    np.testing.assert_allclose(values, [expectile * (1.0 + GAMMA), expectile], atol=0.08)
    q = np.asarray(q_values(networks, state.q_params, data.observations, data.actions))
    expected_q = [1.0 + GAMMA * expectile, GAMMA * expectile, 1.0, 0.0]
    np.testing.assert_allclose(q, np.broadcast_to(expected_q, q.shape), atol=0.08)
    assert float(metrics["iql/q_loss"]) < 0.05


def test_timeouts_as_terminals_cuts_the_bootstrap() -> None:
    # One state that loops onto itself with reward 1; every transition is a time-limit truncation.
    loop = batch(observations=[[1.0]], actions=[[0.0]], rewards=[1.0], next_observations=[[1.0]],
                 terminations=[False], truncations=[True])
    observation = jnp.ones((1, 1))
    values = {}
    for timeouts_as_terminals in (True, False):
        settings = small_settings(gamma=0.5, expectile=0.5, batch_size=32,
                                  timeouts_as_terminals=timeouts_as_terminals)
        networks, state, _ = train(settings, loop, 2000)
        values[timeouts_as_terminals] = float(state_values(networks, state.value_params, observation)[0])
    assert values[True] == pytest.approx(1.0, abs=0.02)  # V = r: no bootstrap through the timeout
    assert values[False] == pytest.approx(2.0, abs=0.05)  # V = r / (1 - gamma)


def test_awr_policy_moves_towards_the_better_action() -> None:
    settings = small_settings(expectile=0.7, temperature=3.0, batch_size=128, policy_learning_rate=3e-3)
    data = bandit()
    networks, state, metrics = train(settings, data, 2000, train_policy=True)
    critic = critic_params(state)
    advantages = np.asarray(advantage(networks, critic, data.observations, data.actions))
    assert advantages[0] > 0.0 > advantages[1]
    np.testing.assert_allclose(advantages, [0.3, -0.7], atol=0.05)
    # V -> the 0.7-expectile of rewards {0, 1} = 0.7, so A = 0.3 and -0.7, and the AWR fit of a
    # Gaussian mean is the weighted mean of the actions, 0.5 (e^0.9 - e^-2.1) / (e^0.9 + e^-2.1) = 0.45
    # (plain BC would give 0).
    weighted_mean = 0.5 * (math.exp(0.9) - math.exp(-2.1)) / (math.exp(0.9) + math.exp(-2.1))
    distribution = networks.policy.apply({"params": state.policy_params}, data.observations[:1])
    assert isinstance(distribution, DiagGaussian)
    assert float(distribution.mean[0, 0]) == pytest.approx(weighted_mean, abs=0.03)
    assert float(metrics["iql/awr_weight_mean"]) > 1.0


def test_advantage_uses_the_online_q() -> None:
    data = two_step_chain()
    networks, state, _ = train(SHORT, data, 20, train_policy=True)
    values = state_values(networks, state.value_params, data.observations)
    online = np.asarray(min_q(networks, state.q_params, data.observations, data.actions) - values)
    target = np.asarray(min_q(networks, state.target_q_params, data.observations, data.actions) - values)
    assert not np.allclose(online, target, atol=1e-2)  # the target lags the online Q
    for critic in (state, critic_params(state), {"q_params": state.q_params, "value_params": state.value_params}):
        np.testing.assert_allclose(advantage(networks, critic, data.observations, data.actions), online, rtol=1e-6)
    assert isinstance(critic_params(state), IQLCritic)


def test_training_is_deterministic_for_a_key() -> None:
    data = two_step_chain()
    _, first, first_metrics = train(SHORT, data, 20, train_policy=True, seed=3)
    _, second, second_metrics = train(SHORT, data, 20, train_policy=True, seed=3)
    assert_trees_equal(first, second)
    assert_trees_equal(first_metrics, second_metrics)
    _, other, _ = train(SHORT, data, 20, train_policy=True, seed=4)
    assert not np.array_equal(other.value_params["mlp"]["output"]["bias"], first.value_params["mlp"]["output"]["bias"])


def test_chunks_compose_into_one_run() -> None:
    # Two chunks of 10 steps equal one chunk of 20: the key and step counter carry over.
    data = two_step_chain()
    networks, whole, _ = train(SHORT, data, 20, train_policy=True)
    state = init_iql_state(networks, SHORT, 3, 1, jax.random.PRNGKey(0))
    for _ in range(2):
        state, _ = iql_train_steps(state, data, 10, networks=networks, settings=SHORT, train_policy=True)
    assert int(state.step) == 20
    for got, want in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(whole), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_settings_are_hashable_static_arguments() -> None:
    settings = small_settings()
    assert hash(settings) == hash(dataclasses.replace(settings))
    assert hash(make_iql_networks(settings, 2)) == hash(make_iql_networks(settings, 2))


def test_reward_scale_acts_as_rewards_multiplied_by_it() -> None:
    data = random_transitions(size=64)
    networks = make_iql_networks(SHORT, 2)
    state = init_iql_state(networks, SHORT, 5, 2, jax.random.PRNGKey(0))
    scaled = iql_update(state, data, networks=networks, settings=dataclasses.replace(SHORT, reward_scale=4.0),
                        train_policy=True)
    multiplied = iql_update(state, dataclasses.replace(data, rewards=4.0 * data.rewards), networks=networks,
                            settings=SHORT, train_policy=True)
    # 4 r is exact in float32; XLA may still fuse the product into the target's sum (one rounding
    # fewer), so the two updates agree to the round-off of one update's sums, not bit for bit.
    from hybridrl.testing import roundoff_tolerance

    tolerance = roundoff_tolerance(1, summation_length=64)
    for left, right in zip(jax.tree_util.tree_leaves(scaled), jax.tree_util.tree_leaves(multiplied), strict=True):
        right = np.asarray(right, np.float64)
        scale = float(np.max(np.abs(right), initial=1.0))
        np.testing.assert_allclose(left, right, rtol=tolerance, atol=tolerance * scale)
    with pytest.raises(ConfigError, match="reward_scale"):
        dataclasses.replace(SHORT, reward_scale=0.0)


def test_return_range_reward_scale_is_1000_over_the_spread_of_episode_returns() -> None:
    from hybridrl.data.dataset import Dataset, DatasetInfo

    def dataset(rewards: list[list[float]]) -> Dataset:
        observations = [np.zeros((len(episode) + 1, 2), np.float32) for episode in rewards]
        return Dataset.from_episodes(observations=observations,
                                     actions=[np.zeros((len(episode), 1), np.float32) for episode in rewards],
                                     rewards=[np.asarray(episode, np.float32) for episode in rewards],
                                     terminations=[np.zeros(len(episode), bool) for episode in rewards],
                                     truncations=[np.eye(len(episode), dtype=bool)[-1] for episode in rewards],
                                     info=DatasetInfo(dataset_id="toy", env_id="Hopper-v5"))

    # Episode returns 3, -1 and 7: a spread of 8.
    assert return_range_reward_scale(dataset([[1.0, 2.0], [-1.0], [3.0, 4.0, 0.0]])) == pytest.approx(1000.0 / 8.0)
    with pytest.raises(ConfigError, match="--reward-normalization none"):
        return_range_reward_scale(dataset([[1.0, 1.0], [2.0]]))


# --------------------------------------------------------------------------------------------
# The `iql` baseline as a run
# --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("minari_root")
def test_iql_smoke_run_is_deterministic(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.testing import metrics_without_timing

    first = runs.train("iql", preset="smoke", dataset="hopper-medium-v5", seed=2, run_dir=tmp_path / "a")
    second = runs.train("iql", preset="smoke", dataset="hopper-medium-v5", seed=2, run_dir=tmp_path / "b")
    assert first.final["step"] == 200 and np.isfinite(first.final["eval/return_mean"])
    assert metrics_without_timing(first.run_dir) == metrics_without_timing(second.run_dir)
    assert {"iql/q_loss", "iql/policy_loss"} <= {key for line in runs_metrics(first.run_dir) for key in line}


def runs_metrics(run_dir: Path) -> list[dict[str, Any]]:
    from hybridrl.core.logging import read_metrics

    return read_metrics(run_dir)


# --------------------------------------------------------------------------------------------
# Seeds trained together
# --------------------------------------------------------------------------------------------


def random_transitions(size: int = 512, observation_dim: int = 5, action_dim: int = 2) -> TransitionBatch:
    rng = np.random.default_rng(0)
    return batch(observations=rng.normal(size=(size, observation_dim)), actions=rng.uniform(-1, 1, (size, action_dim)),
                 rewards=rng.normal(size=size), next_observations=rng.normal(size=(size, observation_dim)),
                 terminations=rng.random(size) < 0.05, truncations=np.zeros(size, bool))


def flat_params(state: Any) -> np.ndarray:
    parts = (state.q_params, state.target_q_params, state.value_params, state.policy_params)
    return np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for leaf in jax.tree_util.tree_leaves(parts)])


def test_seeds_trained_together_match_seeds_trained_alone() -> None:
    from hybridrl.offline.common import train_steps_over_seeds
    from hybridrl.testing import roundoff_tolerance

    data, steps = random_transitions(), 100
    settings = small_settings(q_hidden=(32, 32), value_hidden=(32, 32), policy_hidden=(32, 32), batch_size=64)
    networks = make_iql_networks(settings, 2)
    train_steps = functools.partial(iql_train_steps, networks=networks, settings=settings, train_policy=True)
    starts = [init_iql_state(networks, settings, 5, 2, jax.random.PRNGKey(seed)) for seed in (0, 1, 2)]
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *starts)
    together, together_metrics = jax.jit(functools.partial(train_steps_over_seeds, train_steps),
                                         static_argnames="num_steps")(stacked, data, num_steps=steps)
    alone = [train_steps(start, data, steps) for start in starts]
    # The group and the alone runs differ only in the order of float32 sums (same minibatches, same init).
    tolerance = roundoff_tolerance(steps, summation_length=64)
    for index, (state, metrics) in enumerate(alone):
        grouped = jax.tree_util.tree_map(lambda leaf, index=index: leaf[index], together)
        # Each seed's random stream is the one it has alone: the same key after the same draws.
        assert_trees_equal(grouped.key, state.key)
        assert int(grouped.step) == int(state.step) == steps
        difference = np.linalg.norm(flat_params(grouped) - flat_params(state))
        assert difference <= tolerance * np.linalg.norm(flat_params(state))
        # The tolerance is far below what another seed changes, so a mixed-up seed would fail.
        other_seed = np.linalg.norm(flat_params(alone[(index + 1) % 3][0]) - flat_params(state))
        assert tolerance * np.linalg.norm(flat_params(state)) < 1e-2 * other_seed
        for name, value in metrics.items():
            np.testing.assert_allclose(together_metrics[name][index], value, rtol=tolerance, atol=tolerance,
                                       err_msg=name)


@pytest.mark.usefixtures("minari_root")
def test_hybridrl_train_iql_seeds_writes_one_run_dir_per_seed_like_a_single_run(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.cli import main
    from hybridrl.testing import metrics_without_timing, roundoff_tolerance

    root = tmp_path / "group"
    command = ["train", "iql", "--preset", "smoke", "--dataset", "hopper-medium-v5", "--seeds", "2", "--first-seed",
               "2", "--run-dir", str(root), "--no-progress"]
    # The real entry point, in a process of its own: with two cores it spreads the seeds over two CPU devices.
    completed = subprocess.run([sys.executable, "-m", "hybridrl", *command], capture_output=True, text=True,
                               timeout=300, env={**os.environ, "HYBRIDRL_COMPILATION_CACHE": "0"})
    assert completed.returncode == 0, completed.stderr
    assert "2 seeds (2-3): eval return" in completed.stdout
    alone = runs.train("iql", preset="smoke", dataset="hopper-medium-v5", seed=3, run_dir=tmp_path / "alone")
    grouped = root / "seed3"
    for name in ("config.json", "metrics.jsonl", "checkpoint.ckpt", "final.json", "learning_curve.png"):
        assert (grouped / name).is_file(), name
    assert any((grouped / "tb").iterdir())
    assert runs.read_run_config(grouped) == runs.read_run_config(alone.run_dir)
    # Same log lines, values equal up to the round-off of 200 steps of batch-64, 32-wide updates.
    tolerance = roundoff_tolerance(200, summation_length=64)
    grouped_metrics, alone_metrics = metrics_without_timing(grouped), metrics_without_timing(alone.run_dir)
    assert [sorted(line) for line in grouped_metrics] == [sorted(line) for line in alone_metrics]
    for grouped_line, alone_line in zip(grouped_metrics, alone_metrics, strict=True):
        for key, value in alone_line.items():
            np.testing.assert_allclose(grouped_line[key], value, rtol=tolerance, atol=tolerance, err_msg=key)
    final = json.loads((grouped / "final.json").read_text())
    assert final["seed"] == 3 and final["env"] == "Hopper-v5" and final["step"] == 200
    # `hybridrl eval` and `resume` treat a seed's directory as any run's.
    evaluation = runs.evaluate(grouped)
    assert evaluation["eval/return_mean"] == final["eval/return_mean"]
    assert runs.resume(grouped).final == final
    # The same command again finds every seed finished.
    assert main(command) == 0
    assert json.loads((grouped / "final.json").read_text()) == final


# --------------------------------------------------------------------------------------------
# Online fine-tuning
# --------------------------------------------------------------------------------------------


def _online_checkpoint(run_dir: Path) -> Any:
    """The fine-tuning trainer's device state (IQL state and replay) from a run's checkpoints."""
    from hybridrl import runs
    from hybridrl.offline.iql import IQLTrainer

    trainer = IQLTrainer(runs.read_run_config(run_dir)[1], run_dir)
    try:
        trainer.load_checkpoint(run_dir / "checkpoint.ckpt")
        assert trainer.online_trainer is not None
        return jax.device_get(trainer.online_trainer.checkpoint_state())
    finally:
        trainer.close()


@pytest.mark.usefixtures("minari_root")
def test_smoke_run_of_both_phases_fine_tunes_from_the_offline_policy(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.core.logging import read_metrics
    from hybridrl.data import load_dataset

    result = runs.train("iql", preset="smoke", dataset="hopper-medium-v5", seed=2, phase="both",
                        reward_normalization="return-range", run_dir=tmp_path / "run")
    final = result.final
    assert final["step"] == 300 and final["offline/gradient_steps"] == 200
    assert np.isfinite(final["eval/return_mean"]) and "offline/eval/return_mean" in final
    online = read_metrics(result.run_dir / "online")
    # Step 0 is the offline policy before any online update, evaluated as the offline phase did.
    assert online[0]["step"] == 0 and online[0]["eval/return_mean"] == final["offline/eval/return_mean"]
    assert online[-1]["step"] == 300
    assert {"iql/q_loss", "iql/policy_loss", "train/gradient_updates"} <= {key for line in online for key in line}
    # The replay holds the whole dataset and every online step after it (it never evicts).
    state = _online_checkpoint(result.run_dir)
    dataset_size = len(load_dataset("hopper-medium-v5"))
    assert int(state["replay"].size) == dataset_size + 300 == state["replay"].capacity
    assert int(state["iql"].step) == 200 + 300  # one gradient step per env step, after the offline ones
    # `hybridrl eval` of the run evaluates the fine-tuned policy, like the run's final evaluation.
    assert runs.evaluate(result.run_dir)["eval/return_mean"] == final["eval/return_mean"]


@pytest.mark.usefixtures("minari_root")
def test_interrupted_fine_tuning_resumes_to_the_same_result(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.algorithms import get_algorithm
    from hybridrl.testing import interrupt_run, metrics_without_timing

    spec = get_algorithm("iql")
    # A final evaluation of its own: a resume inside fine-tuning must not evaluate the offline phase's end again.
    config = spec.make_config("smoke", dataset="hopper-medium-v5", seed=3, phase="both", final_eval_episodes=2)
    whole = runs.start(spec, config, tmp_path / "whole")
    interrupt_run(spec, config, tmp_path / "interrupted", stop_online_at_step=150)
    resumed = runs.resume(tmp_path / "interrupted")
    assert_trees_equal(_online_checkpoint(whole.run_dir), _online_checkpoint(resumed.run_dir))
    assert metrics_without_timing(whole.run_dir) == metrics_without_timing(resumed.run_dir)
    assert metrics_without_timing(whole.run_dir / "online") == metrics_without_timing(resumed.run_dir / "online")
    assert resumed.final == {**whole.final, "wall_time_s": resumed.final["wall_time_s"],
                             "offline/wall_time_s": resumed.final["offline/wall_time_s"],
                             "online/wall_time_s": resumed.final["online/wall_time_s"]}


@pytest.mark.usefixtures("minari_root")
def test_online_phase_fine_tunes_a_finished_offline_run(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.core.logging import read_metrics
    from hybridrl.errors import HybridRLError

    offline = runs.train("iql", preset="smoke", dataset="hopper-medium-v5", seed=4, run_dir=tmp_path / "offline")
    assert not (offline.run_dir / "online").exists()  # IQL is offline unless asked
    online = runs.train("iql", preset="smoke", dataset="hopper-medium-v5", seed=4, phase="online",
                        offline_run=str(offline.run_dir), run_dir=tmp_path / "online")
    first = read_metrics(online.run_dir / "online")[0]
    assert first["step"] == 0 and first["eval/return_mean"] == offline.final["eval/return_mean"]
    with pytest.raises(HybridRLError, match="pass --dataset hopper-medium-v5"):
        runs.train("iql", preset="smoke", dataset="walker2d-random-v5", phase="online",
                   offline_run=str(offline.run_dir), run_dir=tmp_path / "wrong-dataset")
    bc = runs.train("bc", preset="smoke", dataset="hopper-medium-v5", run_dir=tmp_path / "bc")
    with pytest.raises(HybridRLError, match="is a bc run; pass a run directory of iql"):
        runs.train("iql", preset="smoke", dataset="hopper-medium-v5", phase="online", offline_run=str(bc.run_dir),
                   run_dir=tmp_path / "wrong-algorithm")
    with pytest.raises(ConfigError, match="--offline-run RUN_DIR"):
        runs.train("iql", preset="smoke", dataset="hopper-medium-v5", phase="online", run_dir=tmp_path / "none")


@pytest.mark.usefixtures("minari_root")
def test_seeds_with_an_online_phase_train_one_after_another_like_single_runs(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.testing import metrics_without_timing

    grouped = runs.train_seeds("iql", seeds=[5, 6], preset="smoke", dataset="hopper-medium-v5", phase="both",
                               run_dir=tmp_path / "group")
    alone = runs.train("iql", preset="smoke", dataset="hopper-medium-v5", seed=6, phase="both",
                       run_dir=tmp_path / "alone")
    assert [result.final["step"] for result in grouped] == [300, 300]
    # Not vmapped: the second seed's run is the run it would be alone, bit for bit.
    assert metrics_without_timing(grouped[1].run_dir / "online") == metrics_without_timing(alone.run_dir / "online")
    assert grouped[1].final["eval/return_mean"] == alone.final["eval/return_mean"]
