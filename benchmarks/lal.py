"""Learning to actively learn: is one robust query policy near-minimax on every difficulty class?

The claim (Zhang, Jain & Jamieson, arXiv 2010.15382, abstract; no numbers were readable): a policy
trained adversarially over difficulty classes "competes with the best adaptive algorithm learned
for each equivalence class". What we test, per problem and seed (the reference's §5):

1. the robust policy's largest gap to the envelope ℓ*_r is small (≤ 0.1) and smaller than every
   per-class policy's and every baseline's;
2. its worst case is ≤ uniform allocation's on every class;
3. the prior-trained (meta-learning) policy has a larger gap than the robust one on at least one
   class.

Problems: 1-D thresholds (16 points, budget 12, four classes) is the primary experiment, synthetic
twenty questions the second, best-arm identification (4 arms, budget 20) a sanity check, where
classical algorithms (LUCB) are strong. Two ablations train every policy with the plug-in decision only
(no learned decision residual), on thresholds and bandits, where the plug-in decision of the
robust policy's own queries beat its learned one.

    python benchmarks/lal.py --seeds 3 [--problems thresholds twenty-questions bandit
        thresholds-plugin bandit-plugin] [--preset cpu] [--workers 2] [--report-only]

Each experiment is one resumable sweep (``benchmarks/runs/lal/<experiment>``) recorded in
``benchmarks/results/lal/<experiment>/runs/``; the summary is ``benchmarks/results/lal.json`` and the
report ``benchmarks/results/lal/report/``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, peak_memory_mb, sweep_or_records, write_result

NAME = "lal"
REPOSITORY = Path(__file__).resolve().parent.parent
#: experiment -> (problem, config overrides). The first three are the issue's experiments.
EXPERIMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "thresholds": ("thresholds", {}),
    "twenty-questions": ("twenty-questions", {}),
    "bandit": ("bandit", {}),
    "thresholds-plugin": ("thresholds", {"learned_decision": False}),
    "bandit-plugin": ("bandit", {"learned_decision": False}),
}
ROBUST = "robust"
PAPER = {"claim": "one learned policy competes with the best policy learned for each difficulty class",
         "source": "Zhang, Jain & Jamieson 2020 (arXiv 2010.15382), abstract; no numbers transcribed",
         "reference_targets": {"robust_max_gap": 0.1}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS),
                        help="experiments to run (a problem, or a problem with an ablation)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (one process each)")
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs, run nothing")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)

    keep = ("robust/gap/max", "robust/loss/worst_particle")
    specs = []
    for experiment in arguments.problems:
        problem, overrides = EXPERIMENTS[experiment]
        mapping = {"name": f"{NAME}-{experiment}", "output": f"benchmarks/runs/{NAME}/{experiment}",
                   "algorithm": "lal", "problem": [problem], "preset": arguments.preset, "seeds": arguments.seeds,
                   "overrides": overrides}
        specs.append((experiment, sweep_or_records(f"{NAME}/{experiment}", mapping, keep, arguments.workers,
                                                   arguments.report_only)))

    summary = summarize(collect(specs))
    report = write_report(summary, RESULTS_DIR / NAME / "report", arguments)
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME, "preset": arguments.preset, "problems": arguments.problems, **summary,
        "report": str(report.relative_to(REPOSITORY)), "paper": PAPER, "peak_memory_mb": peak_memory_mb(),
    })


def collect(specs: list[tuple[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """experiment -> the final metrics of its finished seeds."""
    from hybridrl.experiments.spec import expand_sweep
    from hybridrl.runs import is_finished

    finals: dict[str, list[dict[str, Any]]] = {}
    for experiment, spec in specs:
        for run in expand_sweep(spec):
            if is_finished(run.run_dir):
                finals.setdefault(experiment, []).append(json.loads((run.run_dir / "final.json").read_text()))
    return finals


def _stats(values: list[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "values": [round(float(value), 4) for value in array]}


def policy_names(final: dict[str, Any]) -> list[str]:
    """The policies a run evaluated, in table order."""
    return [key.split("/", 1)[1] for key in final if key.startswith("max_gap/")]


def summarize(finals: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per experiment: each policy's worst case per class, largest gap and natural loss over seeds; the claims."""
    problems: dict[str, Any] = {}
    for experiment, runs in sorted(finals.items(), key=lambda item: list(EXPERIMENTS).index(item[0])):
        classes = runs[0]["classes"]
        names = policy_names(runs[0])
        table = {name: {"worst": [_stats([run[f"worst/{name}/r{r:g}"] for run in runs]) for r in classes],
                        "max_gap": _stats([run[f"max_gap/{name}"] for run in runs]),
                        "natural": _stats([run[f"natural/{name}"] for run in runs])}
                 for name in names}
        others = [name for name in names if name not in (ROBUST, "robust-plugin")]
        per_seed = []
        for run in runs:
            robust_gap = run[f"max_gap/{ROBUST}"]
            robust_worst = [run[f"worst/{ROBUST}/r{r:g}"] for r in classes]
            uniform_worst = [run[f"worst/uniform/r{r:g}"] for r in classes]
            prior_gaps = [run[f"worst/prior/r{r:g}"] - best for r, best in zip(classes, run["envelope"], strict=True)]
            robust_gaps = [worst - best for worst, best in zip(robust_worst, run["envelope"], strict=True)]
            per_seed.append({
                "seed": run["seed"],
                "robust_gap_at_most_0.1": robust_gap <= 0.1,
                "robust_gap_below_every_other": all(robust_gap < run[f"max_gap/{name}"] for name in others),
                "robust_at_most_uniform_every_class": all(a <= b for a, b in zip(robust_worst, uniform_worst,
                                                                                  strict=True)),
                "prior_worse_somewhere": any(p > g for p, g in zip(prior_gaps, robust_gaps, strict=True)),
            })
        claims = {key: sum(seed[key] for seed in per_seed) for key in per_seed[0] if key != "seed"}
        problems[experiment] = {"problem": runs[0]["problem"], "overrides": EXPERIMENTS[experiment][1],
                                "classes": classes, "seeds": [run["seed"] for run in runs],
                                "envelope": [_stats([run["envelope"][k] for run in runs]) for k in range(len(classes))],
                                "policies": table, "claims_per_seed": per_seed,
                                "claims_held": {key: f"{count}/{len(runs)} seeds" for key, count in claims.items()},
                                "mean_wall_time_s": float(np.mean([run.get("wall_time_s", 0.0) for run in runs]))}
    return {"problems": problems}


