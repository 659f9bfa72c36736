"""Tests of the dynamics ensemble (hybridrl.offline.dynamics): the loss pieces on hand-checked
numbers, fitting a linear system, early stopping and elites, model steps, termination functions."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from hybridrl.core.checkpoint import load_checkpoint, save_checkpoint
from hybridrl.core.networks import member_params
from hybridrl.errors import ConfigError
from hybridrl.offline.dynamics import (
    TERMINATION_FUNCTIONS,
    DynamicsFit,
    DynamicsModel,
    DynamicsSettings,
    DynamicsState,
    ant_terminated,
    dynamics_step,
    gaussian_nll,
    hopper_terminated,
    init_dynamics_state,
    make_dynamics_model,
    never_terminated,
    soft_bound_logvar,
    termination_function,
    train_dynamics,
    walker2d_terminated,
)

OBSERVATION_DIM, ACTION_DIM = 3, 2

# Small and quick to converge: a noise floor of 0.05² is reached in ~1000 steps, after which no
# member improves by 1 % for `patience` checks.
SETTINGS = DynamicsSettings(num_members=3, num_elites=2, hidden_sizes=(64, 64), eval_every=250, max_steps=20_000,
                            patience=3)
NOISE = 0.05


@dataclass(frozen=True)
class LinearSystem:
    """``s' = A s + B a + noise``, ``r = c · s``."""

    transition: np.ndarray
    control: np.ndarray
    reward_weights: np.ndarray

    @classmethod
    def random(cls, seed: int) -> LinearSystem:
        rng = np.random.default_rng(seed)
        return cls(np.eye(OBSERVATION_DIM) + 0.1 * rng.normal(size=(OBSERVATION_DIM, OBSERVATION_DIM)),
                   0.5 * rng.normal(size=(ACTION_DIM, OBSERVATION_DIM)), rng.normal(size=OBSERVATION_DIM))

    def sample(self, rng: np.random.Generator, size: int, noise: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        observations = rng.normal(size=(size, OBSERVATION_DIM))
        actions = rng.uniform(-1.0, 1.0, size=(size, ACTION_DIM))
        next_observations = (observations @ self.transition.T + actions @ self.control
                             + noise * rng.normal(size=(size, OBSERVATION_DIM)))
        rewards = observations @ self.reward_weights
        return (observations.astype(np.float32), actions.astype(np.float32), rewards.astype(np.float32),
                next_observations.astype(np.float32))


@dataclass(frozen=True)
class TrainedModel:
    system: LinearSystem
    model: DynamicsModel
    state: DynamicsState
    metrics: dict[str, float]
    logs: list[tuple[int, dict[str, float]]]


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    system = LinearSystem.random(seed=0)
    data = system.sample(np.random.default_rng(1), 3000, NOISE)
    logs: list[tuple[int, dict[str, float]]] = []
    state, metrics = train_dynamics(*data, SETTINGS, jax.random.PRNGKey(0),
                                    log=lambda step, scalars: logs.append((step, scalars)))
    return TrainedModel(system, make_dynamics_model(SETTINGS, OBSERVATION_DIM, ACTION_DIM), state, metrics, logs)


# -- loss pieces on hand-checked numbers ------------------------------------------------------


def test_gaussian_nll_on_hand_checked_values() -> None:
    mean = jnp.array([0.0, 1.0])
    logvar = jnp.array([0.0, math.log(2.0)])
    targets = jnp.array([1.0, 3.0])
    # (1² · 1 + 0 + 2² / 2 + ln 2) / 2
    assert float(gaussian_nll(mean, logvar, targets)) == pytest.approx((1.0 + 2.0 + math.log(2.0)) / 2, rel=1e-6)


def test_gaussian_nll_is_minimised_by_the_empirical_variance() -> None:
    errors = jnp.array([0.5, -0.5, 0.5, -0.5])  # variance 0.25
    logvars = jnp.linspace(-3.0, 1.0, 401)
    losses = jax.vmap(lambda logvar: gaussian_nll(errors, jnp.full(4, logvar), jnp.zeros(4)))(logvars)
    assert float(logvars[jnp.argmin(losses)]) == pytest.approx(math.log(0.25), abs=0.01)


def test_soft_bound_logvar_on_hand_checked_values() -> None:
    def softplus(value: float) -> float:
        return math.log1p(math.exp(value))

    max_logvar, min_logvar = jnp.array(0.5), jnp.array(-10.0)
    raw = jnp.array([0.5, 100.0, -100.0, -3.0])
    bounded = np.asarray(soft_bound_logvar(raw, min_logvar, max_logvar))
    # At x = max: max − softplus(0) = 0.5 − ln 2, then −10 + softplus(0.5 − ln 2 + 10).
    assert bounded[0] == pytest.approx(-10.0 + softplus(0.5 - math.log(2.0) + 10.0), rel=1e-5)
    assert bounded[0] == pytest.approx(0.5 - math.log(2.0), abs=1e-4)
    # Far above the upper bound: max, plus the lower bound's softplus tail e^−10.5.
    assert bounded[1] == pytest.approx(-10.0 + softplus(10.5), rel=1e-5)
    assert bounded[1] == pytest.approx(0.5, abs=1e-4)
    assert bounded[2] == pytest.approx(-10.0, abs=1e-6)  # far below the lower bound
    assert bounded[3] == pytest.approx(-3.0, abs=0.03)  # well inside: nearly the identity
    sweep = np.asarray(soft_bound_logvar(jnp.linspace(-20.0, 20.0, 50), min_logvar, max_logvar))
    assert np.all(np.diff(sweep) >= 0) and np.all(sweep > -10.0) and np.all(sweep < 0.5 + 1e-4)


def test_weight_decays_are_padded_with_the_last_value() -> None:
    assert DynamicsSettings().layer_weight_decays() == (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    assert DynamicsSettings(hidden_sizes=(8, 8)).layer_weight_decays() == (2.5e-5, 5e-5, 7.5e-5)
    assert DynamicsSettings(hidden_sizes=(8,) * 6, weight_decays=(1e-5, 2e-5)).layer_weight_decays() == (
        1e-5, 2e-5, 2e-5, 2e-5, 2e-5, 2e-5, 2e-5)
    assert DynamicsSettings(hidden_sizes=(8,), weight_decays=()).layer_weight_decays() == (0.0, 0.0)


@pytest.mark.parametrize("changes, message", [
    ({"num_elites": 8}, "num_elites"),
    ({"holdout_fraction": 0.0}, "holdout_fraction"),
    ({"patience": 0}, "patience"),
    ({"weight_decays": (-1.0,)}, "weight_decays"),
])
def test_invalid_settings_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DynamicsSettings(**changes)  # type: ignore[arg-type]


def test_model_is_hashable_and_stacks_member_parameters() -> None:
    model = make_dynamics_model(SETTINGS, OBSERVATION_DIM, ACTION_DIM)
    assert hash(model) == hash(make_dynamics_model(SETTINGS, OBSERVATION_DIM, ACTION_DIM))
    params = model.init(jax.random.PRNGKey(0))
    members = params["members"]
    assert members["mlp"]["hidden_0"]["kernel"].shape == (3, OBSERVATION_DIM + ACTION_DIM, 64)
    assert members["mlp"]["output"]["kernel"].shape == (3, 64, 2 * (OBSERVATION_DIM + 1))
    np.testing.assert_allclose(members["max_logvar"], 0.5)
    np.testing.assert_allclose(members["min_logvar"], -10.0)
    # Members start from different weights.
    assert not np.allclose(members["mlp"]["hidden_0"]["kernel"][0], members["mlp"]["hidden_0"]["kernel"][1])


# -- training -------------------------------------------------------------------------------


def test_fits_a_linear_system(trained: TrainedModel) -> None:
    observations, actions, rewards, next_observations = trained.system.sample(np.random.default_rng(2), 1000, 0.0)
    predicted, predicted_rewards = dynamics_step(trained.model, trained.state, jnp.asarray(observations),
                                                 jnp.asarray(actions), jax.random.PRNGKey(0), False)
    change_variance = np.var(next_observations - observations, axis=0).mean()
    assert np.mean(np.square(np.asarray(predicted) - next_observations)) < 0.02 * change_variance
    assert np.mean(np.square(np.asarray(predicted_rewards) - rewards)) < 0.02 * np.var(rewards)
    # The holdout MSE is near the noise floor: (3 · NOISE² + 0 for the reward) / 4 outputs.
    assert trained.metrics["dynamics/holdout_mse"] < 3 * (3 * NOISE**2 / 4)


def test_elites_are_the_members_with_the_lowest_holdout_mse(trained: TrainedModel) -> None:
    state = trained.state
    assert state.elites.dtype == jnp.int32
    assert state.elites.shape == (SETTINGS.num_elites,)
    np.testing.assert_array_equal(state.elites, np.argsort(np.asarray(state.holdout_mse))[: SETTINGS.num_elites])
    assert np.all(np.isfinite(state.holdout_mse))
    assert trained.metrics["dynamics/holdout_mse"] == pytest.approx(
        float(np.mean(np.asarray(state.holdout_mse)[np.asarray(state.elites)])))


def test_early_stopping_stops_before_max_steps_on_an_easy_problem(trained: TrainedModel) -> None:
    metrics, logs = trained.metrics, trained.logs
    assert metrics["dynamics/stopped_early"] == 1.0
    assert metrics["dynamics/steps"] < SETTINGS.max_steps
    # log is called once per chunk, at multiples of eval_every; the last `patience` checks saw
    # no improvement.
    assert [step for step, _ in logs] == [SETTINGS.eval_every * (index + 1) for index in range(len(logs))]
    assert len(logs) == metrics["dynamics/holdout_checks"]
    assert [scalars["dynamics/checks_without_improvement"] for _, scalars in logs[-SETTINGS.patience:]] == [
        1.0, 2.0, 3.0]
    assert {"dynamics/train_loss", "dynamics/holdout_mse"} <= set(logs[0][1])
    assert logs[-1][1]["dynamics/holdout_mse"] < logs[0][1]["dynamics/holdout_mse"]


def test_training_stops_at_max_steps() -> None:
    data = LinearSystem.random(seed=3).sample(np.random.default_rng(4), 200, NOISE)
    settings = DynamicsSettings(num_members=2, num_elites=1, hidden_sizes=(8,), eval_every=30, max_steps=50,
                                batch_size=32)
    steps: list[int] = []
    _, metrics = train_dynamics(*data, settings, jax.random.PRNGKey(0), log=lambda step, _: steps.append(step))
    assert steps == [30, 50]
    assert metrics["dynamics/steps"] == 50.0
    assert metrics["dynamics/stopped_early"] == 0.0
    assert metrics["dynamics/holdout_size"] == 40.0


def test_on_check_sees_the_model_a_shorter_training_would_return() -> None:
    data = LinearSystem.random(seed=3).sample(np.random.default_rng(4), 200, NOISE)
    settings = DynamicsSettings(num_members=2, num_elites=1, hidden_sizes=(8,), eval_every=30, max_steps=60,
                                batch_size=32)
    seen: dict[int, Any] = {}
    state, _ = train_dynamics(*data, settings, jax.random.PRNGKey(0),
                              on_check=lambda step, model: seen.setdefault(step, model))
    assert sorted(seen) == [30, 60]
    shorter, _ = train_dynamics(*data, dataclasses.replace(settings, max_steps=30), jax.random.PRNGKey(0))
    for expected, actual in ((shorter, seen[30]), (state, seen[60])):
        for leaf, other in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(actual), strict=True):
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(other))


