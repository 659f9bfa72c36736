"""The registry of algorithms the CLI, the Python API and sweeps can run.

Each algorithm module exposes ``ALGORITHM``, an :class:`AlgorithmSpec`. The registry maps a name
to its module so importing hybridrl stays cheap (JAX loads only when an algorithm is used).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hybridrl.errors import ConfigError

#: name -> module that defines ``ALGORITHM``.
_ALGORITHM_MODULES: dict[str, str] = {
    "ailboost": "hybridrl.imitation.ailboost",
    "bc": "hybridrl.offline.bc",
    "dac": "hybridrl.imitation.dac",
    "iql": "hybridrl.offline.iql",
    "lal": "hybridrl.active.lal",
    "mbo": "hybridrl.mbo.experiment",
    "ppo": "hybridrl.rl.ppo",
    "props": "hybridrl.rl.props",
    "sac": "hybridrl.rl.sac",
    "uni-o4": "hybridrl.offline.uni_o4",
}


class Trainer(Protocol):
    """What every algorithm's trainer offers the run machinery (:mod:`hybridrl.runs`)."""

    def train(self) -> dict[str, Any]:
        """Train until the configured budget is spent, checkpointing on the way; return final metrics."""
        ...

    def save_checkpoint(self) -> Path:
        """Write the full train state atomically to the run directory."""
        ...

    def load_checkpoint(self, path: Path) -> None:
        """Restore the full train state written by :meth:`save_checkpoint`."""
        ...

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Evaluate the current policy; keys as in :func:`hybridrl.core.evaluation.evaluate_policy`."""
        ...

    def close(self) -> None:
        """Release environments and log writers."""
        ...


@dataclass(frozen=True)
class AlgorithmSpec:
    """An algorithm as the run machinery sees it.

    :param name: the CLI name (``hybridrl train NAME``).
    :param config_cls: a dataclass whose fields (with docstrings) are the algorithm's options.
    :param presets: preset name -> field overrides applied to the dataclass defaults.
    :param make_trainer: ``(config, run_dir, progress) -> Trainer``.
    :param summary: one line for ``hybridrl train --help``.
    :param task_presets: optional ``(preset, values) -> overrides``: per-task settings (e.g. the
        paper's table for the chosen environment) that sit between the preset and the user's
        overrides. ``values`` is the full config the preset and overrides give.
    :param train_seeds: optional ``(configs, run_dirs, progress) -> finals``: trains runs that
        differ only in their seed in one process with the seeds vmapped, resuming each from its
        checkpoint, and returns each run's final metrics (:func:`hybridrl.runs.execute_seeds` writes
        the run files around it).
    :param report: optional ``(run_dir, final, title) -> (figure, line)``: the figure a finished run
        writes instead of the plain learning curve, and what ``hybridrl train`` prints of its result.
    """

    name: str
    config_cls: type
    presets: Mapping[str, Mapping[str, Any]]
    make_trainer: Callable[[Any, Path, bool], Trainer]
    summary: str
    task_presets: Callable[[str, Mapping[str, Any]], Mapping[str, Any]] | None = None
    train_seeds: Callable[..., list[dict[str, Any]]] | None = None
    report: Callable[[Path, dict[str, Any], str], tuple[Path, str]] | None = None

    def make_config(self, preset: str = "cpu", **overrides: Any) -> Any:
        """The config of ``preset`` with ``overrides`` applied and validated."""
        if preset not in self.presets:
            raise ConfigError(
                f"unknown preset {preset!r} for {self.name}; choose one of: {', '.join(self.presets)}"
            )
        defaults = {field.name: field.default for field in dataclasses.fields(self.config_cls)}
        fields = set(defaults)
        values = {**self.presets[preset], **overrides, "preset": preset}
        if self.task_presets is not None:
            task = self.task_presets(preset, {**defaults, **values})
            values = {**self.presets[preset], **task, **overrides, "preset": preset}
        # Lists (from YAML, JSON or Python) become tuples where the field is a tuple, so a config
        # compares equal to the one read back from config.json.
        values = {key: tuple(value) if isinstance(value, list) and isinstance(defaults.get(key), tuple) else value
                  for key, value in values.items()}
        unknown = sorted(set(values) - fields)
        if unknown:
            hints = [f"{key} (did you mean {', '.join(difflib.get_close_matches(key, fields, 2))}?)"
                     if difflib.get_close_matches(key, fields, 2) else key for key in unknown]
            raise ConfigError(f"unknown {self.name} option(s): {'; '.join(hints)}")
        config = self.config_cls(**values)
        validate = getattr(config, "validate", None)
        if callable(validate):
            validate()
        return config


def algorithm_names() -> list[str]:
    """Names of every registered algorithm."""
    return sorted(_ALGORITHM_MODULES)


def get_algorithm(name: str) -> AlgorithmSpec:
    """The :class:`AlgorithmSpec` registered as ``name``; a :class:`ConfigError` lists the others."""
    if name not in _ALGORITHM_MODULES:
        close = difflib.get_close_matches(name, _ALGORITHM_MODULES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown algorithm {name!r}; available: {', '.join(algorithm_names())}.{hint}")
    module = importlib.import_module(_ALGORITHM_MODULES[name])
    spec: AlgorithmSpec = module.ALGORITHM
    return spec
