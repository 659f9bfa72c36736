"""Tests of checkpoints (hybridrl.core.checkpoint): full round trips, corruption, mismatches,
atomicity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hybridrl.core.checkpoint import load_checkpoint, save_checkpoint
from hybridrl.core.seeding import Seeder, generator_state, restore_generator
from hybridrl.errors import CheckpointError, HybridRLError
from hybridrl.testing import assert_trees_equal


def _params(width: int = 3) -> dict[str, Any]:
    return {
        "actor": {"torso": {"kernel": jnp.arange(4.0 * width).reshape(4, width), "bias": jnp.full(width, 0.5)},
                  "log_std": jnp.array([-0.5, -1.0])},
        "critic": {"output": {"kernel": jnp.ones((width, 1)), "bias": jnp.zeros(1)}},
    }


def _optimizer() -> optax.GradientTransformation:
    return optax.inject_hyperparams(optax.adam)(learning_rate=3e-4)


def _train_state(width: int = 3, updates: int = 3) -> dict[str, Any]:
    """Parameters, an Adam state after ``updates`` steps with an annealed learning rate, a PRNG key
    and normaliser statistics: every kind of array a learner checkpoints."""
    params = _params(width)
    optimizer = _optimizer()
    opt_state = optimizer.init(params)
    for index in range(updates):
        grads = jax.tree_util.tree_map(lambda leaf, index=index: jnp.full_like(leaf, 0.1 * (index + 1)), params)
        update, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, update)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(1e-4)  # annealed
    return {"params": params, "opt_state": opt_state,
            "key": jax.random.split(jax.random.PRNGKey(42))[1],
            "obs_stats": {"mean": np.linspace(-1.0, 1.0, 4), "var": np.full(4, 2.0), "count": np.float64(17.0)}}


@pytest.fixture(scope="module")
def train_state() -> dict[str, Any]:
    return _train_state()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _train_state(updates=0)


def test_round_trip_restores_every_field_kind(tmp_path: Path, train_state: dict[str, Any],
                                              template: dict[str, Any]) -> None:
    rng = Seeder(5).numpy("rollout")
    rng.random(7)
    rng.integers(0, 10, dtype=np.int32)  # leaves half a word buffered in the state
    host_state = {
        "rng": generator_state(rng),
        "episode_returns": np.array([1.0 / 3.0, -2.5e-300, 1e300]),
        "global_step": 1234,
        "nested": {"flags": [True, False], "name": "ppo", "nothing": None},
    }
    assert max(host_state["rng"]["state"].values()) >= 2**64  # PCG64's state is 128-bit
    blobs = {"env_0": bytes(range(256)), "env_1": b""}
    path = tmp_path / "checkpoint.ckpt"

    save_checkpoint(path, algorithm="ppo", step=1234, state=train_state, host_state=host_state, blobs=blobs)
    state, loaded_host, loaded_blobs, step = load_checkpoint(path, algorithm="ppo", template=template)

    assert_trees_equal(state, train_state)
    assert step == 1234
    assert loaded_blobs == blobs
    # The Adam step count and the injected (annealed) learning rate come back.
    assert int(state["opt_state"].count) == 3
    assert int(state["opt_state"].inner_state[0].count) == 3
    assert float(state["opt_state"].hyperparams["learning_rate"]) == pytest.approx(1e-4)
    # Float64 arrays survive bit for bit (as lists of floats).
    np.testing.assert_array_equal(np.asarray(loaded_host["episode_returns"]), host_state["episode_returns"])
    assert loaded_host["global_step"] == 1234 and loaded_host["nested"] == host_state["nested"]
    # The generator's 128-bit state survives: the restored stream continues the original one.
    restored = restore_generator(loaded_host["rng"])
    np.testing.assert_array_equal(restored.integers(0, 10, size=5, dtype=np.int32),
                                  rng.integers(0, 10, size=5, dtype=np.int32))
    np.testing.assert_array_equal(restored.random(5), rng.random(5))


def test_restored_optimizer_state_continues_training_identically(tmp_path: Path, train_state: dict[str, Any],
                                                                 template: dict[str, Any]) -> None:
    path = tmp_path / "checkpoint.ckpt"
    save_checkpoint(path, algorithm="ppo", step=3, state=train_state)
    state, _, _, _ = load_checkpoint(path, algorithm="ppo", template=template)

    optimizer = _optimizer()
    grads = jax.tree_util.tree_map(lambda leaf: jnp.full_like(leaf, -0.3), train_state["params"])
    expected_update, expected_opt = optimizer.update(grads, train_state["opt_state"], train_state["params"])
    update, opt_state = optimizer.update(grads, state["opt_state"], state["params"])

    assert_trees_equal(update, expected_update)
    assert_trees_equal(opt_state, expected_opt)
    np.testing.assert_array_equal(jax.random.normal(state["key"], (3,)),
                                  jax.random.normal(train_state["key"], (3,)))


def test_defaults_give_empty_host_state_and_blobs(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.ckpt"
    save_checkpoint(path, algorithm="bc", step=0, state={"w": np.zeros(2, dtype=np.float32)})
    state, host_state, blobs, step = load_checkpoint(path, algorithm="bc",
                                                     template={"w": np.ones(2, dtype=np.float32)})
    np.testing.assert_array_equal(state["w"], np.zeros(2))
    assert host_state == {} and blobs == {} and step == 0


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.ckpt"
    save_checkpoint(path, algorithm="ppo", step=10, state={"w": np.arange(6.0).reshape(2, 3)},
                    host_state={"a": 1}, blobs={"env_0": b"snapshot"})
    return path


def _template() -> dict[str, Any]:
    return {"w": np.zeros((2, 3))}


@pytest.mark.parametrize("position", [0, 5, 25, 40, 60, -1])
def test_a_flipped_byte_is_reported_as_corrupt(saved: Path, position: int) -> None:
    # Positions cover the magic header, the checksum and the payload.
    data = bytearray(saved.read_bytes())
    data[position] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved, algorithm="ppo", template=_template())


@pytest.mark.parametrize("keep", [0, 10, 30, 52, -1])
def test_a_truncated_file_is_reported_as_corrupt(saved: Path, keep: int) -> None:
    saved.write_bytes(saved.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved, algorithm="ppo", template=_template())


def test_another_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n' * 10)
    with pytest.raises(CheckpointError, match="not a hybridrl checkpoint"):
        load_checkpoint(path, algorithm="ppo", template=_template())


def test_wrong_algorithm_names_both(saved: Path) -> None:
    with pytest.raises(CheckpointError, match=r"'ppo'.*'sac'"):
        load_checkpoint(saved, algorithm="sac", template=_template())


def test_template_with_another_shape_is_reported_with_the_shapes(saved: Path) -> None:
    with pytest.raises(CheckpointError, match=r"/w has shape \(2, 3\), expected \(3, 3\)"):
        load_checkpoint(saved, algorithm="ppo", template={"w": np.zeros((3, 3))})


def test_template_with_other_keys_is_reported_with_the_keys(saved: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing \['v'\], unexpected \['w'\]"):
        load_checkpoint(saved, algorithm="ppo", template={"v": np.zeros((2, 3))})


def test_network_size_mismatch_deep_in_an_optimizer_state(tmp_path: Path, train_state: dict[str, Any]) -> None:
    path = tmp_path / "checkpoint.ckpt"
    save_checkpoint(path, algorithm="ppo", step=3, state=train_state)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(path, algorithm="ppo", template=_train_state(width=5, updates=0))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere.ckpt", algorithm="ppo", template=_template())


def test_checkpoint_errors_are_user_facing_errors() -> None:
    assert issubclass(CheckpointError, HybridRLError)


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.ckpt"
    for step in range(3):
        save_checkpoint(path, algorithm="ppo", step=step, state={"w": np.full(3, float(step))})
    assert [entry.name for entry in tmp_path.iterdir()] == ["checkpoint.ckpt"]
    _, _, _, step = load_checkpoint(path, algorithm="ppo", template={"w": np.zeros(3)})
    assert step == 2


@pytest.mark.parametrize("bad", [
    {"host_state": {"env": object()}},
    {"blobs": {"env_0": object()}},
    {"state": {"w": object()}},
])
def test_a_failing_save_leaves_the_old_checkpoint_intact(saved: Path, bad: dict[str, Any]) -> None:
    before = saved.read_bytes()
    arguments: dict[str, Any] = {"state": {"w": np.zeros((2, 3))}, **bad}

    with pytest.raises(TypeError):
        save_checkpoint(saved, algorithm="ppo", step=20, **arguments)

    assert saved.read_bytes() == before
    assert [entry.name for entry in saved.parent.iterdir()] == [saved.name]
    _, _, blobs, step = load_checkpoint(saved, algorithm="ppo", template=_template())
    assert step == 10 and blobs == {"env_0": b"snapshot"}
