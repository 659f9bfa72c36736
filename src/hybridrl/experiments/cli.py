"""The ``hybridrl sweep``, ``hybridrl results`` and ``hybridrl report`` commands.

Each ``*_main`` parses its arguments, returns an exit status, and raises
:class:`~hybridrl.errors.HybridRLError` for problems the user can fix (``hybridrl.cli`` prints
those and exits with status 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hybridrl.errors import RunDirectoryError
from hybridrl.experiments.spec import load_sweep_spec
from hybridrl.experiments.sweep import RunOutcome, run_sweep


def _sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridrl sweep",
        description="Run a grid of algorithm x task x variant x seed from a YAML spec. Finished runs are "
                    "skipped, interrupted runs resume, failed runs are tried again: re-run the same "
                    "command to continue a sweep. See docs/experiments.md for the spec format.",
    )
    parser.add_argument("spec", type=Path, help="the sweep spec, a YAML file")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: a process pool on this machine (default); ray: Ray tasks")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (e.g. ray://head:10001); default RAY_ADDRESS or a new "
                             "local Ray instance")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs at once (default: one per CPU core locally; all that Ray schedules)")
    parser.add_argument("--output", type=Path, default=None, help="overrides the spec's `output` folder")
    return parser


def sweep_main(argv: list[str]) -> int:
    """``hybridrl sweep SPEC.yaml [--dry-run] [--backend local|ray] [--address ADDR] [--workers N]``.

    :returns: 0 when every run has finished, 1 when some failed.
    """
    arguments = _sweep_parser().parse_args(argv)
    spec = load_sweep_spec(arguments.spec, output=arguments.output)
    total = len(spec.algorithms) * len(spec.tasks) * len(spec.variants) * len(spec.seeds)

    if arguments.dry_run:
        summary = run_sweep(spec, backend=arguments.backend, workers=arguments.workers,
                            address=arguments.address, dry_run=True)
        width = max(len(planned.run.name) for planned in summary.plan)
        print(f"sweep {spec.name}: {total} runs in {spec.output}")
        for planned in summary.plan:
            action = {"finished": "skip (finished)", "resumable": "resume", "failed": "retry (failed)",
                      "pending": "run"}[planned.status]
            print(f"  {planned.run.name:<{width}}  {action:<15}  {planned.run.run_dir}")
        left = sum(planned.status != "finished" for planned in summary.plan)
        print(f"{left} of {total} runs would run (dry run: nothing was started)")
        return 0

    done = 0

    def show(outcome: RunOutcome) -> None:
        nonlocal done
        done += 1
        prefix = f"[{done}/{total}] {outcome.run.name}"
        if outcome.status == "skipped":
            print(f"{prefix}: already finished, skipped", flush=True)
        elif outcome.status == "finished":
            final = outcome.final or {}
            score = final.get("eval/return_mean")
            score_text = f", eval return {score:.2f}" if isinstance(score, int | float) else ""
            print(f"{prefix}: finished in {outcome.wall_time_s:.1f} s{score_text}", flush=True)
        else:
            print(f"{prefix}: FAILED: {outcome.error} (see {outcome.run.run_dir / 'error.json'})", flush=True)

    print(f"sweep {spec.name}: {total} runs in {spec.output}, backend {arguments.backend}", flush=True)
    try:
        summary = run_sweep(spec, backend=arguments.backend, workers=arguments.workers,
                            address=arguments.address, on_outcome=show)
    except KeyboardInterrupt:
        print(f"\nsweep {spec.name} interrupted; run the same command again to continue: finished runs are "
              "skipped and interrupted runs resume from their last checkpoint", file=sys.stderr)
        return 130
    print(f"sweep {spec.name}: {len(summary.finished)} finished, {len(summary.skipped)} skipped "
          f"(finished before), {len(summary.failed)} failed")
    if summary.failed:
        print("failed runs are tried again when you re-run this command", file=sys.stderr)
        return 1
    return 0


def results_main(argv: list[str]) -> int:
    """``hybridrl results DIR [--csv OUT]``: summarise every run under DIR, optionally export CSV."""
    parser = argparse.ArgumentParser(
        prog="hybridrl results",
        description="Load every run under DIR (config.json, metrics.jsonl, final.json) into one table: one "
                    "row per run and evaluation point. Prints a summary; --csv writes the table.",
    )
    parser.add_argument("directory", type=Path,
                        help="a folder holding run directories, e.g. a sweep's output")
    parser.add_argument("--csv", type=Path, default=None, help="write the table to this CSV file")
    arguments = parser.parse_args(argv)
    # pandas loads here, not at import: sweep workers import this package and never need it.
    from hybridrl.experiments.results import export_csv, load_results, load_runs

    runs = load_runs(arguments.directory)
    results = load_results(arguments.directory)
    if runs.empty:
        print(f"no runs under {arguments.directory}")
    else:
        counts = runs.groupby(["method", "task", "status"]).size().unstack(fill_value=0)
        print(f"{len(runs)} runs, {len(results)} evaluation points under {arguments.directory}\n")
        print(counts.to_string())
        final = results[results["is_final"].astype(bool)] if not results.empty else results
        if not final.empty:
            summary = final.groupby(["method", "task"])["eval/return_mean"].agg(
                ["count", "mean", "std", "min", "max"])
            print("\nfinal evaluation return per method and task:\n")
            print(summary.to_string(float_format=lambda value: f"{value:.2f}"))
    if arguments.csv is not None:
        try:
            path = export_csv(results, arguments.csv)
        except OSError as error:
            raise RunDirectoryError(f"cannot write {arguments.csv}: {error.strerror or error}") from error
        print(f"\nwrote {len(results)} rows to {path}")
    return 0


def report_main(argv: list[str]) -> int:
    """``hybridrl report DIR [--baseline NAME] [--output DIR]``: write report.md and figures."""
    parser = argparse.ArgumentParser(
        prog="hybridrl report",
        description="Write report.md and PNG figures for every run under DIR: learning curves, IQM/mean/"
                    "median/optimality gap with stratified-bootstrap intervals, performance profiles and "
                    "a table per task.",
    )
    parser.add_argument("directory", type=Path,
                        help="a folder holding run directories, e.g. a sweep's output")
    parser.add_argument("--baseline", default=None,
                        help="a method to compare the others with (e.g. ppo, or ppo:no-norm for a variant)")
    parser.add_argument("--output", type=Path, default=None, help="where to write (default DIR/report)")
    parser.add_argument("--normalization", choices=("auto", "reference", "minmax"), default="auto",
                        help="normalised scores from the env's reference scores, min-max over the results, "
                             "or reference where available (default)")
    parser.add_argument("--bootstrap-reps", type=int, default=2000, help="bootstrap resamples per interval")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    arguments = parser.parse_args(argv)
    if arguments.bootstrap_reps <= 0:
        parser.error("--bootstrap-reps must be positive")
    # matplotlib and pandas load here, not at import: sweep workers import this package.
    from hybridrl.experiments.report import write_report

    report = write_report(arguments.directory, arguments.output, baseline=arguments.baseline,
                          normalization=arguments.normalization, reps=arguments.bootstrap_reps,
                          seed=arguments.seed)
    print(f"wrote {report.markdown}")
    for figure in report.figures:
        print(f"wrote {figure}")
    return 0
