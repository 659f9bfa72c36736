"""Tests of ensemble behaviour cloning (hybridrl.offline.bc): each loss on hand-computed values, the
"paper" gradient being BC's scaled by 1 + alpha, one member, learning a toy policy, the KL variant's
extra diversity, and determinism."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl.core.distributions import DiagGaussian
from hybridrl.core.networks import member_params
from hybridrl.data.dataset import TransitionBatch
from hybridrl.errors import ConfigError
from hybridrl.offline.bc import (
    BCSettings,
    BCState,
    bc_train_steps,
    bc_update,
    best_other_member,
    ensemble_distribution,
    init_bc_state,
    kl_bc_loss,
    make_bc_networks,
    max_other_log_prob,
    mean_pairwise_kl,
    member_losses,
    pairwise_kl,
    paper_bc_loss,
    plain_bc_loss,
)
from hybridrl.testing import assert_trees_equal

OBSERVATION_DIM, ACTION_DIM = 3, 2

# lp[i, b] = log pi_i(a_b | s_b) for three members and two samples.
LOG_PROBS = jnp.array([[-1.0, -2.0], [-3.0, -0.5], [-2.0, -1.0]])


def small_settings(**overrides: Any) -> BCSettings:
    values: dict[str, Any] = dict(num_members=3, hidden=(32, 32), learning_rate=3e-3, batch_size=64)
    return BCSettings(**{**values, **overrides})


def toy_data(size: int = 256, noise: float = 0.05, seed: int = 0) -> tuple[TransitionBatch, np.ndarray]:
    """``a = tanh(W s) + noise``; returns the dataset and the noiseless actions."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(OBSERVATION_DIM, ACTION_DIM))
    observations = rng.normal(size=(size, OBSERVATION_DIM)).astype(np.float32)
    clean = np.tanh(observations @ weights).astype(np.float32)
    actions = (clean + noise * rng.normal(size=clean.shape)).astype(np.float32)
    zeros = jnp.zeros(size)
    data = TransitionBatch(observations=jnp.asarray(observations), actions=jnp.asarray(actions), rewards=zeros,
                           next_observations=jnp.asarray(observations), terminations=zeros.astype(bool),
                           truncations=zeros.astype(bool))
    return data, clean


def train(settings: BCSettings, data: TransitionBatch, num_steps: int, seed: int = 0) -> tuple[Any, BCState, Any]:
    networks = make_bc_networks(settings, ACTION_DIM)
    state = init_bc_state(settings, ACTION_DIM, OBSERVATION_DIM, jax.random.PRNGKey(seed))
    state, metrics = bc_train_steps(state, data, num_steps, networks=networks, settings=settings)
    return networks, state, metrics


# --------------------------------------------------------------------------------------------
# Losses on hand-computed values
# --------------------------------------------------------------------------------------------


def test_other_members_best_log_prob_and_index() -> None:
    np.testing.assert_array_equal(max_other_log_prob(LOG_PROBS), [[-2.0, -0.5], [-1.0, -1.0], [-1.0, -0.5]])
    np.testing.assert_array_equal(best_other_member(LOG_PROBS), [[2, 1], [0, 2], [0, 1]])


def test_plain_and_paper_losses() -> None:
    np.testing.assert_allclose(plain_bc_loss(LOG_PROBS), [1.5, 1.75, 1.5])
    two = LOG_PROBS[:2]
    # member 0: mean(1 - 0.1 (-1 + 3), 2 - 0.1 (-2 + 0.5)) = mean(0.8, 2.15)
    # member 1: mean(3 - 0.1 (-3 + 1), 0.5 - 0.1 (-0.5 + 2)) = mean(3.2, 0.35)
    np.testing.assert_allclose(paper_bc_loss(two, 0.1), [1.475, 1.775], rtol=1e-6)


def test_kl_loss_picks_the_best_other_member_and_clips() -> None:
    # KL[i, j, b] = 10 i + j + 0.1 b, clipped at 15.
    i, j, b = np.meshgrid(np.arange(3), np.arange(3), np.arange(2), indexing="ij")
    kl = jnp.asarray(10.0 * i + j + 0.1 * b)
    # member 0: partners (2, 1) -> KL (2, 1.1): mean(1 - 0.2, 2 - 0.11) = 1.345
    # member 1: partners (0, 2) -> KL (10, 12.1): mean(3 - 1.0, 0.5 - 1.21) = 0.645
    # member 2: partners (0, 1) -> KL (20, 21.1), clipped to 15: mean(2 - 1.5, 1 - 1.5) = 0
    np.testing.assert_allclose(kl_bc_loss(LOG_PROBS, kl, alpha=0.1, max_kl=15.0), [1.345, 0.645, 0.0], atol=1e-6)
    # clipped KL passes no gradient
    grad = jax.grad(lambda k: kl_bc_loss(LOG_PROBS, k, 0.1, 15.0).sum())(kl)
    assert float(grad[2].sum()) == 0.0
    assert float(grad[0, 2, 0]) == pytest.approx(-0.1 / 2)


