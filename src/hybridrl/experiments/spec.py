"""Sweep specifications: a YAML file that names a grid of runs, and its expansion into runs.

A spec is a grid of algorithm × task × variant × seed::

    name: ppo-classic
    output: runs/sweeps/ppo-classic      # run dirs: <output>/<algorithm>/<task>/<variant>/seed<k>
    algorithm: [ppo]
    env: [CartPole-v1, Pendulum-v1]       # the task axis: `env`, `dataset`, `task` or `problem`
    preset: smoke
    seeds: 3                              # or a list: [0, 1, 2]
    overrides: {total_steps: 4096}        # applied to every run
    variants:                             # optional named overrides, one axis of the grid
      default: {}
      no-norm: {normalize_observations: false}

Every run of the grid is validated against its algorithm's config (unknown algorithms, presets and
options are reported) before anything runs. ``docs/experiments.md`` documents every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hybridrl.algorithms import get_algorithm
from hybridrl.errors import ConfigError

#: Config fields that can be the task axis of a sweep: online RL trains on an `env`, offline
#: learners on a `dataset`, model-based optimisation on a `task`, active learning on a `problem`.
TASK_KEYS = ("env", "dataset", "task", "problem")

#: Every key a spec may have.
SPEC_KEYS = ("name", "output", "algorithm", "preset", "seeds", "overrides", "variants", "vmap_seeds",
             *TASK_KEYS)

#: The variant a spec without ``variants`` gets.
DEFAULT_VARIANT = "default"

#: What an algorithm's :class:`~hybridrl.algorithms.AlgorithmSpec` must offer for ``vmap_seeds``:
#: ``train_seeds(configs, run_dirs, progress) -> finals``, training runs that differ only in their
#: seed in one process with the seeds vmapped (``mbo`` does). See ``docs/experiments.md``.
SEED_VMAP_ENTRY_POINT = "train_seeds"

_PATH_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


class SweepSpecError(ConfigError):
    """A sweep spec is malformed, names something unknown, or its output folder is unusable."""


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep spec (see the module docstring for the YAML form).

    :param name: the sweep's name, recorded with every run (results are grouped by it).
    :param output: the folder that holds the run directories.
    :param algorithms: registered algorithm names, one axis of the grid.
    :param task_key: the config field the task axis sets: ``"env"``, ``"dataset"`` or ``"task"``.
    :param tasks: the values of ``task_key``, one axis of the grid.
    :param seeds: the seeds, one axis of the grid.
    :param preset: the preset every run starts from (``"smoke"``, ``"cpu"``, ``"paper"``).
    :param overrides: config fields set on every run.
    :param variants: variant name -> config fields; one axis of the grid (``{"default": {}}`` if none).
    :param vmap_seeds: train the seeds of one configuration in one process, vmapped (only for
        algorithms that offer ``train_seeds``; setting it for others is an error).
    :param source: the YAML file the spec was read from, if any.
    """

    name: str
    output: Path
    algorithms: tuple[str, ...]
    task_key: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {DEFAULT_VARIANT: {}})
    vmap_seeds: bool = False
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec in its YAML form (what ``<output>/sweep.yaml`` records)."""
        return {
            "name": self.name,
            "output": str(self.output),
            "algorithm": list(self.algorithms),
            self.task_key: list(self.tasks),
            "preset": self.preset,
            "seeds": list(self.seeds),
            "overrides": dict(self.overrides),
            "variants": {name: dict(values) for name, values in self.variants.items()},
            "vmap_seeds": self.vmap_seeds,
        }


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: everything a worker needs to start or resume it.

    :param sweep: the sweep's name.
    :param algorithm: the registered algorithm name.
    :param preset: the preset the config starts from.
    :param task_key: the config field that holds the task (``"env"``, ``"dataset"``, ``"task"``).
    :param task: the task, e.g. ``"CartPole-v1"``.
    :param variant: the variant's name.
    :param seed: the run's seed.
    :param overrides: every config field the run sets on top of the preset, task and seed included.
    :param run_dir: the run directory, ``<output>/<algorithm>/<task>/<variant>/seed<seed>``.
    """

    sweep: str
    algorithm: str
    preset: str
    task_key: str
    task: str
    variant: str
    seed: int
    overrides: Mapping[str, Any]
    run_dir: Path

    @property
    def name(self) -> str:
        """``algorithm/task/variant/seed<k>``, how logs and listings name the run."""
        return f"{self.algorithm}/{self.task}/{self.variant}/seed{self.seed}"

    def make_config(self) -> Any:
        """The run's validated config (raises :class:`ConfigError` for unknown or invalid options)."""
        return get_algorithm(self.algorithm).make_config(self.preset, **self.overrides)


def path_component(value: str) -> str:
    """``value`` made safe as one folder name (``mujoco/hopper/medium-v0`` -> ``mujoco-hopper-medium-v0``)."""
    cleaned = _PATH_SAFE.sub("-", value).strip("-.")
    return cleaned or "_"


