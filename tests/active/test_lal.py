"""Learning to actively learn: training, the adversary, evaluation, runs and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl import runs
from hybridrl.active.baselines import PolicyFunctions, baseline_policies, classical_policy
from hybridrl.active.lal import (
    ALGORITHM,
    EvaluationSettings,
    LALTrainer,
    TrainSettings,
    adversary_gradient,
    ascend,
    imitate,
    init_train_state,
    mean_losses,
    policy_step,
    refresh_particles,
    train_policy,
    worst_case,
)
from hybridrl.active.policy import PolicySettings, learned_policy
from hybridrl.active.problems import make_problem
from hybridrl.cli import main
from hybridrl.errors import ConfigError
from hybridrl.testing import pause_then_resume


def test_training_improves_over_uniform_queries_on_an_easy_class() -> None:
    problem = make_problem("thresholds")
    r = problem.classes[1]
    policy = learned_policy(problem, PolicySettings(hidden_size=32))
    settings = TrainSettings(iterations=150, particles=16, rollouts=8, learning_rate=3e-3, refresh_candidates=64)
    state = init_train_state(policy, policy.init(jax.random.key(0)), (r,), settings, jax.random.key(1))
    fresh_params = state.params
    trained = train_policy(state, jax.random.key(2), jnp.zeros(1), policy=policy.functions, problem=problem,
                           settings=settings, classes=(r,), mode="minimax")
    thetas = problem.sample_class(jax.random.key(3), 512, r)
    before = float(jnp.mean(mean_losses(policy.functions, fresh_params, problem, thetas, jax.random.key(4), 8)))
    after = float(jnp.mean(mean_losses(policy.functions, trained.params, problem, thetas, jax.random.key(4), 8)))
    uniform = baseline_policies(problem)["uniform"]
    round_robin = float(jnp.mean(mean_losses(uniform, None, problem, thetas, jax.random.key(4), 8)))
    assert after < before - 0.05
    assert after < round_robin


def test_robust_training_weighs_classes_by_gaps_measured_like_the_targets() -> None:
    problem = make_problem("thresholds")
    policy = learned_policy(problem, PolicySettings(hidden_size=16))
    classes = problem.classes[:2]
    radii = jnp.asarray(classes)
    settings = TrainSettings(iterations=0, particles=8, rollouts=4, refresh_candidates=32, gap_finalists=4,
                             gap_rollouts=256)
    state = init_train_state(policy, policy.init(jax.random.key(0)), classes, settings, jax.random.key(1))
    targets = jnp.array([0.02, 0.05])
    measured = refresh_particles(state, jax.random.key(2), radii, targets, policy=policy.functions, problem=problem,
                                 settings=settings)
    worst = measured.gaps + targets
    for index, r in enumerate(classes):
        screen = mean_losses(policy.functions, state.params, problem, problem.sample_class(jax.random.key(3), 256, r),
                             jax.random.key(4), 8)
        # A max over re-estimated hardest instances: at least the class's boundary mean (minus noise of 1024 episodes).
        assert float(screen.mean()) - 0.05 <= float(worst[index]) <= 1.0
    _, metrics = policy_step(measured, jax.random.key(5), measured.particles, targets, policy=policy.functions,
                             problem=problem, settings=settings, mode="minimax")
    expected = jax.nn.softmax(settings.hedge_eta * measured.gaps)
    assert float(metrics["hedge/max_weight"]) == pytest.approx(float(expected.max()), rel=1e-5)
    assert float(metrics["gap/max"]) == pytest.approx(float(measured.gaps.max()), rel=1e-5)


def test_imitating_binary_search_starts_the_policy_near_it() -> None:
    problem = make_problem("thresholds")
    policy = learned_policy(problem, PolicySettings())
    _, teacher = classical_policy(problem)
    fresh = policy.init(jax.random.key(0))
    imitated = imitate(policy, fresh, teacher, jax.random.key(1), problem.classes, TrainSettings(iterations=0),
                       steps=100, batch=128)
    thetas = problem.sample_class(jax.random.key(3), 512, problem.classes[1])

    def loss(functions: PolicyFunctions, params: object) -> float:
        return float(jnp.mean(mean_losses(functions, params, problem, thetas, jax.random.key(4), 8)))

    # Measured: fresh (uniform queries) 0.48, after 100 steps 0.06, binary search itself 0.01.
    assert loss(policy.argmax_decision, imitated) < loss(policy.argmax_decision, fresh) - 0.25
    assert loss(policy.argmax_decision, imitated) < loss(teacher, None) + 0.15


def test_a_warm_started_run_imitates_first(tmp_path: Path) -> None:
    result = runs.train("lal", preset="smoke", run_dir=tmp_path, problem="thresholds", imitation_steps=10)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("imitation/query_log_prob" in line for line in logged)
    assert np.isfinite(result.final["robust_max_gap"])


def test_adversary_gradient_points_to_harder_instances() -> None:
    """Two arms, round-robin: the error grows as the gap shrinks, so the score-function ascent
    direction must shrink the gap, and a projected step stays on the class boundary."""
    problem = make_problem("bandit", size=2)
    uniform = baseline_policies(problem)["uniform"]
    gaps = jnp.linspace(0.3, 0.8, 32)
    thetas = jnp.stack([gaps / 2, -gaps / 2], axis=-1)
    gradients, _ = adversary_gradient(uniform, None, problem, thetas, jax.random.key(1), 512)
    along_gap = gradients @ jnp.array([1.0, -1.0])
    assert float(jnp.mean(along_gap < 0)) > 0.9
    r = problem.classes[1]
    boundary = problem.project(thetas, r)
    moved = ascend(problem, boundary, gradients, r, 0.1)
    np.testing.assert_allclose(problem.rho_star(moved, steps=400), r, rtol=0.03)


def test_worst_case_is_at_least_the_boundary_mean() -> None:
    problem = make_problem("thresholds")
    uniform = baseline_policies(problem)["uniform"]
    settings = EvaluationSettings(instances=128, rollouts=8, ascent_instances=8, ascent_steps=2, finalists=8,
                                  finalist_rollouts=64, confirm_finalists=2, confirm_rollouts=256,
                                  natural_instances=32)
    result = worst_case(uniform, None, problem, problem.classes[1], jax.random.key(0), settings)
    assert 0.0 <= result["boundary_mean"] <= result["worst"] <= 1.0
    # The reported worst case is a mean of confirm_rollouts losses in [0, 1]: its standard error is
    # at most 0.5 / sqrt(n - 1).
    assert 0.0 <= result["worst_se"] <= 0.5 / math.sqrt(settings.confirm_rollouts - 1)


def test_the_fresh_adversary_catches_a_policy_that_depends_on_the_answer_level() -> None:
    """A bandit policy that plays round-robin unless every arm's mean is below -30, and then asks one
    arm only: the boundary screen rarely meets such instances, the shifted copies do."""
    problem = make_problem("bandit")
    uniform = baseline_policies(problem)["uniform"]

    def query_logits(params: object, counts: jax.Array, sums: jax.Array, t: jax.Array) -> jax.Array:
        level = jnp.max(jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), -jnp.inf))
        return jnp.where(level < -30.0, 30.0 * jax.nn.one_hot(0, 4), uniform.query_logits(params, counts, sums, t))

    offset_dependent = uniform._replace(query_logits=query_logits)
    settings = EvaluationSettings(instances=128, rollouts=8, ascent_instances=16, ascent_steps=0, finalists=8,
                                  finalist_rollouts=64, natural_instances=32, invariance_copies=0)
    r = problem.classes[1]
    without = worst_case(offset_dependent, None, problem, r, jax.random.key(0), settings)["worst"]
    caught = worst_case(offset_dependent, None, problem, r, jax.random.key(0),
                        replace(settings, invariance_copies=4))["worst"]
    round_robin = worst_case(uniform, None, problem, r, jax.random.key(0),
                             replace(settings, invariance_copies=4))["worst"]
    assert caught > without + 0.2
    assert caught > round_robin + 0.2


def test_smoke_run_writes_the_table_and_is_deterministic(tmp_path: Path) -> None:
    first = runs.train("lal", preset="smoke", run_dir=tmp_path / "a", problem="thresholds", seed=3)
    second = runs.train("lal", preset="smoke", run_dir=tmp_path / "b", problem="thresholds", seed=3)
    table = json.loads((tmp_path / "a" / "evaluation.json").read_text())
    assert table["classes"] == [0.5, 1.0, 2.0, 4.0]
    names = set(table["policies"])
    assert {"class-r0.5", "class-r4", "prior", "uniform", "robust", "robust-plugin", "robust-softmax"} <= names
    # Four per-class policies, prior, uniform, random, the classical one, robust (argmax, softmax, plug-in).
    assert len(names) == 4 + 7
    for row in table["policies"].values():
        assert all(gap >= -1e-9 for gap in row["gap"])
    assert first.final["robust_max_gap"] == second.final["robust_max_gap"]
    strip = {"wall_time_s"}
    assert {k: v for k, v in first.final.items() if k not in strip} == \
        {k: v for k, v in second.final.items() if k not in strip}


def test_pause_and_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    config = ALGORITHM.make_config("smoke", problem="thresholds", seed=1)
    uninterrupted = runs.start(ALGORITHM, config, tmp_path / "straight").final
    run_dir = tmp_path / "paused"
    run_dir.mkdir()
    runs.write_run_config(run_dir, ALGORITHM, config)
    # Pause inside the robust policy's training: 4 x 10 class steps and 10 prior steps come before it
    # at smoke scale.
    paused, _, resumed = pause_then_resume(lambda: LALTrainer(config, run_dir), stop_at_step=55)
    assert paused == {}
    assert resumed["robust_max_gap"] == uninterrupted["robust_max_gap"]
    assert resumed == {k: v for k, v in uninterrupted.items() if k in resumed}


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(ConfigError, match="budget"):
        ALGORITHM.make_config("smoke", budget=0)
    with pytest.raises(ConfigError, match="unknown active-learning problem"):
        ALGORITHM.make_config("smoke", problem="thresholdz")
    with pytest.raises(ConfigError, match="rollouts"):
        ALGORITHM.make_config("smoke", rollouts=1)
    with pytest.raises(ConfigError, match="multiple"):
        ALGORITHM.make_config("smoke", refresh_every=7)


def test_bandit_preset_uses_the_equivariant_policy() -> None:
    config = ALGORITHM.make_config("cpu", problem="bandit")
    assert config.policy_architecture == "deepsets"
    assert config.count_penalty_init == 1.0


def test_cli_trains_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    # The thresholds problem of the other tests (--points 16 is its default size): compilations are shared.
    assert main(["active", "train", "--problem", "thresholds", "--points", "16", "--preset", "smoke",
                 "--run-dir", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "robust" in out and "max gap" in out
    assert json.loads((run_dir / "config.json").read_text())["config"]["size"] == 16
    assert main(["active", "eval", str(run_dir), "--eval-seed", "5"]) == 0
    assert "envelope" in capsys.readouterr().out
    assert (run_dir / "eval-seed5.json").is_file()
    assert main(["active", "eval", str(run_dir), "--recorded"]) == 0


def test_cli_user_errors_exit_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["active", "train", "--problem", "thresholds", "--budget", "0", "--preset", "smoke",
                 "--run-dir", str(tmp_path / "x"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "hybridrl: error:" in error and "Traceback" not in error
    assert main(["active", "eval", str(tmp_path / "missing")]) == 2
