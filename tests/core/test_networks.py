"""Tests of the Flax networks (hybridrl.core.networks): numpy twins, ensembles, initialisation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.core.distributions import Categorical, DiagGaussian
from hybridrl.core.networks import (
    MLP,
    CategoricalPolicy,
    Ensemble,
    GaussianPolicy,
    JointNumpyMLP,
    QHead,
    ValueHead,
    member_params,
)

# Few distinct kernel shapes: JAX compiles the orthogonal initialiser once per shape, which costs
# far more than the tests themselves. QHead's input (observation + action) is as wide as HIDDEN.
OBSERVATION_DIM, ACTION_DIM, BATCH, MEMBERS = 6, 2, 7, 3
HIDDEN = (8, 8)


def _observations(seed: int = 0, batch: int = BATCH) -> np.ndarray:
    # Scaled up so tanh and relu units leave their linear region.
    return 3.0 * np.random.default_rng(seed).normal(size=(batch, OBSERVATION_DIM)).astype(np.float32)


def _singular_values(kernel: jax.Array) -> np.ndarray:
    return np.linalg.svd(np.asarray(kernel, dtype=np.float64), compute_uv=False)


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "silu"])
@pytest.mark.parametrize("output_size", [None, ACTION_DIM])
def test_mlp_apply_numpy_equals_apply(activation: str, output_size: int | None) -> None:
    mlp = MLP(HIDDEN, output_size, activation)
    observations = _observations()
    params = mlp.init(jax.random.PRNGKey(0), observations)

    expected = np.asarray(mlp.apply(params, observations))
    actual = mlp.apply_numpy(params["params"], observations)

    assert actual.shape == expected.shape == (BATCH, output_size or HIDDEN[-1])
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_unknown_activation_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="tanh"):
        MLP(HIDDEN, 1, "swish").init(jax.random.PRNGKey(0), _observations())


@pytest.mark.parametrize("state_dependent_std", [False, True])
@pytest.mark.parametrize("squash", [False, True])
def test_gaussian_policy_apply_numpy_equals_apply(state_dependent_std: bool, squash: bool) -> None:
    policy = GaussianPolicy(ACTION_DIM, HIDDEN, state_dependent_std=state_dependent_std,
                            log_std_init=-0.5, squash=squash)
    observations = _observations()
    params = policy.init(jax.random.PRNGKey(1), observations)
    # Move the parameters away from their initial values (zero biases, constant log-std).
    rng = np.random.default_rng(2)
    params = jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf) + rng.normal(scale=0.1, size=leaf.shape).astype(np.float32), params)

    expected = policy.apply(params, observations)
    actual = policy.apply_numpy(params["params"], observations)

    assert isinstance(actual, DiagGaussian) and isinstance(actual.mean, np.ndarray)
    assert actual.squash == expected.squash == squash
    assert actual.mean.shape == actual.log_std.shape == (BATCH, ACTION_DIM)
    np.testing.assert_allclose(actual.mean, expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actual.log_std, expected.log_std, rtol=1e-5, atol=1e-6)
    action = np.asarray(expected.mode())
    np.testing.assert_allclose(actual.log_prob(action), expected.log_prob(jnp.asarray(action)),
                               rtol=1e-4, atol=1e-4)


def test_state_dependent_log_std_is_clipped_to_its_bounds() -> None:
    policy = GaussianPolicy(ACTION_DIM, HIDDEN, state_dependent_std=True, log_std_bounds=(-1.0, 0.5))
    observations = _observations()
    params = policy.init(jax.random.PRNGKey(0), observations)
    params["params"]["log_std"]["bias"] = jnp.array([10.0, -10.0])

    for distribution in (policy.apply(params, observations), policy.apply_numpy(params["params"], observations)):
        np.testing.assert_allclose(np.asarray(distribution.log_std), np.tile([0.5, -1.0], (BATCH, 1)))


def test_state_independent_log_std_starts_at_log_std_init() -> None:
    policy = GaussianPolicy(ACTION_DIM, HIDDEN, log_std_init=-0.7)
    observations = _observations()
    distribution = policy.apply(policy.init(jax.random.PRNGKey(0), observations), observations)
    np.testing.assert_allclose(distribution.log_std, np.full((BATCH, ACTION_DIM), -0.7), rtol=1e-6)


def test_categorical_policy_apply_numpy_equals_apply() -> None:
    policy = CategoricalPolicy(num_actions=ACTION_DIM, hidden_sizes=HIDDEN, logits_gain=1.0)
    observations = _observations()
    params = policy.init(jax.random.PRNGKey(0), observations)

    expected = policy.apply(params, observations)
    actual = policy.apply_numpy(params["params"], observations)

    assert isinstance(actual, Categorical) and isinstance(actual.logits, np.ndarray)
    assert actual.logits.shape == (BATCH, ACTION_DIM)
    np.testing.assert_allclose(actual.logits, expected.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(actual.mode(), expected.mode())


def test_value_head_apply_numpy_equals_apply() -> None:
    value_head = ValueHead(HIDDEN, activation="relu")
    observations = _observations()
    params = value_head.init(jax.random.PRNGKey(0), observations)

    expected = np.asarray(value_head.apply(params, observations))
    actual = value_head.apply_numpy(params["params"], observations)

    assert actual.shape == expected.shape == (BATCH,)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("discrete", [False, True])
def test_joint_numpy_mlp_equals_the_separate_networks(discrete: bool) -> None:
    policy = (CategoricalPolicy(num_actions=ACTION_DIM, hidden_sizes=HIDDEN, logits_gain=1.0) if discrete
              else GaussianPolicy(ACTION_DIM, (8, 4), mean_gain=1.0, tanh_mean=True))
    value_head = ValueHead(HIDDEN)
    observations = _observations()
    policy_params = policy.init(jax.random.PRNGKey(0), observations)["params"]
    value_params = value_head.init(jax.random.PRNGKey(1), observations)["params"]

    joint = JointNumpyMLP.from_layers([policy.numpy_layers(policy_params), value_head.numpy_layers(value_params)],
                                      "tanh")
    head, values = joint(observations)
    distribution = policy.distribution_numpy(policy_params, head)
    expected = policy.apply_numpy(policy_params, observations)

    # Only the summation order inside each matmul differs (the off-diagonal blocks add exact zeros).
    for name in ("logits",) if discrete else ("mean", "log_std"):
        np.testing.assert_allclose(getattr(distribution, name), getattr(expected, name), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[..., 0], value_head.apply_numpy(value_params, observations), rtol=1e-5, atol=1e-6)


def test_stacked_joint_mlps_equal_each_seed_alone() -> None:
    value_heads = [ValueHead(HIDDEN) for _ in range(3)]
    params = [head.init(jax.random.PRNGKey(seed), _observations())["params"] for seed, head in enumerate(value_heads)]
    joints = [JointNumpyMLP.from_layers([head.numpy_layers(p), head.numpy_layers(p)], "tanh")
              for head, p in zip(value_heads, params, strict=True)]
    observations = np.stack([_observations(seed) for seed in range(3)])
    stacked = JointNumpyMLP.stack(joints)(observations)
    for seed, joint in enumerate(joints):
        # A batched matmul sums each row in the same length as the 2-D one; only the order may differ.
        for together, alone in zip(stacked, joint(observations[seed]), strict=True):
            np.testing.assert_allclose(together[seed], alone, rtol=1e-5, atol=1e-6)


def test_networks_of_different_depths_cannot_be_joined() -> None:
    value_head, deeper = ValueHead(HIDDEN), ValueHead((8, 8, 8))
    params = [network.init(jax.random.PRNGKey(0), _observations())["params"] for network in (value_head, deeper)]
    with pytest.raises(ValueError, match="depths"):
        JointNumpyMLP.from_layers([value_head.numpy_layers(params[0]), deeper.numpy_layers(params[1])], "tanh")


def test_q_head_reads_the_action() -> None:
    q_head = QHead(HIDDEN)
    observations = _observations()
    actions = np.ones((BATCH, ACTION_DIM), dtype=np.float32)
    params = q_head.init(jax.random.PRNGKey(0), observations, actions)

    values = q_head.apply(params, observations, actions)

    assert values.shape == (BATCH,)
    assert not np.allclose(values, q_head.apply(params, observations, -actions))


def test_orthogonal_init_gains() -> None:
    observations = _observations()
    policy = GaussianPolicy(ACTION_DIM, HIDDEN)
    policy_params = policy.init(jax.random.PRNGKey(0), observations)["params"]
    value_params = ValueHead(HIDDEN).init(jax.random.PRNGKey(0), observations)["params"]
    logits_params = CategoricalPolicy(ACTION_DIM, HIDDEN).init(jax.random.PRNGKey(0), observations)["params"]

    # An orthogonal kernel scaled by g has every singular value equal to g.
    for layer in ("hidden_0", "hidden_1"):
        np.testing.assert_allclose(_singular_values(policy_params["torso"][layer]["kernel"]),
                                   math.sqrt(2.0), rtol=1e-5)
    np.testing.assert_allclose(_singular_values(policy_params["mean"]["kernel"]), 0.01, rtol=1e-5)
    np.testing.assert_allclose(_singular_values(logits_params["mlp"]["output"]["kernel"]), 0.01, rtol=1e-5)
    np.testing.assert_allclose(_singular_values(value_params["mlp"]["output"]["kernel"]), 1.0, rtol=1e-5)
    for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(policy_params):
        if "bias" in jax.tree_util.keystr(leaf_path):
            np.testing.assert_array_equal(leaf, 0.0)
    # The small output gain makes the initial policy close to a zero-mean one.
    assert np.abs(np.asarray(policy.apply({"params": policy_params}, observations).mean)).max() < 0.2


@pytest.fixture(scope="module")
def q_ensemble() -> tuple[Ensemble, dict]:
    ensemble = Ensemble(QHead(HIDDEN), num_members=MEMBERS)
    observations, actions = _observations(), np.zeros((BATCH, ACTION_DIM), dtype=np.float32)
    return ensemble, ensemble.init(jax.random.PRNGKey(0), observations, actions)


def test_ensemble_parameters_have_a_member_axis_and_differ_between_members(
        q_ensemble: tuple[Ensemble, dict]) -> None:
    _, params = q_ensemble
    observations, actions = _observations(), np.zeros((BATCH, ACTION_DIM), dtype=np.float32)

    single = QHead(HIDDEN).init(jax.random.PRNGKey(0), observations, actions)["params"]
    member_shapes = jax.tree_util.tree_map(lambda leaf: leaf.shape[1:], params["params"]["members"])
    assert member_shapes == jax.tree_util.tree_map(np.shape, single)
    kernels = np.asarray(params["params"]["members"]["mlp"]["hidden_0"]["kernel"])
    assert kernels.shape[0] == MEMBERS
    for first in range(MEMBERS):
        for second in range(first + 1, MEMBERS):
            assert not np.allclose(kernels[first], kernels[second])


def test_ensemble_with_shared_inputs_equals_calling_each_member(q_ensemble: tuple[Ensemble, dict]) -> None:
    ensemble, params = q_ensemble
    observations = _observations(seed=1)
    actions = np.random.default_rng(1).normal(size=(BATCH, ACTION_DIM)).astype(np.float32)

    outputs = ensemble.apply(params, observations, actions)

    assert outputs.shape == (MEMBERS, BATCH)
    for index in range(MEMBERS):
        member_output = ensemble.member.apply({"params": member_params(params["params"], index)},
                                              observations, actions)
        np.testing.assert_allclose(outputs[index], member_output, rtol=1e-5, atol=1e-6)
    assert not np.allclose(outputs[0], outputs[1])


def test_ensemble_with_split_inputs_gives_member_i_slice_i() -> None:
    ensemble = Ensemble(ValueHead(HIDDEN), num_members=MEMBERS, shared_inputs=False)
    observations = np.stack([_observations(seed=index) for index in range(MEMBERS)])
    params = ensemble.init(jax.random.PRNGKey(0), observations)

    outputs = ensemble.apply(params, observations)

    assert outputs.shape == (MEMBERS, BATCH)
    for index in range(MEMBERS):
        member_output = ensemble.member.apply({"params": member_params(params["params"], index)},
                                              observations[index])
        np.testing.assert_allclose(outputs[index], member_output, rtol=1e-5, atol=1e-6)
    # Member 0 on member 1's inputs gives something else: the inputs really were split.
    swapped = ensemble.member.apply({"params": member_params(params["params"], 0)}, observations[1])
    assert not np.allclose(outputs[0], swapped)


def test_ensemble_of_policies_returns_stacked_distributions() -> None:
    ensemble = Ensemble(GaussianPolicy(ACTION_DIM, HIDDEN, squash=True), num_members=MEMBERS)
    observations = _observations()
    params = ensemble.init(jax.random.PRNGKey(0), observations)

    distribution = ensemble.apply(params, observations)

    assert isinstance(distribution, DiagGaussian) and distribution.squash
    assert distribution.mean.shape == (MEMBERS, BATCH, ACTION_DIM)
    member = ensemble.member.apply({"params": member_params(params["params"], 1)}, observations)
    np.testing.assert_allclose(distribution.mean[1], member.mean, rtol=1e-5, atol=1e-7)