def test_pairwise_kl_closed_form() -> None:
    # member 0: N(0, std 1); member 1: N(1, std e^-1), in one dimension, at one state.
    distribution = DiagGaussian(mean=jnp.array([[[0.0]], [[1.0]]]), log_std=jnp.array([[[0.0]], [[-1.0]]]))
    kl_01 = -1.0 + (1.0 + 1.0) / (2.0 * math.exp(-2.0)) - 0.5  # log(s1/s0) + (s0^2 + d^2) / (2 s1^2) - 1/2
    kl_10 = 1.0 + (math.exp(-2.0) + 1.0) / 2.0 - 0.5  # log(s0/s1) + (s1^2 + d^2) / (2 s0^2) - 1/2
    np.testing.assert_allclose(pairwise_kl(distribution)[:, :, 0], [[0.0, kl_01], [kl_10, 0.0]], rtol=1e-5,
                               atol=1e-6)
    assert float(mean_pairwise_kl(distribution)) == pytest.approx((kl_01 + kl_10) / 2.0, rel=1e-5)


def test_settings_reject_impossible_values() -> None:
    with pytest.raises(ConfigError, match="diversity"):
        BCSettings(diversity="both")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_members"):
        BCSettings(num_members=0)
    with pytest.raises(ConfigError, match="log_std_bounds"):
        BCSettings(log_std_bounds=(0.0, -5.0))


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


def _tiny_ensemble(num_members: int) -> tuple[Any, Any, jax.Array, jax.Array]:
    settings = BCSettings(num_members=num_members, hidden=(4,))
    networks = make_bc_networks(settings, ACTION_DIM)
    params = init_bc_state(settings, ACTION_DIM, OBSERVATION_DIM, jax.random.PRNGKey(0)).params
    data, _ = toy_data(size=8)
    return networks, params, data.observations, data.actions


def _loss_gradient(networks: Any, params: Any, observations: jax.Array, actions: jax.Array,
                   settings: BCSettings, member: int | None = None) -> Any:
    def total(p: Any) -> jax.Array:
        losses = member_losses(ensemble_distribution(networks, p, observations), actions, settings)
        return jnp.sum(losses) if member is None else losses[member]

    return jax.grad(total)(params)


def test_paper_gradient_is_bc_gradient_times_one_plus_alpha() -> None:
    networks, params, observations, actions = _tiny_ensemble(3)
    paper_settings = BCSettings(num_members=3, hidden=(4,), diversity="paper")
    plain_settings = BCSettings(num_members=3, hidden=(4,), diversity="none")
    paper = _loss_gradient(networks, params, observations, actions, paper_settings)
    plain = _loss_gradient(networks, params, observations, actions, plain_settings)
    for got, want in zip(jax.tree_util.tree_leaves(paper), jax.tree_util.tree_leaves(plain), strict=True):
        # float32: the two sums round differently, so compare at the gradient's scale
        np.testing.assert_allclose(got, 1.1 * np.asarray(want), rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # Adam ignores a constant gradient scale (up to eps): a "paper" step is a plain BC step.
    state = init_bc_state(paper_settings, ACTION_DIM, OBSERVATION_DIM, jax.random.PRNGKey(0))
    data, _ = toy_data(size=8)
    after_paper, _ = bc_update(state, data, networks=networks, settings=paper_settings)
    after_plain, _ = bc_update(state, data, networks=networks, settings=plain_settings)
    for got, want in zip(jax.tree_util.tree_leaves(after_paper.params), jax.tree_util.tree_leaves(after_plain.params),
                         strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_kl_gradient_differs_and_moves_only_its_own_member() -> None:
    networks, params, observations, actions = _tiny_ensemble(3)
    settings = BCSettings(num_members=3, diversity="kl")
    grad = _loss_gradient(networks, params, observations, actions, settings, member=0)
    for leaf in jax.tree_util.tree_leaves(grad):
        assert np.any(np.asarray(leaf[0]) != 0.0)
        np.testing.assert_array_equal(leaf[1:], np.zeros_like(leaf[1:]))  # the partner is detached
    full = _loss_gradient(networks, params, observations, actions, settings)
    plain = _loss_gradient(networks, params, observations, actions, BCSettings(num_members=3, diversity="none"))
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(full),
                                                      jax.tree_util.tree_leaves(plain), strict=True))


