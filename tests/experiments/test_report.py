"""Reports: the markdown tables hold the expected values, and every figure is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hybridrl.errors import ConfigError, RunDirectoryError
from hybridrl.experiments.cli import report_main
from hybridrl.experiments.report import format_interval, markdown_table, method_colours, write_report

RunWriter = Callable[..., Path]
STEPS = (1_000, 2_000, 3_000)
FIGURES = ("aggregate_scores.png", "learning_curves.png", "performance_profile.png", "task_scores.png")


@pytest.fixture
def sweep_dir(run_writer: RunWriter, tmp_path: Path) -> Path:
    """Two methods x two tasks x three seeds, plus a failed and an unfinished run."""
    finals = {("default", "CartPole-v1"): (100.0, 50.0, 80.0),
              ("no-norm", "CartPole-v1"): (20.0, 30.0, 40.0),
              ("default", "Hopper-v5"): (900.0, 1200.0, 600.0),
              ("no-norm", "Hopper-v5"): (300.0, 400.0, 500.0)}
    for (variant, env), returns in finals.items():
        for seed, final in enumerate(returns):
            normalized = (5.0, 10.0, final / 20) if env == "Hopper-v5" else None
            run_writer(env=env, variant=variant, seed=seed, steps=STEPS, returns=(0.0, final / 2, final),
                       normalized=normalized, wall_time_s=90.0)
    run_writer(env="CartPole-v1", seed=3, finished=False, error="CheckpointError: checkpoint.ckpt is corrupt")
    run_writer(env="CartPole-v1", seed=4, finished=False)
    return tmp_path / "runs"


def _table_row(markdown: str, section: str, first_cell: str) -> list[str]:
    body = markdown.split(section, 1)[1]
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} after {section!r}")


def test_report_tables_and_figures(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(sweep_dir), "--baseline", "ppo", "--bootstrap-reps", "300"]) == 0

    report_dir = sweep_dir / "report"
    markdown = (report_dir / "report.md").read_text()
    for figure in FIGURES:
        data = (report_dir / figure).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, figure
        assert f"]({figure})" in markdown
    assert f"wrote {report_dir / 'report.md'}" in capsys.readouterr().out

    assert "| Runs | 14 (12 finished, 1 failed, 1 unfinished) |" in markdown
    assert "| Runs per method and task | 3 to 5 |" in markdown
    # Per task: CartPole finals of ppo are [100, 50, 80]; with three runs the IQM trims nothing.
    header = _table_row(markdown, "### CartPole-v1", "Method")
    assert header[:4] == ["Method", "Runs", "Final return IQM", "Final return mean"]
    ppo_cartpole = dict(zip(header, _table_row(markdown, "### CartPole-v1", "ppo (baseline)"), strict=True))
    assert ppo_cartpole["Runs"] == "3"
    assert ppo_cartpole["Final return IQM"].startswith("76.7 [")
    assert ppo_cartpole["Final return median"].startswith("80.0 [")  # the median over runs
    assert ppo_cartpole["Best return IQM"].startswith("76.7 [")
    assert ppo_cartpole["Env steps"] == "3,000"
    assert ppo_cartpole["Wall time"] == "90 s"
    no_norm_hopper = dict(zip(header, _table_row(markdown, "### Hopper-v5", "ppo:no-norm"), strict=True))
    assert no_norm_hopper["Final return mean"].startswith("400.0 [")
    assert no_norm_hopper["Final normalised IQM"].startswith("20.0 [")  # reference scores 15, 20, 25

    # Normalisation: Hopper has reference scores, CartPole does not.
    assert "| Hopper-v5 | reference returns (0 = random, 100 = expert) |" in markdown
    assert "| CartPole-v1 | min–max" in markdown
    # Aggregate over tasks: every metric for both methods, for final, best and AUC scores.
    aggregate_header = _table_row(markdown, "### Final score", "Method")
    assert aggregate_header == ["Method", "Runs", "IQM", "Mean", "Median", "Optimality gap"]
    assert _table_row(markdown, "### Final score", "ppo")[1] == "6"
    assert "### Best score during training" in markdown and "### Area under the learning curve" in markdown
    # ppo beats no-norm on every run pair of both tasks.
    assert _table_row(markdown, "## Improvement over ppo", "ppo:no-norm")[1].startswith("0.000 [")
    assert "CheckpointError: checkpoint.ckpt is corrupt" in _table_row(
        markdown, "## Failed runs", "`ppo/CartPole-v1/default/seed3`")[1]
    assert "`ppo/CartPole-v1/default/seed4`" in markdown.split("## Unfinished runs", 1)[1]


def test_report_is_reproducible_and_goes_where_asked(sweep_dir: Path, tmp_path: Path) -> None:
    first = write_report(sweep_dir, tmp_path / "first", reps=200)
    second = write_report(sweep_dir, tmp_path / "second", reps=200)

    def without_timestamp(path: Path) -> str:
        return "\n".join(line for line in path.read_text().splitlines() if not line.startswith("| Generated"))

    assert without_timestamp(first.markdown) == without_timestamp(second.markdown)
    assert {path.name for path in first.figures} == set(FIGURES)


def test_report_errors(sweep_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"baseline 'sac' is not a method.*ppo, ppo:no-norm"):
        write_report(sweep_dir, baseline="sac")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirectoryError, match="holds no run directories"):
        write_report(tmp_path / "empty")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RunDirectoryError, match="cannot write the report folder"):
        write_report(sweep_dir, blocker / "report")


def test_report_without_finished_runs(run_writer: RunWriter, tmp_path: Path) -> None:
    run_writer(finished=False)
    report = write_report(tmp_path / "runs")
    assert "No run has finished yet" in report.markdown.read_text()
    assert report.figures == ()


def test_formatting_helpers() -> None:
    assert format_interval(76.6667, 50.0, 100.0) == "76.7 [50.0, 100.0]"
    assert format_interval(0.5, 0.25, 3.0) == "0.500 [0.250, 3.000]"
    assert format_interval(-1047.5, -1185.4, -909.5) == "-1,048 [-1,185, -910]"
    assert markdown_table(["a", "b"], [["1", "x|y"]]) == "| a | b |\n|---|---|\n| 1 | x\\|y |\n"
    colours = method_colours(["sac", "ppo", "ppo:no-norm"])
    assert colours == method_colours(["ppo:no-norm", "sac", "ppo"])  # fixed by name, not order
    assert len(set(colours.values())) == 3
