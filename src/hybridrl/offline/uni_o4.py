"""Uni-O4 (Lei et al., ICLR 2024, arXiv:2311.03351): offline-to-online RL with one on-policy
objective.

Offline phase, from a fixed dataset (stages of one run, each resumable):

1. **Critic.** IQL's double Q and expectile V (:mod:`hybridrl.offline.iql`), trained once and
   frozen. The advantage of the whole offline phase is ``A(s, a) = min(Q1, Q2)(s, a) - V(s)``.
2. **Dynamics.** A Gaussian ensemble over (Δs, r) with elites picked on a holdout
   (:mod:`hybridrl.offline.dynamics`); it exists only to evaluate policies (AM-Q).
3. **Ensemble behaviour cloning.** ``n`` Gaussian policies with the disagreement objective
   (Eq. 6; :mod:`hybridrl.offline.bc`).
4. **Offline multi-step PPO.** Each member ``i`` optimises the clipped objective against its
   reference (behaviour) policy ``pi_i^k``: actions ``a ~ pi_i^k(.|s)`` at dataset states,
   ``r = pi_i(a|s) / pi_i^k(a|s)``, ``L_i = -E[min(r A, clip(r, 1 - eps, 1 + eps) A)]`` with ``A``
   normalised per batch. Every ``ope_interval`` steps AM-Q (:mod:`hybridrl.offline.ope`) scores
   every member by the mean of ``Q(s_t, pi_i(s_t))`` along deterministic rollouts in the learned
   model; a member whose score beats its best so far becomes its own new reference
   (``pi_i^{k+1} <- pi_i``). Rejected members keep training against the old reference.
5. **Selection.** The policy the gate accepted: the reference of the member whose accepted
   reference has the best AM-Q score, which is a BC policy when AM-Q accepted no PPO iterate,
   so the returned policy never scores below BC by AM-Q. The released code returns the last PPO
   iterate of the member with the best last AM-Q score, accepted or not (``--offline-policy
   last-iterate``); it also peeked at online returns of the top three
   (``--select-with-online-evals``, off by default).

Online phase: PPO (:class:`hybridrl.rl.ppo.PPOTrainer`) initialised from the selected policy and
the offline V, states normalised with the dataset's frozen statistics, with the paper's
conservative settings (clip 0.05, policy step size about 1e-5, entropy 0.01).

``docs/algorithms/uni-o4.md`` lists every deviation from the official code and the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization, struct

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.checkpoint import load_checkpoint
from hybridrl.core.distributions import DiagGaussian
from hybridrl.core.evaluation import ActFunction
from hybridrl.core.io import atomic_write_text
from hybridrl.core.logging import METRICS_FILE, read_metrics
from hybridrl.core.networks import GaussianPolicy, ValueHead
from hybridrl.core.seeding import Seeder
from hybridrl.errors import CheckpointError, ConfigError, RunDirectoryError
from hybridrl.experiments.statistics import ope_fidelity, spearman
from hybridrl.offline import bc, dynamics, iql, ope
from hybridrl.offline.common import (
    ONLINE_DIR,
    OfflineToOnlineConfig,
    OfflineToOnlineTrainer,
    Phase,
    Stage,
    StateNormalizer,
    gaussian_mean_policy,
    host_scalars,
    read_offline_run,
)
from hybridrl.rl.ppo import PPOConfig, PPONetworks, PPOTrainer, PPOTrainState, make_optimizer

# --------------------------------------------------------------------------------------------
# Config and presets
# --------------------------------------------------------------------------------------------


@dataclass
class UniO4Config(OfflineToOnlineConfig):
    """Uni-O4 options. ``hybridrl train uni-o4 --help`` shows each with its preset default."""

    phase: Phase = "both"
    """Which phases to run: offline (critic, dynamics, BC, offline PPO), online (needs --offline-run), or both."""
    # -- critic (IQL) -------------------------------------------------------------------------
    critic_steps: int = 2_000_000
    """Gradient steps of the IQL critic."""
    critic_batch_size: int = 512
    """Critic minibatch size."""
    critic_learning_rate: float = 1e-4
    """Adam step size of Q and V."""
    q_hidden: tuple[int, ...] = (1024, 1024)
    """Hidden widths of each Q network."""
    value_hidden: tuple[int, ...] = (512, 512, 512)
    """Hidden widths of V (also the online critic)."""
    expectile: float = 0.7
    """Expectile tau of V's loss."""
    gamma: float = 0.99
    """Discount factor (both phases)."""
    polyak: float = 0.005
    """Target-Q averaging rate."""
    target_update_period: int = 2
    """Gradient steps between target updates (the code: 2)."""
    timeouts_as_terminals: bool = True
    """Treat time-limit truncations as terminals offline, as the original code does."""
    # -- ensemble behaviour cloning ---------------------------------------------------------------
    num_policies: int = 4
    """Ensemble size n."""
    policy_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of each policy."""
    policy_activation: str = "relu"
    """Hidden activation of the policies (the code uses tanh for halfcheetah)."""
    bc_steps: int = 400_000
    """Gradient steps of ensemble BC."""
    bc_batch_size: int = 512
    """BC minibatch size."""
    bc_learning_rate: float = 1e-4
    """BC Adam step size."""
    bc_alpha: float = 0.1
    """Weight alpha of the disagreement term (Eq. 6)."""
    bc_diversity: Literal["paper", "kl", "none"] = "paper"
    """Disagreement term: paper (the official code; gradient = BC x (1 + alpha)), kl (real diversity) or none."""
    # -- dynamics model -------------------------------------------------------------------------
    dynamics_members: int = 7
    """Dynamics ensemble size."""
    dynamics_elites: int = 5
    """Members used in rollouts (lowest holdout error)."""
    dynamics_hidden: tuple[int, ...] = (200, 200, 200, 200)
    """Hidden widths of each dynamics member."""
    dynamics_learning_rate: float = 1e-3
    """Dynamics Adam step size."""
    dynamics_batch_size: int = 256
    """Dynamics minibatch size."""
    dynamics_max_steps: int = 200_000
    """Cap on dynamics gradient steps (training stops earlier once the holdout error stalls)."""
    dynamics_eval_every: int = 1_000
    """Gradient steps between holdout checks."""
    dynamics_patience: int = 5
    """Holdout checks without a 1 % improvement before dynamics training stops."""
    # -- offline multi-step PPO with AM-Q -------------------------------------------------------
    ppo_steps: int = 10_000
    """Offline PPO gradient steps (each updates every member once)."""
    ppo_batch_size: int = 512
    """Dataset states per offline PPO step (shared by the members)."""
    ppo_learning_rate: float = 1e-4
    """Initial step size, decayed linearly to 0."""
    ppo_clip: float = 0.25
    """Initial clip epsilon."""
    ppo_clip_decay_until: int = 200
    """The clip decays as eps (1 - t / T) until this step, then stays (code: 200; --ppo-steps: full decay; 0: none)."""
    ppo_max_grad_norm: float = 0.5
    """Per-member gradient-norm clip."""
    ope_interval: int = 100
    """Offline PPO steps between AM-Q evaluations (and reference-policy replacements)."""
    ppo_critic_actions: Literal["clip", "raw"] = "clip"
    """Actions the critic scores in offline PPO's advantage: the reference's samples clipped to the
    bounds [-1, 1] (where the data lie), or raw (the code's: most samples fall outside them)."""
    ppo_patience: int = 0
    """Stop a member's offline PPO after this many AM-Q rounds without an accepted iterate (0: never, the code's)."""
    ope_true_episodes: int = 0
    """Also evaluate every member's iterate for this many real episodes at each AM-Q round and log
    the rank correlation of AM-Q with the true return (0: off; the benchmark turns it on)."""
    ope_horizon: int = 1000
    """Model rollout length of AM-Q."""
    ope_start_states: int = 512
    """Dataset states AM-Q rolls out from (drawn once per run)."""
    ope_sample_model: bool = True
    """Sample model steps from a random elite (the code; a fixed key pairs the scores); False: the elites' mean."""
    select_with_online_evals: bool = False
    """Pick the policy to fine-tune among AM-Q's top 3 by online returns (the original code; costs env steps)."""
    offline_policy: Literal["gated", "last-iterate"] = "gated"
    """The offline policy of each member: gated = its last reference AM-Q accepted (BC where none was),
    the paper's; last-iterate = its last offline PPO iterate, whatever AM-Q said (the released code's)."""
    reuse_stages_from: str = ""
    """Start at offline PPO with the critic, dynamics model and BC ensemble of another Uni-O4 run
    (past its BC stage, trained with the same options for those stages), taking its metrics up to
    there as this run's: an ablation of offline PPO's options costs only its own stage. A run
    directory, or a folder of runs (e.g. a sweep's output), searched for the run with this run's
    dataset, seed and stage options. '' trains every stage."""
    # -- online PPO fine-tuning ---------------------------------------------------------------------
    online_rollout_steps: int = 2048
    """Environment steps per PPO update (one env)."""
    online_minibatch_size: int = 128
    """PPO minibatch size."""
    online_epochs: int = 10
    """PPO epochs K per update."""
    online_learning_rate: float = 1e-5
    """Policy step size."""
    online_value_learning_rate: float = 2e-4
    """Value step size."""
    online_clip: float = 0.05
    """PPO clip epsilon (also the value clip)."""
    online_entropy_coef: float = 0.01
    """Entropy bonus."""
    online_reward_scale: float = 1.0
    """Constant reward scale online (the code's 'number' strategy: 0.1 on hopper); V is scaled to match."""
    online_eval_interval: int = 20_000
    """Evaluate every this many environment steps online."""
    online_checkpoint_interval: int = 20_000
    """Checkpoint every this many environment steps online."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix for every impossible setting."""
        self.validate_offline()
        positive = ("critic_steps", "critic_batch_size", "num_policies", "bc_steps", "bc_batch_size",
                    "dynamics_members", "dynamics_elites", "dynamics_batch_size", "dynamics_max_steps",
                    "dynamics_eval_every", "ppo_steps", "ppo_batch_size", "ope_interval", "ope_horizon",
                    "ope_start_states", "online_steps", "online_rollout_steps", "online_minibatch_size",
                    "online_epochs", "target_update_period")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.dynamics_elites > self.dynamics_members:
            raise ConfigError(f"--dynamics-elites ({self.dynamics_elites}) cannot exceed --dynamics-members "
                              f"({self.dynamics_members})")
        if self.online_rollout_steps % self.online_minibatch_size:
            raise ConfigError(f"--online-rollout-steps ({self.online_rollout_steps}) must be a multiple of "
                              f"--online-minibatch-size ({self.online_minibatch_size})")
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"--expectile must lie in (0, 1), got {self.expectile}")
        if self.ppo_patience < 0 or self.ope_true_episodes < 0:
            raise ConfigError("--ppo-patience and --ope-true-episodes must be >= 0 (0 turns them off)")
        if self.reuse_stages_from and self.phase == "online":
            raise ConfigError("--reuse-stages-from starts the offline phase from another run's stages; with "
                              "--phase online the offline phase is --offline-run's: drop one of them")
        self.validate_phase("uni-o4")


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds, for tests.
    "smoke": dict(critic_steps=200, critic_batch_size=64, q_hidden=(32, 32), value_hidden=(32, 32),
                  num_policies=2, policy_hidden=(32, 32), bc_steps=200, bc_batch_size=64,
                  dynamics_members=3, dynamics_elites=2, dynamics_hidden=(32, 32), dynamics_batch_size=64,
                  dynamics_max_steps=200, dynamics_eval_every=100, ppo_steps=40, ppo_batch_size=64,
                  ope_interval=20, ope_horizon=10, ope_start_states=16, online_steps=512,
                  online_rollout_steps=256, online_minibatch_size=64, online_epochs=2, eval_interval=0,
                  eval_episodes=1, checkpoint_interval=100, log_interval=100, online_eval_interval=0,
                  online_checkpoint_interval=256),
    # One dataset x seed in about twenty minutes on 2 cores: the paper's architecture families at a
    # quarter of the width and a fraction of the steps (docs/algorithms/uni-o4.md, "Presets"). The
    # dynamics model gets 100k steps: with 10k its rollouts ended a third of real episodes early
    # (benchmarks/results/dynamics_fidelity.json), and the reference's early stopping had not
    # triggered by 150k steps.
    # The critic's targets track every step (the code: every 2nd) to make up for 40x fewer steps.
    "cpu": dict(critic_steps=50_000, critic_batch_size=256, critic_learning_rate=3e-4, target_update_period=1,
                q_hidden=(256, 256),
                value_hidden=(256, 256), policy_hidden=(256, 256), bc_steps=20_000, bc_batch_size=256,
                bc_learning_rate=3e-4, dynamics_members=5, dynamics_elites=3, dynamics_hidden=(200, 200, 200),
                dynamics_max_steps=100_000, ppo_steps=3_000, ppo_batch_size=256, ope_horizon=200,
                ope_start_states=128, eval_interval=10_000, eval_episodes=10, checkpoint_interval=5_000,
                online_steps=100_000, online_eval_interval=10_000),
    # The reference's hyper-parameters (section 2): 4 members, IQL 2x1024 / 3x512, 2M critic steps,
    # 10k offline PPO steps, OPE every 100 steps with horizon 1000; 1M online steps.
    "paper": dict(eval_interval=50_000, checkpoint_interval=50_000, log_interval=1_000),
}

