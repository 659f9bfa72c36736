"""The ``hybridrl`` command line.

::

    hybridrl train ALGORITHM [--preset smoke|cpu|paper] [--run-dir DIR] [--no-progress] [OPTIONS]
    hybridrl train ALGORITHM --seeds N [--first-seed K] [--run-dir DIR] ...   (seeds K..K+N-1 in one process)
    hybridrl resume RUN_DIR
    hybridrl eval RUN_DIR [--episodes N]
    hybridrl sweep SPEC.yaml | results DIR | report DIR
    hybridrl data info ID | list | make ID | demos ENV
    hybridrl mbo run --task T --optimizer O --regularizer R --seeds N | tasks
    hybridrl active train --problem P [--budget T] | eval RUN_DIR | problems

User errors (unknown env, bad option, missing run dir, corrupt checkpoint) print one message and
exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hybridrl.errors import HybridRLError

_USAGE = """usage: hybridrl COMMAND ...

commands:
  train ALGORITHM   train a new run (`hybridrl train --help` lists algorithms)
  resume RUN_DIR    continue an interrupted run from its last checkpoint
  eval RUN_DIR      evaluate a run's checkpoint on fresh episodes
  sweep SPEC.yaml   run a grid of runs (algorithms x envs x seeds x overrides)
  results DIR       collect every run under DIR into one table
  report DIR        write report.md and figures for the runs under DIR
  data COMMAND      offline datasets: info, list, make, demos (`hybridrl data --help`)
  mbo COMMAND       offline model-based optimisation: run, tasks (`hybridrl mbo --help`)
  active COMMAND    learning to actively learn: train, eval, problems (`hybridrl active --help`)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hybridrl`` script; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if arguments else 2
    command, rest = arguments[0], arguments[1:]
    commands: dict[str, Callable[[list[str]], int]] = {
        "train": _train, "resume": _resume, "eval": _eval,
        "sweep": _experiments("sweep_main"), "results": _experiments("results_main"),
        "report": _experiments("report_main"), "data": _data, "mbo": _mbo,
        "active": _active,
    }
    if command not in commands:
        print(f"hybridrl: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    cache = compilation_cache_dir(os.environ)
    if cache is not None:
        # Before JAX is imported (the commands import it lazily), and inherited by a sweep's worker processes.
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    try:
        return commands[command](rest)
    except HybridRLError as error:
        print(f"hybridrl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nhybridrl: interrupted; continue from the last checkpoint with `hybridrl resume RUN_DIR`",
              file=sys.stderr)
        return 130


def compilation_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """Where the command line keeps compiled XLA programs between runs (JAX's persistent compilation cache).

    A second run of a config (another seed, a resumed run, a sweep's next run, the same command again)
    then loads its programs instead of compiling them: 20.1 s -> 19.2 s wall and 581 -> 448 MB peak memory
    for 98k steps of PPO's ``cpu`` preset on Hopper-v5 on 2 cores (``benchmarks/peers/compare.py``).
    The folder is ``$XDG_CACHE_HOME/hybridrl/jax-compilation`` (``~/.cache/...``); JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` wins, and ``HYBRIDRL_COMPILATION_CACHE=0`` turns it off. It has no size
    limit (a config adds a few MB; JAX's eviction rescans the folder at every write); delete it to empty it.

    :returns: the folder to use, or None to leave JAX as it is configured.
    """
    if environ.get("HYBRIDRL_COMPILATION_CACHE", "1") == "0" or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    cache_home = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "hybridrl" / "jax-compilation"


def _experiments(name: str) -> Callable[[list[str]], int]:
    def run(rest: list[str]) -> int:
        from hybridrl.experiments import cli as experiments_cli

        command: Callable[[list[str]], int] = getattr(experiments_cli, name)
        return command(rest)

    return run


def _data(rest: list[str]) -> int:
    from hybridrl.data.cli import data_main

    return data_main(rest)


def _mbo(rest: list[str]) -> int:
    from hybridrl.mbo.cli import mbo_main

    return mbo_main(rest)


def _active(rest: list[str]) -> int:
    from hybridrl.active.cli import active_main

    return active_main(rest)


def _train(rest: list[str]) -> int:
    from hybridrl.algorithms import algorithm_names, get_algorithm

    if not rest or rest[0] in ("-h", "--help"):
        from hybridrl.runs import seeds_algorithm_names

        print("usage: hybridrl train ALGORITHM [--preset smoke|cpu|paper] [--run-dir DIR] [--no-progress] "
              "[--seeds N [--first-seed K]] [OPTIONS]\n\nalgorithms:")
        for name in algorithm_names():
            print(f"  {name:10s} {get_algorithm(name).summary}")
        print("\n`hybridrl train ALGORITHM --preset P --help` lists the options with preset P's defaults.\n"
              "--seeds N trains seeds K..K+N-1 (K: --first-seed, default the preset's seed) in one process, "
              "vmapped,\none run directory each, DIR/seed<seed> (DIR: --run-dir); rerun with the same --run-dir "
              f"to resume.\nAlgorithms with --seeds: {', '.join(seeds_algorithm_names())}.")
        return 0 if rest else 2
    spec = get_algorithm(rest[0])
    # No abbreviations: `--seed 3` is the config's option, not a prefix of --seeds.
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=None)
    known, options = parser.parse_known_args(rest[1:])
    if known.seeds is not None or known.first_seed is not None:
        return _train_seeds(spec, known, options)
    config = resolve_config(spec, known.preset, options)
    from hybridrl import runs

    result = runs.start(spec, config, known.run_dir, progress=known.progress)
    _finish(result.run_dir, result.final)
    return 0


