"""AM-Q off-policy evaluation (Uni-O4 §1.5, ``dynamics_eval.rollout``): score policies by the
learned critic along rollouts in the learned dynamics model.

From every start state s_0 each policy π_p acts with its deterministic action
``a_t = clip(μ_p(s̃_t), −1, 1)`` in the model for H steps, and

    Ĵ(π_p) = Σ_{i,t} alive_{p,i,t} · Q̂(s̃_{p,i,t}, a_{p,i,t}) / Σ_{i,t} alive_{p,i,t},   t = 0..H−1,

the mean of Q̂ over all (start, t) pairs still alive, where s̃ = (s − mean) / std is the
normalised state (the policy and the critic see normalised states, the model raw ones; Uni-O4
pitfall 7). Model rewards are unused. A branch dies, and stays dead, once the termination
function flags its next state, or once the model predicts a non-finite state (a guard against
blow-up on long horizons, Uni-O4 pitfall 11; the reference has none): its terminal state is not
scored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from hybridrl.offline.dynamics import DynamicsModel, DynamicsState, TerminationFn, dynamics_step

PolicyActionFn = Callable[[Any, jax.Array], jax.Array]
"""``policy_action(params, normalised_observations) -> actions``: one policy's deterministic
(mean) action for a batch (S, obs_dim) of normalised observations, (S, action_dim)."""

QValueFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
"""``q_value(params, normalised_observations, actions) -> q``: the critic's value (e.g. the min
over a double Q) for a batch, (S,)."""


def amq_scores(policy_params: Any, q_params: Any, dynamics_state: DynamicsState, start_observations: jax.Array,
               observation_mean: jax.Array, observation_std: jax.Array, key: jax.Array, *,
               policy_action: PolicyActionFn, q_value: QValueFn, dynamics_model: DynamicsModel,
               termination: TerminationFn, horizon: int, sample: bool = True) -> jax.Array:
    """AM-Q scores Ĵ(π_p) of P policies, evaluated together (one jitted call); the scores of
    :func:`amq_rollouts`, whose docs say more."""
    scores, _ = amq_rollouts(policy_params, q_params, dynamics_state, start_observations, observation_mean,
                             observation_std, key, policy_action=policy_action, q_value=q_value,
                             dynamics_model=dynamics_model, termination=termination, horizon=horizon, sample=sample)
    return scores


@functools.partial(jax.jit, static_argnames=("policy_action", "q_value", "dynamics_model", "termination", "horizon",
                                             "sample"))
def amq_rollouts(policy_params: Any, q_params: Any, dynamics_state: DynamicsState, start_observations: jax.Array,
                 observation_mean: jax.Array, observation_std: jax.Array, key: jax.Array, *,
                 policy_action: PolicyActionFn, q_value: QValueFn, dynamics_model: DynamicsModel,
                 termination: TerminationFn, horizon: int, sample: bool = True) -> tuple[jax.Array, jax.Array]:
    """AM-Q scores Ĵ(π_p) of P policies and their survival in the model, evaluated together (one
    jitted call).

    Every policy starts from the same start states and the model draws from the same key for all
    of them (common random numbers: start state i of every policy sees the same noise and elite
    choice at step t), so differences between policies are paired. All P × S branches go through
    one batched model call per step; the horizon is a ``lax.scan``. The keyword-only arguments
    are static: pass the same (hashable) objects each time, e.g. module-level functions or one
    ``functools.partial`` kept around, or every call recompiles.

    :param policy_params: the P policies' parameters, every leaf stacked on a leading axis P.
    :param q_params: the critic's parameters (shared by all policies).
    :param dynamics_state: the trained ensemble.
    :param start_observations: raw start states (S, obs_dim), e.g. dataset states.
    :param observation_mean: mean of the state normaliser the policies and critic were trained with.
    :param observation_std: its standard deviation (already floored; used as is).
    :param key: PRNG key of the model's draws (unused when ``sample`` is false).
    :param policy_action: deterministic action of one policy from normalised observations (static).
    :param q_value: critic value from normalised observations and actions (static).
    :param dynamics_model: the dynamics ensemble's architecture (static).
    :param termination: ``next_observations (S, obs_dim) -> terminated (S,)`` on raw
        observations, e.g. :func:`hybridrl.offline.dynamics.termination_function` (static).
    :param horizon: model steps H per branch (static); Q is scored at t = 0..H−1.
    :param sample: pass to :func:`dynamics_step`: draw from a random elite (the reference) or
        use the elites' mean (static).
    :returns: the scores, shape (P,), and each policy's mean survival in the model, the steps its
        branches stay alive within the horizon (at most H), shape (P,): compare with the real
        env's ``eval/length_capped_mean`` (:func:`hybridrl.core.evaluation.evaluate_policy`).
    """
    num_policies = jax.tree_util.tree_leaves(policy_params)[0].shape[0]
    observations = jnp.broadcast_to(start_observations, (num_policies, *start_observations.shape))
    alive = jnp.ones(observations.shape[:2], dtype=bool)

    def act_and_score(params: Any, normalized: jax.Array) -> tuple[jax.Array, jax.Array]:
        actions = jnp.clip(policy_action(params, normalized), -1.0, 1.0)
        return actions, q_value(q_params, normalized, actions)

    def model_step(step_key: jax.Array, raw: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
        next_observations, _ = dynamics_step(dynamics_model, dynamics_state, raw, actions, step_key, sample)
        ended = termination(next_observations) | ~jnp.all(jnp.isfinite(next_observations), axis=-1)
        return next_observations, ended

    def rollout_step(carry: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
                     step_key: jax.Array) -> tuple[tuple[jax.Array, jax.Array, jax.Array, jax.Array], None]:
        observations, alive, q_sum, alive_count = carry
        normalized = (observations - observation_mean) / observation_std
        actions, q = jax.vmap(act_and_score)(policy_params, normalized)
        q_sum = q_sum + jnp.sum(jnp.where(alive, q, 0.0), axis=1)
        alive_count = alive_count + jnp.sum(alive, axis=1)
        # vmap over policies with an unbatched key: the same draws for every policy (paired).
        next_observations, ended = jax.vmap(model_step, in_axes=(None, 0, 0))(step_key, observations, actions)
        alive = alive & ~ended
        # A dead branch keeps its last live state, so no NaN or inf enters later computations.
        observations = jnp.where(alive[..., None], next_observations, observations)
        return (observations, alive, q_sum, alive_count), None

    initial = (observations, alive, jnp.zeros(num_policies, jnp.float32), jnp.zeros(num_policies, jnp.int32))
    (_, _, q_sum, alive_count), _ = jax.lax.scan(rollout_step, initial, jax.random.split(key, horizon))
    # Every branch is alive at t = 0, so alive_count >= S > 0.
    return q_sum / alive_count, alive_count / start_observations.shape[0]
