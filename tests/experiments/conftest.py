"""Run directories written in the documented format, as test data for the results store, the
statistics and the reports (the sweep tests run real PPO instead)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

RunWriter = Callable[..., Path]


def write_run(root: Path, *, algorithm: str = "ppo", env: str = "CartPole-v1", seed: int = 0,
              variant: str = "default", sweep: str | None = "test-sweep", steps: Sequence[int] = (100, 200),
              returns: Sequence[float] = (10.0, 20.0), normalized: Sequence[float] | None = None,
              finished: bool = True, error: str | None = None, wall_time_s: float = 30.0,
              extra_lines: Sequence[str] = ()) -> Path:
    """Write a run directory like :mod:`hybridrl.runs` and a sweep would, and return it.

    :param steps: env steps of the evaluations; ``returns`` (and ``normalized``) their values.
    :param finished: write ``final.json`` from the last evaluation.
    :param error: write ``error.json`` with this message.
    :param extra_lines: raw text appended to ``metrics.jsonl`` (to test damaged files).
    """
    run_dir = root / algorithm / env / variant / f"seed{seed}"
    run_dir.mkdir(parents=True)
    config = {"env": env, "seed": seed, "total_steps": int(steps[-1]), "preset": "smoke",
              "learning_rate": 3e-4, "policy_hidden": [64, 64]}
    (run_dir / "config.json").write_text(json.dumps({
        "algorithm": algorithm, "preset": "smoke", "config": config, "git_commit": "abc123",
        "versions": {}, "machine": {}, "created": "2026-01-01T00:00:00+0000"}))
    lines = []
    for index, (step, value) in enumerate(zip(steps, returns, strict=True)):
        lines.append({"step": int(step) // 2, "time": 0.5 * index, "train/episode_return": value / 2})
        evaluation: dict[str, Any] = {"step": int(step), "time": 1.0 * index, "eval/return_mean": value,
                                      "eval/return_std": 1.0}
        if normalized is not None:
            evaluation["eval/normalized_score"] = normalized[index]
        lines.append(evaluation)
    text = "".join(json.dumps(line) + "\n" for line in lines) + "".join(extra_lines)
    (run_dir / "metrics.jsonl").write_text(text)
    if finished:
        final: dict[str, Any] = {"algorithm": algorithm, "env": env, "seed": seed, "step": int(steps[-1]),
                                 "eval/return_mean": returns[-1], "eval/return_std": 1.0,
                                 "wall_time_s": wall_time_s}
        if normalized is not None:
            final["eval/normalized_score"] = normalized[-1]
        (run_dir / "final.json").write_text(json.dumps(final))
    if error is not None:
        (run_dir / "error.json").write_text(json.dumps({"message": error, "traceback": "Traceback ..."}))
    if sweep is not None:
        (run_dir / "sweep_run.json").write_text(json.dumps({
            "sweep": sweep, "algorithm": algorithm, "task_key": "env", "task": env, "variant": variant,
            "seed": seed}))
    return run_dir


@pytest.fixture
def run_writer(tmp_path: Path) -> RunWriter:
    """``run_writer(**kwargs)`` writes a run under ``tmp_path / "runs"`` (see :func:`write_run`)."""
    root = tmp_path / "runs"

    def write(**kwargs: Any) -> Path:
        return write_run(root, **kwargs)

    return write
