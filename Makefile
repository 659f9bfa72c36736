# The two commands of the README contract: `make demo` and `make test`. Both create .venv and
# install hybridrl into it first, so they work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export MUJOCO_GL ?= disable
# JAX on 2 cores: see docs/algorithms/ppo.md ("Threads"); one BLAS thread for numpy rollouts.
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,box2d,ray]"
	touch $(STAMP)

install: $(STAMP)

## demo: a short PPO run on Hopper-v5 (logs, checkpoint, learning-curve PNG, summary line)
demo: $(STAMP)
	$(BIN)/hybridrl train ppo --env Hopper-v5 --preset cpu --seed 1 --total-steps 100000 \
		--eval-interval 20000 --run-dir runs/demo/ppo-hopper-$$(date +%Y%m%d-%H%M%S)

## test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