def _train_seeds(spec: Any, known: argparse.Namespace, options: list[str]) -> int:
    """``hybridrl train ALGORITHM --seeds N [--first-seed K]``: seeds K..K+N-1 in this process."""
    from hybridrl import runs
    from hybridrl.errors import ConfigError

    if known.seeds is None:
        raise ConfigError("--first-seed K goes with --seeds N (seeds K..K+N-1); for one run pass --seed K")
    if known.seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {known.seeds}")
    if any(option == "--seed" or option.startswith("--seed=") for option in options):
        raise ConfigError("--seed sets the seed of one run; with --seeds N the runs get seeds K..K+N-1: "
                          "pass --first-seed K instead")
    runs.check_trains_seeds(spec)
    _use_cpu_cores_for_seeds(known.seeds, os.environ)
    config = resolve_config(spec, known.preset, options)
    first = config.seed if known.first_seed is None else known.first_seed
    results = runs.start_seeds(spec, config, range(first, first + known.seeds), known.run_dir,
                               progress=known.progress)
    for result in results:
        _finish(result.run_dir, result.final)
    print(f"{len(results)} seeds ({first}-{first + known.seeds - 1}): {_describe_seeds([r.final for r in results])}; "
          f"run dirs {os.fspath(results[0].run_dir.parent)}/seed*")
    return 0


def _use_cpu_cores_for_seeds(seeds: int, environ: Mapping[str, str]) -> None:
    """Show JAX one CPU device per core that gets an equal share of the ``seeds``
    (:func:`hybridrl.core.seeding.seed_sharding` spreads the seeds over them), unless JAX is already
    running or ``XLA_FLAGS`` sets the device count. 4 seeds of IQL's ``cpu`` preset on 2 cores: 23-25
    CPU-ms per step on two devices against 26-27 on one (about 10% less), for about 200 MB more peak
    memory (``benchmarks/seeds_in_one_process.py``, workloads ``iql-hopper`` and ``iql-hopper-one-device``)."""
    import jax

    from hybridrl.core.seeding import seed_devices

    devices = seed_devices(seeds, len(os.sched_getaffinity(0)))
    if devices == 1 or "device_count" in environ.get("XLA_FLAGS", ""):
        return
    with contextlib.suppress(RuntimeError):  # JAX is already running (main called from Python): leave it
        jax.config.update("jax_num_cpu_devices", devices)