def load_sweep_spec(source: str | os.PathLike[str] | Mapping[str, Any],
                    output: str | os.PathLike[str] | None = None) -> SweepSpec:
    """Read and validate a sweep spec from a YAML file or a mapping with the same keys.

    Validation expands the grid and builds every run's config, so unknown algorithms, presets and
    options are reported here, before anything runs.

    :param source: a path to a YAML file, or the parsed mapping.
    :param output: overrides the spec's ``output`` folder (relative paths are relative to the
        current directory).
    :raises SweepSpecError: the spec is malformed or names something unknown.
    """
    where: Path | None = None
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        label = "sweep spec"
    else:
        where = Path(source)
        label = f"sweep spec {where}"
        if not where.is_file():
            raise SweepSpecError(f"{label} does not exist; pass the path of a YAML file")
        try:
            raw = yaml.safe_load(where.read_text())
        except yaml.YAMLError as error:
            raise SweepSpecError(f"{label} is not valid YAML: {error}") from error
    spec = _parse(raw, label, where, output)
    expand_sweep(spec)  # builds and validates every run's config
    return spec


def _parse(raw: Any, label: str, where: Path | None, output: str | os.PathLike[str] | None) -> SweepSpec:
    if not isinstance(raw, Mapping):
        raise SweepSpecError(f"{label} must be a mapping of keys such as algorithm, env, seeds; "
                             f"got {type(raw).__name__}")
    unknown = [key for key in raw if key not in SPEC_KEYS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), SPEC_KEYS, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise SweepSpecError(f"{label}: unknown key(s) {', '.join(hints)}; "
                             f"a spec may have: {', '.join(SPEC_KEYS)}")

    algorithms = _string_list(raw.get("algorithm"), "algorithm", label)
    task_keys = [key for key in TASK_KEYS if key in raw]
    if len(task_keys) != 1:
        found = f"it has {', '.join(task_keys)}" if task_keys else "it has none"
        raise SweepSpecError(f"{label}: give exactly one task axis, `env`, `dataset`, `task` or `problem`; "
                             f"{found}")
    task_key = task_keys[0]
    tasks = _string_list(raw[task_key], task_key, label)
    seeds = _seeds(raw.get("seeds", 1), label)

    preset = raw.get("preset", "cpu")
    if not isinstance(preset, str):
        raise SweepSpecError(f"{label}: `preset` must be one preset name such as smoke, cpu or paper")
    overrides = _config_mapping(raw.get("overrides") or {}, "overrides", label, task_key)
    variants_raw = raw.get("variants")
    if variants_raw is None:
        variants: dict[str, dict[str, Any]] = {DEFAULT_VARIANT: {}}
    else:
        if not isinstance(variants_raw, Mapping) or not variants_raw:
            raise SweepSpecError(f"{label}: `variants` must map variant names to config overrides, "
                                 "e.g. {default: {}, no-norm: {normalize_observations: false}}; "
                                 "leave it out for a single variant")
        variants = {}
        for variant_name, values in variants_raw.items():
            name_text = str(variant_name)
            if path_component(name_text) != name_text:
                raise SweepSpecError(f"{label}: variant name {name_text!r} must be usable as a folder "
                                     "name (letters, digits, . _ = + -)")
            variants[name_text] = _config_mapping(values or {}, f"variants.{name_text}", label, task_key)

    vmap_seeds = raw.get("vmap_seeds", False)
    if not isinstance(vmap_seeds, bool):
        raise SweepSpecError(f"{label}: `vmap_seeds` must be true or false")
    if vmap_seeds:
        unsupported = [name for name in algorithms
                       if getattr(get_algorithm(name), SEED_VMAP_ENTRY_POINT, None) is None]
        if unsupported:
            raise SweepSpecError(f"{label}: vmap_seeds is set but {', '.join(unsupported)} cannot train "
                                 "vmapped seeds yet; remove `vmap_seeds` to run one seed per process")

    output_value = output if output is not None else raw.get("output")
    if output_value is None or str(output_value).strip() == "":
        raise SweepSpecError(f"{label}: `output` is missing; set the folder for the run directories, "
                             "e.g. output: runs/sweeps/my-sweep")
    name = raw.get("name")
    if name is None:
        name = where.stem if where is not None else Path(str(output_value)).name
    if not isinstance(name, str) or not name:
        raise SweepSpecError(f"{label}: `name` must be a non-empty string")

    for algorithm in algorithms:
        try:
            get_algorithm(algorithm)
        except ConfigError as error:
            raise SweepSpecError(f"{label}: {error}") from error
    return SweepSpec(name=name, output=Path(output_value), algorithms=tuple(algorithms), task_key=task_key,
                     tasks=tuple(tasks), seeds=tuple(seeds), preset=preset, overrides=overrides,
                     variants=variants, vmap_seeds=vmap_seeds, source=where)


def _string_list(value: Any, key: str, label: str) -> list[str]:
    if value is None:
        raise SweepSpecError(f"{label}: `{key}` is missing; give one name or a list of names")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(item, str) and item for item in values):
        raise SweepSpecError(f"{label}: `{key}` must be a name or a list of names, got {value!r}")
    if not values:
        raise SweepSpecError(f"{label}: `{key}` is an empty list, so the grid has no runs; "
                             "give at least one name")
    duplicates = sorted({item for item in values if values.count(item) > 1})
    if duplicates:
        raise SweepSpecError(f"{label}: `{key}` lists {', '.join(duplicates)} more than once")
    return list(values)


