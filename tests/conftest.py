"""Shared test settings: headless MuJoCo, one BLAS thread, and helpers to build small runs."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("OMP_NUM_THREADS", "1")
