"""Sweeps with ``vmap_seeds``: runs that differ only in their seed become one unit of work trained
in one process, each seed still in its own run directory, skipped once finished."""

from __future__ import annotations

from pathlib import Path

from hybridrl.experiments.spec import load_sweep_spec
from hybridrl.experiments.sweep import dispatch_units, plan_sweep, run_sweep


def test_vmapped_seeds_run_as_one_unit_with_one_run_directory_per_seed(tmp_path: Path) -> None:
    spec_file = tmp_path / "mbo.yaml"
    spec_file.write_text(
        "name: mbo-vmap\n"
        f"output: {tmp_path / 'out'}\n"
        "algorithm: [mbo]\n"
        "task: [ackley20]\n"
        "preset: smoke\n"
        "seeds: 2\n"
        "vmap_seeds: true\n"
        "variants:\n  base: {regularizer: none}\n  ignite: {regularizer: ignite}\n"
    )
    spec = load_sweep_spec(spec_file)
    units = dispatch_units([planned.run for planned in plan_sweep(spec)], vmap_seeds=True)
    assert [len(unit) for unit in units] == [2, 2]
    assert {run.seed for run in units[0]} == {0, 1}
    summary = run_sweep(spec, workers=1)
    assert sorted(outcome.status for outcome in summary.outcomes) == ["finished"] * 4
    for outcome in summary.outcomes:
        assert (outcome.run.run_dir / "final.json").is_file()
        assert (outcome.run.run_dir / "sweep_run.json").is_file()
    again = run_sweep(spec, workers=1)
    assert [outcome.status for outcome in again.outcomes] == ["skipped"] * 4
