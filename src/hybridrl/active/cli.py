"""``hybridrl active``: learning to actively learn from the command line.

::

    hybridrl active train --problem thresholds [--budget 12] [--points 16] [--preset cpu] [--seed 0]
                          [--run-dir DIR] [--no-progress] [CONFIG OPTIONS]
    hybridrl active train --problem bandit --arms 4 --budget 20 --preset cpu
    hybridrl active eval RUN_DIR [--eval-seed K | --recorded]
    hybridrl active problems

``train`` runs the whole experiment (per-class policies, prior policy, targets, robust policy,
final evaluation) in one run directory (default ``runs/lal/<problem>-s<seed>-<time>``) and prints the
table: each policy's worst-case loss per difficulty class against a fresh adversary, its largest
gap to the envelope ℓ*_r, and its average loss on natural instances. ``--points``, ``--arms``,
``--objects`` and ``--jokes`` are names for ``--size``. An interrupted run continues with
``hybridrl resume RUN_DIR``.

``eval`` re-measures a finished run's policies with a new adversary (``--eval-seed``), or prints the
table recorded at the end of training (``--recorded``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hybridrl.core.io import atomic_write_json

_USAGE = """usage: hybridrl active COMMAND ...

commands:
  train      train per-class, prior-trained and robust query policies and evaluate them
             (`hybridrl active train --help` lists the options)
  eval       RUN_DIR: worst-case loss per difficulty class and largest gap of every policy
  problems   list the problems
"""

#: Problem-specific names of ``--size``.
SIZE_ALIASES = ("--points", "--arms", "--objects", "--jokes")


def active_main(rest: list[str]) -> int:
    """``hybridrl active ...``; returns the exit status."""
    if not rest or rest[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if rest else 2
    commands = {"train": _train, "eval": _eval, "problems": _problems}
    if rest[0] not in commands:
        print(f"hybridrl active: unknown command {rest[0]!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    return commands[rest[0]](rest[1:])


def _problems(rest: list[str]) -> int:
    from hybridrl.active.problems import PROBLEMS, make_problem

    for name in PROBLEMS:
        problem = make_problem(name)
        print(f"{name:18s} queries={problem.num_queries:<3d} hypotheses={problem.num_hypotheses:<3d} "
              f"budget={problem.budget:<3d} classes={', '.join(format(r, 'g') for r in problem.classes)}")
    return 0


def size_option(options: list[str]) -> list[str]:
    """Options with the problem-specific names of ``--size`` (``--arms 4``, ``--points=16``) renamed."""
    renamed = []
    for option in options:
        name, equals, value = option.partition("=")
        renamed.append(f"--size{equals}{value}" if name in SIZE_ALIASES else option)
    return renamed


def _train(rest: list[str]) -> int:
    from hybridrl import runs
    from hybridrl.active.lal import format_table, read_evaluation
    from hybridrl.algorithms import get_algorithm
    from hybridrl.cli import resolve_config

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    known, options = parser.parse_known_args(rest)
    if "-h" in options or "--help" in options:
        print("hybridrl active train [--preset smoke|cpu|paper] [--run-dir DIR] [--[no-]progress] "
              f"[{' | '.join(SIZE_ALIASES)} N] and the config options below.")
    spec = get_algorithm("lal")
    config = resolve_config(spec, known.preset, size_option(options))
    result = runs.start(spec, config, known.run_dir, progress=known.progress)
    print(format_table(read_evaluation(result.run_dir)))
    print(f"robust policy's largest gap to l*_r: {result.final['robust_max_gap']:.3f}")
    print(f"run dir: {result.run_dir}")
    return 0


def _eval(rest: list[str]) -> int:
    from hybridrl import runs
    from hybridrl.active.lal import LALTrainer, format_table, read_evaluation
    from hybridrl.core.seeding import Seeder
    from hybridrl.errors import RunDirectoryError

    parser = argparse.ArgumentParser(prog="hybridrl active eval",
                                     description="Worst-case loss per difficulty class of a finished run's policies.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--eval-seed", type=int, default=1,
                        help="seed of the fresh adversary (default 1; training's final evaluation used its own)")
    parser.add_argument("--recorded", action="store_true", help="print the table recorded when training finished")
    arguments = parser.parse_args(rest)
    spec, config = runs.read_run_config(arguments.run_dir)
    if spec.name != "lal":
        raise RunDirectoryError(f"{arguments.run_dir} holds a {spec.name} run, not a learning-to-actively-learn "
                                "run; use `hybridrl eval` for it")
    if arguments.recorded:
        print(format_table(read_evaluation(arguments.run_dir)))
        return 0
    if not runs.is_finished(arguments.run_dir):
        raise RunDirectoryError(f"{arguments.run_dir} has not finished training; finish it with "
                                f"`hybridrl resume {arguments.run_dir}`")
    trainer = LALTrainer(config, arguments.run_dir)
    trainer.load_checkpoint(arguments.run_dir / runs.CHECKPOINT_FILE)
    trainer.evaluate_all(Seeder(arguments.eval_seed).jax_key("active-eval"))
    table = {**trainer.final_table, "eval_seed": arguments.eval_seed}
    atomic_write_json(arguments.run_dir / f"eval-seed{arguments.eval_seed}.json", table)
    print(format_table(table))
    return 0