def _seeds(value: Any, label: str) -> list[int]:
    if isinstance(value, bool):
        raise SweepSpecError(f"{label}: `seeds` must be a count or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise SweepSpecError(f"{label}: `seeds: {value}` gives no runs; use a positive count or a list")
        return list(range(value))
    if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise SweepSpecError(f"{label}: `seeds` must be a count (seeds: 3) or a list of integers "
                             f"(seeds: [0, 1, 2]), got {value!r}")
    if not value:
        raise SweepSpecError(f"{label}: `seeds` is an empty list, so the grid has no runs")
    if any(seed < 0 for seed in value):
        raise SweepSpecError(f"{label}: seeds must be non-negative, got {value}")
    if len(set(value)) != len(value):
        raise SweepSpecError(f"{label}: `seeds` lists a seed more than once: {value}")
    return list(value)


def _config_mapping(value: Any, key: str, label: str, task_key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepSpecError(f"{label}: `{key}` must map config options to values, got {value!r}")
    reserved = [name for name in (task_key, "seed", "preset") if name in value]
    if reserved:
        raise SweepSpecError(f"{label}: `{key}` sets {', '.join(reserved)}, which the grid sets; "
                             f"use the top-level `{task_key}`, `seeds` and `preset` keys instead")
    return {str(name): option for name, option in value.items()}


def expand_sweep(spec: SweepSpec) -> list[RunSpec]:
    """Every run of ``spec``'s grid, each with its config validated.

    Runs are ordered seed first, so a sweep stopped half-way has every configuration with its
    first seeds rather than some configurations with all of theirs.

    :raises SweepSpecError: a run's config is invalid (unknown option, bad value).
    """
    runs = []
    for seed in spec.seeds:
        for algorithm in spec.algorithms:
            for task in spec.tasks:
                for variant, variant_overrides in spec.variants.items():
                    overrides = _as_field_types(algorithm, {**spec.overrides, **variant_overrides,
                                                            spec.task_key: task, "seed": seed})
                    run = RunSpec(
                        sweep=spec.name, algorithm=algorithm, preset=spec.preset, task_key=spec.task_key,
                        task=task, variant=variant, seed=seed, overrides=overrides,
                        run_dir=spec.output / path_component(algorithm) / path_component(task)
                        / variant / f"seed{seed}",
                    )
                    try:
                        run.make_config()
                    except ConfigError as error:
                        raise SweepSpecError(f"sweep {spec.name!r}, run {run.name}: {error}") from error
                    except (TypeError, ValueError) as error:
                        # A config dataclass rejecting a value (wrong type) is the spec's fault too.
                        raise SweepSpecError(f"sweep {spec.name!r}, run {run.name}: invalid option value "
                                             f"({error})") from error
                    runs.append(run)
    directories = [run.run_dir for run in runs]
    if len(set(directories)) != len(directories):
        raise SweepSpecError(f"sweep {spec.name!r}: two tasks map to the same folder name; "
                             "rename them so they differ in letters or digits")
    return runs


def _as_field_types(algorithm: str, overrides: dict[str, Any]) -> dict[str, Any]:
    # YAML has lists, configs have tuples (``policy_hidden: [64, 64]``). A list would make the
    # config differ from the one read back from config.json, and resuming the run would fail.
    defaults = {option.name: option.default for option in dataclasses.fields(get_algorithm(algorithm).config_cls)}
    return {name: tuple(value) if isinstance(value, list) and isinstance(defaults.get(name), tuple) else value
            for name, value in overrides.items()}


def check_output_writable(output: Path, create: bool) -> None:
    """Make sure run directories can be written under ``output``.

    :param output: the sweep's output folder.
    :param create: create the folder and write a probe file (a real run); otherwise only check
        that the nearest existing folder on the path is a writable folder (a dry run writes nothing).
    :raises SweepSpecError: the folder cannot be created or written.
    """
    hint = "choose another `output:` in the spec or pass --output"
    if create:
        try:
            output.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=output):
                pass
        except OSError as error:
            raise SweepSpecError(f"cannot write the sweep output folder {output}: "
                                 f"{error.strerror or error}; {hint}") from error
        return
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SweepSpecError(f"cannot write the sweep output folder {output}: {existing} is a file, "
                             f"not a folder; {hint}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SweepSpecError(f"cannot write the sweep output folder {output}: {existing} is not "
                             f"writable; {hint}")


def config_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``"key: recorded -> wanted"`` for every config field that differs between two config dicts."""
    keys = sorted(set(recorded) | set(wanted))
    return [f"{key}: {recorded.get(key)!r} -> {wanted.get(key)!r}" for key in keys
            if _comparable(recorded.get(key)) != _comparable(wanted.get(key))]


def _comparable(value: Any) -> Any:
    # JSON turns tuples into lists; compare them as equal.
    if isinstance(value, tuple | list):
        return [_comparable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
