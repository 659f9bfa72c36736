"""Run logging: TensorBoard event files, a ``metrics.jsonl`` per run, and a rich progress bar.

``metrics.jsonl`` has one JSON object per logging call: ``{"step": env steps, "time": seconds
since the run started, "<tag>": value, ...}``. It is what reports and sweeps read; TensorBoard is
for looking at runs live. On resume, entries logged after the checkpoint are dropped so a resumed
run's log reads as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hybridrl.core.io import atomic_write_text
from hybridrl.errors import RunDirectoryError

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every entry of ``run_dir/metrics.jsonl``.

    A half-written last line (a run killed mid-write) is skipped; a bad line anywhere else means the
    file is corrupt and raises :class:`~hybridrl.errors.RunDirectoryError`.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                continue
            raise RunDirectoryError(f"{path} line {number} is not JSON ({error}); the file is corrupt") from error
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


class RunLogger:
    """Writes scalars to TensorBoard and ``metrics.jsonl`` and drives a progress bar.

    :param run_dir: the run directory.
    :param total_steps: the run's budget in env steps (for the progress bar and ETA).
    :param start_step: the step the run (re)starts from; later log entries are dropped.
    :param progress: show a rich progress bar.
    :param tensorboard: write TensorBoard event files to ``run_dir/tb``.
    """

    def __init__(self, run_dir: str | Path, total_steps: int, start_step: int = 0,
                 progress: bool = True, tensorboard: bool = True, elapsed: float = 0.0) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.total_steps = total_steps
        self._time_offset = elapsed - time.perf_counter()
        self._drop_entries_after(start_step)
        self._metrics = (self.run_dir / METRICS_FILE).open("a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            # purge_step hides events a crashed run wrote past its last checkpoint. Event files are
            # named by the second they were opened in; the start-step suffix keeps a resume within
            # the same second from overwriting (truncating) the earlier run's file.
            self._writer = SummaryWriter(str(self.run_dir / "tb"),
                                         purge_step=start_step if start_step > 0 else None,
                                         filename_suffix=f".step{start_step}")
        self._rate_step, self._rate_time = start_step, time.perf_counter()
        self._steps_per_second = 0.0
        self._latest_return = math.nan
        self._progress: Progress | None = None
        if progress:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} steps/s"), TextColumn("return {task.fields[latest_return]}"),
                TimeRemainingColumn(), refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task("training", total=total_steps, completed=start_step,
                                                 rate="-", latest_return="-")

    @property
    def elapsed(self) -> float:
        """Seconds of training so far, including time before a resume."""
        return time.perf_counter() + self._time_offset

    def _drop_entries_after(self, step: int) -> None:
        path = self.run_dir / METRICS_FILE
        if not path.is_file():
            return
        kept = [json.dumps(entry) for entry in read_metrics(self.run_dir) if entry.get("step", 0) <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Record ``scalars`` at env step ``step``. Values must already be host floats."""
        entry: dict[str, Any] = {"step": int(step), "time": round(self.elapsed, 3)}
        entry.update({tag: float(value) for tag, value in scalars.items()})
        self._metrics.write(json.dumps(entry) + "\n")
        self._metrics.flush()
        if self._writer is not None:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, float(value), int(step))
        if "train/episode_return" in scalars:
            self._latest_return = float(scalars["train/episode_return"])

    def update_progress(self, step: int) -> None:
        """Move the progress bar to ``step`` and refresh the steps/s estimate."""
        now = time.perf_counter()
        if now - self._rate_time > 1.0:
            self._steps_per_second = (step - self._rate_step) / (now - self._rate_time)
            self._rate_step, self._rate_time = step, now
        if self._progress is not None:
            latest = "-" if math.isnan(self._latest_return) else f"{self._latest_return:.1f}"
            self._progress.update(self._task, completed=step, rate=f"{self._steps_per_second:,.0f}",
                                  latest_return=latest)

    def close(self) -> None:
        """Flush and close files; stop the progress bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._metrics.closed:
            self._metrics.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
