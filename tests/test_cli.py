"""The command line: a real run writes what it promises; bad input gets one clear message, exit
status 2 and no traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybridrl.algorithms import get_algorithm
from hybridrl.cli import compilation_cache_dir, main, resolve_config
from hybridrl.core.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "ppo", "--preset", "smoke", "--env", "CartPole-v1", "--seed", "2",
                 "--run-dir", str(run_dir), "--no-progress", "--total-steps", "1024"]) == 0
    return run_dir


def test_train_writes_logs_checkpoint_config_plot_and_summary(finished_run: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("config.json", "metrics.jsonl", "checkpoint.ckpt", "final.json", "learning_curve.png"):
        assert (finished_run / name).is_file(), name
    assert any((finished_run / "tb").iterdir())
    recorded = json.loads((finished_run / "config.json").read_text())
    assert recorded["algorithm"] == "ppo" and recorded["preset"] == "smoke"
    assert recorded["config"]["total_steps"] == 1024 and recorded["config"]["seed"] == 2
    assert {"git_commit", "versions", "machine"} <= set(recorded)
    assert recorded["versions"]["jax"]
    final = json.loads((finished_run / "final.json").read_text())
    assert final["step"] == 1024 and "eval/return_mean" in final


def test_eval_and_resume_of_finished_run(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(finished_run), "--episodes", "3"]) == 0
    assert "eval return" in capsys.readouterr().out
    assert json.loads((finished_run / "eval.json").read_text())["eval/return_mean"] > 0
    assert main(["resume", str(finished_run), "--no-progress"]) == 0


def _fails_with(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert "Traceback" not in error


def test_unknown_env_suggests_close_matches(capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["train", "ppo", "--env", "Hoper-v5"], "Close matches: Hopper-v5", capsys)


def test_unknown_preset_lists_presets(capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["train", "ppo", "--preset", "gpu"], "choose one of: smoke, cpu, paper", capsys)


def test_unknown_algorithm(capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["train", "ppp"], "Did you mean ppo", capsys)


@pytest.mark.parametrize("steps", ["0", "-100"])
def test_non_positive_steps(steps: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["train", "ppo", "--total-steps", steps], "--total-steps must be positive", capsys)


@pytest.mark.parametrize("command", ["resume", "eval"])
def test_missing_run_dir(tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with([command, str(tmp_path / "nowhere")], "does not exist", capsys)


def test_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["resume", str(tmp_path)], "not a hybridrl run directory", capsys)


def _copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    (target / "final.json").unlink()
    return target


def test_corrupt_checkpoint(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    checkpoint = run_dir / "checkpoint.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    _fails_with(["resume", str(run_dir)], "is corrupt", capsys)
    _fails_with(["eval", str(run_dir)], "is corrupt", capsys)


def test_checkpoint_of_another_algorithm(finished_run: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    save_checkpoint(run_dir / "checkpoint.ckpt", algorithm="sac", step=10, state={"actor": [1.0, 2.0]})
    _fails_with(["resume", str(run_dir)], "is a checkpoint of 'sac', not 'ppo'", capsys)


def test_checkpoint_of_another_env(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _copy_run(finished_run, tmp_path / "run")
    config_path = run_dir / "config.json"
    recorded = json.loads(config_path.read_text())
    recorded["config"]["env"] = "Acrobot-v1"  # 6-D observations, 3 actions: the parameters don't fit
    config_path.write_text(json.dumps(recorded))
    _fails_with(["resume", str(run_dir)], "does not match this run's config", capsys)


def test_existing_run_dir_with_other_config(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["train", "ppo", "--preset", "smoke", "--env", "CartPole-v1", "--run-dir", str(finished_run),
                 "--total-steps", "4096"], "already holds a run with a different config", capsys)


def test_seeds_for_an_algorithm_without_them_names_those_with(capsys: pytest.CaptureFixture[str]) -> None:
    from hybridrl.algorithms import algorithm_names

    without = next(name for name in algorithm_names() if get_algorithm(name).train_seeds is None)
    _fails_with(["train", without, "--seeds", "2"], f"{without} cannot train several seeds in one process", capsys)
    _fails_with(["train", without, "--seeds", "2"], "algorithms that can: bc, iql", capsys)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--seeds", "2", "--seed", "3"], "pass --first-seed K instead"),
    (["--seeds", "2", "--seed=3"], "pass --first-seed K instead"),
    (["--first-seed", "3"], "--first-seed K goes with --seeds N"),
    (["--seeds", "0"], "--seeds must be positive"),
])
def test_seeds_options_that_do_not_fit(arguments: list[str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(["train", "iql", *arguments], message, capsys)


def test_train_help_explains_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--seeds N [--first-seed K]" in out and "Algorithms with --seeds: bc, iql" in out


def test_help_lists_options_with_preset_defaults() -> None:
    completed = subprocess.run([sys.executable, "-m", "hybridrl", "train", "ppo", "--preset", "smoke", "--help"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    assert "--total-steps" in completed.stdout and "2048" in completed.stdout
    assert "Training budget in environment steps" in completed.stdout


def test_real_entry_point_reports_user_errors_without_traceback() -> None:
    completed = subprocess.run([sys.executable, "-m", "hybridrl", "train", "ppo", "--env", "NoSuchEnv-v0"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "unknown environment 'NoSuchEnv-v0'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_help_shows_the_per_task_defaults_of_the_chosen_env() -> None:
    completed = subprocess.run([sys.executable, "-m", "hybridrl", "train", "props", "--preset", "paper",
                                "--env", "Walker2d-v5", "--help"], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "COLUMNS": "200"})
    assert completed.returncode == 0
    lines = completed.stdout.splitlines()

    def default_of(option: str) -> str:
        # tyro prints the option on one line and its description, ending in the default, below.
        start = next(index for index, line in enumerate(lines) if f"{option} " in line)
        match = re.search(r"\(default: ([^)]*)\)", " ".join(lines[start:start + 4]))
        assert match, f"no default shown for {option}"
        return match.group(1)

    # Walker2d's row of the PROPS table: 2M steps, delta_PROPS 0.1, 32 behaviour minibatches.
    assert default_of("--total-steps") == "2000000"
    assert default_of("--behaviour-target-kl") == "0.1"
    assert default_of("--behaviour-num-minibatches") == "32"


def test_task_defaults_follow_env_and_explicit_options_win() -> None:
    spec = get_algorithm("props")
    walker = resolve_config(spec, "paper", ["--env", "Walker2d-v5"])
    assert (walker.behaviour_target_kl, walker.total_steps) == (0.1, 2_000_000)
    # 2048 is Hopper's (the default env's) value too: given explicitly, it must survive the task switch.
    explicit = resolve_config(spec, "paper", ["--env", "HalfCheetah-v5", "--num-steps", "2048",
                                              "--learning-rate", "3e-4"])
    assert (explicit.num_steps, explicit.learning_rate, explicit.behaviour_num_steps) == (2048, 3e-4, 512)
    buffer = resolve_config(spec, "paper", ["--sampling", "on-policy", "--buffer-batches", "2"])
    assert (buffer.num_steps, buffer.learning_rate) == (1024, 1e-4)  # Hopper's tuned PPO-Buffer row


def test_compilation_cache_folder_follows_xdg_and_yields_to_jax_and_the_off_switch(tmp_path: Path) -> None:
    assert compilation_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "hybridrl" / "jax-compilation"
    assert compilation_cache_dir({}) == Path.home() / ".cache" / "hybridrl" / "jax-compilation"
    assert compilation_cache_dir({"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "mine")}) is None
    assert compilation_cache_dir({"HYBRIDRL_COMPILATION_CACHE": "0", "XDG_CACHE_HOME": str(tmp_path)}) is None


def test_a_run_keeps_its_compiled_programs_for_the_next(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("JAX_")}
    environment["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    completed = subprocess.run([sys.executable, "-m", "hybridrl", "train", "ppo", "--preset", "smoke", "--env",
                                "CartPole-v1", "--total-steps", "256", "--run-dir", str(tmp_path / "run"),
                                "--no-progress"], capture_output=True, text=True, timeout=300, env=environment)
    assert completed.returncode == 0, completed.stderr
    assert any((tmp_path / "cache" / "hybridrl" / "jax-compilation").iterdir())
