"""Query policies over the history of queries and answers, and the batched rollout engine.

A policy maps the history of an episode to a distribution over the next query and, once the budget
T is spent, to a distribution over the hypotheses (the decision). Answers are i.i.d. given the
query, so the per-query ``counts`` and answer ``sums`` (with t = Σ counts) are a sufficient statistic
of the history; every policy here, learned or classical (:mod:`hybridrl.active.baselines`), is a pair
of pure functions of that statistic ([D] in ``docs/algorithms/lal.md``: an MLP or a permutation-
equivariant DeepSets network on it instead of a recurrent network over the raw sequence).

The learned policy's inductive biases (the reference's prototype, [P], revised where review found
them wanting):

* decision logits = β·plug-in score + a learned residual, with β = exp(learned log β) (starts at
  2.5), so the decision starts at the plug-in estimate, the gradient shapes the queries first, and
  Adam moves β by a fraction of itself per step rather than by a fixed amount;
* zero-initialised output layers: training starts from uniform queries;
* a learnable −α·count term on the query logits (``count_penalty_init``; 1 for bandits, which
  starts the policy near round-robin);
* inputs that respect each problem's invariances (:func:`query_features`): statistics relative to
  the current leader or version space or posterior, standardised by their standard errors and
  squashed, never the raw answer level; the thresholds policy is also averaged over the reflection
  of the line (exactly equivariant), and the DeepSets network makes the bandit policy
  permutation-equivariant. ``docs/algorithms/lal.md`` lists each problem's group.

Evaluation takes the argmax of the decision logits (:attr:`LearnedPolicy.argmax_decision`); the
sampled softmax decision of training is reported beside it.

The policy never sees θ, the class r or its index.

:func:`rollout` plays one episode; :func:`rollouts` plays ``num_rollouts`` episodes on each of a
batch of instances, all vmapped, in one compiled program. :func:`replay` recomputes an episode's
log-probabilities and decision under new parameters (teacher forcing), which is what the
policy-gradient needs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hybridrl.active.baselines import DETERMINISTIC, PolicyFunctions, information_gain
from hybridrl.active.problems import PLUGIN_RIDGE, ActiveProblem
from hybridrl.core.networks import MLP
from hybridrl.errors import ConfigError

Architecture = Literal["mlp", "deepsets"]
ARCHITECTURES: tuple[Architecture, ...] = ("mlp", "deepsets")


class Episode(NamedTuple):
    """One episode (leading batch axes when batched).

    :param queries: (T,) the query indices asked.
    :param answers: (T,) their answers.
    :param log_probs: (T,) log π(x_t | H_{t-1}) of each query.
    :param decision_probs: (m,) the final decision distribution over hypotheses.
    :param loss: the decision's Rao-Blackwellised loss (``problem.decision_loss``).
    """

    queries: jax.Array
    answers: jax.Array
    log_probs: jax.Array
    decision_probs: jax.Array
    loss: jax.Array


# --- The learned policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySettings:
    """The learned query policy's network.

    :param architecture: ``mlp`` (an MLP on all queries' features) or ``deepsets`` (a shared per-query
        network with mean- and max-pooled context; permutation-equivariant, for problems whose
        queries and hypotheses are the same symmetric set, e.g. best-arm identification).
    :param hidden_size: width of the hidden layers.
    :param num_layers: hidden layers of the trunk (DeepSets: of the per-query network).
    :param plugin_scale_init: initial β of the decision head's plug-in term.
    :param count_penalty_init: initial α of the −α·count query term.
    :param learned_decision: add the learned residual to the plug-in decision; ``False`` keeps the
        decision at β·plug-in (β still learned).
    """

    architecture: Architecture = "mlp"
    hidden_size: int = 64
    num_layers: int = 2
    plugin_scale_init: float = 2.5
    count_penalty_init: float = 0.0
    learned_decision: bool = True

    def validate(self, problem: ActiveProblem) -> None:
        """Raise :class:`ConfigError` if the network cannot serve ``problem``."""
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown policy architecture {self.architecture!r}; choose one of "
                              f"{', '.join(ARCHITECTURES)}")
        if self.hidden_size <= 0 or self.num_layers <= 0:
            raise ConfigError(f"policy hidden_size and num_layers must be positive, got {self.hidden_size} "
                              f"and {self.num_layers}")
        if self.architecture == "deepsets" and problem.num_queries != problem.num_hypotheses:
            raise ConfigError(f"the deepsets policy needs one hypothesis per query (best-arm identification); "
                              f"{problem.name} has {problem.num_queries} queries and {problem.num_hypotheses} "
                              "hypotheses: use --policy-architecture mlp")


def query_features(problem: ActiveProblem, counts: jax.Array, sums: jax.Array) -> jax.Array:
    """Per-query features ``(n, F)`` that respect the problem's invariances (the module docstring).

    Every problem: the share of the budget spent on the query and whether it was asked. Then:

    - bandit: each arm's standardised gap to the leader (the best empirical mean among asked arms),
      ``(μ_L − μ_i) / (σ·sqrt(1/n_i + 1/n_L))``, the leader's own entry being its gap to the
      runner-up, and a leader flag; all of it unchanged by a common shift of the means;
    - thresholds: the point's answer t-statistic, its signed position relative to the current best
      threshold (the plug-in argmax), and how firmly the version space labels it: the plug-in
      score's margin over the best threshold that labels the point the other way, standardised;
    - twenty questions: under the posterior over objects, the predictive answer, the expected
      information gain, the agreement of the point's answers with the MAP object, plus the
      posterior's largest weight and entropy;
    - jester: the standardised score gap of each joke to the least-squares leader (the leader's:
      to the runner-up), a leader flag, and the share of the leading gap's variance a query of it
      would remove.

    Standardised statistics are squashed by ``tanh(·/2)``: instances projected onto a class boundary
    can be huge, and beyond a few standard errors only the sign matters.
    """
    budget_share = counts / problem.budget
    asked = (counts > 0).astype(jnp.float32)
    extra = _FEATURES[problem.name](problem, counts, sums) if problem.name in _FEATURES else \
        _t_statistic_features(problem, counts, sums)
    return jnp.concatenate([budget_share[:, None], asked[:, None], extra], axis=-1)


def _squash(statistic: jax.Array) -> jax.Array:
    return jnp.tanh(statistic / 2.0)


def _t_statistic_features(problem: ActiveProblem, counts: jax.Array, sums: jax.Array) -> jax.Array:
    """The answers' t-statistic about the problem's answer centre (problems without a feature rule)."""
    statistic = (sums - problem.answer_center * counts) / (problem.answer_scale * jnp.sqrt(jnp.maximum(counts, 1.0)))
    return _squash(statistic)[:, None]


def _leader_relative(scores: jax.Array, gap_std: Callable[[jax.Array, jax.Array], jax.Array], eligible: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """Standardised gaps ``(s_L − s_i) / sd(s_L − s_i)`` to the leader L = argmax of the eligible scores
    (the leader's entry: its gap to the runner-up) and the leader flag; zeros where not eligible."""
    masked = jnp.where(eligible, scores, -jnp.inf)
    leader = jnp.argmax(masked)
    runner = jnp.argmax(masked.at[leader].set(-jnp.inf))
    indices = jnp.arange(scores.shape[0])
    gaps = (scores[leader] - scores) / jnp.maximum(gap_std(leader, indices), 1e-12)
    margin = (scores[leader] - scores[runner]) / jnp.maximum(gap_std(leader, runner), 1e-12)
    has_runner = eligible[runner] & (runner != leader)
    is_leader = (indices == leader) & eligible.any()
    relative = jnp.where(is_leader, jnp.where(has_runner, margin, 0.0), jnp.where(eligible, gaps, 0.0))
    return _squash(relative), is_leader.astype(jnp.float32)


def _bandit_features(problem: ActiveProblem, counts: jax.Array, sums: jax.Array) -> jax.Array:
    pulls = jnp.maximum(counts, 1.0)
    means = sums / pulls

    def gap_std(a: jax.Array, b: jax.Array) -> jax.Array:
        return problem.noise_std * jnp.sqrt(1.0 / pulls[a] + 1.0 / pulls[b])

    relative, is_leader = _leader_relative(means, gap_std, counts > 0)
    return jnp.stack([relative, is_leader], axis=-1)


def _thresholds_features(problem: ActiveProblem, counts: jax.Array, sums: jax.Array) -> jax.Array:
    n = problem.num_queries
    sigma = problem.noise_std
    statistic = sums / (sigma * jnp.sqrt(jnp.maximum(counts, 1.0)))
    scores = problem.plugin_scores(counts, sums)  # (n + 1,): S_k = <z_k, sums>
    best = jnp.argmax(scores)
    points = jnp.arange(n)
    thresholds = jnp.arange(n + 1)
    position = (points + 0.5 - best) / n
    # The best threshold labelling point i the other way: k <= i if best labels it negative (i < best), else k > i.
    flips = jnp.where((points < best)[:, None], thresholds[None, :] <= points[:, None],
                      thresholds[None, :] > points[:, None])
    alternative = jnp.max(jnp.where(flips, scores[None, :], -jnp.inf), axis=-1)
    # S_best − S_k = 2·Σ ±sums over the points between them: its sd is 2σ·sqrt(their answers).
    low, high = jnp.minimum(points, best), jnp.maximum(points + 1, best)
    between = jnp.sum(jnp.where((points[None, :] >= low[:, None]) & (points[None, :] < high[:, None]),
                                counts[None, :], 0.0), axis=-1)
    margin = (scores[best] - alternative) / (2.0 * sigma * jnp.sqrt(jnp.maximum(between, 1.0)))
    return jnp.stack([_squash(statistic), position, _squash(margin)], axis=-1)


def _twenty_questions_features(problem: ActiveProblem, counts: jax.Array, sums: jax.Array) -> jax.Array:
    profiles = jnp.clip(jnp.asarray(problem.hypotheses), 1e-3, 1.0 - 1e-3)  # (m, n)
    weights = jax.nn.softmax(problem.plugin_scores(counts, sums))
    predictive = weights @ profiles
    gain = information_gain(weights, profiles) / math.log(2.0)
    best = profiles[jnp.argmax(weights)]
    agreement = (sums - best * counts) / (0.5 * jnp.sqrt(jnp.maximum(counts, 1.0)))
    posterior_entropy = -jnp.sum(weights * jnp.log(jnp.maximum(weights, 1e-12))) / math.log(weights.shape[0])
    context = jnp.broadcast_to(jnp.stack([jnp.max(weights), posterior_entropy]), (counts.shape[0], 2))
    return jnp.concatenate([jnp.stack([2.0 * predictive - 1.0, gain, _squash(agreement)], axis=-1), context], -1)


def _linear_features(problem: ActiveProblem, counts: jax.Array, sums: jax.Array) -> jax.Array:
    queries = jnp.asarray(problem.queries)
    hypotheses = jnp.asarray(problem.hypotheses)
    noise_var = problem.noise_std**2
    gram = (queries.T * counts) @ queries + PLUGIN_RIDGE * jnp.eye(problem.dim, dtype=jnp.float32)
    covariance = noise_var * jnp.linalg.inv(gram)
    scores = problem.plugin_scores(counts, sums)

    def gap_std(a: jax.Array, b: jax.Array) -> jax.Array:
        direction = hypotheses[a] - hypotheses[b]
        return jnp.sqrt(jnp.maximum(jnp.sum((direction @ covariance) * direction, axis=-1), 0.0))

    relative, is_leader = _leader_relative(scores, gap_std, jnp.ones(scores.shape[0], bool))
    masked = scores.at[jnp.argmax(scores)].set(-jnp.inf)
    gap_direction = hypotheses[jnp.argmax(scores)] - hypotheses[jnp.argmax(masked)]
    gap_variance = gap_direction @ covariance @ gap_direction
    cov_x = queries @ covariance
    removed = (cov_x @ gap_direction) ** 2 / (noise_var + jnp.sum(cov_x * queries, axis=1))
    share = removed / jnp.maximum(gap_variance, 1e-12)
    features = [relative, is_leader] if problem.num_queries == problem.num_hypotheses else []
    return jnp.stack([*features, share], axis=-1)


_FEATURES: dict[str, Callable[[ActiveProblem, jax.Array, jax.Array], jax.Array]] = {
    "bandit": _bandit_features,
    "thresholds": _thresholds_features,
    "twenty-questions": _twenty_questions_features,
    "jester": _linear_features,
}


class HistoryPolicyNetwork(nn.Module):
    """Query and decision logits from the history features (see the module docstring)."""

    num_queries: int
    num_hypotheses: int
    settings: PolicySettings

    @nn.compact
    def __call__(self, features: jax.Array, progress: jax.Array, plugin: jax.Array, counts: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
        settings = self.settings
        hidden = [settings.hidden_size] * settings.num_layers
        # β on a log scale: Adam's steps are relative, so β can sharpen by orders of magnitude.
        log_plugin_scale = self.param("log_plugin_scale",
                                      nn.initializers.constant(math.log(settings.plugin_scale_init)), ())
        count_penalty = self.param("count_penalty", nn.initializers.constant(settings.count_penalty_init), ())
        zeros = nn.initializers.zeros
        if settings.architecture == "mlp":
            trunk = MLP(hidden, activation="tanh", name="trunk")(jnp.concatenate([features.ravel(), progress[None]]))
            query_score = nn.Dense(self.num_queries, kernel_init=zeros, name="query_head")(trunk)
            residual = nn.Dense(self.num_hypotheses, kernel_init=zeros, name="decision_head")(trunk)
        else:
            per_query = jnp.concatenate([features, jnp.broadcast_to(progress, (features.shape[0], 1))], axis=-1)
            embedded = MLP(hidden, activation="tanh", name="per_query")(per_query)
            context = jnp.concatenate([embedded.mean(axis=0), embedded.max(axis=0)])
            joint = jnp.concatenate([embedded, jnp.broadcast_to(context, (features.shape[0], context.shape[0]))], -1)
            mixed = nn.tanh(nn.Dense(settings.hidden_size, name="mix")(joint))
            heads = nn.Dense(2, kernel_init=zeros, name="heads")(mixed)
            query_score, residual = heads[:, 0], heads[:, 1]
        query_logits = query_score - count_penalty * counts
        decision_logits = jnp.exp(log_plugin_scale) * plugin
        if settings.learned_decision:
            decision_logits = decision_logits + residual
        return query_logits, decision_logits


class LearnedPolicy:
    """A :class:`HistoryPolicyNetwork` for one problem, as :class:`PolicyFunctions`.

    The function sets are created once, so they can be static arguments of compiled functions
    without recompiling:

    - ``functions``: sampled queries and the softmax decision (training: the decision's loss is
      Rao-Blackwellised over it, which gives the decision head exact gradients);
    - ``argmax_decision``: the same queries and the argmax of the same decision logits (evaluation);
    - ``plugin_decision``: the same queries and the argmax of the plain plug-in score (attribution).

    On thresholds the network's logits are averaged with those of the reflected history (the line
    read backwards with the answers negated, threshold k read as n − k), so the policy is exactly
    equivariant under the problem's reflection.

    :param problem: the problem the policy plays.
    :param settings: the network.
    """

    def __init__(self, problem: ActiveProblem, settings: PolicySettings) -> None:
        settings.validate(problem)
        self.problem = problem
        self.settings = settings
        self.network = HistoryPolicyNetwork(problem.num_queries, problem.num_hypotheses, settings)
        self.functions = PolicyFunctions(self._query_logits, self._decision_logits)
        self.argmax_decision = PolicyFunctions(self._query_logits, self._argmax_decision_logits)
        self.plugin_decision = PolicyFunctions(self._query_logits, self._plugin_decision_logits)

    def init(self, key: jax.Array) -> Any:
        """Fresh parameters (uniform queries, plug-in decision)."""
        n = self.problem.num_queries
        zeros = jnp.zeros(n, jnp.float32)
        return self.network.init(key, query_features(self.problem, zeros, zeros), jnp.float32(0.0),
                                 jnp.zeros(self.problem.num_hypotheses, jnp.float32), zeros)

    def _network_outputs(self, params: Any, counts: jax.Array, sums: jax.Array, t: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
        features = query_features(self.problem, counts, sums)
        progress = jnp.asarray(t, jnp.float32) / self.problem.budget
        plugin = self.problem.plugin_scores(counts, sums)
        outputs: Any = self.network.apply(params, features, progress, plugin, counts)
        return outputs[0], outputs[1]

    def _outputs(self, params: Any, counts: jax.Array, sums: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        queries, decisions = self._network_outputs(params, counts, sums, t)
        if self.problem.name != "thresholds":
            return queries, decisions
        reflected_queries, reflected_decisions = self._network_outputs(params, counts[::-1], -sums[::-1], t)
        return 0.5 * (queries + reflected_queries[::-1]), 0.5 * (decisions + reflected_decisions[::-1])

    def _query_logits(self, params: Any, counts: jax.Array, sums: jax.Array, t: jax.Array) -> jax.Array:
        return self._outputs(params, counts, sums, t)[0]

    def _decision_logits(self, params: Any, counts: jax.Array, sums: jax.Array) -> jax.Array:
        return self._outputs(params, counts, sums, jnp.int32(self.problem.budget))[1]

    def _argmax_decision_logits(self, params: Any, counts: jax.Array, sums: jax.Array) -> jax.Array:
        logits = self._decision_logits(params, counts, sums)
        return DETERMINISTIC * jax.nn.one_hot(jnp.argmax(logits), logits.shape[0])

    def _plugin_decision_logits(self, params: Any, counts: jax.Array, sums: jax.Array) -> jax.Array:
        # The attribution variant: the learned queries with the plain argmax plug-in decision.
        plugin = self.problem.plugin_scores(counts, sums)
        return DETERMINISTIC * jax.nn.one_hot(jnp.argmax(plugin), plugin.shape[0])

    def plugin_scale(self, params: Any) -> float:
        """β, the learned sharpness of the decision's plug-in term."""
        return float(jnp.exp(params["params"]["log_plugin_scale"]))


@functools.lru_cache(maxsize=32)
def learned_policy(problem: ActiveProblem, settings: PolicySettings) -> LearnedPolicy:
    """The :class:`LearnedPolicy` of ``problem`` and ``settings``, one object per pair, so every run
    of the same problem and network in a process reuses the compiled rollouts and updates."""
    return LearnedPolicy(problem, settings)


# --- Rollouts --------------------------------------------------------------------------------


def rollout(policy: PolicyFunctions, params: Any, problem: ActiveProblem, theta: jax.Array, key: jax.Array
            ) -> Episode:
    """Play one episode of ``problem.budget`` queries on instance ``theta``, then decide."""
    n = problem.num_queries

    def step(carry: tuple[jax.Array, jax.Array, jax.Array], step_key: jax.Array
             ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
        counts, sums, t = carry
        logits = policy.query_logits(params, counts, sums, t)
        query_key, answer_key = jax.random.split(step_key)
        query = jax.random.categorical(query_key, logits)
        log_prob = jax.nn.log_softmax(logits)[query]
        answer = problem.sample_answer(answer_key, theta, query)
        return (counts.at[query].add(1.0), sums.at[query].add(answer), t + 1), (query, answer, log_prob)

    start = (jnp.zeros(n, jnp.float32), jnp.zeros(n, jnp.float32), jnp.int32(0))
    (counts, sums, _), (queries, answers, log_probs) = jax.lax.scan(step, start,
                                                                    jax.random.split(key, problem.budget))
    decision_probs = jax.nn.softmax(policy.decision_logits(params, counts, sums))
    return Episode(queries=queries, answers=answers, log_probs=log_probs, decision_probs=decision_probs,
                   loss=problem.decision_loss(theta, decision_probs))


def rollouts(policy: PolicyFunctions, params: Any, problem: ActiveProblem, thetas: jax.Array, key: jax.Array,
             num_rollouts: int) -> Episode:
    """``num_rollouts`` independent episodes on each instance of ``thetas`` (B, d): fields (B, M, ...)."""
    keys = jax.random.split(key, thetas.shape[0] * num_rollouts)
    keys = keys.reshape((thetas.shape[0], num_rollouts, *keys.shape[1:]))

    def on_instance(theta: jax.Array, instance_keys: jax.Array) -> Episode:
        return jax.vmap(lambda episode_key: rollout(policy, params, problem, theta, episode_key))(instance_keys)

    return jax.vmap(on_instance)(thetas, keys)


def replay(policy: PolicyFunctions, params: Any, problem: ActiveProblem, queries: jax.Array, answers: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    """Σ_t log π(x_t | H_{t-1}) and the decision distribution of a recorded episode under ``params``."""
    n = problem.num_queries

    def step(carry: tuple[jax.Array, jax.Array, jax.Array], observed: tuple[jax.Array, jax.Array]
             ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], jax.Array]:
        counts, sums, t = carry
        query, answer = observed
        log_prob = jax.nn.log_softmax(policy.query_logits(params, counts, sums, t))[query]
        return (counts.at[query].add(1.0), sums.at[query].add(answer), t + 1), log_prob

    start = (jnp.zeros(n, jnp.float32), jnp.zeros(n, jnp.float32), jnp.int32(0))
    (counts, sums, _), log_probs = jax.lax.scan(step, start, (queries, answers))
    return log_probs.sum(), jax.nn.softmax(policy.decision_logits(params, counts, sums))


def leave_one_out_baseline(losses: jax.Array) -> jax.Array:
    """Per-rollout baseline: the mean loss of the *other* rollouts of the same instance (last axis).

    It does not depend on the rollout it baselines, so the policy gradient stays unbiased.
    """
    count = losses.shape[-1]
    if count < 2:
        raise ConfigError("the leave-one-out baseline needs at least 2 rollouts per instance")
    return (losses.sum(axis=-1, keepdims=True) - losses) / (count - 1)


def policy_names(classes: Sequence[float]) -> list[str]:
    """Names of the per-class policies: ``class-r0.5`` … (one per class boundary r)."""
    return [f"class-r{r:g}" for r in classes]


__all__ = [
    "ARCHITECTURES",
    "Episode",
    "HistoryPolicyNetwork",
    "LearnedPolicy",
    "PolicySettings",
    "learned_policy",
    "leave_one_out_baseline",
    "policy_names",
    "query_features",
    "replay",
    "rollout",
    "rollouts",
]
