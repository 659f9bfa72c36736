"""What adversarial imitation learners share: demonstrations, the discriminator next to a SAC
learner, the compiled update that relabels rewards with the discriminator, and evaluation against
the demonstrator.

Both DAC and AILBoost are SAC (:mod:`hybridrl.rl.sac`) whose reward is the discriminator's output
``D(s, a)`` instead of the environment's; they differ in what the discriminator is trained on and
when. The environment's reward is stored in the replay buffer only for diagnostics (and evaluation
returns); learners never see it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hybridrl.core.replay import ReplayBuffer, replay_sample
from hybridrl.data.dataset import Dataset, TransitionBatch, sample_transitions
from hybridrl.data.demos import demos_id
from hybridrl.data.loading import load_dataset
from hybridrl.data.minari_format import HYBRIDRL_NAMESPACE
from hybridrl.data.validation import DatasetError
from hybridrl.errors import ConfigError
from hybridrl.imitation.discriminator import (
    Discriminator,
    DiscriminatorSettings,
    DiscriminatorState,
    DivergenceName,
    discriminator_reward,
    discriminator_update,
    init_discriminator_state,
    make_discriminator,
)
from hybridrl.rl.sac import ActionScaler, Metrics, SACConfig, SACNetworks, SACSettings, SACState, SACTrainer, sac_update


@dataclass
class ImitationConfig(SACConfig):
    """SAC options plus the demonstrations and the discriminator."""

    demos: str = ""
    """Demonstrations: a dataset from `hybridrl data demos ENV --run-dir EXPERT`; empty: hybridrl/demos/<env>-v0."""
    num_demos: int = 1
    """Demonstration episodes to imitate: the first N of the dataset."""
    discriminator_hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the discriminator (ReLU, tanh-bounded output)."""
    discriminator_learning_rate: float = 1e-4
    """Adam step size of the discriminator."""
    gradient_penalty: float = 10.0
    """Coefficient of the WGAN-GP gradient penalty on expert/policy interpolates."""
    discriminator_batch_size: int = 256
    """Policy rows and expert rows per discriminator step (each)."""

    @property
    def demos_dataset(self) -> str:
        """The demonstrations' dataset id in effect."""
        return self.demos or f"{HYBRIDRL_NAMESPACE}/{demos_id(self.env)}"

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings (SAC's, then the imitation ones)."""
        super().validate()
        for name in ("num_demos", "discriminator_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.discriminator_learning_rate <= 0 or self.gradient_penalty < 0:
            raise ConfigError("--discriminator-learning-rate must be positive and --gradient-penalty >= 0")


#: SAC settings of the AILBoost code for state-based DMC (its DAC uses the same): lr 1e-4 everywhere,
#: initial temperature 1, one update per 2 env steps, 5000 uniform-random steps.
IMITATION_SAC: dict[str, Any] = dict(learning_rate=1e-4, init_temperature=1.0, update_every=2, learning_starts=5_000)


def imitation_presets(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The three scale presets of an imitation learner, with per-preset ``extra`` settings."""
    presets = {
        # Seconds, for tests.
        "smoke": dict(IMITATION_SAC, total_steps=1_400, hidden_sizes=(32, 32), batch_size=32, learning_starts=300,
                      discriminator_batch_size=32, eval_interval=0, eval_episodes=1, checkpoint_interval=700,
                      log_interval=100),
        # The reference's reduced CPU protocol: 2x256 networks, batch 256 (discriminator 256 + 256),
        # 200k agent steps, evaluation every 10k steps with 5 episodes.
        "cpu": dict(IMITATION_SAC, total_steps=200_000, hidden_sizes=(256, 256), batch_size=256,
                    discriminator_batch_size=256, eval_interval=10_000, eval_episodes=5, checkpoint_interval=20_000),
        # The AILBoost code's state-based settings: 2x1024 networks, batch 1024 (discriminator 512 + 512).
        "paper": dict(IMITATION_SAC, total_steps=1_000_000, hidden_sizes=(1024, 1024), batch_size=1024,
                      discriminator_batch_size=512, eval_interval=10_000, eval_episodes=10,
                      checkpoint_interval=50_000),
    }
    return {name: {**values, **extra.get(name, {})} for name, values in presets.items()}


# --------------------------------------------------------------------------------------------
# Demonstrations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demonstrations:
    """The demonstrations a run imitates.

    :param dataset: the first ``num_demos`` episodes, as loaded (env units).
    :param transitions: the same transitions with actions mapped to the learner's [-1, 1].
    """

    dataset: Dataset
    transitions: TransitionBatch

    def normalized_score(self, episode_return: float) -> float | None:
        """``100 (R - random) / (expert - random)`` with the demonstrator's mean return as expert."""
        if self.dataset.info.reference_returns is None:
            return None
        return float(self.dataset.normalized_score(episode_return))


def load_demonstrations(config: ImitationConfig, scaler: ActionScaler) -> Demonstrations:
    """Load and check the demonstrations of a run.

    :raises DatasetError: missing demonstrations, another env's, another action repeat's, or too few.
    """
    name = config.demos_dataset
    try:
        dataset = load_dataset(name, env=config.env)
    except DatasetError as error:
        if config.demos:
            raise
        raise DatasetError(f"{str(error).rstrip('.')}. Record demonstrations first: train an expert "
                           f"(`hybridrl train sac --env {config.env}`) and run `hybridrl data demos {config.env} "
                           "--run-dir EXPERT_RUN --episodes 10`") from error
    if dataset.action_repeat != config.env_action_repeat:
        raise DatasetError(f"the demonstrations {name!r} were recorded with action repeat {dataset.action_repeat}, "
                           f"but this run acts with {config.env_action_repeat}; pass --action-repeat "
                           f"{dataset.action_repeat} or record demonstrations with the run's action repeat")
    dataset = dataset.first_episodes(config.num_demos)
    raw = dataset.transitions
    actions = scaler.from_env(np.asarray(raw.actions))
    if np.any(np.abs(actions) > 1.0 + 1e-4):
        raise DatasetError(f"the demonstrations {name!r} have actions outside {config.env}'s action bounds")
    transitions = dataclasses.replace(raw, actions=jax.numpy.asarray(np.clip(actions, -1.0, 1.0)))
    return Demonstrations(dataset=dataset, transitions=transitions)


# --------------------------------------------------------------------------------------------
# The compiled update
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=(
    "num_updates", "networks", "settings", "discriminator", "discriminator_settings", "discriminator_batch_size",
    "update_discriminator", "relabel"))
def adversarial_sac_updates(sac_state: SACState, discriminator_state: DiscriminatorState, buffer: ReplayBuffer,
                            expert: TransitionBatch, num_updates: int, *, networks: SACNetworks,
                            settings: SACSettings, discriminator: Discriminator,
                            discriminator_settings: DiscriminatorSettings, discriminator_batch_size: int,
                            update_discriminator: bool, relabel: bool
                            ) -> tuple[SACState, DiscriminatorState, Metrics]:
    """``num_updates`` SAC updates on uniform replay minibatches, in one compiled scan.

    :param update_discriminator: before each SAC update, take one discriminator step on the
        minibatch's first ``discriminator_batch_size`` rows against as many expert rows (DAC).
    :param relabel: replace the minibatch's rewards by ``D(s, a)`` of the current discriminator
        (DAC's canonical form and AILBoost); otherwise use the stored rewards (DAC's stale mode).
    :returns: the new states and the metrics averaged over the ``num_updates`` updates (one
        minibatch's values are noisy; the logs keep one line per interval).
    """

    def one_update(carry: tuple[SACState, DiscriminatorState], _: None
                   ) -> tuple[tuple[SACState, DiscriminatorState], Metrics]:
        sac_state, discriminator_state = carry
        key, sample_key, expert_key, penalty_key = jax.random.split(sac_state.key, 4)
        batch = replay_sample(buffer, sample_key, settings.batch_size)
        metrics: Metrics = {}
        if update_discriminator:
            expert_batch = sample_transitions(expert, expert_key, discriminator_batch_size)
            discriminator_state, metrics = discriminator_update(
                discriminator_state, expert_batch.observations, expert_batch.actions,
                batch.observations[:discriminator_batch_size], batch.actions[:discriminator_batch_size],
                penalty_key, network=discriminator, settings=discriminator_settings)
        if relabel:
            batch = dataclasses.replace(batch, rewards=discriminator_reward(
                discriminator, discriminator_state.params, batch.observations, batch.actions))
        sac_state, sac_metrics = sac_update(dataclasses.replace(sac_state, key=key), batch, networks=networks,
                                            settings=settings)
        metrics = {**metrics, **sac_metrics, "train/imitation_reward": batch.rewards.mean(),
                   "train/imitation_reward_std": batch.rewards.std()}
        return (sac_state, discriminator_state), metrics

    (sac_state, discriminator_state), metrics = jax.lax.scan(
        one_update, (sac_state, discriminator_state), None, length=num_updates)
    return sac_state, discriminator_state, jax.tree_util.tree_map(lambda values: values.mean(axis=0), metrics)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


class AdversarialImitationTrainer(SACTrainer):
    """SAC with a discriminator's reward, imitating demonstrations; subclasses pick the divergence,
    when the discriminator learns and on what."""

    algorithm = "imitation"
    divergence: DivergenceName = "js"
    config: ImitationConfig
    fused_store_and_learn = False  # they relabel rewards and train a discriminator in their own calls

    def __init__(self, config: ImitationConfig, run_dir: Path, progress: bool = False) -> None:
        super().__init__(config, run_dir, progress)
        try:
            self.demos = load_demonstrations(config, self.scaler)
        except BaseException:
            self.close()
            raise
        self.discriminator_settings = DiscriminatorSettings(
            divergence=self.divergence, hidden_sizes=config.discriminator_hidden,
            learning_rate=config.discriminator_learning_rate, gradient_penalty=config.gradient_penalty)
        self.discriminator = make_discriminator(self.discriminator_settings)
        self.discriminator_state = init_discriminator_state(
            self.discriminator_settings, self.observation_dim, self.action_dim, self.seeder.jax_key("discriminator"))

    def sac_updates(self, num_updates: int, update_discriminator: bool, relabel: bool) -> None:
        """Run the compiled updates and move the host actor."""
        self.state, self.discriminator_state, self.last_metrics = adversarial_sac_updates(
            self.state, self.discriminator_state, self.buffer, self.demos.transitions, num_updates,
            networks=self.networks, settings=self.settings, discriminator=self.discriminator,
            discriminator_settings=self.discriminator_settings,
            discriminator_batch_size=self.config.discriminator_batch_size,
            update_discriminator=update_discriminator, relabel=relabel)
        self.num_updates += num_updates
        self.refresh_host_actor()

    #: Replay rows (the newest) that ``discriminator/newest_data_reward`` is measured on.
    newest_rows = 1_000

    def log_scalars(self) -> dict[str, float]:
        """SAC's metrics plus what the learner is paid now: the current discriminator's mean reward on
        the demonstrations and on the learner's newest ``newest_rows`` replay rows (the discriminator's
        own metrics see its training batches instead: the whole history, or AILBoost's mixture)."""
        scalars = super().log_scalars()
        size, position = int(self.buffer.size), int(self.buffer.position)
        if size > 0:
            # The replay is a ring: the newest rows are the ones just before the write position.
            rows = (position - 1 - np.arange(min(self.newest_rows, size))) % self.buffer.capacity
            replay = self.buffer.transitions
            params = self.discriminator_state.params
            newest = discriminator_reward(self.discriminator, params, replay.observations[rows], replay.actions[rows])
            demos = discriminator_reward(self.discriminator, params, self.demos.transitions.observations,
                                         self.demos.transitions.actions)
            scalars["discriminator/newest_data_reward"] = float(newest.mean())
            scalars["discriminator/demos_reward"] = float(demos.mean())
        return scalars

    def with_score(self, result: dict[str, float], prefix: str = "eval/") -> dict[str, float]:
        """Add the demonstrator-normalised score of ``result``'s mean return."""
        score = self.demos.normalized_score(result[f"{prefix}return_mean"])
        if score is not None:
            result[f"{prefix}normalized_score"] = score
        return result

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Deterministic evaluation of the current actor, with the demonstrator-normalised score."""
        return self.with_score(super().evaluate(episodes))

    def checkpoint_state(self) -> Any:
        """SAC state, replay and discriminator."""
        return {**super().checkpoint_state(), "discriminator": self.discriminator_state}

    def restore_checkpoint_state(self, state: Any) -> None:
        """Take back :meth:`checkpoint_state` output."""
        super().restore_checkpoint_state(state)
        self.discriminator_state = state["discriminator"]


__all__ = ["IMITATION_SAC", "AdversarialImitationTrainer", "Demonstrations", "ImitationConfig",
           "adversarial_sac_updates", "imitation_presets", "load_demonstrations"]