#: Per-environment online settings from the code's fine-tuning scripts (reference section 2).
TASK_SETTINGS: dict[str, dict[str, Any]] = {
    "hopper": dict(online_learning_rate=1e-5, online_epochs=10, online_reward_scale=0.1),
    "walker2d": dict(online_learning_rate=1e-5, online_epochs=20, online_reward_scale=1.0),
    "halfcheetah": dict(online_learning_rate=3e-5, online_epochs=30, online_reward_scale=1.0,
                        policy_activation="tanh"),
}


#: Options that act only from offline PPO on (or only on logging and evaluation): a run may take the
#: critic, dynamics and BC stages of a run that differs from it in these alone (``reuse_stages_from``).
PPO_STAGE_OPTIONS = frozenset({
    "preset", "phase", "offline_run", "reuse_stages_from", "eval_interval", "eval_episodes", "final_eval_episodes",
    "ppo_steps", "ppo_batch_size", "ppo_learning_rate", "ppo_clip", "ppo_clip_decay_until", "ppo_max_grad_norm",
    "ppo_critic_actions", "ppo_patience", "ope_interval", "ope_true_episodes", "ope_horizon", "ope_sample_model",
    "select_with_online_evals", "offline_policy", *(field.name for field in dataclasses.fields(UniO4Config)
                                                    if field.name.startswith("online_"))})


