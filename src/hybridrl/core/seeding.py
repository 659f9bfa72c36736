"""Seeding: one integer seed becomes explicit, independent random streams.

Nothing in hybridrl touches global random state. A run derives everything it needs from one
:class:`Seeder`: JAX PRNG keys for parameter initialisation and updates, numpy generators for
rollouts and minibatch order, and integer seeds for environments. Streams are derived with
:class:`numpy.random.SeedSequence` so adding a stream never changes the others.

Runs that differ only in their seed can train in one process, vmapped over seeds
(``hybridrl train ALGORITHM --seeds N``); :func:`seed_sharding` spreads them over the local devices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class Seeder:
    """Derives named, independent random streams from one seed.

    :param seed: the run's seed (any non-negative integer).
    """

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = int(seed)

    def _sequence(self, name: str) -> np.random.SeedSequence:
        # Hash the stream name into spawn-key entropy so streams are independent and stable.
        name_words = [int.from_bytes(name.encode()[i : i + 4].ljust(4, b"\0"), "little")
                      for i in range(0, len(name.encode()), 4)]
        return np.random.SeedSequence(entropy=self.seed, spawn_key=tuple(name_words))

    def numpy(self, name: str) -> np.random.Generator:
        """A numpy generator for the stream ``name``."""
        return np.random.Generator(np.random.PCG64(self._sequence(name)))

    def jax_key(self, name: str) -> jax.Array:
        """A JAX PRNG key for the stream ``name``."""
        seed = int(self._sequence(name).generate_state(1, dtype=np.uint32)[0])
        return jax.random.key_data(jax.random.key(seed))

    def env_seeds(self, name: str, count: int) -> list[int]:
        """``count`` integer seeds for environments of the stream ``name``."""
        state = self._sequence(name).generate_state(count, dtype=np.uint32)
        return [int(s) for s in state]


def generator_state(rng: np.random.Generator) -> dict:
    """The state of a numpy generator as a JSON-serialisable dict (for checkpoints)."""
    return dict(rng.bit_generator.state)


def restore_generator(state: dict) -> np.random.Generator:
    """A numpy generator restored from :func:`generator_state`."""
    bit_generator_name = state["bit_generator"]
    bit_generator = getattr(np.random, bit_generator_name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


# --------------------------------------------------------------------------------------------
# Seeds trained in one process: the devices they run on
# --------------------------------------------------------------------------------------------


class ResumableTrainer(Protocol):
    """What :func:`train_in_seed_groups` needs of a trainer."""

    @property
    def run_dir(self) -> Path: ...

    def load_checkpoint(self, path: Path) -> None: ...

    def close(self) -> None: ...


TrainerT = TypeVar("TrainerT", bound=ResumableTrainer)


def check_seed_configs(configs: Sequence[Any], run_dirs: Sequence[Any]) -> None:
    """Raise :class:`~hybridrl.errors.ConfigError` unless there is one run directory per config and the
    configs differ only in their seed."""
    from hybridrl.errors import ConfigError

    if not configs or len(configs) != len(run_dirs):
        raise ConfigError("train_seeds needs one run directory per config, and at least one config")
    if any(dataclasses.replace(config, seed=0) != dataclasses.replace(configs[0], seed=0) for config in configs):
        raise ConfigError("runs trained together must differ only in their seed")


def train_in_seed_groups(count: int, make_trainer: Callable[[int], TrainerT], step: Callable[[TrainerT], int],
                         train_group: Callable[[list[TrainerT]], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The body of every ``train_seeds`` hook: build run ``i``'s trainer with ``make_trainer(i)`` and
    resume it from its checkpoint when it has one, train the runs that stand at the same ``step``
    together (``train_group``, earliest step first, :func:`groups_by_step`), and close every trainer.

    :returns: each run's final metrics, in order.
    """
    trainers: list[TrainerT] = []
    try:
        for index in range(count):
            trainers.append(make_trainer(index))
            checkpoint = trainers[-1].run_dir / "checkpoint.ckpt"
            if checkpoint.is_file():
                trainers[-1].load_checkpoint(checkpoint)
        finals: list[dict[str, Any]] = [{} for _ in trainers]
        for indices in groups_by_step([step(trainer) for trainer in trainers]):
            for index, final in zip(indices, train_group([trainers[index] for index in indices]), strict=True):
                finals[index] = final
    finally:
        for trainer in trainers:
            trainer.close()
    return finals


def groups_by_step(steps: list[int]) -> list[list[int]]:
    """Indices of runs that stand at the same step, earliest step first: seeds resumed from checkpoints
    written at different steps train in separate groups, each group in lockstep."""
    by_step: dict[int, list[int]] = {}
    for index, step in enumerate(steps):
        by_step.setdefault(step, []).append(index)
    return [by_step[step] for step in sorted(by_step)]


def stack_seeds(trees: Sequence[Any]) -> Any:
    """Pytrees of runs trained together (equal in structure and shapes) stacked on a leading seed axis."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def seed_rows(tree: Any, index: int) -> Any:
    """Run ``index``'s rows of a pytree stacked by :func:`stack_seeds` (or of per-seed metrics)."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def seed_devices(seeds: int, devices: int) -> int:
    """How many devices ``seeds`` trained together are spread over: the most, up to ``devices``,
    that hold equal shares of the seeds."""
    return max(count for count in range(1, min(seeds, devices) + 1) if seeds % count == 0)


def seed_sharding(seeds: int) -> tuple[NamedSharding, NamedSharding] | None:
    """Where the stacked states of ``seeds`` go (split over :func:`seed_devices` local devices) and
    where the dataset goes (a copy on each); None for one device.

    On CPU, JAX shows one device unless told otherwise (``jax_num_cpu_devices``, which
    ``hybridrl train --seeds N`` sets to the cores that share the seeds). The devices then run their
    seeds' updates side by side, each about one core's worth, instead of splitting every matrix
    product of all seeds over the cores with a synchronisation per product.
    """
    devices = jax.local_devices()
    count = seed_devices(seeds, len(devices))
    if count == 1:
        return None
    mesh = Mesh(np.array(devices[:count]), ("seed",))
    return NamedSharding(mesh, PartitionSpec("seed")), NamedSharding(mesh, PartitionSpec())