def test_a_fit_run_in_checkpointed_pieces_equals_one_run_whole() -> None:
    data = LinearSystem.random(seed=3).sample(np.random.default_rng(4), 200, NOISE)
    settings = DynamicsSettings(num_members=2, num_elites=1, hidden_sizes=(8,), eval_every=30, max_steps=100,
                                batch_size=32)
    whole, whole_metrics = train_dynamics(*data, settings, jax.random.PRNGKey(0))
    first = DynamicsFit(*data, settings, jax.random.PRNGKey(0))
    first.train(40)  # rounded up to whole checks: 60 steps
    assert int(first.training.steps) == 60 and not first.done
    # A new process: the splits are derived again, the training comes from its bytes.
    resumed = DynamicsFit(*data, settings, jax.random.PRNGKey(0))
    resumed.training = serialization.from_bytes(resumed.training, serialization.to_bytes(first.training))
    resumed.train()
    assert resumed.done and resumed.metrics() == whole_metrics
    for leaf, other in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(resumed.state()), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(other))


def test_state_survives_a_checkpoint_round_trip(trained: TrainedModel, tmp_path: Path) -> None:
    path = tmp_path / "dynamics.ckpt"
    save_checkpoint(path, algorithm="dynamics", step=0, state=trained.state)
    template = init_dynamics_state(trained.model, jax.random.PRNGKey(1))
    restored, _, _, _ = load_checkpoint(path, algorithm="dynamics", template=template)
    for expected, actual in zip(jax.tree_util.tree_leaves(trained.state), jax.tree_util.tree_leaves(restored),
                                strict=True):
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(actual))