def stage_option_differences(config: UniO4Config, other: UniO4Config) -> list[str]:
    """The options of the critic, dynamics and BC stages in which ``other`` differs from ``config``."""
    return [f"--{field.name.replace('_', '-')} {getattr(other, field.name)!r} there, "
            f"{getattr(config, field.name)!r} here" for field in dataclasses.fields(config)
            if field.name not in PPO_STAGE_OPTIONS and getattr(other, field.name) != getattr(config, field.name)]


def find_stages_run(source: Path, config: UniO4Config) -> Path:
    """The run whose stages ``config`` reuses: ``source`` itself if it is a run directory, else the
    Uni-O4 run under ``source`` trained with ``config``'s stage options (dataset and seed included).

    :raises RunDirectoryError: there is no such run, or the run directory's stages differ.
    """
    from hybridrl.runs import CONFIG_FILE, read_run_config

    if (source / CONFIG_FILE).is_file():
        spec, other = read_run_config(source)
        if spec.name != "uni-o4":
            raise RunDirectoryError(f"--reuse-stages-from {source} is a {spec.name} run; pass a Uni-O4 run")
        if differences := stage_option_differences(config, other):
            raise RunDirectoryError(f"--reuse-stages-from {source} trained its critic, dynamics or BC with other "
                                    f"options ({'; '.join(differences)}); pass the same options, or leave "
                                    "--reuse-stages-from out to train every stage")
        return source
    if not source.is_dir():
        raise RunDirectoryError(f"--reuse-stages-from {source} does not exist; pass a Uni-O4 run directory or a "
                                "folder of runs")
    for path in sorted(source.rglob(CONFIG_FILE)):
        try:
            spec, other = read_run_config(path.parent)
        except (RunDirectoryError, ConfigError):
            continue
        # A run that itself reused stages is skipped: the run that trained them is the source.
        if spec.name == "uni-o4" and not other.reuse_stages_from and not stage_option_differences(config, other):
            return path.parent
    raise RunDirectoryError(f"--reuse-stages-from {source} holds no Uni-O4 run that trained its stages with this "
                            f"run's options (dataset {config.dataset!r}, seed {config.seed}); train that run first")


def task_presets(preset: str, values: Any) -> dict[str, Any]:
    """The per-environment online settings for the dataset's family (hopper, walker2d, halfcheetah)."""
    if preset == "smoke":
        return {}
    family = str(values.get("env") or values.get("dataset", "")).lower().split("-")[0].split("/")[-1]
    return dict(TASK_SETTINGS.get(family, {}))


# --------------------------------------------------------------------------------------------
# Offline multi-step PPO: state and the jitted update
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfflinePPOSettings:
    """What the jitted offline PPO chunk is specialised on."""

    total_steps: int
    batch_size: int
    learning_rate: float
    clip: float
    clip_decay_until: int
    max_grad_norm: float
    #: clip the reference's sampled actions to [-1, 1] before the critic scores them
    clip_critic_actions: bool = True
    #: AM-Q rounds without an accepted iterate after which a member stops (0: never)
    patience: int = 0


@struct.dataclass
class OfflinePPOState:
    """Offline PPO's state: the members, their reference policies and best AM-Q scores.

    Every array has a leading member axis except ``key`` and ``step``. ``stale_rounds`` counts each
    member's AM-Q rounds since its last accepted iterate (its patience, ``--ppo-patience``).
    """

    params: Any
    reference_params: Any
    opt_state: optax.OptState
    best_scores: jax.Array
    key: jax.Array
    step: jax.Array
    stale_rounds: jax.Array


def _member_optimizer(max_grad_norm: float) -> optax.GradientTransformation:
    # Clipping and Adam moments per member (the code has one optimiser per policy); the step size
    # is applied outside so its schedule can live in the scan.
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam())


def clip_schedule(step: jax.Array, settings: OfflinePPOSettings) -> jax.Array:
    """``eps * (1 - min(t, t_stop) / T)``: the code's clip decay, frozen after ``clip_decay_until``."""
    frozen_at = jnp.minimum(step, settings.clip_decay_until).astype(jnp.float32)
    return settings.clip * (1.0 - frozen_at / settings.total_steps)


