"""Uni-O4's critic queries, clipped (ours) against raw (the released code's), both on one machine's data.

Offline PPO's advantage queries the critic at the reference policy's Gaussian samples. We clip them
to the action bounds before Q (`--ppo-critic-actions clip`, the default); the released code passes
the raw samples (`raw`). This benchmark runs Uni-O4's offline phase both ways on the same datasets,
seeds and settings as the main benchmark's Uni-O4 (`benchmarks/uni_o4.py`: `cpu` preset, 50 final
evaluation episodes, every member's true return at each AM-Q round), seed by seed, the two variants
of a (dataset, seed) side by side, so an interrupted sweep leaves complete pairs.

Why a sweep of its own, with both variants: the SAC-made datasets are regenerated on each machine,
and a machine with another CPU makes other data (docs/datasets.md). The main benchmark's
`critic-actions` sweep adds `raw` runs to the main sweep's `clip` runs and so needs the recorded
data; this one is self-contained: both variants train on the local copy, every record keeps the data
level it trained on, and the script refuses to add runs on data whose level differs from its
recorded runs' (move `benchmarks/results/uni_o4_critic_actions/` away to start afresh elsewhere).

The result is the paired difference raw − clip per dataset (the seed fixes the data split, BC
start, critic and dynamics model, so the pair isolates the one change): mean and 95 % bootstrap
interval over seeds, of the offline policy's score, the released selection's score, AM-Q's rank
correlation with the true return, and the share of sampled action components outside the bounds.

    python benchmarks/uni_o4_critic_actions.py --seeds 5 --workers 2 [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, iqm_summary, paired_difference, peak_memory_mb, sweep_or_records, write_result
from uni_o4 import (
    ABLATION_DATASETS,
    KEEP,
    REPOSITORY,
    critic_actions_facts,
    dataset_level,
    ensure_datasets,
    recorded_levels,
)

NAME = "uni_o4_critic_actions"
MODES = ("clip", "raw")
FACTS = ("offline score", "released selection", "amq spearman", "actions outside bounds")


def check_same_data(datasets: list[str], references: dict[str, tuple[float, float]]) -> None:
    """Refuse to add runs on local data other than the data this benchmark's recorded runs trained on."""
    wrong = []
    for name in datasets:
        recorded = recorded_levels((RESULTS_DIR / NAME / "runs" / "uni-o4" / name).glob("*/seed*.json"))
        if recorded and recorded != {level := dataset_level(name, references[name])}:
            wrong.append(f"{name}: here level {level:.3f}, recorded {', '.join(f'{v:.3f}' for v in sorted(recorded))}")
    if wrong:
        raise SystemExit("the local datasets are not those this benchmark's recorded runs used (datasets made on "
                         "another CPU differ):\n  " + "\n  ".join(wrong) + f"\nRun on the machine that made them, "
                         f"or move {RESULTS_DIR / NAME} away to run both variants afresh on these datasets.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(ABLATION_DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--final-eval-episodes", type=int, default=50)
    parser.add_argument("--ope-true-episodes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="summarise the recorded runs, train nothing")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)

    if not arguments.report_only:  # the report reads records only: no dataset needed
        references = ensure_datasets(arguments.datasets, arguments.preset)
        check_same_data(arguments.datasets, references)

    def spec(mode: str, seeds: list[int]) -> dict[str, Any]:
        overrides: dict[str, Any] = {"final_eval_episodes": arguments.final_eval_episodes,
                                     "ope_true_episodes": arguments.ope_true_episodes, "phase": "offline"}
        if mode == "raw":  # offline PPO alone, from the clip run's critic, model and BC of the same seed
            overrides["reuse_stages_from"] = f"benchmarks/runs/{NAME}/clip"
        return {"name": f"{NAME}-{mode}", "output": f"benchmarks/runs/{NAME}/{mode}", "algorithm": "uni-o4",
                "dataset": arguments.datasets, "preset": arguments.preset, "seeds": seeds,
                "variants": {mode: {"ppo_critic_actions": mode}}, "overrides": overrides}

    seeds = list(range(arguments.seeds))
    if not arguments.report_only:
        # Seed by seed: the clip runs (every stage), then the raw runs that reuse their stages.
        for seed in seeds:
            for mode in MODES:
                sweep_or_records(NAME, spec(mode, [seed]), KEEP, arguments.workers, False)
    specs = [sweep_or_records(NAME, spec(mode, seeds), KEEP, arguments.workers, True) for mode in MODES]

    from hybridrl.experiments.spec import expand_sweep
    from hybridrl.runs import is_finished

    by_seed: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    levels: dict[str, set[float]] = {}
    machines: set[str] = set()
    for run in [run for sweep in specs for run in expand_sweep(sweep)]:
        if not is_finished(run.run_dir):
            continue
        final = json.loads((run.run_dir / "final.json").read_text())
        facts = critic_actions_facts(run.run_dir, final, float(
            final.get("offline/released_selection_normalized_score", float("nan"))))
        facts["data level"] = float(final["offline/data_normalized_score"])
        by_seed.setdefault(run.task, {}).setdefault(run.variant, {})[run.seed] = {
            name: value for name, value in facts.items() if np.isfinite(value)}
        levels.setdefault(run.task, set()).add(round(facts["data level"], 3))
        machine = json.loads((run.run_dir / "config.json").read_text()).get("machine", {})
        machines.add(f"{machine.get('processor') or platform.processor()}, {machine.get('cpu_count')} cores")
    table: dict[str, dict[str, Any]] = {}
    for dataset, modes in by_seed.items():
        table[dataset] = {"data level": sorted(levels[dataset])}
        for mode, per_seed in modes.items():
            table[dataset][mode] = {name: iqm_summary([facts[name] for facts in per_seed.values() if name in facts])
                                    for name in FACTS if any(name in facts for facts in per_seed.values())}
            table[dataset][mode]["per seed"] = {seed: {name: round(value, 3) for name, value in facts.items()}
                                                for seed, facts in sorted(per_seed.items())}
        if set(MODES) <= set(modes):
            table[dataset]["raw - clip, paired"] = {
                name: difference for name in FACTS
                if (difference := paired_difference(modes["raw"], modes["clip"], name)) is not None}
    report = write_report(table, RESULTS_DIR / NAME / "report", arguments.seeds)
    # The seeds with a finished pair (the records' own seeds are in each record).
    paired_seeds = sorted({seed for modes in by_seed.values() if set(MODES) <= set(modes)
                           for seed in set(modes["clip"]) & set(modes["raw"])})
    write_result(NAME, paired_seeds, {
        "benchmark": NAME,
        "datasets": arguments.datasets,
        "preset": arguments.preset,
        "final_eval_episodes": arguments.final_eval_episodes,
        "ope_true_episodes": arguments.ope_true_episodes,
        "trained_on": sorted(machines),
        "critic_actions": table,
        "report": str(report.relative_to(REPOSITORY)),
        "peak_memory_mb": peak_memory_mb(),
    })


def write_report(table: dict[str, dict[str, Any]], folder: Path, seeds: int) -> Path:
    """Markdown: per dataset, each variant's IQM [95 % CI] and the paired difference raw − clip."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Uni-O4: critic queries clipped (ours) vs raw (the released code's), one machine's data", "",
             "Uni-O4's offline phase (`cpu` preset) with `--ppo-critic-actions clip` and `raw` on the same datasets "
             "and seeds. Scores are normalised; cells are IQM [95 % bootstrap CI] (n seeds); the paired row is "
             "the mean over seeds of raw − clip [95 % CI]. *outside*: the mean share of sampled action components "
             "outside [-1, 1] over offline PPO. *data*: the dataset's level (normalised mean episode return) the "
             "runs trained on.", "",
             "| dataset (data) | critic's actions | offline score | released selection | AM-Q Spearman | outside |",
             "|---|---|---|---|---|---|"]
    for dataset, entry in table.items():
        label = f"{dataset} ({', '.join(f'{level:.2f}' for level in entry['data level'])})"
        for mode in MODES:
            if mode in entry:
                cells = [f"{fact['iqm']:.{digits}f} [{fact['iqm_low']:.{digits}f}, {fact['iqm_high']:.{digits}f}] "
                         f"(n={fact['seeds']})" if (fact := entry[mode].get(name)) else "–"
                         for name, digits in zip(FACTS, (1, 1, 2, 2), strict=True)]
                lines.append(f"| {label} | {mode} | " + " | ".join(cells) + " |")
        if (paired := entry.get("raw - clip, paired")) is not None:
            cells = [f"{fact['absolute']:+.{digits}f} [{fact['low']:+.{digits}f}, {fact['high']:+.{digits}f}] "
                     f"(n={fact['seeds']})" if (fact := paired.get(name)) else "–"
                     for name, digits in zip(FACTS, (1, 1, 2, 2), strict=True)]
            lines.append(f"| {label} | raw − clip, same seeds | " + " | ".join(cells) + " |")
    lines += ["", "Per seed (offline score / released selection):", "",
              "| dataset | critic's actions | " + " | ".join(f"seed {seed}" for seed in range(seeds)) + " |",
              "|---|---|" + "---|" * seeds]
    for dataset, entry in table.items():
        for mode in MODES:
            if mode in entry:
                per_seed = entry[mode]["per seed"]
                cells = [f"{facts.get('offline score', np.nan):.1f} / {facts.get('released selection', np.nan):.1f}"
                         if (facts := per_seed.get(seed)) else "–" for seed in range(seeds)]
                lines.append(f"| {dataset} | {mode} | " + " | ".join(cells) + " |")
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    main()
