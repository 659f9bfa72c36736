"""IGNITE on offline model-based optimisation: every (task, optimiser) with and without the
regulariser, via the sweep machinery (seeds vmapped in one process per configuration).

The paper's claim (Dao et al., NeurIPS 2024, abstract): the sharpness regulariser improves the
base optimisers on most (task, optimiser) pairs, by up to 9.6% (the best case, not an average; how
the percentage is computed is unverified, so we report both the absolute gain in normalised score
and the relative gain). Our tasks are the offline-runnable suite of ``docs/mbo.md``: TF-Bind-8 (the
Design-Bench task and two more factors), two Ehrlich functions and three 20-D continuous functions.

Per (task, optimiser, regulariser): the 100th/80th/50th percentile normalised scores of the 128
candidates, mean ± std and IQM [95% CI] over seeds. Per (task, optimiser): the gain of IGNITE over
the base at each percentile, absolute (points of normalised score, the mean of the per-seed
differences, seed i against seed i, with its 95 % bootstrap interval) and relative ((IGNITE −
base)/|base|), and the change in the surrogate's overestimation with its interval. Per method: the
mean rank over tasks (1 = best 100th-percentile mean on a task).

    python benchmarks/ignite.py --seeds 8 [--tasks tfbind8 ...] [--optimizers grad-ascent ...]
        [--regularizers none ignite] [--preset cpu] [--workers 1] [--report-only]

**The dual regime** (`--regime`): ``released`` (default) scales IGNITE's dual step η_λ by the
released scripts' number of dual steps over this run's (100 epochs of 128-point minibatches against
the ``cpu`` preset's 20: ×5 on TF-Bind-8), so λ travels as far as in the paper; ``as-trained`` keeps
η_λ = 1e-3 (the earlier runs, where λ ended at 0.1-0.5 and the constraint never bound).
**The regulariser** (`--ignite-mode`): ``faithful`` (default) is the released code's
finite-difference gradient and unclamped λ; ``ours`` is the exact gradient and λ ≥ 0.

**Diagnostics** in every run's record and the report: the sharpness ρ‖∇G‖ on the validation split
per epoch (with and without IGNITE) against ε, λ per epoch, and the surrogate's overestimation at
its candidates (predicted minus true normalised score; mean, and at the candidate it ranks first).

Per task, the base optimisers are one resumable sweep (``benchmarks/runs/ignite/<task>-base``,
shared by every setting) and IGNITE at the chosen setting another
(``benchmarks/runs/ignite/<task>-<regime>-<mode>``), recorded in ``benchmarks/results/ignite/<folder>/runs/``
as each configuration finishes; the summary is ``benchmarks/results/ignite.json`` and the report
``benchmarks/results/ignite/report/``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, paired_difference, peak_memory_mb, sweep_or_records, write_result

NAME = "ignite"
REPOSITORY = Path(__file__).resolve().parent.parent
#: Cheap tasks first, so a partial sweep covers many tasks.
TASKS = ("ackley20", "levy20", "styblinski-tang20", "ehrlich-s", "ehrlich-m", "tfbind8", "tfbind8-pou3f4_ref_r1",
         "tfbind8-phox2b_ref_r1")
OPTIMIZERS = ("grad-ascent", "evolution", "coms", "ens-mean", "ens-min", "cma-es", "reinforce", "cbas")
SCORES = ("score/p100", "score/p80", "score/p50")
PAPER = {"claim": "IGNITE improves most (task, optimiser) pairs, up to +9.6% (best case)",
         "source": "Dao et al. 2024 (arXiv 2503.04242), abstract; per-task tables not transcribed"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    parser.add_argument("--regularizers", nargs="+", default=["none", "ignite"])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--regime", choices=("released", "as-trained"), default="released",
                        help="IGNITE's dual step scaled to the released number of dual steps, or as trained")
    parser.add_argument("--ignite-mode", choices=("faithful", "ours"), default="faithful",
                        help="faithful: finite-difference gradient, unclamped lambda (the released code); "
                             "ours: exact gradient, lambda >= 0")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="configurations at once (each vmaps its seeds)")
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs, run nothing")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)

    keep = ("validation/", "train/")
    setting = f"{arguments.regime}-{arguments.ignite_mode}"
    regime: dict[str, Any] = {"ignite_dual_steps": arguments.regime}
    if arguments.ignite_mode == "faithful":
        regime.update(ignite_gradient="finite-difference", ignite_clamp_multiplier=False)
    specs = []
    for task in arguments.tasks:
        # The base optimisers do not depend on IGNITE's regime or mode: one sweep serves every setting.
        for regularizer in arguments.regularizers:
            folder = f"{task}-base" if regularizer == "none" else f"{task}-{setting}"
            mapping = {
                "name": f"{NAME}-{folder}", "output": f"benchmarks/runs/{NAME}/{folder}",
                "algorithm": "mbo", "task": [task], "preset": arguments.preset, "seeds": arguments.seeds,
                "vmap_seeds": True,
                "variants": {f"{optimizer}_{regularizer}": {"optimizer": optimizer, "regularizer": regularizer,
                                                            **(regime if regularizer == "ignite" else {})}
                             for optimizer in arguments.optimizers},
            }
            specs.append(sweep_or_records(f"{NAME}/{folder}", mapping, keep, arguments.workers,
                                          arguments.report_only))

    finals, curves = collect(specs)
    summary = summarize(finals)
    summary["curves"] = curves
    report = write_report(summary, RESULTS_DIR / NAME / "report", arguments)
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME, "preset": arguments.preset, "tasks": arguments.tasks, "optimizers": arguments.optimizers,
        "regularizers": arguments.regularizers, "regime": arguments.regime, "ignite_mode": arguments.ignite_mode,
        **summary,
        "report": str(report.relative_to(REPOSITORY)), "paper": PAPER, "peak_memory_mb": peak_memory_mb(),
    })


CURVES = ("validation/sharpness", "train/multiplier")


def collect(specs: list[Any]) -> tuple[dict[tuple[str, str, str], dict[int, dict[str, Any]]], dict[str, Any]]:
    """(task, optimiser, regulariser) -> seed -> the final metrics of its finished runs; and per task
    and method the mean over seeds of the sharpness and λ per epoch."""
    from hybridrl.core.logging import read_metrics
    from hybridrl.experiments.spec import expand_sweep
    from hybridrl.runs import is_finished, read_run_config

    finals: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    per_epoch: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = {}
    for spec in specs:
        for run in expand_sweep(spec):
            if not is_finished(run.run_dir):
                continue
            _, config = read_run_config(run.run_dir)
            final = json.loads((run.run_dir / "final.json").read_text())
            finals.setdefault((config.task, config.optimizer, config.regularizer), {})[config.seed] = final
            method = per_epoch.setdefault(config.task, {}).setdefault(f"{config.optimizer}/{config.regularizer}", {})
            for line in read_metrics(run.run_dir):
                for name in CURVES:
                    if name in line:
                        method.setdefault(name, {}).setdefault(int(line["step"]), []).append(float(line[name]))
    curves = {task: {method: {name: {str(epoch): float(np.mean(values)) for epoch, values in sorted(steps.items())}
                              for name, steps in names.items()} for method, names in methods.items()}
              for task, methods in per_epoch.items()}
    return finals, curves


#: Final metrics whose IGNITE - base difference is reported per (task, optimiser).
COMPARED = (*SCORES, "overestimation/mean", "overestimation/top")


def summarize(finals: dict[tuple[str, str, str], dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Scores per configuration, paired gains of each regulariser over the base, and mean ranks."""
    from hybridrl.experiments.statistics import summarize_seeds

    scores: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, optimizer, regularizer), by_seed in sorted(finals.items()):
        runs = [by_seed[seed] for seed in sorted(by_seed)]
        entry: dict[str, Any] = {key: summarize_seeds([run[key] for run in runs]) for key in SCORES}
        if "candidates/feasible_fraction" in runs[0]:
            entry["feasible_fraction"] = summarize_seeds([run["candidates/feasible_fraction"] for run in runs])
        entry["offline_best"] = runs[0]["score/offline_best"]
        for key in ("overestimation/mean", "overestimation/top", "ignite/sharpness_end", "ignite/multiplier_end"):
            if all(key in run for run in runs):
                entry[key.replace("/", "_")] = summarize_seeds([run[key] for run in runs])
        if all("ignite/constraint_holds" in run for run in runs):
            entry["constraint_holds"] = f"{sum(bool(run['ignite/constraint_holds']) for run in runs)}/{len(runs)}"
        if "ignite/epsilon" in runs[0]:
            entry["epsilon"] = float(runs[0]["ignite/epsilon"])
        entry["mean_wall_time_s"] = float(np.mean([run.get("wall_time_s", 0.0) for run in runs]))
        scores.setdefault(task, {})[f"{optimizer}/{regularizer}"] = entry

    gains: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, optimizer, regularizer), by_seed in sorted(finals.items()):
        base = finals.get((task, optimizer, "none"))
        if regularizer == "none" or base is None:
            continue
        gains.setdefault(task, {})[f"{optimizer}/{regularizer}"] = {
            key: difference for key in COMPARED if (difference := paired_difference(by_seed, base, key)) is not None}

    ranks: dict[str, list[float]] = {}
    for methods in scores.values():
        names = list(methods)
        means = np.asarray([methods[name]["score/p100"]["mean"] for name in names])
        # Average ranks for ties, 1 = best.
        order = (-means).argsort(kind="stable")
        rank = np.empty(len(names))
        rank[order] = np.arange(1, len(names) + 1)
        for value in np.unique(means):
            tied = means == value
            rank[tied] = rank[tied].mean()
        for name, value in zip(names, rank, strict=True):
            ranks.setdefault(name, []).append(float(value))
    mean_rank = {name: {"mean_rank": float(np.mean(values)), "tasks": len(values)} for name, values in ranks.items()}
    return {"normalized_score": scores, "gain": gains, "rank": mean_rank}


