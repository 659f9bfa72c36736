"""``hybridrl data info`` and ``list``: summaries, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest

from hybridrl.cli import main
from hybridrl.data import Dataset, write_minari


def test_info_prints_a_summary(pendulum_dataset: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    write_minari(pendulum_dataset, "hybridrl/pendulum-random-v1")
    assert main(["data", "info", "pendulum-random-v1"]) == 0
    text = capsys.readouterr().out
    assert "74 transitions, 4 episodes (0 terminated, 4 truncated)" in text
    assert "env          Pendulum-v1" in text
    assert "reference    random -1200.0, expert -150.0" in text
    assert main(["data", "info", "pendulum-random-v1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["length"]["max"] == 20 and summary["episodes"] == 4
    assert main(["data", "list"]) == 0
    assert "hybridrl/pendulum-random-v1" in capsys.readouterr().out


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "hopper-medium-v5"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hybridrl: error: no dataset 'hopper-medium-v5'") and "Traceback" not in error
    assert main(["data", "frobnicate"]) == 2
