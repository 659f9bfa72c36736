"""AILBoost: adversarial imitation learning via boosting (Chang et al., ICLR 2024, arXiv:2404.08513).

AILBoost minimises the reverse KL ``KL(d^mix || d^E)`` between the occupancy of a *mixture* of
policies and the expert's. Each boosting round adds a weak learner (SAC trained on the
discriminator's reward ``D = log d^E/d^mix``, the functional gradient at the mixture) to the
mixture with weight ``alpha``:

After ``learning_starts`` uniform-random steps, every ``online_steps_per_learner`` online steps, one
round:

1. **add learner**: store a copy of the current actor's weights as weak learner ``k``;
2. **collect** ``samples_per_learner`` steps with it (stochastic actions, in an env of their own),
   as block ``B_k`` of the weighted buffer; these steps count on the run's x-axis;
3. **reweight**: block 1 gets mass ``(1 - alpha)^(k-1)``, block ``i >= 2`` gets
   ``alpha (1 - alpha)^(k-i)``: the occupancy of ``d_k = (1 - alpha) d_{k-1} + alpha d^{pi_k}``;
4. **discriminator**: ``discriminator_steps`` steps of the reverse-KL loss
   ``E_E[exp(-D)] + E_mix[D]`` (+ gradient penalty), its policy rows drawn from the weighted buffer
   (a block by mass, then a row uniformly inside it);
5. **replay reset**: SAC's replay becomes the collection blocks ``B_1..B_k``; the online steps until
   the next round are added to it, and the next round drops them again (the AILBoost code's
   aliasing of its two buffers, kept because it shaped the published numbers).

Between rounds the single, persistent SAC agent acts and learns (one update per ``update_every``
online steps) with rewards relabelled by the current discriminator at sample time.

**Evaluation.** The headline is the *current learner* (mean action), which is what the code
evaluates: its stored learners alias the live actor, so its "boosted" evaluation also runs the
current policy. We also evaluate the true mixture (``eval/mixture_*``): per episode, a stored
learner drawn by its mixture weight. Early on, that mixture is dominated by the first (untrained)
learner, whose mass stays above 5% for 59 rounds at ``alpha = 0.05``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.evaluation import evaluate_policy
from hybridrl.core.replay import ReplayBuffer, TransitionStager, add_transitions, mixture_weights, sample_blocks
from hybridrl.core.seeding import Seeder
from hybridrl.data.dataset import TransitionBatch, sample_transitions
from hybridrl.envs.factory import make_env
from hybridrl.errors import ConfigError
from hybridrl.imitation.common import AdversarialImitationTrainer, ImitationConfig, imitation_presets
from hybridrl.imitation.discriminator import (
    Discriminator,
    DiscriminatorSettings,
    DiscriminatorState,
    discriminator_update,
)
from hybridrl.rl.sac import Metrics


@dataclass
class AILBoostConfig(ImitationConfig):
    """AILBoost options. ``hybridrl train ailboost --help`` shows each with its preset default."""

    boosting_alpha: float = 0.05
    """Mixture weight alpha of each new weak learner (the code's eta); memory is about 1/alpha learners."""
    samples_per_learner: int = 1_000
    """Agent steps collected with each new learner (its block of the weighted buffer)."""
    online_steps_per_learner: int = 1_000
    """Online agent steps (and SAC updates / update_every) between boosting rounds."""
    discriminator_steps: int = 100
    """Discriminator steps per boosting round."""
    max_mixture_learners: int = 100
    """Learners kept for mixture evaluation: the first and the latest ones (older ones hold < 1% of the mass)."""
    mixture_eval_episodes: int = 5
    """Episodes of mixture evaluation (a learner drawn per episode by weight); 0: skip it."""

    @property
    def max_rounds(self) -> int:
        """An upper bound on the boosting rounds the budget allows (sizes the weighted buffer)."""
        per_round = self.samples_per_learner + self.online_steps_per_learner
        return max(self.total_steps - self.learning_starts, 0) // per_round + 2

    @property
    def replay_capacity(self) -> int:
        """Collection blocks, the online steps of one round, and the warm-up steps before round 1."""
        return max(self.max_rounds * self.samples_per_learner + self.online_steps_per_learner, self.learning_starts, 1)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings."""
        super().validate()
        if not 0.0 < self.boosting_alpha < 1.0:
            raise ConfigError(f"--boosting-alpha must lie in (0, 1), got {self.boosting_alpha}")
        for name in ("samples_per_learner", "online_steps_per_learner", "discriminator_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.max_mixture_learners < 2:
            raise ConfigError(f"--max-mixture-learners must be at least 2, got {self.max_mixture_learners}")
        if self.mixture_eval_episodes < 0:
            raise ConfigError(f"--mixture-eval-episodes must be >= 0, got {self.mixture_eval_episodes}")
        if self.online_steps_per_learner % self.update_every:
            raise ConfigError(f"--online-steps-per-learner ({self.online_steps_per_learner}) must be a multiple "
                              f"of --update-every ({self.update_every})")
        if self.replay_size is not None:
            raise ConfigError("AILBoost sizes its replay from the budget; leave --replay-size unset")


PRESETS = imitation_presets(smoke=dict(samples_per_learner=100, online_steps_per_learner=200,
                                       discriminator_steps=5, mixture_eval_episodes=1))


@functools.partial(jax.jit, static_argnames=("num_steps", "block_size", "batch_size", "discriminator",
                                             "settings"))
def weighted_discriminator_updates(state: DiscriminatorState, key: jax.Array, buffer: ReplayBuffer,
                                   log_weights: jax.Array, expert: TransitionBatch, num_steps: int, *,
                                   block_size: int, batch_size: int, discriminator: Discriminator,
                                   settings: DiscriminatorSettings) -> tuple[DiscriminatorState, jax.Array, Metrics]:
    """``num_steps`` discriminator steps whose policy rows come from the weighted buffer.

    :param log_weights: log mass of each block (``-inf`` for blocks not collected yet); block ``b``
        is buffer rows ``[b * block_size, (b + 1) * block_size)``.
    :returns: the new state, the advanced key and the last step's metrics.
    """

    def one_step(carry: tuple[DiscriminatorState, jax.Array], _: None
                 ) -> tuple[tuple[DiscriminatorState, jax.Array], Metrics]:
        state, key = carry
        key, block_key, expert_key, penalty_key = jax.random.split(key, 4)
        rows = sample_blocks(block_key, log_weights, block_size, batch_size)
        policy = jax.tree_util.tree_map(lambda leaf: leaf[rows], buffer.transitions)
        expert_batch = sample_transitions(expert, expert_key, batch_size)
        state, metrics = discriminator_update(state, expert_batch.observations, expert_batch.actions,
                                              policy.observations, policy.actions, penalty_key,
                                              network=discriminator, settings=settings)
        return (state, key), metrics

    (state, key), metrics = jax.lax.scan(one_step, (state, key), None, length=num_steps)
    return state, key, jax.tree_util.tree_map(lambda values: values[-1], metrics)


def draw_learners(weights: np.ndarray, episodes: int, rng: np.random.Generator) -> np.ndarray:
    """Which learner acts in each of ``episodes`` mixture-evaluation episodes: drawn by weight."""
    weights = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(weights), size=episodes, p=weights / weights.sum())


class LearnerStore:
    """Copies of weak learners' actor weights, preallocated for ``capacity`` learners.

    Slot 0 keeps the first learner for good (its mass ``(1 - alpha)^(k-1)`` is the largest for the
    first rounds); the other slots hold the latest learners in a ring.
    """

    def __init__(self, template: Any, capacity: int) -> None:
        self.capacity = capacity
        self.params = jax.tree_util.tree_map(
            lambda leaf: np.zeros((capacity, *np.shape(leaf)), np.asarray(leaf).dtype), template)
        self.rounds = np.full(capacity, -1, dtype=np.int64)

    def slot(self, round_index: int) -> int:
        """The slot of the learner of round ``round_index`` (1-based)."""
        return 0 if round_index == 1 else 1 + (round_index - 2) % (self.capacity - 1)

    def add(self, round_index: int, actor_params: Any) -> None:
        """Store a copy of ``actor_params`` as the learner of round ``round_index``."""
        slot = self.slot(round_index)
        host = jax.device_get(actor_params)

        def write(stored: np.ndarray, value: Any) -> None:
            stored[slot] = np.asarray(value)  # copies into the preallocated array

        jax.tree_util.tree_map(write, self.params, host)
        self.rounds[slot] = round_index

    def learner(self, slot: int) -> Any:
        """The actor weights in ``slot`` (views of the store)."""
        return jax.tree_util.tree_map(lambda leaf: leaf[slot], self.params)

    def mixture(self, num_rounds: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Occupied slots and their mixture weights (renormalised over the learners kept)."""
        slots = np.flatnonzero(self.rounds > 0)
        weights = mixture_weights(num_rounds, alpha)[self.rounds[slots] - 1]
        return slots, weights / weights.sum()


class AILBoostTrainer(AdversarialImitationTrainer):
    """Runs AILBoost in a run directory."""

    algorithm = "ailboost"
    divergence = "rkl"
    config: AILBoostConfig

    def __init__(self, config: AILBoostConfig, run_dir: Path, progress: bool = False) -> None:
        super().__init__(config, run_dir, progress)
        self.collect_env = make_env(config.env, action_repeat=config.env_action_repeat)
        self.collect_seeds = self.seeder.env_seeds("collect", 1)[0]
        self.learners = LearnerStore(jax.device_get(self.state.params["actor"]), config.max_mixture_learners)
        self.discriminator_key = self.seeder.jax_key("discriminator/steps")
        self.num_rounds = 0
        self.online_steps = 0
        self.last_discriminator_metrics: Metrics = {}

    # -- boosting rounds ------------------------------------------------------------------------

    def before_step(self) -> None:
        """Run a boosting round when one is due (every ``online_steps_per_learner`` online steps)."""
        config = self.config
        due = (self.online_steps >= config.learning_starts
               and (self.online_steps - config.learning_starts) // config.online_steps_per_learner >= self.num_rounds)
        if due:
            self.boosting_round()

    def boosting_round(self) -> None:
        """Add the current actor as a learner, collect its block, reweight, train the discriminator."""
        config = self.config
        self.num_rounds += 1
        self.learners.add(self.num_rounds, self.state.params["actor"])
        block = self.collect(config.samples_per_learner)
        # The block goes after the earlier blocks, over the online steps of the last round, which
        # the replay then no longer holds.
        start = (self.num_rounds - 1) * config.samples_per_learner
        if start + config.samples_per_learner > self.buffer.capacity:
            raise RuntimeError(f"AILBoost's buffer holds {self.buffer.capacity} rows; "
                               f"round {self.num_rounds} needs more")
        self.buffer = dataclasses.replace(self.buffer, position=jnp.asarray(start, jnp.int32),
                                          size=jnp.asarray(start, jnp.int32))
        self.buffer = add_transitions(self.buffer, block)
        log_weights = np.full(config.max_rounds, -np.inf, dtype=np.float32)
        log_weights[: self.num_rounds] = np.log(mixture_weights(self.num_rounds, config.boosting_alpha))
        self.discriminator_state, self.discriminator_key, self.last_discriminator_metrics = (
            weighted_discriminator_updates(
                self.discriminator_state, self.discriminator_key, self.buffer, jnp.asarray(log_weights),
                self.demos.transitions, config.discriminator_steps, block_size=config.samples_per_learner,
                batch_size=config.discriminator_batch_size, discriminator=self.discriminator,
                settings=self.discriminator_settings))

    def collect(self, steps: int) -> TransitionBatch:
        """``steps`` steps of the current actor's stochastic policy from fresh episodes (counted as agent steps)."""
        rng = Seeder(self.config.seed).numpy(f"collect/{self.num_rounds}")
        block = TransitionStager(steps, self.observation_dim, self.action_dim)
        observation, _ = self.collect_env.reset(seed=self.collect_seeds + self.num_rounds)
        for row in range(steps):
            action = self.actor_actions(np.asarray(observation, np.float32)[None], rng=rng)[0]
            next_observation, reward, terminated, truncated, _ = self.collect_env.step(self.scaler.to_env(action))
            block.put(row, observation, action, reward, next_observation, terminated, truncated)
            observation = self.collect_env.reset()[0] if terminated or truncated else next_observation
        self.global_step += steps
        return block.take(steps)

    # -- online steps ---------------------------------------------------------------------------

    def env_step(self) -> None:
        """One online step (SAC's), counted separately from collection steps."""
        super().env_step()
        self.online_steps += 1

    def learn(self, num_updates: int) -> None:
        """SAC updates with rewards relabelled by the current discriminator; it is trained in rounds only."""
        self.sac_updates(num_updates, update_discriminator=False, relabel=True)

    def log_scalars(self) -> dict[str, float]:
        """SAC's metrics, the last round's discriminator metrics, and the boosting counters."""
        scalars = super().log_scalars()
        scalars.update({name: float(value) for name, value in jax.device_get(self.last_discriminator_metrics).items()})
        scalars["train/boosting_rounds"] = float(self.num_rounds)
        scalars["train/online_steps"] = float(self.online_steps)
        return scalars

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate_mixture(self, episodes: int) -> dict[str, float]:
        """The true mixture: per episode, a stored learner drawn by weight acts with its mean action."""
        if self.num_rounds == 0:
            return {}
        slots, weights = self.learners.mixture(self.num_rounds, self.config.boosting_alpha)
        drawn = draw_learners(weights, episodes, Seeder(self.config.seed).numpy(f"mixture/{self.global_step}"))
        returns = []
        for episode, slot_index in enumerate(drawn):
            actor = self.learners.learner(int(slots[slot_index]))

            def act(observations: np.ndarray, actor: Any = actor) -> np.ndarray:
                return self.scaler.to_env(self.actor_actions(observations, actor))

            result = evaluate_policy(self.eval_env, act, 1, self.eval_seed + episode)
            returns.append(result["eval/return_mean"])
        summary = {"eval/mixture_return_mean": float(np.mean(returns)),
                   "eval/mixture_return_std": float(np.std(returns))}
        return self.with_score(summary, prefix="eval/mixture_")

    def evaluate_all(self, episodes: int) -> dict[str, float]:
        """The current learner (headline) and the mixture."""
        result = self.evaluate(episodes)
        if self.config.mixture_eval_episodes:
            result.update(self.evaluate_mixture(self.config.mixture_eval_episodes))
        return result

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint_state(self) -> Any:
        """SAC, replay, discriminator, its key and the stored learners."""
        return {**super().checkpoint_state(), "discriminator_key": self.discriminator_key,
                "learners": self.learners.params, "learner_rounds": self.learners.rounds}

    def restore_checkpoint_state(self, state: Any) -> None:
        """Take back :meth:`checkpoint_state` output."""
        super().restore_checkpoint_state(state)
        self.discriminator_key = state["discriminator_key"]
        self.learners.params = jax.tree_util.tree_map(np.array, state["learners"])
        self.learners.rounds = np.array(state["learner_rounds"], dtype=np.int64)

    def host_state(self) -> dict[str, Any]:
        """SAC's host state plus the boosting counters and the last round's discriminator metrics
        (logged until the next round, so a resumed run logs them too)."""
        metrics = {name: float(value) for name, value in jax.device_get(self.last_discriminator_metrics).items()}
        return {**super().host_state(), "num_rounds": self.num_rounds, "online_steps": self.online_steps,
                "discriminator_metrics": metrics}

    def restore_host_state(self, host: dict[str, Any]) -> None:
        """Take back :meth:`host_state` output."""
        super().restore_host_state(host)
        self.num_rounds = int(host["num_rounds"])
        self.online_steps = int(host["online_steps"])
        self.last_discriminator_metrics = {name: jnp.asarray(value, jnp.float32)
                                           for name, value in host.get("discriminator_metrics", {}).items()}

    def close(self) -> None:
        """Close every env."""
        super().close()
        if hasattr(self, "collect_env"):
            self.collect_env.close()


def _make_trainer(config: AILBoostConfig, run_dir: Path, progress: bool) -> AILBoostTrainer:
    return AILBoostTrainer(config, run_dir, progress)


ALGORITHM = AlgorithmSpec(
    name="ailboost",
    config_cls=AILBoostConfig,
    presets=PRESETS,
    make_trainer=_make_trainer,
    summary="AILBoost: adversarial imitation by boosting (weighted replay, reverse-KL discriminator, SAC learners)",
)

__all__ = ["ALGORITHM", "PRESETS", "AILBoostConfig", "AILBoostTrainer", "LearnerStore", "draw_learners",
           "weighted_discriminator_updates"]
