"""Run directories: start, resume and evaluate runs of any registered algorithm.

A run directory holds everything about one run::

    RUN_DIR/
      config.json      resolved config, algorithm, preset, git commit, package versions, machine
      metrics.jsonl    one JSON object per logging point: {"step": env steps, "time": s, "<tag>": value}
      checkpoint.ckpt  the full train state, rewritten atomically at every checkpoint
      final.json       final metrics; its presence marks the run as finished
      tb/              TensorBoard event files

Seeds trained together in one process (:func:`train_seeds`, ``hybridrl train ALGORITHM --seeds N``)
get one such directory each, ``ROOT/seed<seed>/``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridrl.algorithms import AlgorithmSpec, algorithm_names, get_algorithm
from hybridrl.core import provenance
from hybridrl.core.io import atomic_write_json
from hybridrl.errors import ConfigError, RunDirectoryError

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.ckpt"
FINAL_FILE = "final.json"


@dataclass(frozen=True)
class RunResult:
    """The outcome of a finished run: where it lives and its final metrics."""

    run_dir: Path
    final: dict[str, Any]


def default_run_dir(algorithm: str, config: Any, seeds: Sequence[int] | None = None) -> Path:
    """``runs/<algorithm>/<env>-s<seed>-<timestamp>``, the folder a run gets when none is given; for
    ``seeds`` trained together, ``runs/<algorithm>/<env>-s<first>-<last>-<timestamp>``."""
    task = getattr(config, "env", None) or getattr(config, "dataset", None) or getattr(config, "task", None) \
        or getattr(config, "problem", None) or "run"
    environment = str(task).replace(":", "-").replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    seed = f"{seeds[0]}-{seeds[-1]}" if seeds else getattr(config, "seed", 0)
    return Path("runs") / algorithm / f"{environment}-s{seed}-{stamp}"


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict."""
    return dataclasses.asdict(config)