# -- model steps ----------------------------------------------------------------------------


def test_deterministic_step_is_the_mean_of_the_elites_means(trained: TrainedModel) -> None:
    model, state = trained.model, trained.state
    observations, actions, _, _ = trained.system.sample(np.random.default_rng(5), 16, 0.0)
    first = dynamics_step(model, state, jnp.asarray(observations), jnp.asarray(actions), jax.random.PRNGKey(0), False)
    second = dynamics_step(model, state, jnp.asarray(observations), jnp.asarray(actions), jax.random.PRNGKey(1), False)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    inputs = (jnp.concatenate([observations, actions], axis=-1) - state.input_mean) / state.input_std
    means = [model.member.apply({"params": member_params(state.params, int(index))}, inputs)[0]
             for index in np.asarray(state.elites)]
    expected = np.mean(np.stack([np.asarray(mean) for mean in means]), axis=0)
    np.testing.assert_allclose(np.asarray(first[0]), observations + expected[:, :OBSERVATION_DIM], rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(first[1]), expected[:, OBSERVATION_DIM], rtol=1e-5, atol=1e-5)


def test_sampled_step_depends_on_the_key(trained: TrainedModel) -> None:
    model, state = trained.model, trained.state
    observations, actions, _, _ = trained.system.sample(np.random.default_rng(6), 16, 0.0)
    observations_jax, actions_jax = jnp.asarray(observations), jnp.asarray(actions)
    first, _ = dynamics_step(model, state, observations_jax, actions_jax, jax.random.PRNGKey(0), True)
    again, _ = dynamics_step(model, state, observations_jax, actions_jax, jax.random.PRNGKey(0), True)
    other, _ = dynamics_step(model, state, observations_jax, actions_jax, jax.random.PRNGKey(1), True)
    mean, _ = dynamics_step(model, state, observations_jax, actions_jax, jax.random.PRNGKey(0), False)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert not np.allclose(np.asarray(first), np.asarray(other))
    # The draws scatter around the mean with roughly the learned noise level.
    assert 0.2 * NOISE < float(np.std(np.asarray(first) - np.asarray(mean))) < 5 * NOISE


