"""Discriminator-Actor-Critic (Kostrikov et al. 2019, arXiv:1809.02925), as the AILBoost code runs
it as its baseline: SAC whose reward is a Jensen-Shannon discriminator's output.

After ``learning_starts`` uniform-random steps, every ``update_every`` env steps:

1. draw a minibatch uniformly from the whole online history (the replay never evicts);
2. one discriminator step: its first ``discriminator_batch_size`` rows against as many
   demonstration rows, binary cross-entropy (expert 1, policy 0) plus the gradient penalty;
3. one SAC update with reward ``r = D(s, a)`` (the tanh-bounded logit).

**Reward timing.** ``reward_mode="fresh"`` (default, canonical DAC and what AILBoost does)
relabels every minibatch with the current discriminator. ``"stale"`` is the AILBoost code's DAC:
rewards are computed once with the discriminator of the time and stored (the code labels a whole
episode when it ends; we label each transition when it enters the replay, at most
``update_every`` steps after it happened) and never refreshed. There are no absorbing states: DMC
episodes have a fixed length and never terminate.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.replay import ReplayBuffer, replay_add
from hybridrl.data.dataset import TransitionBatch
from hybridrl.errors import ConfigError
from hybridrl.imitation.common import AdversarialImitationTrainer, ImitationConfig, imitation_presets
from hybridrl.imitation.discriminator import Discriminator, discriminator_reward


@dataclass
class DACConfig(ImitationConfig):
    """DAC options. ``hybridrl train dac --help`` shows each with its preset default."""

    reward_mode: Literal["fresh", "stale"] = "fresh"
    """fresh: relabel each minibatch with the current discriminator; stale: label once when stored (AILBoost code)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings."""
        super().validate()
        if self.reward_mode not in ("fresh", "stale"):
            raise ConfigError(f"--reward-mode must be fresh or stale, got {self.reward_mode!r}")
        if self.discriminator_batch_size > self.batch_size:
            raise ConfigError(f"DAC's discriminator takes its policy rows from the SAC minibatch, so "
                              f"--discriminator-batch-size ({self.discriminator_batch_size}) must be at most "
                              f"--batch-size ({self.batch_size})")


PRESETS = imitation_presets()


@functools.partial(jax.jit, static_argnames="discriminator", donate_argnums=0)
def add_labelled(buffer: ReplayBuffer, transitions: TransitionBatch, discriminator_params: object, *,
                 discriminator: Discriminator) -> ReplayBuffer:
    """Store ``transitions`` with reward ``D(s, a)`` of the given discriminator (stale mode)."""
    rewards = discriminator_reward(discriminator, discriminator_params, transitions.observations,
                                   transitions.actions)
    return replay_add(buffer, dataclasses.replace(transitions, rewards=rewards))


class DACTrainer(AdversarialImitationTrainer):
    """Runs DAC in a run directory."""

    algorithm = "dac"
    divergence = "js"
    config: DACConfig

    def store(self, transitions: TransitionBatch) -> None:
        """Add transitions; in stale mode with their discriminator reward of now."""
        if self.config.reward_mode == "stale":
            self.buffer = add_labelled(self.buffer, transitions, self.discriminator_state.params,
                                       discriminator=self.discriminator)
        else:
            super().store(transitions)

    def learn(self, num_updates: int) -> None:
        """One discriminator step and one SAC update per ``update_every`` env steps."""
        self.sac_updates(num_updates, update_discriminator=True, relabel=self.config.reward_mode == "fresh")


def _make_trainer(config: DACConfig, run_dir: Path, progress: bool) -> DACTrainer:
    return DACTrainer(config, run_dir, progress)


ALGORITHM = AlgorithmSpec(
    name="dac",
    config_cls=DACConfig,
    presets=PRESETS,
    make_trainer=_make_trainer,
    summary="Discriminator-Actor-Critic: adversarial imitation from demonstrations with SAC",
)

__all__ = ["ALGORITHM", "PRESETS", "DACConfig", "DACTrainer", "add_labelled"]
