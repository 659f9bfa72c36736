"""Shared test settings: headless MuJoCo, one BLAS thread, a shared compilation cache, one XLA thread per worker."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# About half of the suite's CPU time is XLA compilation (measured on 2 cores: 12.6 CPU-minutes with a cold cache,
# 6.5 with a warm one). JAX's persistent cache shares compiled programs between the xdist workers, the
# subprocesses of the CLI and sweep tests, trainers that rebuild the same programs, and later runs. Set through
# the environment, before JAX is imported, so that subprocesses inherit it; a user's own settings win.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax-compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # most programs compile in ~0.1 s
# No size limit: JAX's eviction rescans the whole folder at every write (minutes over the suite's ~3,600 entries,
# ~50 MB). `make clean` or `pytest --cache-clear` empties it.

# `make test` runs one xdist worker per core: one XLA thread each, so that the workers do not contend.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