# -- termination functions ------------------------------------------------------------------


def _observation(dim: int, **values: float) -> np.ndarray:
    observation = np.zeros(dim, np.float32)
    for index, value in values.items():
        observation[int(index.removeprefix("i"))] = value
    return observation


def _terminated(function: object, observations: list[np.ndarray]) -> list[bool]:
    assert callable(function)
    return [bool(flag) for flag in np.asarray(function(jnp.asarray(np.stack(observations))))]


def test_hopper_termination() -> None:
    cases = [
        (_observation(11, i0=1.25), False),
        (_observation(11, i0=0.71, i1=0.19), False),
        (_observation(11, i0=0.7), True),  # too low (strict)
        (_observation(11, i0=1.25, i1=0.2), True),  # torso tilted
        (_observation(11, i0=1.25, i1=-0.25), True),
        (_observation(11, i0=1.25, i7=99.0), False),
        (_observation(11, i0=1.25, i7=-100.0), True),  # state out of range
        (_observation(11, i0=math.nan), True),
    ]
    assert _terminated(hopper_terminated, [observation for observation, _ in cases]) == [flag for _, flag in cases]


def test_walker2d_termination() -> None:
    cases = [
        (_observation(17, i0=1.25), False),
        (_observation(17, i0=1.25, i1=-0.99, i8=500.0), False),  # velocities are not checked
        (_observation(17, i0=0.8), True),
        (_observation(17, i0=2.0), True),
        (_observation(17, i0=1.25, i1=1.0), True),
        (_observation(17, i0=1.25, i1=-1.5), True),
    ]
    assert _terminated(walker2d_terminated, [observation for observation, _ in cases]) == [flag for _, flag in cases]


def test_ant_termination() -> None:
    cases = [
        (_observation(27, i0=0.55), False),
        (_observation(27, i0=0.2), False),  # inclusive bounds
        (_observation(27, i0=1.0), False),
        (_observation(27, i0=1.01), True),
        (_observation(27, i0=0.19), True),
        (_observation(27, i0=0.55, i20=math.inf), True),
    ]
    assert _terminated(ant_terminated, [observation for observation, _ in cases]) == [flag for _, flag in cases]


def test_halfcheetah_never_terminates() -> None:
    observations = [_observation(17), _observation(17, i0=-5.0, i1=3.0), _observation(17, i5=1e6)]
    assert _terminated(termination_function("HalfCheetah-v5"), observations) == [False, False, False]
    assert never_terminated(jnp.zeros((4, 3, 17))).shape == (4, 3)


@pytest.mark.parametrize("env_id, function", [
    ("Hopper-v5", hopper_terminated),
    ("Walker2d-v5", walker2d_terminated),
    ("HalfCheetah-v5", never_terminated),
    ("Swimmer-v5", never_terminated),
    ("Ant-v5", ant_terminated),
    ("Hopper-v4", hopper_terminated),
])
def test_termination_function_is_keyed_by_gymnasium_id(env_id: str, function: object) -> None:
    assert termination_function(env_id) is function


@pytest.mark.parametrize("env_id", ["hopper", "hopper-medium-v2", "Hopper", "Hopper-v3", "Pendulum-v1",
                                    "dmc:walker-walk", "MyHopper-v5"])
def test_unknown_env_ids_raise_a_helpful_config_error(env_id: str) -> None:
    with pytest.raises(ConfigError, match=r"no termination function") as error:
        termination_function(env_id)
    message = str(error.value)
    for family in TERMINATION_FUNCTIONS:
        assert f"{family}-v5" in message
    assert "never_terminated" in message
