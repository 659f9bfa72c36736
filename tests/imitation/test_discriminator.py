"""Tests of the adversarial-imitation discriminator (hybridrl.imitation.discriminator): the numpy
forward pass, both divergence losses on hand-computed values, the gradient penalty against a
per-row Jacobian, separating expert from random actions on a toy problem, and one update step."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hybridrl.errors import ConfigError
from hybridrl.imitation.discriminator import (
    Discriminator,
    DiscriminatorSettings,
    DiscriminatorState,
    DivergenceName,
    discriminator_loss,
    discriminator_reward,
    discriminator_update,
    divergence_loss,
    gradient_penalty,
    init_discriminator_state,
    make_discriminator,
)

OBSERVATION_DIM, ACTION_DIM = 2, 1
METRIC_NAMES = {"discriminator/loss", "discriminator/divergence_loss", "discriminator/gradient_penalty",
                "discriminator/expert_value", "discriminator/policy_value"}


Batch = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def toy_data(size: int = 256, seed: int = 0) -> Batch:
    """Expert: ``a = clip(0.5 s_0) + N(0, 0.05^2)``; policy: ``a ~ U(-1, 1)``; states ``U(-1, 1)^2``.

    Returns expert observations, expert actions, policy observations, policy actions.
    """
    rng = np.random.default_rng(seed)
    expert_observations = rng.uniform(-1.0, 1.0, (size, OBSERVATION_DIM))
    expert_actions = np.clip(0.5 * expert_observations[:, :1], -1.0, 1.0) + 0.05 * rng.normal(size=(size, 1))
    policy_observations = rng.uniform(-1.0, 1.0, (size, OBSERVATION_DIM))
    policy_actions = rng.uniform(-1.0, 1.0, (size, ACTION_DIM))
    return (jnp.asarray(expert_observations, jnp.float32), jnp.asarray(expert_actions, jnp.float32),
            jnp.asarray(policy_observations, jnp.float32), jnp.asarray(policy_actions, jnp.float32))


def fresh(settings: DiscriminatorSettings, seed: int = 0) -> tuple[Discriminator, DiscriminatorState]:
    return make_discriminator(settings), init_discriminator_state(settings, OBSERVATION_DIM, ACTION_DIM,
                                                                  jax.random.PRNGKey(seed))


@functools.partial(jax.jit, static_argnames=("network", "settings", "num_steps"))
def train(state: DiscriminatorState, data: Batch, key: jax.Array, *, network: Discriminator,
          settings: DiscriminatorSettings, num_steps: int) -> tuple[DiscriminatorState, dict[str, jax.Array]]:
    """``num_steps`` full-batch updates as one ``lax.scan``; metrics per step."""

    def one_step(carry: DiscriminatorState, step_key: jax.Array) -> tuple[DiscriminatorState, Any]:
        return discriminator_update(carry, *data, step_key, network=network, settings=settings)

    return jax.lax.scan(one_step, state, jax.random.split(key, num_steps))


# Jitted once per network and settings: eager, op-by-op execution of a second-order step is slow.
update = jax.jit(discriminator_update, static_argnames=("network", "settings"))
penalty_of = jax.jit(gradient_penalty, static_argnums=0)


# --------------------------------------------------------------------------------------------
# Settings and network
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [dict(divergence="kl"), dict(hidden_sizes=()), dict(learning_rate=0.0),
                                       dict(gradient_penalty=-1.0)])
def test_settings_reject_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        DiscriminatorSettings(**overrides)


def test_apply_numpy_matches_apply_and_outputs_are_bounded() -> None:
    network, state = fresh(DiscriminatorSettings())
    rng = np.random.default_rng(1)
    # Large inputs push some outputs into the tanh's saturation, so the bound is really exercised.
    observations = (5.0 * rng.normal(size=(64, OBSERVATION_DIM))).astype(np.float32)
    actions = (5.0 * rng.normal(size=(64, ACTION_DIM))).astype(np.float32)
    values = np.asarray(network.apply({"params": state.params}, jnp.asarray(observations), jnp.asarray(actions)))
    values_numpy = network.apply_numpy(state.params, observations, actions)
    assert values.shape == values_numpy.shape == (64,)
    np.testing.assert_allclose(values_numpy, values, atol=1e-5)
    assert np.all(np.abs(values) <= 1.0)
    assert np.max(np.abs(values)) > 0.9


def test_parameters_are_a_relu_mlp_with_zero_biases() -> None:
    _, state = fresh(DiscriminatorSettings())
    layers = state.params["mlp"]
    assert {name: layer["kernel"].shape for name, layer in layers.items()} == {
        "hidden_0": (OBSERVATION_DIM + ACTION_DIM, 64), "hidden_1": (64, 64), "output": (64, 1)}
    for layer in layers.values():
        np.testing.assert_array_equal(layer["bias"], 0.0)


# --------------------------------------------------------------------------------------------
# Losses on hand-computed values
# --------------------------------------------------------------------------------------------

EXPERT_VALUES = np.array([0.5, -0.2], np.float32)
POLICY_VALUES = np.array([0.1, 0.3], np.float32)


def test_js_loss_by_hand() -> None:
    expected = (np.mean(np.log1p(np.exp(-EXPERT_VALUES))) + np.mean(np.log1p(np.exp(POLICY_VALUES))))
    assert expected == pytest.approx(1.435484, abs=1e-5)
    loss = divergence_loss("js", jnp.asarray(EXPERT_VALUES), jnp.asarray(POLICY_VALUES))
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # The original code's form: summed cross-entropy of both halves over the batch size, i.e. twice
    # the mean binary cross-entropy of the concatenated batch with expert label 1.
    logits = jnp.concatenate([jnp.asarray(EXPERT_VALUES), jnp.asarray(POLICY_VALUES)])
    labels = jnp.array([1.0, 1.0, 0.0, 0.0])
    assert float(loss) == pytest.approx(2.0 * float(jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))),
                                        abs=1e-6)


def test_rkl_loss_by_hand_and_its_floor() -> None:
    expected = np.mean(np.exp(-EXPERT_VALUES)) + np.mean(POLICY_VALUES)
    assert expected == pytest.approx(1.113966, abs=1e-5)
    loss = divergence_loss("rkl", jnp.asarray(EXPERT_VALUES), jnp.asarray(POLICY_VALUES))
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    floor = divergence_loss("rkl", jnp.ones(3), -jnp.ones(3))
    assert float(floor) == pytest.approx(math.exp(-1.0) - 1.0, abs=1e-6)


def test_unknown_divergence_is_rejected() -> None:
    with pytest.raises(ValueError, match="divergence"):
        divergence_loss("kl", jnp.zeros(2), jnp.zeros(2))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Gradient penalty
# --------------------------------------------------------------------------------------------


def test_gradient_penalty_matches_per_row_jacobian() -> None:
    network, state = fresh(DiscriminatorSettings(), seed=3)
    expert_observations, expert_actions, policy_observations, policy_actions = toy_data(size=8)
    expert_inputs = jnp.concatenate([expert_observations, expert_actions], axis=-1)
    policy_inputs = jnp.concatenate([policy_observations, policy_actions], axis=-1)
    key = jax.random.PRNGKey(7)
    penalty = penalty_of(network, state.params, expert_inputs, policy_inputs, key)

    # Independently: the same mixing weights, then the gradient of each row's D through __call__.
    mix = np.asarray(jax.random.uniform(key, (8, 1)))
    interpolates = mix * np.asarray(expert_inputs) + (1.0 - mix) * np.asarray(policy_inputs)

    def row_value(row: jax.Array) -> jax.Array:
        return network.apply({"params": state.params}, row[None, :OBSERVATION_DIM], row[None, OBSERVATION_DIM:])[0]

    row_gradients = np.asarray(jax.jit(jax.vmap(jax.jacrev(row_value)))(jnp.asarray(interpolates)))
    assert row_gradients.shape == (8, OBSERVATION_DIM + ACTION_DIM)
    expected = np.mean((np.linalg.norm(row_gradients, axis=1) - 1.0) ** 2)
    assert float(penalty) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_gradient_penalty_of_a_flat_discriminator_is_one_with_finite_gradients() -> None:
    # All-zero parameters: D = 0 everywhere, every input gradient is exactly 0, so GP = (0 - 1)^2.
    # The norm at 0 must not turn the parameter gradient into NaN.
    network, state = fresh(DiscriminatorSettings())
    zero_params = jax.tree_util.tree_map(jnp.zeros_like, state.params)
    inputs = jnp.ones((4, OBSERVATION_DIM + ACTION_DIM))
    key = jax.random.PRNGKey(0)
    assert float(penalty_of(network, zero_params, inputs, -inputs, key)) == pytest.approx(1.0)
    grads = jax.jit(jax.grad(lambda params: gradient_penalty(network, params, inputs, -inputs, key)))(zero_params)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(grads))


def test_mismatched_batches_are_rejected() -> None:
    settings = DiscriminatorSettings()
    network, state = fresh(settings)
    expert_observations, expert_actions, policy_observations, policy_actions = toy_data(size=8)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(network, state.params, jnp.zeros((8, 3)), jnp.zeros((6, 3)), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="same shape"):
        update(state, expert_observations, expert_actions, policy_observations[:6], policy_actions[:6],
               jax.random.PRNGKey(0), network=network, settings=settings)


def test_without_penalty_batches_may_differ() -> None:
    settings = DiscriminatorSettings(gradient_penalty=0.0)
    network, state = fresh(settings)
    expert_observations, expert_actions, policy_observations, policy_actions = toy_data(size=8)
    loss, metrics = discriminator_loss(state.params, network, settings, expert_observations, expert_actions,
                                       policy_observations[:5], policy_actions[:5], jax.random.PRNGKey(0))
    assert float(metrics["discriminator/gradient_penalty"]) == 0.0
    assert float(loss) == pytest.approx(float(metrics["discriminator/divergence_loss"]))


# --------------------------------------------------------------------------------------------
# Learning and the update step
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("divergence", ["js", "rkl"])
def test_separates_expert_from_random_actions(divergence: DivergenceName) -> None:
    # A larger step and a penalty coefficient of 1 (defaults: 1e-4 and 10) so 300 steps suffice:
    # with coefficient 10 the near 1-Lipschitz D can put expert and random actions only about the
    # mean action distance (~0.35 here) apart.
    settings = DiscriminatorSettings(divergence=divergence, learning_rate=1e-3, gradient_penalty=1.0)
    network, state = fresh(settings)
    data = toy_data()
    state, metrics = train(state, data, jax.random.PRNGKey(1), network=network, settings=settings, num_steps=300)
    expert_observations, expert_actions, policy_observations, policy_actions = data
    expert_reward = discriminator_reward(network, state.params, expert_observations, expert_actions)
    policy_reward = discriminator_reward(network, state.params, policy_observations, policy_actions)
    assert float(jnp.mean(expert_reward) - jnp.mean(policy_reward)) > 0.3
    divergence_losses = np.asarray(metrics["discriminator/divergence_loss"])
    assert divergence_losses[-1] < divergence_losses[0]
    if divergence == "rkl":
        # Starts near 1 (D ~ 0) and falls towards its floor exp(-1) - 1.
        assert divergence_losses[0] == pytest.approx(1.0, abs=0.15)
        assert divergence_losses[-1] < 0.6


def test_update_changes_params_and_keeps_shapes() -> None:
    settings = DiscriminatorSettings(divergence="rkl")
    network, state = fresh(settings)
    expert_observations, expert_actions, policy_observations, policy_actions = toy_data(size=16)
    key = jax.random.PRNGKey(2)
    new_state, metrics = update(state, expert_observations, expert_actions, policy_observations, policy_actions,
                                key, network=network, settings=settings)
    assert set(metrics) == METRIC_NAMES
    assert all(np.shape(value) == () for value in metrics.values())
    old_leaves, old_tree = jax.tree_util.tree_flatten(state.params)
    new_leaves, new_tree = jax.tree_util.tree_flatten(new_state.params)
    assert str(old_tree) == str(new_tree)
    for old, new in zip(old_leaves, new_leaves, strict=True):
        assert old.shape == new.shape and old.dtype == new.dtype
    assert any(not np.array_equal(old, new) for old, new in zip(old_leaves, new_leaves, strict=True))
    loss, _ = jax.jit(discriminator_loss, static_argnums=(1, 2))(
        state.params, network, settings, expert_observations, expert_actions, policy_observations, policy_actions, key)
    assert float(metrics["discriminator/loss"]) == pytest.approx(float(loss), rel=1e-6)


def test_reward_is_the_network_output() -> None:
    network, state = fresh(DiscriminatorSettings())
    observations, actions, _, _ = toy_data(size=16)
    reward = discriminator_reward(network, state.params, observations, actions)
    np.testing.assert_array_equal(reward, network.apply({"params": state.params}, observations, actions))
    np.testing.assert_allclose(reward, network.apply_numpy(state.params, np.asarray(observations),
                                                           np.asarray(actions)), atol=1e-5)
