"""Seeding: one integer seed becomes explicit, independent random streams.

Nothing in hybridrl touches global random state. A run derives everything it needs from one
:class:`Seeder`: JAX PRNG keys for parameter initialisation and updates, numpy generators for
rollouts and minibatch order, and integer seeds for environments. Streams are derived with
:class:`numpy.random.SeedSequence` so adding a stream never changes the others.
"""

from __future__ import annotations

import jax
import numpy as np


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
