"""Tests of atomic file writes (hybridrl.core.io)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridrl.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def _leftovers(folder: Path, name: str) -> list[Path]:
    return [path for path in folder.iterdir() if path.name != name]


@given(st.binary(max_size=4096))
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_atomic_write_bytes_writes_exactly_the_data(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "blob.bin"
    atomic_write_bytes(path, data)
    assert path.read_bytes() == data
    assert _leftovers(tmp_path, "blob.bin") == []


def test_atomic_write_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    atomic_write_text(path, "old and longer")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert _leftovers(tmp_path, "file.txt") == []


def test_atomic_write_creates_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "file.txt"
    atomic_write_text(path, "ü ✓")
    assert path.read_bytes() == "ü ✓".encode()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    atomic_write_bytes(path, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]  # fails inside the write

    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path, "file.bin") == []


def test_atomic_write_json_handles_numpy_paths_and_tuples(tmp_path: Path) -> None:
    payload = {"array": np.array([1.5, 2.5]), "scalar": np.float32(0.5), "count": np.int64(3),
               "path": Path("/runs/x"), "shape": (2, 3)}
    path = tmp_path / "config.json"

    atomic_write_json(path, payload)

    text = path.read_text()
    assert text.endswith("\n")
    assert json.loads(text) == {"array": [1.5, 2.5], "scalar": 0.5, "count": 3, "path": "/runs/x",
                                "shape": [2, 3]}


def test_atomic_write_json_rejects_unserialisable_values_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    atomic_write_json(path, {"kept": True})

    with pytest.raises(TypeError, match="object"):
        atomic_write_json(path, {"bad": object()})

    assert json.loads(path.read_text()) == {"kept": True}
    assert _leftovers(tmp_path, "config.json") == []
