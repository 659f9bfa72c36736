"""``hybridrl data ...``: inspect, list, generate and record offline datasets.

::

    hybridrl data info ID [--env ENV] [--json] [--no-validate] [--no-card]
    hybridrl data list
    hybridrl data make hopper-medium-sac-v5 [--preset smoke|cpu|paper] [--seed N] [--overwrite]
    hybridrl data demos dmc:walker-walk [--episodes 10] [--run-dir RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

_USAGE = """usage: hybridrl data COMMAND ...

commands:
  info ID       summarise a dataset (ours, a Minari id or folder, or a D4RL .hdf5 file)
  list          list the datasets in the local Minari root (MINARI_DATASETS_PATH)
  make NAME     generate hopper-medium-sac-v5 and friends (--preset smoke|cpu|paper, --seed N)
  demos ENV     record expert demonstrations (--episodes N, --run-dir RUN)
"""


def data_main(rest: list[str]) -> int:
    """Entry point of ``hybridrl data``; returns the exit status."""
    if not rest or rest[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if rest else 2
    commands: dict[str, Callable[[list[str]], int]] = {"info": _info, "list": _list}
    extra = _extra_commands()
    commands.update(extra)
    if rest[0] not in commands:
        print(f"hybridrl data: unknown command {rest[0]!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    return commands[rest[0]](rest[1:])


def _extra_commands() -> dict[str, Callable[[list[str]], int]]:
    return {"make": _make, "demos": _demos}


def _info(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hybridrl data info", description="Summarise an offline dataset.")
    parser.add_argument("dataset", help="hopper-medium-sac-v5, a Minari id (mujoco/hopper/medium-v0), a Minari "
                                        "dataset folder or a D4RL .hdf5 file")
    parser.add_argument("--env", default=None, help="check that the dataset belongs to this env")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--validate", action=argparse.BooleanOptionalAction, default=True,
                        help="validate the data (default: yes)")
    parser.add_argument("--card", action=argparse.BooleanOptionalAction, default=True,
                        help="write the data card as a PNG beside the dataset (default: yes)")
    arguments = parser.parse_args(rest)
    from hybridrl.data.loading import load_dataset, resolve_dataset
    from hybridrl.data.summary import card_path, format_summary, summarize, write_card

    dataset = load_dataset(arguments.dataset, env=arguments.env, validate=arguments.validate)
    summary = summarize(dataset)
    if arguments.card:
        path = card_path(resolve_dataset(arguments.dataset)[1])
        try:
            summary["card"] = str(write_card(dataset, summary, path))
        except OSError as error:  # a read-only dataset folder: the summary still prints
            summary["card"] = f"not written ({error})"
    print(json.dumps(summary, indent=2) if arguments.json else format_summary(summary))
    return 0


def _list(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hybridrl data list", description="List local Minari datasets.")
    parser.parse_args(rest)
    from hybridrl.data.minari_format import list_local_datasets, minari_root

    names = list_local_datasets()
    print(f"{len(names)} datasets in {minari_root()}" + (":" if names else ""))
    for name in names:
        print(f"  {name}")
    return 0


def _make(rest: list[str]) -> int:
    from hybridrl.data.generation import KINDS, PRESETS

    parser = argparse.ArgumentParser(
        prog="hybridrl data make",
        description="Generate D4RL-style datasets with hybridrl's own learners and write them in Minari format "
                    "as hybridrl/<name> under MINARI_DATASETS_PATH.")
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help=f"<family>-<kind>-sac-v5 (SAC-made, as D4RL's) or <family>-<kind>-v5 (PPO-made, "
                             f"legacy); family hopper, halfcheetah or walker2d; kind {', '.join(KINDS)}; or "
                             "<family>-all-sac-v5 for every kind")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                        help="smoke: seconds, for tests; cpu: 200k transitions (PPO-made: 100k) from the shipped "
                             "behaviour policies; paper: 1M transitions, D4RL's size, policies trained for 1M steps "
                             "(PPO: 3M) (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of training, references and collection")
    parser.add_argument("--overwrite", action="store_true", help="replace existing datasets of these names")
    parser.add_argument("--work-dir", default=None, help="where behaviour policies are trained (default runs/data)")
    parser.add_argument("--retrain", action="store_true", help="train new behaviour policies even if some exist")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    arguments = parser.parse_args(rest)
    from hybridrl.data.generation import generate

    names: list[str] = []
    for name in arguments.names:
        family, _, version = name.partition("-all-")
        names += [f"{family}-{kind}-{version}" for kind in KINDS] if version else [name]
    for name in names:
        folder = generate(name, arguments.preset, arguments.seed, overwrite=arguments.overwrite,
                          work_dir=arguments.work_dir, retrain=arguments.retrain, progress=arguments.progress)
        print(f"{name}: written to {folder}, data card {folder / 'data_card.png'}  (`hybridrl data info {name}` "
              "summarises it)")
    return 0


def _demos(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hybridrl data demos",
        description="Record expert demonstrations in Minari format (hybridrl/demos/<env>-v0 by default).")
    parser.add_argument("env", help="a Gymnasium id (Hopper-v5) or a DeepMind Control task (dmc:walker-walk)")
    parser.add_argument("--episodes", type=int, default=10, help="whole episodes to record (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes (and of the expert's training)")
    parser.add_argument("--run-dir", default=None, help="a PPO or SAC run whose checkpoint is the expert (default: the "
                                                        "env's expert behaviour policy, trained on first use)")
    parser.add_argument("--preset", default="cpu", help="preset of the default expert's training (default cpu)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mean")
    parser.add_argument("--dataset-id", default=None, help="Minari id to write (default hybridrl/demos/<env>-v0)")
    parser.add_argument("--work-dir", default=None, help="where the default expert is trained (default runs/data)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that id")
    arguments = parser.parse_args(rest)
    from hybridrl.data.demos import generate_demos

    folder = generate_demos(arguments.env, arguments.episodes, arguments.seed, overwrite=arguments.overwrite,
                            dataset_id=arguments.dataset_id, run_dir=arguments.run_dir, preset=arguments.preset,
                            work_dir=arguments.work_dir, stochastic=arguments.stochastic)
    print(f"{arguments.episodes} demonstrations of {arguments.env}: written to {folder}")
    return 0
