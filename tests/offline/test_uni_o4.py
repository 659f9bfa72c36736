"""Uni-O4: the offline PPO objective and gate, presets, and smoke runs of both phases with resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hybridrl import runs
from hybridrl.algorithms import get_algorithm
from hybridrl.cli import main
from hybridrl.core.logging import read_metrics
from hybridrl.core.networks import GaussianPolicy
from hybridrl.errors import ConfigError, HybridRLError
from hybridrl.offline import bc
from hybridrl.offline.uni_o4 import (
    OfflinePPOSettings,
    OfflinePPOState,
    UniO4Trainer,
    clip_schedule,
    mean_action_saturation,
    replace_improved_references,
    scale_value_output,
)
from hybridrl.testing import assert_trees_equal, interrupt_run, metrics_without_timing

SPEC = get_algorithm("uni-o4")


def test_clip_schedule_decays_then_freezes() -> None:
    settings = OfflinePPOSettings(total_steps=1000, batch_size=8, learning_rate=1e-4, clip=0.25,
                                  clip_decay_until=200, max_grad_norm=0.5)
    values = [float(clip_schedule(jnp.asarray(step), settings)) for step in (0, 100, 200, 900)]
    assert values == pytest.approx([0.25, 0.25 * 0.9, 0.25 * 0.8, 0.25 * 0.8])


def test_gate_replaces_only_improved_members() -> None:
    params = {"w": jnp.asarray([[1.0], [2.0], [3.0]])}
    reference = {"w": jnp.asarray([[0.0], [0.0], [0.0]])}
    state = OfflinePPOState(params=params, reference_params=reference, opt_state=(),
                            best_scores=jnp.asarray([1.0, 5.0, 2.0]), key=jax.random.key_data(jax.random.key(0)),
                            step=jnp.zeros((), jnp.int32), stale_rounds=jnp.asarray([3, 3, 0]))
    new, improved = replace_improved_references(state, jnp.asarray([1.5, 4.0, 2.0]))  # strict: a tie keeps
    assert np.asarray(improved).tolist() == [True, False, False]
    assert np.asarray(new.reference_params["w"]).ravel().tolist() == [1.0, 0.0, 0.0]
    assert np.asarray(new.best_scores).tolist() == [1.5, 5.0, 2.0]
    assert np.asarray(new.stale_rounds).tolist() == [0, 4, 1]  # rounds since each member's last acceptance


def test_scaled_value_output_is_the_value_of_scaled_rewards() -> None:
    from hybridrl.core.networks import ValueHead

    value = ValueHead(hidden_sizes=(8,), activation="relu")
    params = value.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    observations = jax.random.normal(jax.random.key(1), (5, 3))
    scaled = value.apply({"params": scale_value_output(params, 0.1)}, observations)
    np.testing.assert_allclose(scaled, 0.1 * value.apply({"params": params}, observations), rtol=1e-6)


def test_task_presets_follow_the_dataset_family() -> None:
    hopper = SPEC.make_config("cpu", dataset="hopper-medium-replay-v5")
    walker = SPEC.make_config("cpu", dataset="walker2d-medium-v5")
    assert hopper.online_reward_scale == 0.1 and walker.online_reward_scale == 1.0
    assert walker.online_epochs == 20
    assert SPEC.make_config("cpu", dataset="walker2d-medium-v5", online_epochs=3).online_epochs == 3


def test_config_errors_say_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="--offline-run"):
        SPEC.make_config("smoke", phase="online")
    with pytest.raises(ConfigError, match="dynamics-elites"):
        SPEC.make_config("smoke", dynamics_elites=9)
    with pytest.raises(ConfigError, match="multiple"):
        SPEC.make_config("smoke", online_rollout_steps=100)


def _artefacts(run_dir: Path) -> object:
    config = runs.read_run_config(run_dir)[1]
    trainer = UniO4Trainer(config, run_dir)
    try:
        trainer.load_checkpoint(run_dir / "checkpoint.ckpt")
        return jax.device_get(trainer.artefacts)
    finally:
        trainer.close()


@pytest.mark.usefixtures("minari_root")
def test_smoke_run_of_both_phases(tmp_path: Path) -> None:
    result = runs.train("uni-o4", preset="smoke", dataset="hopper-medium-v5", seed=2, run_dir=tmp_path / "run")
    final = result.final
    assert final["step"] == 512 and final["offline/gradient_steps"] == 200 + 200 + 200 + 40
    assert np.isfinite(final["eval/return_mean"]) and "eval/normalized_score" in final
    assert "offline/eval/normalized_score" in final
    offline = read_metrics(result.run_dir)
    logged = {key for entry in offline for key in entry}
    assert {"critic/value_loss", "dynamics/holdout_mse", "bc/nll", "ppo/loss", "ope/score_0", "ope/replaced"} <= logged
    online = read_metrics(result.run_dir / "online")
    assert online[0]["step"] == 0 and "eval/return_mean" in online[0]  # the offline policy, before updates
    assert online[-1]["step"] == 512
    # `hybridrl eval` of the run evaluates the fine-tuned policy, like the run's final evaluation.
    assert runs.evaluate(result.run_dir)["eval/return_mean"] == final["eval/return_mean"]


@pytest.mark.usefixtures("minari_root")
@pytest.mark.parametrize("offline_policy", ["gated", "last-iterate"])
def test_the_returned_offline_policy_is_the_one_the_gate_accepted(tmp_path: Path, offline_policy: str) -> None:
    config = SPEC.make_config("smoke", dataset="hopper-medium-v5", seed=2, phase="offline",
                              offline_policy=offline_policy)
    runs.write_run_config(tmp_path, SPEC, config)
    trainer = UniO4Trainer(config, tmp_path)
    try:
        trainer.train()
        ppo, selected = trainer.artefacts.ppo, int(trainer.artefacts.selected)
        returned = trainer.member_params(selected)
        scores = np.asarray(trainer.ope_scores(trainer.offline_policies()))
        behaviour_scores = np.asarray(trainer.ope_scores(trainer.artefacts.behaviour.params["members"]))
        if offline_policy == "gated":
            # The accepted reference of the member whose accepted reference scores best; AM-Q is
            # deterministic (one fixed key, frozen critic and model), so its score is the gate's...
            assert_trees_equal(returned, jax.tree_util.tree_map(lambda leaf: leaf[selected], ppo.reference_params))
            np.testing.assert_array_equal(scores, np.asarray(ppo.best_scores))
            assert selected == int(np.argmax(scores))
            # ... and never below the BC policies' (the gate's bar), so BC is the fallback.
            assert scores[selected] >= behaviour_scores.max()
        else:  # the released code: the last iterate of the member whose last iterate scores best
            assert_trees_equal(returned, jax.tree_util.tree_map(lambda leaf: leaf[selected], ppo.params))
            assert selected == int(np.argmax(scores))
    finally:
        trainer.close()


@pytest.mark.usefixtures("minari_root")
@pytest.mark.parametrize(("phase", "stops"), [("offline", {"stop_at_step": 100}),   # inside the critic stage
                                               ("offline", {"stop_at_step": 300}),   # inside the dynamics fit
                                               ("offline", {"stop_at_step": 500}),   # inside BC
                                               ("offline", {"stop_at_step": 620}),   # inside offline PPO
                                               ("both", {"stop_online_at_step": 256})])
def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, phase: str, stops: dict[str, int]) -> None:
    config = SPEC.make_config("smoke", dataset="hopper-medium-v5", seed=3, phase=phase)
    whole = runs.start(SPEC, config, tmp_path / "whole")
    interrupt_run(SPEC, config, tmp_path / "interrupted", **stops)
    resumed = runs.resume(tmp_path / "interrupted")
    assert_trees_equal(_artefacts(whole.run_dir), _artefacts(resumed.run_dir))
    assert metrics_without_timing(whole.run_dir) == metrics_without_timing(resumed.run_dir)
    if phase == "both":
        assert metrics_without_timing(whole.run_dir / "online") == metrics_without_timing(resumed.run_dir / "online")
    assert resumed.final["eval/return_mean"] == whole.final["eval/return_mean"]


@pytest.mark.usefixtures("minari_root")
def test_online_phase_fine_tunes_a_finished_offline_run(tmp_path: Path) -> None:
    offline = runs.train("uni-o4", preset="smoke", dataset="hopper-medium-v5", seed=4, phase="offline",
                         run_dir=tmp_path / "offline")
    assert "eval/return_mean" in offline.final and not (offline.run_dir / "online").exists()
    online = runs.train("uni-o4", preset="smoke", dataset="hopper-medium-v5", seed=4, phase="online",
                        offline_run=str(offline.run_dir), run_dir=tmp_path / "online")
    first = read_metrics(online.run_dir / "online")[0]
    assert first["step"] == 0 and first["eval/return_mean"] == offline.final["eval/return_mean"]
    with pytest.raises(HybridRLError, match="pass --dataset hopper-medium-v5"):
        runs.train("uni-o4", preset="smoke", dataset="walker2d-random-v5", phase="online",
                   offline_run=str(offline.run_dir), run_dir=tmp_path / "wrong")


@pytest.mark.usefixtures("minari_root")
def test_reusing_another_runs_stages_gives_the_run_trained_in_full(tmp_path: Path) -> None:
    options = dict(dataset="hopper-medium-v5", seed=3, phase="offline")
    whole = runs.start(SPEC, SPEC.make_config("smoke", ppo_critic_actions="raw", **options), tmp_path / "whole")
    clip = runs.start(SPEC, SPEC.make_config("smoke", **options), tmp_path / "sweep" / "clip")
    # From the run directory, or found in a folder of runs by dataset, seed and stage options.
    for source in (clip.run_dir, tmp_path / "sweep"):
        reused = runs.start(SPEC, SPEC.make_config("smoke", ppo_critic_actions="raw", reuse_stages_from=str(source),
                                                   **options), tmp_path / f"reused-{source.name}")
        assert_trees_equal(_artefacts(whole.run_dir), _artefacts(reused.run_dir))
        assert metrics_without_timing(whole.run_dir) == metrics_without_timing(reused.run_dir)
        assert _untimed(reused.final) == _untimed(whole.final)


def _untimed(final: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in final.items() if "wall_time" not in name}


@pytest.mark.usefixtures("minari_root")
def test_reusing_stages_trained_otherwise_or_unfinished_is_a_clear_error(tmp_path: Path) -> None:
    options = dict(dataset="hopper-medium-v5", seed=3, phase="offline")
    interrupt_run(SPEC, SPEC.make_config("smoke", **options), tmp_path / "runs" / "early", stop_at_step=300)
    with pytest.raises(HybridRLError, match=r"before offline PPO \(step 600\); finish its stages"):
        runs.start(SPEC, SPEC.make_config("smoke", reuse_stages_from=str(tmp_path / "runs" / "early"), **options),
                   tmp_path / "a")
    with pytest.raises(HybridRLError, match="--bc-steps 200 there, 100 here"):
        runs.start(SPEC, SPEC.make_config("smoke", bc_steps=100, reuse_stages_from=str(tmp_path / "runs" / "early"),
                                          **options), tmp_path / "b")
    with pytest.raises(HybridRLError, match="holds no Uni-O4 run that trained its stages with this run's options"):
        runs.start(SPEC, SPEC.make_config("smoke", reuse_stages_from=str(tmp_path / "runs"), **{**options, "seed": 4}),
                   tmp_path / "c")
    with pytest.raises(ConfigError, match="drop one of them"):
        SPEC.make_config("smoke", reuse_stages_from=str(tmp_path), phase="online", offline_run=str(tmp_path))


@pytest.mark.usefixtures("minari_root")
def test_dataset_of_another_env_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "uni-o4", "--preset", "smoke", "--dataset", "hopper-medium-v5", "--env", "Walker2d-v5",
                 "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert "Hopper-v5" in error and "Walker2d-v5" in error and "Traceback" not in error
    with pytest.raises(HybridRLError, match="no dataset"):
        runs.train("bc", preset="smoke", dataset="hopper-nothing-v5", run_dir=tmp_path / "none")


def _bandit_critic() -> tuple[object, object, object]:
    """IQL trained on a one-state bandit: action +0.5 earns 1, action -0.5 earns 0."""
    from hybridrl.data.dataset import TransitionBatch
    from hybridrl.offline import iql

    data = TransitionBatch(observations=jnp.ones((2, 1)), actions=jnp.asarray([[0.5], [-0.5]]),
                           rewards=jnp.asarray([1.0, 0.0]), next_observations=jnp.ones((2, 1)),
                           terminations=jnp.asarray([True, True]), truncations=jnp.asarray([False, False]))
    settings = iql.IQLSettings(q_hidden=(16,), value_hidden=(16,), batch_size=2, critic_learning_rate=1e-2)
    networks = iql.make_iql_networks(settings, 1)
    state = iql.init_iql_state(networks, settings, 1, 1, jax.random.key_data(jax.random.key(0)))
    state, _ = iql.iql_train_steps(state, data, 300, networks=networks, settings=settings, train_policy=False)
    return networks, iql.critic_params(state), data


@pytest.mark.parametrize("clip_critic_actions", [True, False])
def test_offline_ppo_loss_matches_an_independent_computation(clip_critic_actions: bool) -> None:
    from hybridrl.offline import iql
    from hybridrl.offline.uni_o4 import offline_ppo_loss

    networks, critic, _ = _bandit_critic()
    policy = GaussianPolicy(action_dim=1, hidden_sizes=(8,), activation="relu", state_dependent_std=True,
                            log_std_bounds=(-5.0, 0.0), soft_log_std_bounds=True, tanh_mean=True)
    observations = jax.random.normal(jax.random.key(1), (16, 1))
    params = policy.init(jax.random.key(2), observations)["params"]
    reference = policy.init(jax.random.key(3), observations)["params"]
    # A wide reference (log-std near its upper bound 0), so some samples fall outside [-1, 1].
    reference = {**reference, "log_std": {**reference["log_std"], "bias": reference["log_std"]["bias"] + 10.0}}
    key, clip = jax.random.key_data(jax.random.key(4)), 0.2
    loss, metrics = offline_ppo_loss(params, reference, observations, key, jnp.asarray(clip), critic,
                                     policy=policy, critic=networks, clip_critic_actions=clip_critic_actions)
    # By hand: the reference policy's sample, the ratio, the standardised advantage, the clipped objective.
    actions = np.asarray(policy.apply({"params": reference}, observations).sample(key))
    observations_np = np.asarray(observations)
    old = policy.apply_numpy(jax.device_get(reference), observations_np).log_prob(actions)
    new = policy.apply_numpy(jax.device_get(params), observations_np).log_prob(actions)
    # The critic scores the sample inside the bounds (or, as the code, wherever it fell).
    scored = np.clip(actions, -1.0, 1.0) if clip_critic_actions else actions
    assert np.any(np.abs(actions) > 1.0)  # the case the option is about occurs here
    advantages = np.asarray(iql.advantage(networks, critic, observations, jnp.asarray(scored)))
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = np.exp(new - old)
    expected = -np.mean(np.minimum(ratio * advantages, np.clip(ratio, 1 - clip, 1 + clip) * advantages))
    assert float(loss) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    assert float(metrics["clip_fraction"]) == pytest.approx(float(np.mean(np.abs(ratio - 1) > clip)))
    assert float(metrics["actions_outside_bounds"]) == pytest.approx(float(np.mean(np.abs(actions) > 1.0)))


def test_offline_ppo_moves_every_member_towards_the_better_action() -> None:
    from hybridrl.offline.uni_o4 import OfflinePPOSettings, _member_optimizer, offline_ppo_steps

    networks, critic, data = _bandit_critic()
    policy = GaussianPolicy(action_dim=1, hidden_sizes=(8,), activation="relu", state_dependent_std=True,
                            log_std_bounds=(-5.0, 0.0), soft_log_std_bounds=True, tanh_mean=True, mean_gain=0.01)
    keys = jax.random.split(jax.random.key(5), 3)
    members = jax.vmap(lambda k: policy.init(k, jnp.ones((1, 1)))["params"])(keys)
    settings = OfflinePPOSettings(total_steps=400, batch_size=64, learning_rate=3e-3, clip=0.25,
                                  clip_decay_until=200, max_grad_norm=0.5)
    state = OfflinePPOState(params=members, reference_params=members,
                            opt_state=jax.vmap(_member_optimizer(0.5).init)(members),
                            best_scores=jnp.zeros(3), key=jax.random.key_data(jax.random.key(6)),
                            step=jnp.zeros((), jnp.int32), stale_rounds=jnp.zeros(3, jnp.int32))
    before = jax.vmap(lambda p: policy.apply({"params": p}, jnp.ones((1, 1))).mean)(state.params).ravel()
    for _ in range(4):  # a reference update after each chunk, as the AM-Q gate does when it accepts
        state, _ = offline_ppo_steps(state, data.observations, critic, 100, policy=policy, critic=networks,
                                     settings=settings)
        state = dataclasses.replace(state, reference_params=state.params)
    after = jax.vmap(lambda p: policy.apply({"params": p}, jnp.ones((1, 1))).mean)(state.params).ravel()
    assert np.all(np.asarray(after) > np.asarray(before) + 0.1), (before, after)


def test_help_lists_the_offline_algorithms_and_the_dataset_family_defaults(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["train", "--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in ("bc", "iql", "uni-o4"))
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "uni-o4", "--preset", "cpu", "--dataset", "walker2d-medium-v5", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--online-epochs INT" in text and "(default: 20)" in text.split("--online-epochs INT")[1][:400]


def test_members_out_of_patience_stop_and_the_others_go_on() -> None:
    from hybridrl.offline.uni_o4 import OfflinePPOSettings, _member_optimizer, offline_ppo_steps

    networks, critic, data = _bandit_critic()
    policy = GaussianPolicy(action_dim=1, hidden_sizes=(8,), activation="relu", state_dependent_std=True,
                            log_std_bounds=(-5.0, 0.0), soft_log_std_bounds=True, tanh_mean=True, mean_gain=0.01)
    members = jax.vmap(lambda k: policy.init(k, jnp.ones((1, 1)))["params"])(jax.random.split(jax.random.key(5), 3))
    settings = OfflinePPOSettings(total_steps=100, batch_size=64, learning_rate=3e-3, clip=0.25,
                                  clip_decay_until=200, max_grad_norm=0.5, patience=2)
    state = OfflinePPOState(params=members, reference_params=members,
                            opt_state=jax.vmap(_member_optimizer(0.5).init)(members),
                            best_scores=jnp.zeros(3), key=jax.random.key_data(jax.random.key(6)),
                            step=jnp.zeros((), jnp.int32), stale_rounds=jnp.asarray([0, 2, 1]))
    new, metrics = offline_ppo_steps(state, data.observations, critic, 20, policy=policy, critic=networks,
                                     settings=settings)
    moved = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
             zip(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda leaf: leaf[1], new.params)),
                 jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda leaf: leaf[1], members)), strict=True)]
    assert not any(moved)  # member 1 has had 2 rounds without an accepted iterate: stopped
    for index in (0, 2):
        assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                   zip(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], new.params)),
                       jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], members)),
                       strict=True))
    assert float(metrics["active_members"]) == 2.0
    # The others' random streams do not depend on who stopped: member 0 moves as with no patience at all.
    free, _ = offline_ppo_steps(state, data.observations, critic, 20, policy=policy, critic=networks,
                                settings=dataclasses.replace(settings, patience=0))
    assert_trees_equal(jax.tree_util.tree_map(lambda leaf: leaf[0], new.params),
                       jax.tree_util.tree_map(lambda leaf: leaf[0], free.params))


def test_mean_action_saturation_counts_components_at_the_bounds() -> None:
    settings = bc.BCSettings(num_members=2, hidden=(8, 8), activation="relu", learning_rate=1e-3, batch_size=4,
                             alpha=0.1, diversity="paper")
    networks = bc.make_bc_networks(settings, 3)
    params = bc.init_bc_state(settings, 3, 5, jax.random.PRNGKey(0)).params["members"]
    # Member 0's mean is 0 everywhere; member 1's is tanh(3, 0.5, -3) = (0.995, 0.46, -0.995): two of
    # three components within 1 % of the bounds.
    params = jax.tree_util.tree_map(jnp.zeros_like, params)
    params["mean"]["bias"] = jnp.asarray([[0.0, 0.0, 0.0], [3.0, 0.5, -3.0]])
    observations = jax.random.normal(jax.random.PRNGKey(1), (16, 5))
    saturation = mean_action_saturation(networks.policy, params, observations)
    np.testing.assert_allclose(np.asarray(saturation), [0.0, 2.0 / 3.0], rtol=1e-6)


@pytest.mark.usefixtures("minari_root")
def test_the_released_selection_picks_what_the_benchmark_scores_as_it(tmp_path: Path) -> None:
    # --select-with-online-evals fine-tunes the member that the diagnostic reports as the released
    # code's choice: one rule, on the same selection episodes.
    result = runs.train("uni-o4", preset="smoke", run_dir=tmp_path, dataset="hopper-medium-v5", seed=1,
                        phase="offline", select_with_online_evals=True, ope_true_episodes=1)
    assert result.final["offline/selected_policy"] == result.final["offline/released_selection_member"]


@pytest.mark.usefixtures("minari_root")
def test_ope_fidelity_is_logged_against_true_returns_and_reported(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "uni-o4", "--dataset", "hopper-medium-v5", "--preset", "smoke", "--seed", "2",
                 "--ope-true-episodes", "1", "--eval-interval", "200", "--run-dir", str(run_dir), "--no-progress"]) == 0
    rounds = [line for line in read_metrics(run_dir) if "ope/true_return_0" in line]
    assert len(rounds) == 2  # smoke: 40 offline PPO steps, AM-Q every 20
    for line in rounds:
        assert {"ope/true_return_1", "ope/score_1", "ope/spearman", "ope/model_survival_1",
                "ope/true_survival_1"} <= set(line)
        # Survival within AM-Q's horizon (smoke: 10 steps), in the model and in the real env.
        assert 1 <= line["ope/model_survival_0"] <= 10 and 1 <= line["ope/true_survival_0"] <= 10
        # The share of each member's mean action components at the bounds, a fraction.
        assert all(0.0 <= line[f"ope/mean_action_saturation_{index}"] <= 1.0 for index in range(2))
    final = json.loads((run_dir / "final.json").read_text())
    for name in ("spearman_pooled", "spearman_within_rounds", "spearman_over_time"):
        assert f"offline/ope_{name}" in final
    # The released code's selection (AM-Q's top 3 screened online), scored beside the gated policy.
    assert final["offline/released_selection_member"] in range(2)
    assert np.isfinite(final["offline/released_selection_normalized_score"])
    # What the user got, in one line and one figure: offline (and BC), online, and the data's own level.
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"offline score {final['offline/eval/normalized_score']:.1f} (BC " in line
    assert f"the data's own level {final['offline/data_normalized_score']:.1f}" in line
    assert "online score" in line and (run_dir / "learning_curve.png").stat().st_size > 10_000


def test_ope_fidelity_statistics() -> None:
    from hybridrl.experiments.statistics import ope_fidelity, spearman

    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    # Ranks right within every round, wrong over time within each member.
    scores = np.asarray([[1.0, 2.0], [0.5, 1.5]])
    returns = np.asarray([[1.0, 2.0], [3.0, 4.0]])
    fidelity = ope_fidelity(scores, returns)
    assert fidelity["spearman_within_rounds"] == pytest.approx(1.0)
    assert fidelity["spearman_over_time"] == pytest.approx(-1.0)
