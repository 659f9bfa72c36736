"""Uni-O4: the released code's policy selection, scored for benchmark runs that finished before
Uni-O4 logged it.

Since December 2026 a Uni-O4 run with `--ope-true-episodes` also scores, from the same trained
artefacts, the policy the released code would have returned: of the 3 offline policies AM-Q scores
best, the one with the best mean return over 10 real episodes (selection episodes of their own
seeds), evaluated on the same final episodes as the gated policy
(`offline/released_selection_normalized_score`). This script computes the same for the finished
runs of `benchmarks/uni_o4.py` that lack it, from their offline checkpoints (run directories are
not committed, so it runs where the sweep ran), and writes
benchmarks/results/uni_o4_released_selection.json; the uni_o4 report reads it for those runs.

    python benchmarks/uni_o4_released_selection.py [--datasets hopper-medium-sac-v5 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, peak_memory_mb, write_result

NAME = "uni_o4_released_selection"
REPOSITORY = Path(__file__).resolve().parent.parent
RUNS = REPOSITORY / "benchmarks" / "runs" / "uni_o4" / "uni-o4" / "uni-o4"


def run_key(run_dir: Path) -> str:
    """``<dataset>/seed<k>``: how the summary names a run."""
    return f"{run_dir.parent.parent.name}/{run_dir.name}"


def released_selection(run_dir: Path) -> dict[str, Any]:
    """The released code's selection scored from ``run_dir``'s offline checkpoint (in a scratch copy
    of the run directory, so the run itself is untouched)."""
    from hybridrl.offline.uni_o4 import UniO4Trainer
    from hybridrl.runs import read_run_config

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / run_dir.name
        copy.mkdir()
        for name in ("config.json", "checkpoint.ckpt"):
            shutil.copy(run_dir / name, copy / name)
        _, config = read_run_config(copy)
        trainer = UniO4Trainer(dataclasses.replace(config, phase="offline"), copy)
        try:
            trainer.load_checkpoint(copy / "checkpoint.ckpt")
            result = trainer.released_selection_score()
        finally:
            trainer.close()
    final = json.loads((run_dir / "final.json").read_text())
    return {**result, "seed": config.seed, "gated_member": final["offline/selected_policy"],
            "gated_normalized_score": final.get("offline/eval/normalized_score")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=None, help="default: every dataset with finished runs")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)
    path = RESULTS_DIR / f"{NAME}.json"
    runs: dict[str, Any] = json.loads(path.read_text())["runs"] if path.is_file() else {}
    datasets = arguments.datasets or sorted(folder.name for folder in RUNS.iterdir() if folder.is_dir())
    for dataset in datasets:
        for run_dir in sorted((RUNS / dataset / "default").glob("seed*")):
            final_path = run_dir / "final.json"
            if not final_path.is_file() or run_key(run_dir) in runs:
                continue
            if "offline/released_selection_normalized_score" in json.loads(final_path.read_text()):
                continue  # logged by the run itself
            runs[run_key(run_dir)] = released_selection(run_dir)
            print(run_key(run_dir), runs[run_key(run_dir)], flush=True)
    write_result(NAME, sorted({entry["seed"] for entry in runs.values()}),
                 {"benchmark": NAME, "runs": runs, "peak_memory_mb": peak_memory_mb()})


if __name__ == "__main__":
    main()