def offline_ppo_loss(params: Any, reference_params: Any, observations: jax.Array, key: jax.Array,
                     clip: jax.Array, critic_params: Any, *, policy: GaussianPolicy,
                     critic: iql.IQLNetworks, clip_critic_actions: bool = True
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One member's clipped objective at dataset states, with actions from its reference policy.

    ``A = min(Q1, Q2)(s, a) - V(s)`` of the frozen critic, standardised over the batch; no entropy
    term (as the code). The ratio is of the sampled action's densities; with
    ``clip_critic_actions`` the critic scores the sample clipped to [-1, 1], where the dataset's
    actions lie (the code scores the raw sample, mostly outside them).
    """
    reference = cast(DiagGaussian, policy.apply({"params": reference_params}, observations))
    actions = jax.lax.stop_gradient(reference.sample(key))
    reference_log_probs = jax.lax.stop_gradient(reference.log_prob(actions))
    scored = jnp.clip(actions, -1.0, 1.0) if clip_critic_actions else actions
    advantages = iql.advantage(critic, critic_params, observations, scored)
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    distribution = cast(DiagGaussian, policy.apply({"params": params}, observations))
    log_ratio = distribution.log_prob(actions) - reference_log_probs
    ratio = jnp.exp(log_ratio)
    loss = -jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * advantages).mean()
    metrics = {"loss": loss, "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
               "clip_fraction": (jnp.abs(ratio - 1.0) > clip).mean(),
               "actions_outside_bounds": (jnp.abs(actions) > 1.0).mean()}
    return loss, metrics


@functools.partial(jax.jit, static_argnames=("num_steps", "policy", "critic", "settings"))
def offline_ppo_steps(state: OfflinePPOState, observations: jax.Array, critic_params: Any, num_steps: int, *,
                      policy: GaussianPolicy, critic: iql.IQLNetworks, settings: OfflinePPOSettings
                      ) -> tuple[OfflinePPOState, dict[str, jax.Array]]:
    """``num_steps`` offline PPO steps of every member (vmapped), as one ``lax.scan``.

    :param observations: every (normalised) dataset state; each step samples a batch shared by
        the members.
    :returns: the new state and metrics averaged over the steps (per member where it matters).
    """
    optimizer = _member_optimizer(settings.max_grad_norm)
    gradient = jax.grad(functools.partial(offline_ppo_loss, policy=policy, critic=critic,
                                          clip_critic_actions=settings.clip_critic_actions), has_aux=True)
    member_gradient = jax.vmap(gradient, in_axes=(0, 0, None, 0, None, None))
    # Members out of patience keep their parameters and optimiser state (their keys are still drawn,
    # so the others' random streams do not depend on who stopped).
    active = (state.stale_rounds < settings.patience) if settings.patience > 0 else \
        jnp.ones_like(state.stale_rounds, dtype=bool)

    def where_active(new: Any, old: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda n, o: jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old)

    def step(carry: OfflinePPOState, _: None) -> tuple[OfflinePPOState, dict[str, jax.Array]]:
        key, batch_key, *member_keys = jax.random.split(carry.key, 2 + state.best_scores.shape[0])
        indices = jax.random.randint(batch_key, (settings.batch_size,), 0, observations.shape[0])
        clip = clip_schedule(carry.step, settings)
        grads, metrics = member_gradient(carry.params, carry.reference_params, observations[indices],
                                         jnp.stack(member_keys), clip, critic_params)
        updates, opt_state = jax.vmap(optimizer.update)(grads, carry.opt_state, carry.params)
        learning_rate = settings.learning_rate * (1.0 - carry.step.astype(jnp.float32) / settings.total_steps)
        params = jax.tree_util.tree_map(lambda p, u: p - learning_rate * u, carry.params, updates)
        params, opt_state = where_active(params, carry.params), where_active(opt_state, carry.opt_state)
        metrics = {**metrics, "learning_rate": learning_rate, "clip": clip, "active_members": active.sum()}
        return dataclasses.replace(carry, params=params, opt_state=opt_state, key=key, step=carry.step + 1), metrics

    state, metrics = jax.lax.scan(step, state, None, length=num_steps)
    return state, jax.tree_util.tree_map(lambda value: value.mean(axis=0), metrics)


def replace_improved_references(state: OfflinePPOState, scores: jax.Array) -> tuple[OfflinePPOState, jax.Array]:
    """The AM-Q gate: members whose score beats their best become their own reference policy.

    :returns: the new state and the boolean mask of replaced members.
    """
    improved = scores > state.best_scores

    def pick(new: jax.Array, old: jax.Array) -> jax.Array:
        mask = improved.reshape((-1,) + (1,) * (new.ndim - 1))
        return jnp.where(mask, new, old)

    reference = jax.tree_util.tree_map(pick, state.params, state.reference_params)
    return dataclasses.replace(state, reference_params=reference,
                               best_scores=jnp.where(improved, scores, state.best_scores),
                               stale_rounds=jnp.where(improved, 0, state.stale_rounds + 1)), improved


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


@struct.dataclass
class OfflineArtefacts:
    """Everything the offline phase learns: the checkpoint's device state."""

    critic: iql.IQLState
    dynamics: dynamics.DynamicsState
    behaviour: bc.BCState
    ppo: OfflinePPOState
    ope_start_observations: jax.Array
    selected: jax.Array


DYNAMICS_FIT_BLOB = "dynamics_fit"


class UniO4Trainer(OfflineToOnlineTrainer):
    """Runs Uni-O4's offline stages and its online fine-tuning in one run directory (laid out as
    :class:`OfflineToOnlineTrainer`'s: ``checkpoint.ckpt`` holds the offline artefacts, and step 0
    of ``online/`` evaluates the selected offline policy)."""

    algorithm = "uni-o4"

    def __init__(self, config: UniO4Config, run_dir: Path, progress: bool = False) -> None:
        # With --phase online every offline setting comes from the offline run being fine-tuned.
        offline_config = read_offline_run(config, "uni-o4") if config.phase == "online" else config
        super().__init__(offline_config, run_dir, progress)
        self.config: UniO4Config = config
        self.offline_config = offline_config
        data, oc = self.data, offline_config
        seeder = Seeder(oc.seed)
        keys = jax.random.split(seeder.jax_key("uni-o4"), 5)
        self.critic_settings = iql.IQLSettings(
            q_hidden=oc.q_hidden, value_hidden=oc.value_hidden, activation="relu", gamma=oc.gamma,
            expectile=oc.expectile, polyak=oc.polyak, target_update_period=oc.target_update_period,
            critic_learning_rate=oc.critic_learning_rate, batch_size=oc.critic_batch_size,
            timeouts_as_terminals=oc.timeouts_as_terminals)
        self.critic = iql.make_iql_networks(self.critic_settings, data.action_dim)
        self.bc_settings = bc.BCSettings(
            num_members=oc.num_policies, hidden=oc.policy_hidden, activation=oc.policy_activation,
            learning_rate=oc.bc_learning_rate, batch_size=oc.bc_batch_size, alpha=oc.bc_alpha,
            diversity=oc.bc_diversity)
        self.behaviour = bc.make_bc_networks(self.bc_settings, data.action_dim)
        self.policy: GaussianPolicy = self.behaviour.policy
        self.dynamics_settings = dynamics.DynamicsSettings(
            num_members=oc.dynamics_members, num_elites=oc.dynamics_elites, hidden_sizes=oc.dynamics_hidden,
            learning_rate=oc.dynamics_learning_rate, batch_size=oc.dynamics_batch_size,
            eval_every=oc.dynamics_eval_every, patience=oc.dynamics_patience, max_steps=oc.dynamics_max_steps)
        self.dynamics_model = dynamics.make_dynamics_model(self.dynamics_settings, data.observation_dim,
                                                           data.action_dim)
        self.termination = dynamics.termination_function(data.env_id)
        self.ppo_settings = OfflinePPOSettings(oc.ppo_steps, oc.ppo_batch_size, oc.ppo_learning_rate, oc.ppo_clip,
                                               oc.ppo_clip_decay_until, oc.ppo_max_grad_norm,
                                               clip_critic_actions=oc.ppo_critic_actions == "clip",
                                               patience=oc.ppo_patience)
        behaviour_state = bc.init_bc_state(self.bc_settings, data.action_dim, data.observation_dim, keys[1])
        starts = seeder.numpy("ope-starts").integers(0, len(data.dataset), size=oc.ope_start_states)
        self.artefacts = OfflineArtefacts(
            critic=iql.init_iql_state(self.critic, self.critic_settings, data.observation_dim, data.action_dim,
                                      keys[0]),
            dynamics=dynamics.init_dynamics_state(self.dynamics_model, keys[2]),
            behaviour=behaviour_state,
            ppo=self._init_ppo(behaviour_state.params["members"], keys[3]),
            ope_start_observations=data.dataset.transitions.observations[jnp.asarray(starts)],
            selected=jnp.zeros((), jnp.int32))
        self.dynamics_key = keys[4]
        # One fixed key for every AM-Q call: scores of different rounds are paired (same start
        # states, same model noise), so the gate compares policies, not noise.
        self.ope_key = jax.random.fold_in(keys[4], 1)
        self.policy_selected = False
        # The dynamics fit while its stage runs (and its checkpointed piece, until it is continued).
        self.dynamics_fit: dynamics.DynamicsFit | None = None
        self.dynamics_fit_bytes: bytes | None = None
        self.dynamics_trained = False
        if config.phase == "online":
            self.load_checkpoint(Path(config.offline_run) / "checkpoint.ckpt")
        elif config.reuse_stages_from and not (self.run_dir / "checkpoint.ckpt").is_file():
            self.reuse_stages(find_stages_run(Path(config.reuse_stages_from), config))

    def reuse_stages(self, source: Path) -> None:
        """Start at offline PPO with run ``source``'s critic, dynamics model and BC ensemble, its
        metrics up to there written as this run's (a fresh run only; ``reuse_stages_from``)."""
        ppo_start = sum(stage.total_steps for stage in self.stages()[:3])
        state, _, _, step = load_checkpoint(source / "checkpoint.ckpt", algorithm=self.algorithm,
                                            template=self.checkpoint_state())
        if step < ppo_start:
            raise RunDirectoryError(f"--reuse-stages-from {source} is at gradient step {step}, before offline PPO "
                                    f"(step {ppo_start}); finish its stages first (`hybridrl resume {source}`)")
        # PPO starts from the BC ensemble exactly as after this run's own BC stage (_train_bc): same
        # members, same key, so the result is the one a full run would give.
        self.artefacts = dataclasses.replace(
            state, ppo=self._init_ppo(state.behaviour.params["members"], self.artefacts.ppo.key),
            selected=jnp.zeros((), jnp.int32))
        lines = [line for line in read_metrics(source) if line["step"] <= ppo_start]
        atomic_write_text(self.run_dir / METRICS_FILE, "".join(json.dumps(line) + "\n" for line in lines))
        evaluations = [line for line in lines if "eval/return_mean" in line]
        self.step = ppo_start
        self.elapsed = float(lines[-1].get("time", 0.0)) if lines else 0.0
        self.last_eval = ({name: value for name, value in evaluations[-1].items() if name.startswith("eval/")}
                          if evaluations else {})
        self.last_eval_step = int(evaluations[-1]["step"]) if evaluations else -1
        self.dynamics_trained = True

    def _init_ppo(self, behaviour_params: Any, key: jax.Array) -> OfflinePPOState:
        optimizer = _member_optimizer(self.offline_config.ppo_max_grad_norm)
        members = self.offline_config.num_policies
        return OfflinePPOState(params=behaviour_params, reference_params=behaviour_params,
                               opt_state=jax.vmap(optimizer.init)(behaviour_params),
                               best_scores=jnp.full((members,), -jnp.inf, jnp.float32),
                               key=key, step=jnp.zeros((), jnp.int32), stale_rounds=jnp.zeros((members,), jnp.int32))

    # -- offline stages -------------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        """critic -> dynamics -> bc -> ppo (with AM-Q every ``ope_interval`` steps)."""
        oc = self.offline_config
        return [
            Stage("critic", oc.critic_steps, self._train_critic, evaluate=False),
            # In pieces of whole holdout checks, so the fit (half an hour at the cpu preset) is
            # checkpointed about every checkpoint_interval steps.
            Stage("dynamics", oc.dynamics_max_steps, self._train_dynamics,
                  chunk_size=max(1, oc.checkpoint_interval // oc.dynamics_eval_every) * oc.dynamics_eval_every,
                  evaluate=False),
            Stage("bc", oc.bc_steps, self._train_bc),
            Stage("ppo", oc.ppo_steps, self._train_ppo, chunk_size=oc.ope_interval),
        ]

    def _train_critic(self, steps: int) -> dict[str, float]:
        state, metrics = iql.iql_train_steps(self.artefacts.critic, self.data.transitions, steps,
                                             networks=self.critic, settings=self.critic_settings, train_policy=False)
        self.artefacts = dataclasses.replace(self.artefacts, critic=state)
        return {name.replace("iql/", "critic/"): value for name, value in host_scalars(metrics).items()}

    def _train_dynamics(self, steps: int) -> dict[str, float]:
        if self.dynamics_fit is None:
            if self.dynamics_trained:
                return {}  # stopped early; the stage's remaining steps are idle
            self.dynamics_fit = self._start_dynamics_fit()
        fit = self.dynamics_fit
        fit.train(steps)
        if fit.done:
            self.artefacts = dataclasses.replace(self.artefacts, dynamics=fit.state())
            self.dynamics_fit, self.dynamics_trained = None, True
        return {name.removeprefix("dynamics/"): value for name, value in fit.metrics().items()}

    def _start_dynamics_fit(self) -> dynamics.DynamicsFit:
        """A new fit, continued from the checkpoint's piece of it if the run stopped inside the stage."""
        raw = self.data.dataset.transitions
        fit = dynamics.DynamicsFit(raw.observations, raw.actions, raw.rewards, raw.next_observations,
                                   self.dynamics_settings, self.dynamics_key)
        if self.dynamics_fit_bytes is not None:
            try:
                fit.training = serialization.from_bytes(fit.training, self.dynamics_fit_bytes)
            except (ValueError, KeyError, TypeError) as error:
                raise CheckpointError(f"the checkpoint's dynamics fit in progress does not fit this run's "
                                      f"dynamics settings ({error}); start the run again in a new directory") from None
            self.dynamics_fit_bytes = None
            done_in_stage = self.step - self.offline_config.critic_steps
            if int(fit.training.steps) != done_in_stage:
                raise CheckpointError(f"the checkpoint's dynamics fit has {int(fit.training.steps)} steps, but "
                                      f"the run is {done_in_stage} steps into the dynamics stage; the checkpoint "
                                      "is inconsistent: start the run again in a new directory")
        return fit

    def _train_bc(self, steps: int) -> dict[str, float]:
        state, metrics = bc.bc_train_steps(self.artefacts.behaviour, self.data.transitions, steps,
                                           networks=self.behaviour, settings=self.bc_settings)
        # Offline PPO starts from (and is evaluated as) the current BC ensemble.
        self.artefacts = dataclasses.replace(self.artefacts, behaviour=state,
                                                ppo=self._init_ppo(state.params["members"], self.artefacts.ppo.key))
        return host_scalars(metrics)

    def _train_ppo(self, steps: int) -> dict[str, float]:
        ppo_state = self.artefacts.ppo
        if not bool(jnp.isfinite(ppo_state.best_scores).all()):
            # The BC policies' own scores are the bar the first replacement must clear.
            ppo_state = dataclasses.replace(ppo_state, best_scores=self.ope_scores(ppo_state.params))
        ppo_state, metrics = offline_ppo_steps(ppo_state, self.data.transitions.observations,
                                               iql.critic_params(self.artefacts.critic), steps, policy=self.policy,
                                               critic=self.critic, settings=self.ppo_settings)
        scores, survival = self.ope_rollouts(ppo_state.params)
        ppo_state, improved = replace_improved_references(ppo_state, scores)
        # Gated: the member whose accepted reference AM-Q scores best (its best score is that reference's);
        # last-iterate: the member whose current iterate scores best.
        ranking = ppo_state.best_scores if self.offline_config.offline_policy == "gated" else scores
        self.artefacts = dataclasses.replace(self.artefacts, ppo=ppo_state,
                                             selected=jnp.argmax(ranking).astype(jnp.int32))
        saturation = mean_action_saturation(self.policy, ppo_state.params, self._ope_start_normalized)
        host_metrics, host_scores, host_survival, host_improved, host_saturation = jax.device_get(
            (metrics, scores, survival, improved, saturation))
        scalars = host_scalars(host_metrics)
        scalars.update({f"ope/score_{index}": float(score) for index, score in enumerate(host_scores)})
        # Members drifting to the action bounds leave the data, where the model is least reliable.
        scalars.update({f"ope/mean_action_saturation_{index}": float(value)
                        for index, value in enumerate(host_saturation)})
        scalars.update({f"ope/model_survival_{index}": float(steps) for index, steps in enumerate(host_survival)})
        scalars["ope/replaced"] = float(np.sum(host_improved))
        if self.offline_config.ope_true_episodes:
            scalars.update(self.true_returns(np.asarray(host_scores)))
        return scalars

    def true_returns(self, scores: np.ndarray) -> dict[str, float]:
        """AM-Q's fidelity this round: every member's iterate evaluated in the real env
        (``ope_true_episodes`` episodes each) and the rank correlation of AM-Q with those returns
        across the members; the run's history of both lives in its metrics (``ope/true_return_i``)."""
        episodes = self.offline_config.ope_true_episodes
        params = self.artefacts.ppo.params
        evaluations = [self.evaluate_act(gaussian_mean_policy(
            self.policy, jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], params), self.data.normalizer),
            episodes, length_cap=self.offline_config.ope_horizon) for index in range(len(scores))]
        returns = np.asarray([evaluation["eval/return_mean"] for evaluation in evaluations])
        result = {f"ope/true_return_{index}": float(value) for index, value in enumerate(returns)}
        # Real survival within AM-Q's horizon, beside the model's (``ope/model_survival_<i>``).
        result.update({f"ope/true_survival_{index}": evaluation["eval/length_capped_mean"]
                       for index, evaluation in enumerate(evaluations)})
        result["ope/spearman"] = spearman(scores, returns)
        return result

    def ope_scores(self, policy_params: Any) -> jax.Array:
        """AM-Q scores of stacked ``policy_params`` (one per member) from the run's start states."""
        return self.ope_rollouts(policy_params)[0]

    def ope_rollouts(self, policy_params: Any) -> tuple[jax.Array, jax.Array]:
        """AM-Q scores and model survival (:func:`~hybridrl.offline.ope.amq_rollouts`) of stacked
        ``policy_params`` from the run's start states."""
        oc, normalizer = self.offline_config, self.data.normalizer
        return ope.amq_rollouts(
            policy_params, self.artefacts.critic.q_params, self.artefacts.dynamics,
            self.artefacts.ope_start_observations, jnp.asarray(normalizer.mean), jnp.asarray(normalizer.std),
            self.ope_key, policy_action=self._policy_action, q_value=self._q_value,
            dynamics_model=self.dynamics_model, termination=self.termination, horizon=oc.ope_horizon,
            sample=oc.ope_sample_model)

    @functools.cached_property
    def _ope_start_normalized(self) -> jax.Array:
        normalizer = self.data.normalizer
        return ((self.artefacts.ope_start_observations - jnp.asarray(normalizer.mean))
                / jnp.asarray(normalizer.std))

    @functools.cached_property
    def _policy_action(self) -> Any:
        # Built once: jit caches on the identity of these static callables.
        return functools.partial(mean_action, self.policy)

    @functools.cached_property
    def _q_value(self) -> Any:
        return functools.partial(iql.min_q, self.critic)

    def after_stages(self) -> None:
        """Pick the policy to fine-tune (once): the last AM-Q argmax, or by online returns (option)."""
        if self.policy_selected:
            return
        if self.offline_config.select_with_online_evals:
            self.artefacts = dataclasses.replace(self.artefacts,
                                                 selected=jnp.asarray(self.released_selection(), jnp.int32))
        self.policy_selected = True

    #: Offset of the selection episodes' seeds from the evaluation's, so that the episodes that pick
    #: a policy are not the ones that score it.
    SELECTION_SEED_OFFSET = 100_000

    def released_selection(self) -> int:
        """The released code's choice of the policy to fine-tune: of the 3 offline policies AM-Q
        scores best, the one with the best mean return over ``eval_episodes`` real episodes (a small
        online budget; episodes of their own seeds)."""
        scores = np.asarray(jax.device_get(self.ope_scores(self.offline_policies())))
        candidates = [int(index) for index in np.argsort(-scores)[: min(3, len(scores))]]
        returns = [self.evaluate_act(self.member_policy(index), self.offline_config.eval_episodes,
                                     seed=self.eval_seed + self.SELECTION_SEED_OFFSET)["eval/return_mean"]
                   for index in candidates]
        return candidates[int(np.argmax(returns))]

    def data_level(self) -> float | None:
        """The dataset's own level: the normalised mean return of its episodes."""
        return self.data.normalized_score(float(np.mean(self.data.dataset.episode_returns())))

    def bc_score(self) -> float | None:
        """The BC ensemble's last evaluation (normalised), before offline PPO moved it."""
        ppo_start = sum(stage.total_steps for stage in self.stages()[:3])
        scores = [line["eval/normalized_score"] for line in read_metrics(self.run_dir)
                  if "eval/normalized_score" in line and line["step"] <= ppo_start]
        return float(scores[-1]) if scores else None

    def released_selection_score(self) -> dict[str, Any]:
        """What the released code's selection (:meth:`released_selection`) would have returned, scored
        on the same episodes as the returned policy's final evaluation: the gate's AM-Q-only choice
        against AM-Q's top 3 screened online, from the same trained artefacts."""
        # With --select-with-online-evals the selected policy is already this choice (same rule, same episodes).
        member = (int(self.artefacts.selected) if self.offline_config.select_with_online_evals
                  else self.released_selection())
        result = self.evaluate_act(self.member_policy(member), self.config.final_eval_episodes or
                                   self.config.eval_episodes)
        scores: dict[str, Any] = {"offline/released_selection_member": member,
                                  "offline/released_selection_return_mean": result["eval/return_mean"]}
        if "eval/normalized_score" in result:
            scores["offline/released_selection_normalized_score"] = result["eval/normalized_score"]
        return scores

    def ope_fidelity(self) -> dict[str, float]:
        """AM-Q's rank correlation with true returns over the run's rounds (:func:`ope_fidelity`),
        read back from its metrics log (so a resumed run counts every round)."""
        members = self.offline_config.num_policies
        rounds = [line for line in read_metrics(self.run_dir) if "ope/true_return_0" in line]
        scores = [[line[f"ope/score_{index}"] for index in range(members)] for line in rounds]
        returns = [[line[f"ope/true_return_{index}"] for index in range(members)] for line in rounds]
        return ope_fidelity(np.reshape(scores, (-1, members)), np.reshape(returns, (-1, members)))

    # -- acting and evaluation ----------------------------------------------------------------------

    def offline_policies(self) -> Any:
        """Every member's offline policy, stacked (``offline_policy``): its accepted reference (the BC
        policy until AM-Q accepts an iterate), or its last PPO iterate."""
        ppo = self.artefacts.ppo
        return ppo.reference_params if self.offline_config.offline_policy == "gated" else ppo.params

    def member_params(self, index: int) -> Any:
        """Host parameters of member ``index``'s offline policy (:meth:`offline_policies`)."""
        return jax.device_get(jax.tree_util.tree_map(lambda leaf: leaf[index], self.offline_policies()))

    def member_policy(self, index: int) -> ActFunction:
        """Policy ``index`` as a raw-observation -> mean-action function."""
        return gaussian_mean_policy(self.policy, self.member_params(index), self.data.normalizer)

    def deterministic_policy(self) -> ActFunction:
        """The online policy once fine-tuning has started, else the selected offline member."""
        if self.online_trainer is not None:
            return self.online_trainer.act_deterministic
        return self.member_policy(int(self.artefacts.selected))

    # -- the run ---------------------------------------------------------------------------------------

    def offline_final_metrics(self) -> dict[str, Any]:
        """The selected member, the data's and the BC start's levels and, with ``--ope-true-episodes``,
        AM-Q's rank correlation with true returns and the released code's selection."""
        final: dict[str, Any] = {"offline/selected_policy": int(self.artefacts.selected),
                                 "offline/data_normalized_score": self.data_level()}
        bc_score = self.bc_score()
        if bc_score is not None:
            final["offline/bc_normalized_score"] = bc_score
        if self.offline_config.ope_true_episodes:
            final.update({f"offline/ope_{name}": value for name, value in self.ope_fidelity().items()})
            final.update(self.released_selection_score())
        return final

    def online_config(self) -> PPOConfig:
        """The PPO config of fine-tuning (one env, the paper's conservative settings)."""
        config = self.config
        return PPOConfig(
            env=self.env_id, seed=config.seed, total_steps=config.online_steps, preset=config.preset, num_envs=1,
            num_steps=config.online_rollout_steps, learning_rate=config.online_learning_rate,
            value_learning_rate=config.online_value_learning_rate, anneal_lr=False, gamma=config.gamma,
            gae_lambda=0.95, update_epochs=config.online_epochs,
            num_minibatches=config.online_rollout_steps // config.online_minibatch_size,
            clip_coef=config.online_clip, clip_value_loss=True, normalize_advantages=True,
            entropy_coef=config.online_entropy_coef, value_coef=0.5, max_grad_norm=0.5,
            policy_hidden=self.offline_config.policy_hidden, value_hidden=self.offline_config.value_hidden,
            activation=self.offline_config.policy_activation, normalize_observations=False,
            normalize_rewards=False, reward_scale=config.online_reward_scale,
            eval_interval=config.online_eval_interval, eval_episodes=config.eval_episodes,
            checkpoint_interval=config.online_checkpoint_interval)

    def make_online_trainer(self) -> UniO4OnlineTrainer:
        """The PPO trainer of fine-tuning, initialised from the selected policy and the offline V."""
        online_config = self.online_config()
        online_config.validate()
        value_params = scale_value_output(self.artefacts.critic.value_params, self.config.online_reward_scale)
        networks = PPONetworks(policy=self.policy,
                               value=ValueHead(hidden_sizes=self.offline_config.value_hidden, activation="relu"))
        params = {"policy": self.member_params(int(self.artefacts.selected)), "value": jax.device_get(value_params)}
        return UniO4OnlineTrainer(online_config, self.run_dir / ONLINE_DIR, self.progress, networks, params,
                                  self.data.normalizer, self.data.normalized_score)

    def checkpoint_state(self) -> OfflineArtefacts:
        """The offline artefacts."""
        return self.artefacts

    def restore_checkpoint_state(self, state: OfflineArtefacts) -> None:
        """Take back :meth:`checkpoint_state` output."""
        self.artefacts = state

    def host_state(self) -> dict[str, Any]:
        """The loop's counters, whether the dynamics fit has ended and the policy to fine-tune been picked."""
        return {**super().host_state(), "policy_selected": self.policy_selected,
                "dynamics_trained": self.dynamics_trained}

    def restore_host_state(self, host: dict[str, Any]) -> None:
        """Take back :meth:`host_state` output."""
        super().restore_host_state(host)
        self.policy_selected = bool(host.get("policy_selected", False))
        # Checkpoints from before the fit was split were written only at the stage's boundaries.
        self.dynamics_trained = bool(host.get("dynamics_trained", False))

    def checkpoint_blobs(self) -> dict[str, bytes]:
        """The dynamics fit in progress, when the checkpoint falls inside its stage."""
        if self.dynamics_fit is None:
            return {}
        return {DYNAMICS_FIT_BLOB: serialization.to_bytes(self.dynamics_fit.training)}

    def restore_checkpoint_blobs(self, blobs: dict[str, bytes]) -> None:
        """Keep the dynamics fit in progress until its stage continues it."""
        self.dynamics_fit = None
        self.dynamics_fit_bytes = blobs.get(DYNAMICS_FIT_BLOB)

