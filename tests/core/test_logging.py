"""Tests of run logging (hybridrl.core.logging): metrics.jsonl, TensorBoard events, resume."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from tensorboardX.proto.event_pb2 import Event, SessionLog

from hybridrl.core.logging import METRICS_FILE, RunLogger, read_metrics


def _tensorboard_events(run_dir: Path) -> list[Event]:
    """Every event in the run's TensorBoard event files, read as TFRecords: 8-byte length, 4-byte
    CRC, the serialised Event, 4-byte CRC."""
    events = []
    for event_file in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        data, offset = event_file.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            events.append(Event.FromString(data[offset + 12 : offset + 12 + length]))
            offset += 12 + length + 4
    return events


def _tensorboard_scalars(run_dir: Path) -> list[tuple[str, int, float]]:
    """``(tag, step, value)`` of every scalar in the run's TensorBoard event files."""
    return [(value.tag, event.step, value.simple_value)
            for event in _tensorboard_events(run_dir) for value in event.summary.value]


def test_log_writes_metrics_lines_with_step_time_and_tags(tmp_path: Path) -> None:
    with RunLogger(tmp_path, total_steps=100, progress=False) as logger:
        logger.log(10, {"train/loss": 0.5, "train/episode_return": 12.0})
        logger.log(20, {"eval/return_mean": 3.25})

    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [entry["step"] for entry in entries] == [10, 20]
    assert entries[0]["train/loss"] == 0.5 and entries[0]["train/episode_return"] == 12.0
    assert entries[1]["eval/return_mean"] == 3.25
    assert set(entries[1]) == {"step", "time", "eval/return_mean"}
    assert 0.0 <= entries[0]["time"] <= entries[1]["time"]
    assert read_metrics(tmp_path) == entries


def test_log_writes_tensorboard_events_under_tb(tmp_path: Path) -> None:
    with RunLogger(tmp_path, total_steps=100, progress=False) as logger:
        logger.log(10, {"train/loss": 0.5})
        logger.log(20, {"train/loss": 0.25, "eval/return_mean": 3.0})

    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert _tensorboard_scalars(tmp_path) == [("train/loss", 10, 0.5), ("train/loss", 20, 0.25),
                                              ("eval/return_mean", 20, 3.0)]


def test_tensorboard_can_be_switched_off(tmp_path: Path) -> None:
    with RunLogger(tmp_path, total_steps=100, progress=False, tensorboard=False) as logger:
        logger.log(1, {"x": 1.0})
    assert not (tmp_path / "tb").exists()
    [entry] = read_metrics(tmp_path)
    assert entry["step"] == 1 and entry["x"] == 1.0 and set(entry) == {"step", "time", "x"}


def test_resume_drops_entries_logged_after_the_start_step(tmp_path: Path) -> None:
    with RunLogger(tmp_path, total_steps=100, progress=False, tensorboard=False) as logger:
        for step in (10, 20, 30, 40):
            logger.log(step, {"train/loss": float(step)})

    # The run crashed after logging step 40; its last checkpoint was at step 20.
    with RunLogger(tmp_path, total_steps=100, start_step=20, progress=False, tensorboard=False,
                   elapsed=100.0) as logger:
        logger.log(30, {"train/loss": -30.0})

    entries = read_metrics(tmp_path)
    assert [(entry["step"], entry["train/loss"]) for entry in entries] == [(10, 10.0), (20, 20.0),
                                                                          (30, -30.0)]
    # Time continues from the elapsed time of the checkpoint.
    assert entries[-1]["time"] >= 100.0


def test_resume_repairs_a_half_written_last_line(tmp_path: Path) -> None:
    with RunLogger(tmp_path, total_steps=100, progress=False, tensorboard=False) as logger:
        logger.log(10, {"x": 1.0})
    with (tmp_path / METRICS_FILE).open("a") as handle:
        handle.write('{"step": 20, "ti')  # the process died mid-write

    with RunLogger(tmp_path, total_steps=100, start_step=10, progress=False, tensorboard=False) as logger:
        logger.log(20, {"x": 2.0})

    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["x"] for line in lines] == [1.0, 2.0]


def test_resume_keeps_earlier_tensorboard_events_and_marks_the_purge(tmp_path: Path) -> None:
    with RunLogger(tmp_path, total_steps=100, progress=False) as logger:
        logger.log(10, {"x": 1.0})
        logger.log(30, {"x": 3.0})
    # Resumed from the checkpoint at step 20, within the same second as the first run started.
    with RunLogger(tmp_path, total_steps=100, start_step=20, progress=False) as logger:
        logger.log(30, {"x": -3.0})

    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 2
    assert sorted(_tensorboard_scalars(tmp_path)) == [("x", 10, 1.0), ("x", 30, -3.0), ("x", 30, 3.0)]
    # TensorBoard drops events past a SessionLog START at the purge step (step 20), which the
    # resumed run writes before its own events.
    starts = [event.step for event in _tensorboard_events(tmp_path) if event.session_log.status == SessionLog.START]
    assert starts == [20]


def test_read_metrics_skips_a_half_written_last_line(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text('{"step": 1, "time": 0.1, "x": 1.0}\n'
                                         '{"step": 2, "time": 0.2, "x": 2.0}\n'
                                         '{"step": 3, "time": 0.')
    assert read_metrics(tmp_path) == [{"step": 1, "time": 0.1, "x": 1.0}, {"step": 2, "time": 0.2, "x": 2.0}]


def test_read_metrics_of_a_run_without_metrics_is_empty(tmp_path: Path) -> None:
    assert read_metrics(tmp_path) == []


def test_progress_bar_runs_and_close_is_idempotent(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, total_steps=100, progress=True, tensorboard=False)
    logger.log(50, {"train/episode_return": 7.5})
    logger.update_progress(50)
    logger.close()
    logger.close()
    assert read_metrics(tmp_path)[0]["train/episode_return"] == 7.5


def test_log_requires_host_numbers(tmp_path: Path) -> None:
    with RunLogger(tmp_path, total_steps=10, progress=False, tensorboard=False) as logger, \
            pytest.raises((TypeError, ValueError)):
        logger.log(1, {"x": "not a number"})  # type: ignore[dict-item]