def config_from_dict(spec: AlgorithmSpec, values: dict[str, Any]) -> Any:
    """Rebuild ``spec``'s config from :func:`config_to_dict` output (lists back to tuples)."""
    fields = {field.name: field for field in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RunDirectoryError(
            f"config.json has options this version of {spec.name} does not know: {', '.join(unknown)}; "
            "it was written by another hybridrl version"
        )
    restored = {}
    for name, value in values.items():
        default = fields[name].default
        restored[name] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
    return spec.config_cls(**restored)


def write_run_config(run_dir: Path, spec: AlgorithmSpec, config: Any) -> None:
    """Write ``config.json``: the resolved config and the run's provenance."""
    atomic_write_json(run_dir / CONFIG_FILE, {
        "algorithm": spec.name,
        "preset": getattr(config, "preset", None),
        "config": config_to_dict(config),
        "git_commit": provenance.git_commit(),
        "versions": provenance.package_versions(),
        "machine": provenance.machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def read_run_config(run_dir: str | Path) -> tuple[AlgorithmSpec, Any]:
    """The algorithm and config recorded in ``run_dir/config.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirectoryError(f"run directory {run_dir} does not exist; pass the folder a run wrote")
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise RunDirectoryError(f"{run_dir} is not a hybridrl run directory: it has no {CONFIG_FILE}")
    try:
        recorded = json.loads(config_path.read_text())
        spec = get_algorithm(recorded["algorithm"])
        config_values = recorded["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise RunDirectoryError(f"{config_path} is unreadable ({error}); the run cannot be resumed") from error
    except ConfigError as error:
        raise RunDirectoryError(f"{config_path}: {error}") from error
    return spec, config_from_dict(spec, config_values)


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` has finished (it wrote ``final.json``)."""
    return (Path(run_dir) / FINAL_FILE).is_file()


def execute(spec: AlgorithmSpec, config: Any, run_dir: Path, progress: bool = False) -> RunResult:
    """Train ``config`` in ``run_dir``, resuming from its checkpoint if one is there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONFIG_FILE).is_file():
        write_run_config(run_dir, spec, config)
    trainer = spec.make_trainer(config, run_dir, progress)
    try:
        checkpoint = run_dir / CHECKPOINT_FILE
        if checkpoint.is_file():
            trainer.load_checkpoint(checkpoint)
        started = time.perf_counter()
        final = trainer.train()
        final.setdefault("wall_time_s", time.perf_counter() - started)
    finally:
        trainer.close()
    return _finish(spec, config, run_dir, final, getattr(trainer, "env_id", None))


def _finish(spec: AlgorithmSpec, config: Any, run_dir: Path, final: dict[str, Any], env_id: str | None = None
            ) -> RunResult:
    final = {"algorithm": spec.name, "env": getattr(config, "env", None) or env_id,
             "seed": getattr(config, "seed", None), **final}
    for task_key in ("dataset", "task", "problem"):
        if hasattr(config, task_key):
            final = {task_key: getattr(config, task_key), **final}
    atomic_write_json(run_dir / FINAL_FILE, final)
    return RunResult(run_dir=run_dir, final=final)


def execute_seeds(spec: AlgorithmSpec, configs: list[Any], run_dirs: list[Path], progress: bool = False
                  ) -> list[RunResult]:
    """Train runs that differ only in their seed in this process, seeds vmapped (``spec.train_seeds``).

    Each run directory gets its config, checkpoints and ``final.json`` as with :func:`execute`;
    finished runs are returned as they are, interrupted ones resume from their checkpoints.
    """
    check_trains_seeds(spec)
    assert spec.train_seeds is not None
    pending = []
    for config, run_dir in zip(configs, run_dirs, strict=True):
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / CONFIG_FILE).is_file():
            _check_same_config(run_dir, config)
        else:
            write_run_config(run_dir, spec, config)
        if not is_finished(run_dir):
            pending.append((config, run_dir))
    if pending:
        started = time.perf_counter()
        finals = spec.train_seeds([config for config, _ in pending], [run_dir for _, run_dir in pending], progress)
        elapsed = time.perf_counter() - started
        for (config, run_dir), final in zip(pending, finals, strict=True):
            final.setdefault("wall_time_s", elapsed / len(pending))
            _finish(spec, config, run_dir, final)
    return [RunResult(run_dir=run_dir, final=json.loads((run_dir / FINAL_FILE).read_text())) for run_dir in run_dirs]


def seeds_algorithm_names() -> list[str]:
    """Names of the algorithms that train several seeds in one process (their spec has ``train_seeds``)."""
    return [name for name in algorithm_names() if get_algorithm(name).train_seeds is not None]


def check_trains_seeds(spec: AlgorithmSpec) -> None:
    """Raise :class:`ConfigError`, naming the algorithms that can, if ``spec`` cannot train seeds in one process."""
    if spec.train_seeds is None:
        raise ConfigError(f"{spec.name} cannot train several seeds in one process (--seeds); algorithms that can: "
                          f"{', '.join(seeds_algorithm_names())}. Run one seed per process (--seed), or a sweep")


def seed_run_dirs(root: Path, seeds: Sequence[int]) -> list[Path]:
    """The run directories of ``seeds`` trained together under ``root``: ``root/seed<seed>``."""
    return [root / f"seed{seed}" for seed in seeds]


def train_seeds(algorithm: str, seeds: Sequence[int], preset: str = "cpu", run_dir: str | Path | None = None,
                progress: bool = False, **overrides: Any) -> list[RunResult]:
    """Train ``algorithm`` once per seed in this process, seeds vmapped; the Python twin of
    ``hybridrl train ALGORITHM --seeds N --first-seed K`` (``seeds=range(K, K + N)``).

    :param seeds: the runs' seeds; every other option is shared.
    :param run_dir: the folder that holds one run directory per seed, ``run_dir/seed<seed>``
        (default ``runs/<algorithm>/<env>-s<first>-<last>-<time>``). Calling again with the same
        folder returns finished runs as they are and resumes interrupted ones.
    :param overrides: config fields, as for :func:`train` (not ``seed``).
    """
    if "seed" in overrides:
        raise ConfigError("pass the seeds as `seeds`, not `seed`")
    spec = get_algorithm(algorithm)
    return start_seeds(spec, spec.make_config(preset, **overrides), seeds, run_dir, progress)


def start_seeds(spec: AlgorithmSpec, config: Any, seeds: Sequence[int], run_dir: str | Path | None = None,
                progress: bool = False) -> list[RunResult]:
    """Train ``config`` once per seed in this process (:func:`execute_seeds`), one run directory
    per seed under ``run_dir`` (see :func:`train_seeds`)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds trained together must be distinct and at least one, got {list(seeds)}")
    root = Path(run_dir) if run_dir is not None else default_run_dir(spec.name, config, seeds)
    configs = [dataclasses.replace(config, seed=seed) for seed in seeds]
    return execute_seeds(spec, configs, seed_run_dirs(root, seeds), progress)


def train(algorithm: str, preset: str = "cpu", run_dir: str | Path | None = None,
          progress: bool = False, **overrides: Any) -> RunResult:
    """Train ``algorithm`` with a preset and overrides; the Python twin of ``hybridrl train``.

    :param algorithm: a registered name, e.g. ``"ppo"``.
    :param preset: ``"smoke"``, ``"cpu"`` or ``"paper"``.
    :param run_dir: where to write the run; default ``runs/<algorithm>/<env>-s<seed>-<time>``.
    :param progress: show a progress bar.
    :param overrides: config fields, e.g. ``env="Hopper-v5", seed=1, total_steps=100_000``.
    """
    spec = get_algorithm(algorithm)
    config = spec.make_config(preset, **overrides)
    return start(spec, config, run_dir, progress)


def start(spec: AlgorithmSpec, config: Any, run_dir: str | Path | None = None,
          progress: bool = False) -> RunResult:
    """Start a new run of ``config``; refuses a folder that already holds a different run."""
    target = Path(run_dir) if run_dir is not None else default_run_dir(spec.name, config)
    if (target / CONFIG_FILE).is_file():
        _check_same_config(target, config)
    return execute(spec, config, target, progress)


def _check_same_config(run_dir: Path, config: Any) -> None:
    _, recorded = read_run_config(run_dir)
    if config_to_dict(recorded) != config_to_dict(config):
        raise RunDirectoryError(
            f"{run_dir} already holds a run with a different config; choose another --run-dir, "
            f"or continue that run with `hybridrl resume {run_dir}`"
        )


def resume(run_dir: str | Path, progress: bool = False) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint (from the start if it has none)."""
    run_dir = Path(run_dir)
    spec, config = read_run_config(run_dir)
    if is_finished(run_dir):
        final = json.loads((run_dir / FINAL_FILE).read_text())
        return RunResult(run_dir=run_dir, final=final)
    return execute(spec, config, run_dir, progress)


def evaluate(run_dir: str | Path, episodes: int | None = None) -> dict[str, float]:
    """Evaluate the policy in ``run_dir``'s checkpoint on fresh episodes and write ``eval.json``."""
    run_dir = Path(run_dir)
    spec, config = read_run_config(run_dir)
    checkpoint = run_dir / CHECKPOINT_FILE
    if not checkpoint.is_file():
        raise RunDirectoryError(f"{run_dir} has no {CHECKPOINT_FILE} yet: nothing to evaluate")
    if episodes is not None and episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    trainer = spec.make_trainer(config, run_dir, False)
    try:
        trainer.load_checkpoint(checkpoint)
        result = trainer.evaluate(episodes or int(getattr(config, "eval_episodes", 10)))
    finally:
        trainer.close()
    atomic_write_json(run_dir / "eval.json", result)
    return result