class UniO4OnlineTrainer(PPOTrainer):
    """PPO fine-tuning from given networks and parameters, with the dataset's frozen state normaliser.

    :param networks: the offline policy's architecture and a value network like the offline V.
    :param params: ``{"policy": ..., "value": ...}`` to start from.
    :param normalizer: the dataset's state normaliser (never updated online).
    :param normalized_score: the dataset's return -> score map, so scores match the offline phase's.
    """

    algorithm = "uni-o4-online"

    def __init__(self, config: PPOConfig, run_dir: Path, progress: bool, networks: PPONetworks,
                 params: dict[str, Any], normalizer: StateNormalizer,
                 normalized_score: Any) -> None:
        super().__init__(config, run_dir, progress)
        self.networks = networks
        self.state_normalizer = normalizer
        self.normalized_score = normalized_score
        optimizer = make_optimizer(config.max_grad_norm, config.learning_rate, config.value_learning_rate_scale)
        params = jax.tree_util.tree_map(jnp.asarray, params)
        self.state = PPOTrainState(params=params, opt_state=optimizer.init(params), key=self.state.key)
        self._set_host_params(jax.device_get(self.state.params))

    def normalize(self, observations: np.ndarray) -> np.ndarray:
        """States standardised with the dataset's statistics (frozen, as offline)."""
        return cast(np.ndarray, self.state_normalizer(np.asarray(observations, dtype=np.float32)))

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Deterministic evaluation; the normalised score uses the dataset's reference returns."""
        from hybridrl.core.evaluation import evaluate_policy

        def act(observations: np.ndarray) -> np.ndarray:
            return np.clip(self.act_deterministic(observations), -1.0, 1.0)

        result = evaluate_policy(self.eval_env, act, episodes, self.eval_seed)
        score = self.normalized_score(result["eval/return_mean"])
        if score is not None:
            result["eval/normalized_score"] = score
        return result


