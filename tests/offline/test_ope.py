"""Tests of AM-Q off-policy evaluation (hybridrl.offline.ope) on a toy problem with known dynamics:
a point in the plane that a good policy steers to the origin."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.offline.dynamics import (
    DynamicsModel,
    DynamicsSettings,
    DynamicsState,
    make_dynamics_model,
    never_terminated,
    train_dynamics,
)
from hybridrl.offline.ope import amq_rollouts, amq_scores

DIM = 2  # observation and action size
STEP_SIZE = 0.3  # s' = s + STEP_SIZE · a
HORIZON = 6
SETTINGS = DynamicsSettings(num_members=3, num_elites=2, hidden_sizes=(32, 32), eval_every=250, max_steps=1500,
                            patience=3)


def linear_policy(params: dict[str, jax.Array], normalized_observations: jax.Array) -> jax.Array:
    """``tanh(s̃ W + b)``: one policy's deterministic action."""
    return jnp.tanh(normalized_observations @ params["weights"] + params["bias"])


def distance_after_step(params: dict[str, jax.Array], normalized_observations: jax.Array,
                        actions: jax.Array) -> jax.Array:
    """A critic that ranks correctly: −|s + STEP_SIZE · a|, the distance to the origin after the step
    (``params`` holds the state normaliser, so the critic sees normalised states like a learned one)."""
    observations = normalized_observations * params["std"] + params["mean"]
    return -jnp.linalg.norm(observations + STEP_SIZE * actions, axis=-1)


def always_terminated(next_observations: jax.Array) -> jax.Array:
    """Every branch ends after its first step."""
    return jnp.ones(next_observations.shape[:-1], dtype=bool)


@dataclass(frozen=True)
class ToyProblem:
    model: DynamicsModel
    state: DynamicsState
    observation_mean: jax.Array
    observation_std: jax.Array
    start_observations: jax.Array

    @property
    def q_params(self) -> dict[str, jax.Array]:
        return {"mean": self.observation_mean, "std": self.observation_std}

    def scores(self, policy_params: dict[str, jax.Array], key: jax.Array, *, sample: bool = True,
               termination: Any = never_terminated, state: DynamicsState | None = None) -> np.ndarray:
        return np.asarray(amq_scores(policy_params, self.q_params, state or self.state, self.start_observations,
                                     self.observation_mean, self.observation_std, key, policy_action=linear_policy,
                                     q_value=distance_after_step, dynamics_model=self.model, termination=termination,
                                     horizon=HORIZON, sample=sample))


@pytest.fixture(scope="module")
def toy() -> ToyProblem:
    rng = np.random.default_rng(0)
    observations = rng.uniform(-2.0, 2.0, size=(2000, DIM)).astype(np.float32)
    actions = rng.uniform(-1.0, 1.0, size=(2000, DIM)).astype(np.float32)
    next_observations = observations + STEP_SIZE * actions
    rewards = -np.linalg.norm(observations, axis=-1)
    state, _ = train_dynamics(observations, actions, rewards, next_observations, SETTINGS, jax.random.PRNGKey(0))
    return ToyProblem(model=make_dynamics_model(SETTINGS, DIM, DIM), state=state,
                      observation_mean=jnp.asarray(observations.mean(axis=0)),
                      observation_std=jnp.asarray(observations.std(axis=0)),
                      start_observations=jnp.asarray(rng.uniform(-1.0, 1.0, size=(64, DIM)).astype(np.float32)))


def _policies(*weights: np.ndarray) -> dict[str, jax.Array]:
    """Linear policies with the given weight matrices, stacked on a leading axis."""
    return {"weights": jnp.asarray(np.stack(weights), jnp.float32), "bias": jnp.zeros((len(weights), DIM))}


GOOD = -3.0 * np.eye(DIM)  # pushes towards the origin
ANTI = 3.0 * np.eye(DIM)  # pushes away from it


def test_good_policy_scores_above_random_and_anti_policies(toy: ToyProblem) -> None:
    random_weights = [np.random.default_rng(seed).normal(size=(DIM, DIM)) for seed in range(3)]
    policies = _policies(GOOD, ANTI, *random_weights)
    for sample in (True, False):
        scores = toy.scores(policies, jax.random.PRNGKey(0), sample=sample)
        assert scores.shape == (5,)
        assert np.all(np.isfinite(scores))
        assert scores[0] == scores.max() and scores[0] > scores[1] + 0.5
        assert scores[1] == scores.min()


def test_scores_are_deterministic_for_a_fixed_key(toy: ToyProblem) -> None:
    policies = _policies(GOOD, ANTI)
    first = toy.scores(policies, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(first, toy.scores(policies, jax.random.PRNGKey(3)))
    assert not np.array_equal(first, toy.scores(policies, jax.random.PRNGKey(4)))


def test_identical_policies_get_identical_scores(toy: ToyProblem) -> None:
    # Common random numbers: every policy sees the same model draws, so only the policy differs.
    scores = toy.scores(_policies(ANTI, GOOD, GOOD), jax.random.PRNGKey(5), sample=True)
    assert scores[1] == scores[2]


def _scores_at_start_states(toy: ToyProblem, policies: dict[str, jax.Array]) -> np.ndarray:
    """Mean Q(s_0, π(s_0)) over the start states only, by hand."""
    normalized = (toy.start_observations - toy.observation_mean) / toy.observation_std

    def start_score(params: dict[str, jax.Array]) -> jax.Array:
        actions = jnp.clip(linear_policy(params, normalized), -1.0, 1.0)
        return jnp.mean(distance_after_step(toy.q_params, normalized, actions))

    return np.asarray(jax.vmap(start_score)(policies))


def test_terminated_branches_are_dropped(toy: ToyProblem) -> None:
    policies = _policies(GOOD, ANTI)
    scores = toy.scores(policies, jax.random.PRNGKey(0), termination=always_terminated)
    np.testing.assert_allclose(scores, _scores_at_start_states(toy, policies), rtol=1e-5)


def test_non_finite_model_states_end_their_branch(toy: ToyProblem) -> None:
    policies = _policies(GOOD, ANTI)
    nan_params = jax.tree_util.tree_map(lambda leaf: leaf * jnp.nan, toy.state.params)
    broken = dataclasses.replace(toy.state, params=nan_params)
    scores = toy.scores(policies, jax.random.PRNGKey(0), sample=False, state=broken)
    np.testing.assert_allclose(scores, _scores_at_start_states(toy, policies), rtol=1e-5)


@pytest.mark.parametrize(("termination", "survival"), [(never_terminated, HORIZON), (always_terminated, 1)])
def test_model_survival_counts_the_steps_branches_stay_alive(toy: ToyProblem, termination: Any,
                                                              survival: int) -> None:
    policies = _policies(GOOD, ANTI)
    scores, steps = amq_rollouts(policies, toy.q_params, toy.state, toy.start_observations, toy.observation_mean,
                                 toy.observation_std, jax.random.PRNGKey(0), policy_action=linear_policy,
                                 q_value=distance_after_step, dynamics_model=toy.model, termination=termination,
                                 horizon=HORIZON)
    # Alive at t = 0 always; with no termination every branch lives the whole horizon, with an
    # immediate one only its first step is scored.
    np.testing.assert_array_equal(np.asarray(steps), [survival, survival])
    np.testing.assert_array_equal(np.asarray(scores), toy.scores(policies, jax.random.PRNGKey(0),
                                                                 termination=termination))