def _describe_seeds(finals: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds of the evaluation (or, for MBO, the candidates' best score)."""
    import statistics

    parts = []
    for key, label in (("eval/return_mean", "eval return"), ("eval/normalized_score", "normalised score"),
                       ("score/p100", "normalised score p100")):
        values = [float(final[key]) for final in finals if key in final]
        if values and len(values) == len(finals):
            parts.append(f"{label} {statistics.fmean(values):.1f} ± {statistics.pstdev(values):.1f} over seeds")
    return "; ".join(parts) or "no evaluation"


def resolve_config(spec: Any, preset: str, options: list[str]) -> Any:
    """The config of ``preset`` with the command-line ``options`` (tyro syntax) applied.

    Per-task defaults depend on options such as ``--env``: the options are parsed once (without
    ``--help``) to learn them, the defaults are rebuilt for that task, and the options are parsed
    again on top, so explicit options always win and ``--help`` shows the task's values.
    """
    prog = f"hybridrl train {spec.name}"
    base = spec.make_config(preset)
    task_options: dict[str, Any] = {}
    if spec.task_presets is not None:
        first = _parse_config(spec.config_cls, base, [o for o in options if o not in ("-h", "--help")], prog)
        task_options = _changed_fields(base, first)
        base = spec.make_config(preset, **task_options)
    config = _parse_config(spec.config_cls, base, options, prog=prog)
    return spec.make_config(preset, **{**task_options, **_changed_fields(base, config)})


def _parse_config(config_cls: type, default: Any, options: list[str], prog: str) -> Any:
    import tyro

    description = ("Options not listed here: --preset smoke|cpu|paper (defaults below are this preset's), "
                   "--run-dir DIR, --[no-]progress, --seeds N and --first-seed K (seeds K..K+N-1 in one process; "
                   "`hybridrl train --help`).")
    return tyro.cli(config_cls, default=default, args=options, prog=prog, description=description)


def _changed_fields(base: Any, config: Any) -> dict[str, Any]:
    import dataclasses

    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)
            if field.name != "preset" and getattr(config, field.name) != getattr(base, field.name)}


def _resume(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hybridrl resume", description="Continue a run from its last checkpoint.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    arguments = parser.parse_args(rest)
    from hybridrl import runs

    result = runs.resume(arguments.run_dir, progress=arguments.progress)
    _finish(result.run_dir, result.final)
    return 0


def _eval(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hybridrl eval", description="Evaluate a run's checkpoint.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, default=None, help="episodes (default: the run's eval_episodes)")
    arguments = parser.parse_args(rest)
    from hybridrl import runs

    result = runs.evaluate(arguments.run_dir, arguments.episodes)
    print(_describe_eval(result) + f"  (written to {arguments.run_dir / 'eval.json'})")
    return 0


def _describe_eval(result: dict[str, Any]) -> str:
    if "robust_max_gap" in result:  # learning to actively learn: the robust policy's largest gap to l*_r
        return f"robust policy's largest gap to l*_r {result['robust_max_gap']:.3f}"
    if "eval/return_mean" not in result:  # offline MBO: the candidates' normalised scores
        scores = {key.split("/", 1)[1]: value for key, value in result.items() if key.startswith("score/p")}
        return "normalised score " + ", ".join(f"{name} {value:.3f}" for name, value in scores.items())
    text = f"eval return {result['eval/return_mean']:.1f} ± {result['eval/return_std']:.1f}"
    if "eval/normalized_score" in result:
        text += f" (normalised score {result['eval/normalized_score']:.1f})"
    return text


def _finish(run_dir: Path, final: dict[str, Any]) -> None:
    from hybridrl.algorithms import algorithm_names, get_algorithm
    from hybridrl.core.plotting import plot_learning_curve

    task = final.get("env") or final.get("dataset") or final.get("task")
    title = f"{final.get('algorithm')} on {task}, seed {final.get('seed')}"
    name = str(final.get("algorithm"))
    spec = get_algorithm(name) if name in algorithm_names() else None
    if spec is not None and spec.report is not None:
        plot, described = spec.report(run_dir, final, title)
    else:
        plot, described = plot_learning_curve(run_dir, title), _describe_eval(final)
    steps = f"{final.get('step')} steps " if "step" in final else ""
    print(f"{final.get('algorithm')} on {task} (seed {final.get('seed')}): {steps}"
          f"in {final.get('wall_time_s', 0.0):.1f} s; {described}; "
          f"run dir {os.fspath(run_dir)}, learning curve {plot.name}")


if __name__ == "__main__":
    raise SystemExit(main())