def write_report(summary: dict[str, Any], folder: Path, arguments: argparse.Namespace) -> Path:
    """report.md: the score table, the gains, the mean ranks; gains.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    scores, gains = summary["normalized_score"], summary["gain"]
    lines = [f"# IGNITE on offline MBO at `{arguments.preset}` scale", "",
             "Normalised score of the 128 candidates (Design-Bench: (y − y_min)/(y_max − y_min), full-data min/max); "
             "100th percentile, mean ± std over seeds, then IQM [95% bootstrap CI]; `n` = seeds. Generated by "
             "`python benchmarks/ignite.py`.", "",
             "| task | D(best) | optimizer | regularizer | p100 mean ± std | p100 IQM [CI] | p80 | p50 | feasible "
             "| n |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task, methods in scores.items():
        for method, entry in methods.items():
            optimizer, regularizer = method.split("/")
            p100 = entry["score/p100"]
            feasible = entry.get("feasible_fraction")
            lines.append(
                f"| {task} | {entry['offline_best']:.3f} | {optimizer} | {regularizer} | "
                f"{p100['mean']:.3f} ± {p100['std']:.3f} | {p100['iqm']:.3f} [{p100['iqm_low']:.3f}, "
                f"{p100['iqm_high']:.3f}] | {entry['score/p80']['mean']:.3f} | {entry['score/p50']['mean']:.3f} | "
                f"{'–' if feasible is None else format(feasible['mean'], '.2f')} | {p100['seeds']} |")
    def gain_cell(difference: dict[str, Any] | None, scale: float = 100.0) -> str:
        if difference is None:
            return "–"
        return (f"{scale * difference['absolute']:+.1f} [{scale * difference['low']:+.1f}, "
                f"{scale * difference['high']:+.1f}]")

    lines += ["", "## Gain over the base optimiser", "",
              "Points of normalised score (×100), the mean of the per-seed differences (seed i with IGNITE against "
              "seed i without) with its 95 % bootstrap interval; the relative gain at p100 is (IGNITE − base)/|base|; "
              "the overestimation change is in the same points (negative: IGNITE lowered it).", "",
              "| task | optimizer + regularizer | p100 | p100 relative | p80 | p50 | overestimation change | n |",
              "|---|---|---|---|---|---|---|---|"]
    labels, values, verdicts = [], [], {"higher": 0, "lower": 0, "unresolved": 0}
    largest: tuple[float, str] | None = None
    for task, methods in gains.items():
        for method, row in methods.items():
            p100 = row.get("score/p100")
            if p100 is None:
                continue
            relative = "–" if p100["relative"] is None else f"{100 * p100['relative']:+.1f}%"
            lines.append(f"| {task} | {method} | {gain_cell(p100)} | {relative} | {gain_cell(row.get('score/p80'))} | "
                         f"{gain_cell(row.get('score/p50'))} | {gain_cell(row.get('overestimation/mean'))} | "
                         f"{p100['seeds']} |")
            labels.append(f"{task}\n{method}")
            values.append(100 * p100["absolute"])
            verdicts["higher" if p100["low"] > 0 else "lower" if p100["high"] < 0 else "unresolved"] += 1
            if p100["relative"] is not None and (largest is None or p100["relative"] > largest[0]):
                largest = (p100["relative"], f"{task}, {method}")
    if values:
        lines += ["", f"At the 100th percentile IGNITE is higher with its interval above zero on {verdicts['higher']} "
                      f"of {len(values)} (task, optimiser) pairs, lower with its interval below zero on "
                      f"{verdicts['lower']}, and unresolved (interval across zero) on {verdicts['unresolved']}. "
                      "The paper claims gains on most pairs, up to +9.6 %."]
        if largest is not None:
            lines += [f"The largest relative gain here is {100 * largest[0]:+.1f} % ({largest[1]})."]
    lines += ["", "## Mean rank over tasks (100th percentile mean; 1 = best)", "", "| method | mean rank | tasks |",
              "|---|---|---|"]
    for method, entry in sorted(summary["rank"].items(), key=lambda item: item[1]["mean_rank"]):
        lines.append(f"| {method} | {entry['mean_rank']:.2f} | {entry['tasks']} |")
    if values:
        figure, axis = plt.subplots(figsize=(max(6.0, 0.45 * len(values)), 4.0))
        axis.bar(range(len(values)), values, color=["tab:green" if v > 0 else "tab:red" for v in values])
        axis.set_xticks(range(len(values)), labels, rotation=90, fontsize=6)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_ylabel("Δ p100 normalised score (points)")
        figure.tight_layout()
        figure.savefig(folder / "gains.png", dpi=120)
        plt.close(figure)
        lines += ["", "![absolute gain per (task, optimizer)](gains.png)", ""]
    lines += diagnostics_section(summary, folder)
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def diagnostics_section(summary: dict[str, Any], folder: Path) -> list[str]:
    """The overestimation and constraint table, and diagnostics.png: per task, the sharpness per
    epoch with and without IGNITE against ε, and λ per epoch."""
    import matplotlib.pyplot as plt

    def cell(entry: dict[str, Any] | None) -> str:
        return "–" if entry is None else f"{entry['mean']:+.3f} ± {entry['std']:.3f}"

    lines = ["", "## What IGNITE changed in the surrogate", "",
             "Overestimation at the candidates: predicted minus true normalised score (mean over the 128, and at the "
             "candidate the surrogate ranks first); the last epoch's sharpness ρ‖∇G‖ and λ; seeds where the "
             "sharpness ended at or below ε. COMs trains its surrogate for 2 epochs, as released (a dual step ratio "
             "of 1), so its λ barely moves and its constraint is not expected to bind; the binding claim is judged on "
             "the other optimisers.", "",
             "| task | optimizer | regularizer | overestimation (mean) | overestimation (top) | sharpness at the end "
             "| λ at the end | constraint holds |", "|---|---|---|---|---|---|---|---|"]
    for task, methods in summary["normalized_score"].items():
        for method, entry in methods.items():
            optimizer, regularizer = method.split("/")
            lines.append(f"| {task} | {optimizer} | {regularizer} | {cell(entry.get('overestimation_mean'))} | "
                         f"{cell(entry.get('overestimation_top'))} | {cell(entry.get('ignite_sharpness_end'))} | "
                         f"{cell(entry.get('ignite_multiplier_end'))} | {entry.get('constraint_holds', '–')} |")
    curves = summary.get("curves", {})
    if not curves:
        return lines
    tasks = sorted(curves)
    figure, axes = plt.subplots(2, len(tasks), figsize=(4.0 * len(tasks), 6.0), squeeze=False)
    for column, task in enumerate(tasks):
        for method, names in sorted(curves[task].items()):
            style = "-" if method.endswith("/none") else "--"
            for row, name in enumerate(CURVES):
                if name in names:
                    epochs = [int(epoch) for epoch in names[name]]
                    axes[row][column].plot(epochs, list(names[name].values()), style, label=method)
        methods = summary["normalized_score"].get(task, {})
        epsilons = {entry["epsilon"] for entry in methods.values() if "epsilon" in entry}
        for epsilon in sorted(epsilons):
            axes[0][column].axhline(epsilon, color="black", linewidth=0.8, label=f"ε = {epsilon:g}")
        axes[0][column].set(title=task, ylabel="sharpness ρ‖∇G‖ (validation)", yscale="log")
        axes[1][column].set(xlabel="epoch", ylabel="λ (IGNITE)")
    axes[0][0].legend(fontsize=5)
    figure.tight_layout()
    figure.savefig(folder / "diagnostics.png", dpi=110)
    plt.close(figure)
    return [*lines, "", "![sharpness and λ per epoch](diagnostics.png)", ""]


if __name__ == "__main__":
    main()
