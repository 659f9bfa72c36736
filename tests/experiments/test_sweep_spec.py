"""Sweep specs: grid expansion, validation before anything runs, and clear errors for bad specs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridrl import runs as run_files
from hybridrl.algorithms import get_algorithm
from hybridrl.experiments.spec import (
    SweepSpecError,
    check_output_writable,
    expand_sweep,
    load_sweep_spec,
    path_component,
)
from hybridrl.experiments.sweep import plan_sweep, run_sweep

ENVS = ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0"]


def base_spec(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "grid", "output": str(tmp_path / "out"), "algorithm": "ppo",
                            "env": ["CartPole-v1"], "preset": "smoke", "seeds": 1}
    spec.update(changes)
    return {key: value for key, value in spec.items() if value is not None}


def test_grid_expansion(tmp_path: Path) -> None:
    spec = load_sweep_spec(base_spec(
        tmp_path, env=["CartPole-v1", "Pendulum-v1"], seeds=[0, 1], overrides={"total_steps": 4096},
        variants={"default": {}, "no-norm": {"normalize_observations": False}}))
    runs = expand_sweep(spec)

    assert len(runs) == 2 * 2 * 2
    # Seed first: a sweep stopped half-way has every configuration's first seed.
    assert [run.name for run in runs[:4]] == ["ppo/CartPole-v1/default/seed0", "ppo/CartPole-v1/no-norm/seed0",
                                              "ppo/Pendulum-v1/default/seed0", "ppo/Pendulum-v1/no-norm/seed0"]
    assert {run.seed for run in runs[4:]} == {1}
    no_norm = runs[3]
    assert no_norm.run_dir == tmp_path / "out" / "ppo" / "Pendulum-v1" / "no-norm" / "seed0"
    config = no_norm.make_config()
    assert (config.env, config.seed, config.total_steps, config.normalize_observations) == (
        "Pendulum-v1", 0, 4096, False)
    assert config.num_envs == 2  # from the smoke preset
    assert runs[0].make_config().normalize_observations is True


def test_spec_file_and_shorthands(tmp_path: Path) -> None:
    spec_file = tmp_path / "classic.yaml"
    spec_file.write_text(f"output: {tmp_path / 'out'}\nalgorithm: ppo\nenv: CartPole-v1\npreset: smoke\nseeds: 3\n")
    spec = load_sweep_spec(spec_file)
    assert spec.name == "classic"  # from the file name
    assert spec.seeds == (0, 1, 2) and spec.algorithms == ("ppo",) and spec.tasks == ("CartPole-v1",)
    assert list(spec.variants) == ["default"]
    assert spec.source == spec_file
    # --output overrides the spec's folder.
    assert load_sweep_spec(spec_file, output=tmp_path / "elsewhere").output == tmp_path / "elsewhere"


def test_path_components_are_safe() -> None:
    assert path_component("mujoco/hopper/medium-v0") == "mujoco-hopper-medium-v0"
    assert path_component("dmc:walker-walk") == "dmc-walker-walk"
    assert path_component("CartPole-v1") == "CartPole-v1"


@pytest.mark.parametrize(("changes", "message"), [
    ({"algorithm": "ppo2"}, r"unknown algorithm 'ppo2'.*Did you mean ppo"),
    ({"seed": 3}, r"unknown key\(s\) 'seed' \(did you mean 'seeds'\?\)"),
    ({"env": []}, r"`env` is an empty list, so the grid has no runs"),
    ({"seeds": 0}, r"`seeds: 0` gives no runs"),
    ({"seeds": []}, r"`seeds` is an empty list"),
    ({"seeds": [0, 0]}, r"lists a seed more than once"),
    ({"seeds": "three"}, r"`seeds` must be a count"),
    ({"algorithm": None}, r"`algorithm` is missing"),
    ({"env": None}, r"exactly one task axis.*it has none"),
    ({"dataset": ["hopper-medium"]}, r"exactly one task axis.*it has env, dataset"),
    ({"output": None}, r"`output` is missing"),
    ({"preset": "tiny"}, r"unknown preset 'tiny' for ppo"),
    ({"overrides": {"learning_rat": 1e-3}}, r"unknown ppo option\(s\): learning_rat \(did you mean learning_rate"),
    ({"overrides": {"num_minibatches": 3}}, r"run ppo/CartPole-v1/default/seed0: .*not divisible"),
    ({"overrides": {"env": "Pendulum-v1"}}, r"`overrides` sets env, which the grid sets"),
    ({"variants": {"fast": {"seed": 2}}}, r"`variants.fast` sets seed"),
    ({"variants": {}}, r"`variants` must map variant names"),
    ({"variants": {"a/b": {}}}, r"variant name 'a/b' must be usable as a folder name"),
    ({"vmap_seeds": True, "algorithm": "props", "env": ["Pendulum-v1"]}, r"props cannot train vmapped seeds"),
])
def test_bad_specs_get_clear_errors(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    raw = base_spec(tmp_path)
    raw.update(changes)
    raw = {key: value for key, value in raw.items() if value is not None}
    with pytest.raises(SweepSpecError, match=message):
        load_sweep_spec(raw)


def test_bad_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SweepSpecError, match="does not exist"):
        load_sweep_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("algorithm: [ppo\n")
    with pytest.raises(SweepSpecError, match="not valid YAML"):
        load_sweep_spec(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- ppo\n- CartPole-v1\n")
    with pytest.raises(SweepSpecError, match="must be a mapping"):
        load_sweep_spec(listing)


def test_unwritable_output_is_reported_before_anything_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spec = load_sweep_spec(base_spec(tmp_path, output=str(blocker / "sweep")))
    with pytest.raises(SweepSpecError, match="a-file is a file, not a folder"):
        run_sweep(spec, dry_run=True)
    with pytest.raises(SweepSpecError, match="cannot write the sweep output folder"):
        run_sweep(spec)
    assert not (blocker.parent / "sweep").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders")
def test_read_only_output_folder(tmp_path: Path) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    with pytest.raises(SweepSpecError, match="not writable"):
        check_output_writable(read_only / "sweep", create=False)
    with pytest.raises(SweepSpecError, match="cannot write"):
        check_output_writable(read_only / "sweep", create=True)


def test_changed_spec_conflicts_with_existing_runs(tmp_path: Path) -> None:
    # A run started with total_steps 2048; the spec now asks for 4096 in the same folder.
    spec = load_sweep_spec(base_spec(tmp_path, overrides={"total_steps": 4096}))
    run = expand_sweep(spec)[0]
    algorithm = get_algorithm("ppo")
    run.run_dir.mkdir(parents=True)
    run_files.write_run_config(run.run_dir, algorithm,
                               algorithm.make_config("smoke", env="CartPole-v1", seed=0, total_steps=2048))
    with pytest.raises(SweepSpecError, match=r"(?s)another config.*total_steps: 2048 -> 4096.*new `output:`"):
        plan_sweep(spec)


def test_list_options_resume_like_the_tuples_config_json_gives_back(tmp_path: Path) -> None:
    spec = load_sweep_spec(base_spec(tmp_path, overrides={"policy_hidden": [32, 32]}))
    run = expand_sweep(spec)[0]
    assert run.make_config().policy_hidden == (32, 32)
    run.run_dir.mkdir(parents=True)
    run_files.write_run_config(run.run_dir, get_algorithm("ppo"), run.make_config())
    _, recorded = run_files.read_run_config(run.run_dir)
    # What runs.start compares before it resumes a run.
    assert run_files.config_to_dict(recorded) == run_files.config_to_dict(run.make_config())
    assert [planned.status for planned in plan_sweep(spec)] == ["resumable"]


def test_plan_reports_the_state_of_each_run(tmp_path: Path) -> None:
    spec = load_sweep_spec(base_spec(tmp_path, seeds=4))
    algorithm = get_algorithm("ppo")
    runs = expand_sweep(spec)
    for run in runs[1:]:
        run.run_dir.mkdir(parents=True)
        run_files.write_run_config(run.run_dir, algorithm, run.make_config())
    (runs[2].run_dir / "error.json").write_text("{}")
    (runs[3].run_dir / "final.json").write_text("{}")
    assert [planned.status for planned in plan_sweep(spec)] == ["pending", "resumable", "failed", "finished"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(envs=st.lists(st.sampled_from(ENVS), min_size=1, max_size=4, unique=True),
       seeds=st.lists(st.integers(0, 1000), min_size=1, max_size=5, unique=True),
       variant_count=st.integers(1, 3))
def test_grid_size_and_unique_run_dirs(tmp_path: Path, envs: list[str], seeds: list[int],
                                       variant_count: int) -> None:
    variants = {f"lr{index}": {"learning_rate": 10.0 ** -(index + 3)} for index in range(variant_count)}
    spec = load_sweep_spec(base_spec(tmp_path, env=envs, seeds=seeds, variants=variants))
    runs = expand_sweep(spec)
    assert len(runs) == len(envs) * len(seeds) * variant_count
    assert len({run.run_dir for run in runs}) == len(runs)
    assert {(run.task, run.seed, run.variant) for run in runs} == {
        (env, seed, variant) for env in envs for seed in seeds for variant in variants}