# --------------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="policy")
def mean_action_saturation(policy: GaussianPolicy, stacked_params: Any, observations: jax.Array,
                           threshold: float = 0.99) -> jax.Array:
    """Per member of ``stacked_params``: the share of its mean action's components within 1 % of the
    bounds (|μ| ≥ ``threshold``; Uni-O4's means pass through tanh, so they approach ±1 without
    reaching it) on normalised ``observations``."""
    def saturation(params: Any) -> jax.Array:
        distribution = cast(DiagGaussian, policy.apply({"params": params}, observations))
        return jnp.mean(jnp.abs(distribution.mode()) >= threshold)

    return jax.vmap(saturation)(stacked_params)


def mean_action(policy: GaussianPolicy, params: Any, observations: jax.Array) -> jax.Array:
    """The policy's deterministic action (its mean, clipped to [-1, 1]) for normalised observations."""
    distribution = cast(DiagGaussian, policy.apply({"params": params}, observations))
    return jnp.clip(distribution.mode(), -1.0, 1.0)


def scale_value_output(value_params: Any, scale: float) -> Any:
    """V's parameters with its output layer multiplied by ``scale``: the value of rewards times ``scale``.

    Uni-O4's code refits a fresh V when it rescales rewards online; scaling the output layer is
    exact for a constant scale and keeps the offline V.
    """
    if scale == 1.0:
        return value_params
    output = value_params["mlp"]["output"]
    scaled = {"kernel": output["kernel"] * scale, "bias": output["bias"] * scale}
    return {**value_params, "mlp": {**value_params["mlp"], "output": scaled}}


def _report(run_dir: Path, final: dict[str, Any], title: str) -> tuple[Path, str]:
    from hybridrl.offline import uni_o4_report

    return uni_o4_report.plot(run_dir, final, title), uni_o4_report.summary_line(final)


def _make_trainer(config: UniO4Config, run_dir: Path, progress: bool) -> UniO4Trainer:
    return UniO4Trainer(config, run_dir, progress)


ALGORITHM = AlgorithmSpec(
    name="uni-o4",
    config_cls=UniO4Config,
    presets=PRESETS,
    make_trainer=_make_trainer,
    summary="Uni-O4: offline multi-step PPO with a BC ensemble and AM-Q, then online PPO fine-tuning",
    task_presets=task_presets,
    report=_report,
)

__all__ = ["ALGORITHM", "PRESETS", "TASK_SETTINGS", "OfflinePPOState", "UniO4Config", "UniO4OnlineTrainer",
           "UniO4Trainer", "offline_ppo_loss", "offline_ppo_steps", "replace_improved_references"]
