"""The learned query policy, the rollout engine and the policy-gradient estimator."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.active.lal import reinforce_objective
from hybridrl.active.policy import (
    LearnedPolicy,
    PolicySettings,
    leave_one_out_baseline,
    query_features,
    replay,
    rollout,
    rollouts,
)
from hybridrl.active.problems import make_problem
from hybridrl.errors import ConfigError


def test_fresh_policy_queries_uniformly_and_decides_by_plugin() -> None:
    problem = make_problem("thresholds")
    policy = LearnedPolicy(problem, PolicySettings())
    params = policy.init(jax.random.key(0))
    theta = problem.sample_class(jax.random.key(1), 1, problem.classes[0])[0]
    episode = rollout(policy.functions, params, problem, theta, jax.random.key(2))
    assert episode.queries.shape == (problem.budget,)
    np.testing.assert_allclose(episode.log_probs, -np.log(problem.num_queries), rtol=1e-5)
    counts = jnp.zeros(problem.num_queries).at[episode.queries].add(1.0)
    sums = jnp.zeros(problem.num_queries).at[episode.queries].add(episode.answers)
    expected = jax.nn.softmax(2.5 * problem.plugin_scores(counts, sums))
    np.testing.assert_allclose(episode.decision_probs, expected, atol=1e-5)
    np.testing.assert_allclose(episode.loss, problem.decision_loss(theta, episode.decision_probs), atol=1e-6)


def test_replay_reproduces_the_episode() -> None:
    problem = make_problem("bandit")
    policy = LearnedPolicy(problem, PolicySettings(architecture="deepsets", count_penalty_init=1.0))
    params = _perturbed(policy.init(jax.random.key(0)), jax.random.key(1))
    theta = problem.sample_class(jax.random.key(2), 1, problem.classes[1])[0]
    episode = rollout(policy.functions, params, problem, theta, jax.random.key(3))
    log_prob_sum, decision = replay(policy.functions, params, problem, episode.queries, episode.answers)
    np.testing.assert_allclose(log_prob_sum, episode.log_probs.sum(), rtol=1e-5)
    np.testing.assert_allclose(decision, episode.decision_probs, atol=1e-6)


def test_batched_rollouts_have_instance_and_rollout_axes() -> None:
    problem = make_problem("thresholds")
    policy = LearnedPolicy(problem, PolicySettings())
    thetas = problem.sample_class(jax.random.key(0), 5, problem.classes[1])
    episodes = rollouts(policy.functions, policy.init(jax.random.key(1)), problem, thetas, jax.random.key(2), 3)
    assert episodes.queries.shape == (5, 3, problem.budget)
    assert episodes.loss.shape == (5, 3)
    assert np.all(np.isfinite(np.asarray(episodes.loss)))
    # Different rollouts of one instance see different answers.
    assert not np.array_equal(np.asarray(episodes.answers[0, 0]), np.asarray(episodes.answers[0, 1]))


def test_deepsets_policy_is_permutation_equivariant() -> None:
    problem = make_problem("bandit")
    policy = LearnedPolicy(problem, PolicySettings(architecture="deepsets"))
    params = _perturbed(policy.init(jax.random.key(0)), jax.random.key(1))
    counts = jnp.array([3.0, 1.0, 0.0, 2.0])
    sums = jnp.array([1.5, -0.3, 0.0, 2.2])
    permutation = jnp.array([2, 0, 3, 1])
    logits = policy.functions.query_logits(params, counts, sums, jnp.int32(6))
    permuted = policy.functions.query_logits(params, counts[permutation], sums[permutation], jnp.int32(6))
    np.testing.assert_allclose(permuted, logits[permutation], atol=1e-5)


def test_bandit_policy_ignores_a_common_shift_and_follows_permutations() -> None:
    problem = make_problem("bandit")
    policy = LearnedPolicy(problem, PolicySettings(architecture="deepsets", count_penalty_init=1.0))
    params = _perturbed(policy.init(jax.random.key(0)), jax.random.key(1))
    counts = jnp.array([3.0, 1.0, 0.0, 2.0])
    sums = jnp.array([1.5, -0.3, 0.0, 2.2])
    t = jnp.int32(6)
    queries = jax.nn.softmax(policy.functions.query_logits(params, counts, sums, t))
    decision = jax.nn.softmax(policy.functions.decision_logits(params, counts, sums))
    for shift in (-50.0, 0.7, 300.0):  # every mean moves by `shift`: the sums by shift x counts
        shifted = sums + shift * counts
        np.testing.assert_allclose(jax.nn.softmax(policy.functions.query_logits(params, counts, shifted, t)),
                                   queries, atol=1e-5)
        np.testing.assert_allclose(jax.nn.softmax(policy.functions.decision_logits(params, counts, shifted)),
                                   decision, atol=1e-4)
    for permutation in itertools.permutations(range(4)):
        order = jnp.asarray(permutation)
        permuted = jax.nn.softmax(policy.functions.query_logits(params, counts[order], sums[order], t))
        np.testing.assert_allclose(permuted, queries[order], atol=1e-5)


def test_thresholds_policy_is_equivariant_under_the_reflection_of_the_line() -> None:
    problem = make_problem("thresholds")
    policy = LearnedPolicy(problem, PolicySettings())
    params = _perturbed(policy.init(jax.random.key(0)), jax.random.key(1))
    counts = jnp.zeros(16).at[jnp.array([2, 5, 5, 9, 12])].add(1.0)
    sums = jnp.zeros(16).at[jnp.array([2, 5, 5, 9, 12])].add(jnp.array([-1.2, -0.3, 0.4, 0.8, 1.9]))
    t = jnp.int32(5)
    queries = policy.functions.query_logits(params, counts, sums, t)
    reflected = policy.functions.query_logits(params, counts[::-1], -sums[::-1], t)
    np.testing.assert_allclose(reflected, queries[::-1], atol=1e-5)
    decision = policy.functions.decision_logits(params, counts, sums)  # threshold k <-> n - k
    np.testing.assert_allclose(policy.functions.decision_logits(params, counts[::-1], -sums[::-1]), decision[::-1],
                               atol=1e-4)


@pytest.mark.parametrize("name", ["thresholds", "bandit", "twenty-questions", "jester"])
def test_features_are_finite_from_the_empty_history_on(name: str) -> None:
    problem = make_problem(name)
    policy = LearnedPolicy(problem, PolicySettings(architecture="deepsets" if name == "bandit" else "mlp"))
    params = _perturbed(policy.init(jax.random.key(0)), jax.random.key(1))
    theta = problem.sample_class(jax.random.key(2), 1, problem.classes[0])[0]
    episode = rollout(policy.functions, params, problem, theta, jax.random.key(3))
    assert np.all(np.isfinite(np.asarray(episode.log_probs))) and np.isfinite(float(episode.loss))
    zeros = jnp.zeros(problem.num_queries)
    assert np.all(np.isfinite(np.asarray(query_features(problem, zeros, zeros))))


def test_decision_sharpness_is_learned_on_a_log_scale_and_evaluated_by_argmax() -> None:
    problem = make_problem("thresholds")
    policy = LearnedPolicy(problem, PolicySettings(plugin_scale_init=2.5))
    params = policy.init(jax.random.key(0))
    assert policy.plugin_scale(params) == pytest.approx(2.5)
    assert float(params["params"]["log_plugin_scale"]) == pytest.approx(np.log(2.5))
    counts = jnp.ones(16)
    sums = jnp.linspace(-1.0, 1.0, 16)
    logits = policy.functions.decision_logits(params, counts, sums)
    chosen = jax.nn.softmax(policy.argmax_decision.decision_logits(params, counts, sums))
    assert int(jnp.argmax(chosen)) == int(jnp.argmax(logits)) and float(chosen.max()) > 1 - 1e-6


def test_deepsets_needs_one_hypothesis_per_query() -> None:
    with pytest.raises(ConfigError, match="deepsets"):
        LearnedPolicy(make_problem("thresholds"), PolicySettings(architecture="deepsets"))


def test_leave_one_out_baseline() -> None:
    losses = jnp.array([[1.0, 2.0, 3.0, 6.0]])
    np.testing.assert_allclose(leave_one_out_baseline(losses), [[11 / 3, 10 / 3, 3.0, 2.0]], rtol=1e-6)
    with pytest.raises(ConfigError, match="2 rollouts"):
        leave_one_out_baseline(jnp.ones((3, 1)))


def test_policy_gradient_estimator_is_unbiased_on_a_toy_problem() -> None:
    """Two questions, two objects, two queries, Bernoulli answers: every history can be enumerated,
    so the expected loss and its exact gradient are known; the estimator's mean must match."""
    problem = make_problem("twenty-questions", size=2, budget=2)
    policy = LearnedPolicy(problem, PolicySettings(hidden_size=8))
    params = _perturbed(policy.init(jax.random.key(0)), jax.random.key(1), scale=1.0)
    theta = jnp.asarray(problem.hypotheses[0]) * 0.6 + 0.2

    def expected_loss(params: object) -> jax.Array:
        total = jnp.float32(0.0)
        for q1, y1, q2, y2 in itertools.product(range(2), range(2), range(2), range(2)):
            probability = jnp.float32(1.0)
            counts = jnp.zeros(2)
            sums = jnp.zeros(2)
            for t, (query, answer) in enumerate(((q1, y1), (q2, y2))):
                query_probs = jax.nn.softmax(policy.functions.query_logits(params, counts, sums, jnp.int32(t)))
                answer_prob = theta[query] if answer else 1.0 - theta[query]
                probability = probability * query_probs[query] * answer_prob
                counts = counts.at[query].add(1.0)
                sums = sums.at[query].add(float(answer))
            decision = jax.nn.softmax(policy.functions.decision_logits(params, counts, sums))
            total = total + probability * problem.decision_loss(theta, decision)
        return total

    exact = jax.grad(expected_loss)(params)
    instances, per_instance = 4000, 8
    thetas = jnp.broadcast_to(theta, (instances, theta.shape[0]))
    episodes = rollouts(policy.functions, params, problem, thetas, jax.random.key(2), per_instance)
    advantages = episodes.loss - leave_one_out_baseline(episodes.loss)
    count = instances * per_instance
    estimate = jax.grad(reinforce_objective)(
        params, policy.functions, problem, jnp.repeat(thetas, per_instance, axis=0),
        episodes.queries.reshape(count, -1), episodes.answers.reshape(count, -1), advantages.ravel(),
        jnp.full(count, 1.0 / count))
    exact_flat = np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(exact)])
    estimate_flat = np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(estimate)])
    assert np.linalg.norm(exact_flat) > 1e-3
    # Monte-Carlo error of 32k episodes: a few percent of the gradient's norm.
    assert np.linalg.norm(estimate_flat - exact_flat) < 0.1 * np.linalg.norm(exact_flat)
    cosine = estimate_flat @ exact_flat / (np.linalg.norm(estimate_flat) * np.linalg.norm(exact_flat))
    assert cosine > 0.99


def _perturbed(params: object, key: jax.Array, scale: float = 0.3) -> object:
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [leaf + scale * jax.random.normal(k, jnp.shape(leaf))
                                               for leaf, k in zip(leaves, keys, strict=True)])
