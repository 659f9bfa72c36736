"""Checkpoints: the full train state in one file, written atomically and verified when read.

A checkpoint holds

* ``state``: a pytree of arrays (parameters, optimiser states with their step counts and
  schedules, PRNG keys, normaliser statistics, buffers), serialised with
  :mod:`flax.serialization` and restored into a template of the same structure;
* ``host_state``: JSON-serialisable values (numpy generator states, counters);
* ``blobs``: opaque bytes (environment snapshots).

File layout: a magic header, the SHA-256 of the payload, then the msgpack payload. A truncated
or altered file fails the checksum and is reported as corrupt instead of half-loading.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import msgpack
import numpy as np
from flax import serialization

from hybridrl.core.io import atomic_write_bytes
from hybridrl.errors import CheckpointError

MAGIC = b"HYBRIDRL-CHECKPOINT\x00"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, *, algorithm: str, step: int, state: Any,
                    host_state: dict[str, Any] | None = None, blobs: dict[str, bytes] | None = None) -> None:
    """Write a checkpoint atomically.

    :param path: file to write (replaced atomically).
    :param algorithm: the algorithm's registry name; loading checks it.
    :param step: env steps (or gradient steps) done when the checkpoint was taken.
    :param state: pytree of arrays.
    :param host_state: JSON-serialisable values.
    :param blobs: named byte strings.
    """
    state_dict = serialization.to_state_dict(jax.device_get(state))
    payload = msgpack.packb({
        "format_version": FORMAT_VERSION,
        "algorithm": algorithm,
        "step": int(step),
        "state": serialization.msgpack_serialize(state_dict),
        "host_state": json.dumps(host_state or {}, default=_to_json),
        "blobs": blobs or {},
    }, use_bin_type=True)
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).digest() + payload)


def read_checkpoint_step(path: str | Path, *, algorithm: str) -> int:
    """The step recorded in the checkpoint at ``path`` (checked like :func:`load_checkpoint`)."""
    return int(_read_record(Path(path), algorithm)["step"])


def load_checkpoint(path: str | Path, *, algorithm: str, template: Any
                    ) -> tuple[Any, dict[str, Any], dict[str, bytes], int]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    :param template: a pytree with the structure and shapes the state must have (e.g. a freshly
        initialised train state of the same config).
    :returns: ``(state, host_state, blobs, step)``.
    :raises CheckpointError: if the file is missing, corrupt, of another algorithm, or does not
        fit ``template``.
    """
    path = Path(path)
    record = _read_record(path, algorithm)
    loaded = serialization.msgpack_restore(record["state"])
    _check_structure(path, serialization.to_state_dict(jax.device_get(template)), loaded)
    state = serialization.from_state_dict(template, loaded)
    host_state = json.loads(record["host_state"])
    return state, host_state, dict(record["blobs"]), int(record["step"])


def _read_record(path: Path, algorithm: str) -> dict[str, Any]:
    """The checkpoint's verified record (header, checksum, format and algorithm checked)."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    raw = path.read_bytes()
    header = len(MAGIC) + 32
    if not raw.startswith(MAGIC) or len(raw) < header:
        raise CheckpointError(f"{path} is not a hybridrl checkpoint (wrong header); it may be corrupt")
    payload = raw[header:]
    if hashlib.sha256(payload).digest() != raw[len(MAGIC):header]:
        raise CheckpointError(
            f"{path} is corrupt (checksum mismatch: truncated or modified); delete it to restart the run "
            "from scratch, or restore it from a backup"
        )
    try:
        record = msgpack.unpackb(payload, raw=False)
    except Exception as error:  # msgpack raises several unrelated types
        raise CheckpointError(f"{path} is corrupt: {error}") from error
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {record.get('format_version')}; "
                              f"this hybridrl reads format {FORMAT_VERSION}")
    if record.get("algorithm") != algorithm:
        raise CheckpointError(f"{path} is a checkpoint of {record.get('algorithm')!r}, not {algorithm!r}; "
                              "point to a run of the same algorithm")
    return record


def _check_structure(path: Path, expected: Any, loaded: Any, where: str = "") -> None:
    """Raise a readable error where ``loaded`` differs from ``expected`` in keys or shapes."""
    if isinstance(expected, dict):
        if not isinstance(loaded, dict):
            raise CheckpointError(f"{path} does not match this run's config: {where or 'state'} is not a mapping")
        missing, extra = set(expected) - set(loaded), set(loaded) - set(expected)
        if missing or extra:
            raise CheckpointError(
                f"{path} does not match this run's config at {where or 'state'}: missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}; was it written by another algorithm or version?"
            )
        for key in expected:
            _check_structure(path, expected[key], loaded[key], f"{where}/{key}")
        return
    expected_shape, loaded_shape = np.shape(expected), np.shape(loaded)
    if expected_shape != loaded_shape:
        raise CheckpointError(
            f"{path} does not match this run's config: {where} has shape {loaded_shape}, expected "
            f"{expected_shape}; was it written for another environment or network size?"
        )


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's host state")
