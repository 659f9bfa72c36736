"""Assertions shared by hybridrl's tests (and usable in tests of algorithms built on it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

#: Metrics that depend on wall-clock time and so differ between otherwise identical runs.
TIMING_METRICS = ("time", "train/steps_per_second")


def metrics_without_timing(run_dir: Path) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl`` entries without the wall-clock fields, for comparing runs."""
    entries = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in entry.items() if key not in TIMING_METRICS} for entry in entries]


def assert_trees_equal(left: Any, right: Any) -> None:
    """Assert two pytrees have the same structure and bit-identical leaves of the same dtype."""
    leaves_left, tree_left = jax.tree_util.tree_flatten(left)
    leaves_right, tree_right = jax.tree_util.tree_flatten(right)
    assert str(tree_left) == str(tree_right), f"tree structures differ: {tree_left} vs {tree_right}"
    for left_leaf, right_leaf in zip(leaves_left, leaves_right, strict=True):
        a, b = np.asarray(left_leaf), np.asarray(right_leaf)
        assert a.dtype == b.dtype, f"dtypes differ: {a.dtype} vs {b.dtype}"
        np.testing.assert_array_equal(a, b)