def write_report(summary: dict[str, Any], folder: Path, arguments: argparse.Namespace) -> Path:
    """report.md (one table per problem and the claims) and worst_case.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# Learning to actively learn at `{arguments.preset}` scale", "",
             "Worst-case loss per difficulty class r (fresh adversary: screened boundary instances, ascent on the "
             "hardest, finalists re-estimated with 512 rollouts), the largest gap to the envelope l*_r (per seed: the "
             "smallest worst case any policy reached on that class), and the average loss on natural instances. "
             "Mean ± std over seeds. Generated by `python benchmarks/lal.py`.", ""]
    problems = summary["problems"]
    figure, axes = plt.subplots(1, max(1, len(problems)), figsize=(5.0 * max(1, len(problems)), 4.0), squeeze=False)
    for axis, (problem, entry) in zip(axes[0], problems.items(), strict=False):
        classes = entry["classes"]
        ablation = ", ".join(f"{key}={value}" for key, value in entry.get("overrides", {}).items())
        lines += [f"## {problem}{f' ({ablation})' if ablation else ''} (seeds {entry['seeds']}, "
                  f"{entry['mean_wall_time_s'] / 60:.0f} min per run)", "",
                  "| policy | " + " | ".join(f"r={r:g}" for r in classes) + " | max gap | natural |",
                  "|---|" + "---|" * (len(classes) + 2),
                  "| envelope l*_r | " + " | ".join(f"{e['mean']:.3f}" for e in entry["envelope"]) + " | | |"]
        for name, row in entry["policies"].items():
            cells = " | ".join(f"{w['mean']:.3f} ± {w['std']:.3f}" for w in row["worst"])
            bold = "**" if name == ROBUST else ""
            lines.append(f"| {bold}{name}{bold} | {cells} | {row['max_gap']['mean']:.3f} ± {row['max_gap']['std']:.3f} "
                         f"| {row['natural']['mean']:.3f} |")
            axis.errorbar(classes, [w["mean"] for w in row["worst"]], yerr=[w["std"] for w in row["worst"]],
                          label=name, marker="o", linewidth=2.5 if name == ROBUST else 1.0, capsize=2)
        lines += ["", "Claims (seeds where each held):", ""]
        lines += [f"- {key}: {value}" for key, value in entry["claims_held"].items()]
        lines.append("")
        axis.set_xscale("log")
        axis.set_xlabel("class boundary r (rho*)")
        axis.set_ylabel("worst-case loss")
        axis.set_title(problem)
    if problems:
        axes[0][0].legend(fontsize=6)
        figure.tight_layout()
        figure.savefig(folder / "worst_case.png", dpi=120)
    plt.close(figure)
    lines += ["![worst case per class](worst_case.png)", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    main()
