"""What every benchmark script shares: provenance of results and peak memory."""

from __future__ import annotations

import resource
import shlex
import sys
from pathlib import Path
from typing import Any

from hybridrl.core import provenance
from hybridrl.core.io import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its finished children, in MB."""
    to_mb = 1 / 1024  # ru_maxrss is in KiB on Linux
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_mb,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_mb}


def write_result(name: str, seeds: list[int], payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the command, seeds, commit and machine."""
    record = {
        "command": " ".join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv]),
        "seeds": seeds,
        "git_commit": provenance.git_commit(),
        "machine": provenance.machine(),
        "versions": provenance.package_versions(),
        **payload,
    }
    path = RESULTS_DIR / f"{name}.json"
    atomic_write_json(path, record)
    return path
