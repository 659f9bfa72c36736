"""Tests of seeding (hybridrl.core.seeding): named streams and generator checkpoints."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.core.seeding import Seeder, generator_state, restore_generator, seed_devices, seed_sharding

SEEDS = st.integers(0, 2**63 - 1)
NAMES = st.text(min_size=1, max_size=24)


@given(SEEDS, NAMES)
@settings(deadline=None)
def test_same_seed_and_name_give_the_same_numpy_stream(seed: int, name: str) -> None:
    first, second = Seeder(seed).numpy(name), Seeder(seed).numpy(name)
    np.testing.assert_array_equal(first.random(8), second.random(8))
    np.testing.assert_array_equal(first.integers(0, 2**62, size=8), second.integers(0, 2**62, size=8))


@given(SEEDS, NAMES)
@settings(deadline=None)
def test_same_seed_and_name_give_the_same_jax_key_and_env_seeds(seed: int, name: str) -> None:
    np.testing.assert_array_equal(Seeder(seed).jax_key(name), Seeder(seed).jax_key(name))
    assert Seeder(seed).env_seeds(name, 4) == Seeder(seed).env_seeds(name, 4)


def test_jax_key_is_a_usable_raw_key() -> None:
    key = Seeder(3).jax_key("params")
    assert key.shape == (2,) and key.dtype == np.uint32
    first, second = jax.random.split(key)
    assert not np.array_equal(jax.random.normal(first, (4,)), jax.random.normal(second, (4,)))


@given(SEEDS, NAMES, NAMES)
@settings(deadline=None)
def test_different_names_give_different_streams(seed: int, name: str, other_name: str) -> None:
    # Names are hashed 4 bytes at a time and zero-padded; keep names that differ after padding.
    if name.encode().rstrip(b"\0") == other_name.encode().rstrip(b"\0"):
        return
    seeder = Seeder(seed)
    assert not np.array_equal(seeder.numpy(name).random(4), seeder.numpy(other_name).random(4))
    assert not np.array_equal(seeder.jax_key(name), seeder.jax_key(other_name))
    assert seeder.env_seeds(name, 4) != seeder.env_seeds(other_name, 4)


@given(SEEDS, SEEDS, NAMES)
@settings(deadline=None)
def test_different_seeds_give_different_streams(seed: int, other_seed: int, name: str) -> None:
    if seed == other_seed:
        return
    assert not np.array_equal(Seeder(seed).numpy(name).random(4), Seeder(other_seed).numpy(name).random(4))
    assert not np.array_equal(Seeder(seed).jax_key(name), Seeder(other_seed).jax_key(name))
    assert Seeder(seed).env_seeds(name, 4) != Seeder(other_seed).env_seeds(name, 4)


def test_streams_do_not_depend_on_which_others_were_drawn() -> None:
    alone = Seeder(7).numpy("rollout").random(5)
    seeder = Seeder(7)
    seeder.numpy("minibatches").random(100)
    seeder.jax_key("params")
    seeder.env_seeds("envs", 8)
    np.testing.assert_array_equal(seeder.numpy("rollout").random(5), alone)


def test_env_seeds_are_distinct_non_negative_ints() -> None:
    seeds = Seeder(0).env_seeds("envs", 16)
    assert len(seeds) == 16 and len(set(seeds)) == 16
    assert all(isinstance(seed, int) and 0 <= seed < 2**32 for seed in seeds)
    # A longer list extends a shorter one, so adding envs keeps the first envs' seeds.
    assert Seeder(0).env_seeds("envs", 4) == seeds[:4]


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Seeder(-1)


@given(SEEDS, st.integers(0, 50), st.booleans())
@settings(deadline=None)
def test_generator_state_round_trip_continues_the_identical_sequence(seed: int, draws: int,
                                                                     half_word: bool) -> None:
    rng = Seeder(seed).numpy("rollout")
    rng.random(draws)
    if half_word:  # a 32-bit draw leaves half a 64-bit word buffered in the state
        rng.integers(0, 2**31, dtype=np.int32)
    # Checkpoints store the state as JSON: the 128-bit PCG64 integers must survive it.
    state = json.loads(json.dumps(generator_state(rng)))

    restored = restore_generator(state)

    np.testing.assert_array_equal(restored.integers(0, 2**31, size=3, dtype=np.int32),
                                  rng.integers(0, 2**31, size=3, dtype=np.int32))
    np.testing.assert_array_equal(restored.random(10), rng.random(10))
    np.testing.assert_array_equal(restored.standard_normal(10), rng.standard_normal(10))


def test_generator_state_is_a_snapshot_not_a_view() -> None:
    rng = Seeder(1).numpy("x")
    state = generator_state(rng)
    expected = rng.random(4)
    rng.random(100)
    np.testing.assert_array_equal(restore_generator(state).random(4), expected)


def test_restore_generator_keeps_the_bit_generator_kind() -> None:
    rng = np.random.Generator(np.random.MT19937(5))
    rng.random(3)
    restored = restore_generator(generator_state(rng))
    assert isinstance(restored.bit_generator, np.random.MT19937)
    np.testing.assert_array_equal(restored.random(5), rng.random(5))


@given(seeds=st.integers(1, 64), devices=st.integers(1, 16))
def test_seeds_are_split_evenly_over_as_many_devices_as_possible(seeds: int, devices: int) -> None:
    count = seed_devices(seeds, devices)
    assert 1 <= count <= min(seeds, devices) and seeds % count == 0
    assert not any(seeds % more == 0 for more in range(count + 1, min(seeds, devices) + 1))


def test_one_device_keeps_the_seeds_together() -> None:
    assert seed_devices(4, 2) == 2 and seed_devices(3, 2) == 1 and seed_devices(6, 4) == 3
    if len(jax.local_devices()) == 1:
        assert seed_sharding(4) is None


def test_groups_by_step_orders_groups_by_step_and_keeps_run_order() -> None:
    from hybridrl.core.seeding import groups_by_step

    assert groups_by_step([250, 100, 250, 0]) == [[3], [1], [0, 2]]
    assert groups_by_step([]) == []
