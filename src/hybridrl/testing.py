"""Assertions shared by hybridrl's tests (and usable in tests of algorithms built on it)."""

from __future__ import annotations

import json
from collections.abc import Callable
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


def pause_then_resume(make_trainer: Callable[[], Any], stop_at_step: int,
                      after_pause: Callable[[Any], None] | None = None,
                      after_load: Callable[[Any], None] | None = None) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Train a fresh trainer until it pauses at its first checkpoint at or after ``stop_at_step``,
    then reload that checkpoint into another fresh trainer and train it to the end.

    :param make_trainer: builds a trainer of the run directory (whose ``config.json`` is written).
    :param after_pause: called with the paused trainer before it is closed.
    :param after_load: called with the reloaded trainer before it trains on.
    :returns: the paused run's result, the resumed trainer (closed, its state kept) and its final result.
    """
    trainer = make_trainer()
    try:
        paused = trainer.train(stop_at_step=stop_at_step)
        if after_pause is not None:
            after_pause(trainer)
    finally:
        trainer.close()
    resumed = make_trainer()
    try:
        resumed.load_checkpoint(Path(trainer.run_dir) / "checkpoint.ckpt")
        if after_load is not None:
            after_load(resumed)
        final = resumed.train()
    finally:
        resumed.close()
    return paused, resumed, final


def interrupt_run(spec: Any, config: Any, run_dir: Path, **stops: int) -> None:
    """Start ``config`` of algorithm ``spec`` in a new ``run_dir`` and stop it where ``stops`` say
    (the trainer's ``train`` arguments, e.g. ``stop_at_step=100``), as a killed run would leave it:
    unfinished, with a checkpoint for ``hybridrl resume``."""
    from hybridrl import runs

    run_dir.mkdir(parents=True)
    runs.write_run_config(run_dir, spec, config)
    trainer = spec.make_trainer(config, run_dir, False)
    try:
        assert trainer.train(**stops)["paused"]
    finally:
        trainer.close()
    assert not runs.is_finished(run_dir)


#: float32 unit round-off, ``u = 2**-24``.
FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def pause_then_resume_seeds(train_seeds: Callable[..., list[dict[str, Any]]], spec: Any, configs: list[Any],
                            root: Path, stop_at_step: int) -> list[Any]:
    """Train seeds together (``train_seeds``, an algorithm's hook) until ``stop_at_step``, then resume
    the group with :func:`hybridrl.runs.start_seeds`, checking that it paused there and that every
    run went on from its checkpoint (its log restarted at that step) rather than from scratch.

    :returns: the resumed runs' :class:`~hybridrl.runs.RunResult`, in the order of ``configs``.
    """
    from hybridrl import runs

    seeds = [config.seed for config in configs]
    paused = train_seeds(configs, runs.seed_run_dirs(root, seeds), stop_at_step=stop_at_step)
    assert paused == [{"step": stop_at_step, "paused": True}] * len(configs)
    results = runs.start_seeds(spec, configs[0], seeds, root)
    for result in results:
        assert any(path.name.endswith(f".step{stop_at_step}") for path in (result.run_dir / "tb").iterdir())
    return results


def roundoff_tolerance(steps: int, summation_length: int) -> float:
    """A relative tolerance for two float32 trainings that differ only in the order of their sums,
    such as a seed trained alone and the same seed vmapped with others (XLA batches the matrix
    products and may sum in another order), with the same random streams.

    Per update, a sum of ``K`` terms in any order has a relative error of at most ``K u`` (Higham,
    *Accuracy and Stability of Numerical Algorithms*, Eq. 3.5, ``gamma_K``); ``steps`` updates add at
    most ``steps`` such errors when training does not amplify them, which holds for short runs (a
    long run can amplify round-off until seeds decorrelate, so compare short runs).

    :param steps: gradient steps of the compared runs.
    :param summation_length: the longest sum in one update (batch size or widest layer).
    """
    return steps * summation_length * FLOAT32_UNIT_ROUNDOFF