@pytest.mark.parametrize("diversity", ["paper", "kl", "none"])
def test_one_member_is_plain_bc(diversity: str) -> None:
    networks, params, observations, actions = _tiny_ensemble(1)
    settings = BCSettings(num_members=1, hidden=(4,), diversity=diversity)  # type: ignore[arg-type]
    plain = _loss_gradient(networks, params, observations, actions, BCSettings(num_members=1, diversity="none"))
    grad = _loss_gradient(networks, params, observations, actions, settings)
    assert_trees_equal(grad, plain)
    data, _ = toy_data(size=8)
    state = init_bc_state(settings, ACTION_DIM, OBSERVATION_DIM, jax.random.PRNGKey(0))
    _, metrics = bc_update(state, data, networks=networks, settings=settings)
    assert all(np.isfinite(float(value)) for value in metrics.values())
    assert float(metrics["bc/loss"]) == pytest.approx(float(metrics["bc/nll"]), rel=1e-6)
    assert float(metrics["bc/disagreement_kl"]) == 0.0


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def test_bc_learns_a_toy_policy() -> None:
    settings = small_settings(num_members=2, diversity="paper")
    data, clean = toy_data(noise=0.05)
    networks = make_bc_networks(settings, ACTION_DIM)
    initial = init_bc_state(settings, ACTION_DIM, OBSERVATION_DIM, jax.random.PRNGKey(0))
    initial_distribution = ensemble_distribution(networks, initial.params, data.observations)
    initial_nll = -float(initial_distribution.log_prob(data.actions).mean())
    state, metrics = bc_train_steps(initial, data, 1500, networks=networks, settings=settings)
    distribution = ensemble_distribution(networks, state.params, data.observations)
    nll = -float(distribution.log_prob(data.actions).mean())
    assert nll < initial_nll - 10.0
    assert nll < -2.0  # a 0.05-std Gaussian fit of 2 dimensions has NLL about -3.1
    assert float(jnp.abs(distribution.mean - clean[None]).mean()) < 0.05
    np.testing.assert_allclose(np.asarray(distribution.log_std).mean(), math.log(0.05), atol=0.5)
    assert int(state.step) == 1500
    assert {"bc/nll_member_0", "bc/nll_member_1", "bc/disagreement_kl"} <= set(metrics)
    # A member acts on its own through the single policy and member_params.
    member = networks.policy.apply({"params": member_params(state.params, 1)}, data.observations)
    assert isinstance(member, DiagGaussian)
    np.testing.assert_allclose(member.mean, distribution.mean[1], rtol=1e-5, atol=1e-6)


def test_kl_diversity_spreads_members_that_still_fit_the_data() -> None:
    data, _ = toy_data()
    results = {}
    for diversity in ("paper", "kl"):
        settings = small_settings(diversity=diversity)
        networks, state, _ = train(settings, data, 1000)  # same key: same initial ensemble
        distribution = ensemble_distribution(networks, state.params, data.observations)
        results[diversity] = (float(mean_pairwise_kl(distribution)),
                              -float(distribution.log_prob(data.actions).mean()))
    (paper_kl, paper_nll), (kl_kl, kl_nll) = results["paper"], results["kl"]
    assert kl_kl > 2.0 * paper_kl
    assert kl_nll < -2.0  # init is about +190 nats
    assert kl_nll < paper_nll + 1.0  # alpha * max_kl = 1 nat bounds what diversity may cost


def test_training_is_deterministic_for_a_key() -> None:
    data, _ = toy_data(size=64)
    settings = small_settings(diversity="kl", batch_size=16)
    _, first, first_metrics = train(settings, data, 30, seed=5)
    _, second, second_metrics = train(settings, data, 30, seed=5)
    assert_trees_equal(first, second)
    assert_trees_equal(first_metrics, second_metrics)
    _, other, _ = train(settings, data, 30, seed=6)
    assert not np.array_equal(jax.tree_util.tree_leaves(other.params)[0], jax.tree_util.tree_leaves(first.params)[0])


# --------------------------------------------------------------------------------------------
# The `bc` baseline as a run
# --------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("minari_root")
def test_bc_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.algorithms import get_algorithm
    from hybridrl.testing import interrupt_run, metrics_without_timing

    spec = get_algorithm("bc")
    config = spec.make_config("smoke", dataset="hopper-medium-v5", seed=1)
    whole = runs.start(spec, config, tmp_path / "whole")
    assert whole.final["step"] == 200 and "eval/normalized_score" in whole.final
    interrupted = tmp_path / "interrupted"
    interrupt_run(spec, config, interrupted, stop_at_step=100)
    resumed = runs.resume(interrupted)
    assert resumed.final["eval/return_mean"] == whole.final["eval/return_mean"]
    assert metrics_without_timing(whole.run_dir) == metrics_without_timing(interrupted)


@pytest.mark.usefixtures("minari_root")
def test_bc_errors_for_bad_input(tmp_path: Path) -> None:
    from hybridrl import runs
    from hybridrl.data import DatasetError

    with pytest.raises(DatasetError, match="Walker2d-v5"):
        runs.train("bc", preset="smoke", dataset="hopper-medium-v5", env="Walker2d-v5", run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="--steps"):
        runs.train("bc", preset="smoke", dataset="hopper-medium-v5", steps=0, run_dir=tmp_path / "b")
