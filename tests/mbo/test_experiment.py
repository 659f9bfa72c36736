"""One MBO experiment (hybridrl.mbo.experiment) and ``hybridrl mbo``: every optimiser raises the
surrogate's prediction over its starting designs and reports the protocol's scores; vmapped seeds
equal seeds trained alone; an interrupted run resumes exactly; bad configs get clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrl import runs
from hybridrl.algorithms import get_algorithm
from hybridrl.cli import main
from hybridrl.errors import ConfigError
from hybridrl.mbo.experiment import OPTIMIZERS, MBOConfig, MBOTrainer, train_seeds
from hybridrl.testing import pause_then_resume

SPEC = get_algorithm("mbo")


def smoke_config(**overrides: Any) -> MBOConfig:
    config: MBOConfig = SPEC.make_config("smoke", **{"task": "ackley20", **overrides})
    return config


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_raises_the_surrogates_prediction_and_reports_scores(optimizer: str,
                                                                             tmp_path: Path) -> None:
    regularizer = "ignite" if optimizer in ("grad-ascent", "coms") else "none"
    configs = [smoke_config(optimizer=optimizer, regularizer=regularizer, seed=seed) for seed in (0, 1)]
    finals = train_seeds(configs, [tmp_path / "seed0", tmp_path / "seed1"])
    for final in finals:
        if optimizer != "cbas":  # CbAS samples a generative model of all the data, not the top designs
            assert final["surrogate/predicted_end"] > final["surrogate/predicted_start"]
        assert 0.0 <= final["score/p50"] <= final["score/p80"] <= final["score/p100"] <= 1.0
        assert final["score/offline_best"] == pytest.approx(0.0339, abs=1e-3)
        # The surrogate's overestimation at its candidates, and where IGNITE's constraint ended.
        assert np.isfinite(final["overestimation/mean"]) and np.isfinite(final["overestimation/top"])
        assert ("ignite/sharpness_end" in final) == (regularizer == "ignite")
        if regularizer == "ignite":
            assert final["ignite/constraint_holds"] == (final["ignite/sharpness_end"] <= final["ignite/epsilon"])
            assert final["ignite/multiplier_end"] >= 0.0  # clamped by default
    # The sharpness IGNITE bounds is measured on the validation split with and without it.
    logged = [json.loads(line) for line in (tmp_path / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert all(line["validation/sharpness"] > 0 for line in logged)
    candidates = np.load(tmp_path / "seed0" / "candidates.npz")
    assert candidates["designs"].shape == (128, 20)
    assert finals[0]["score/p100"] != finals[1]["score/p100"]


def test_vmapped_seeds_match_seeds_trained_alone(tmp_path: Path) -> None:
    configs = [smoke_config(seed=seed) for seed in (3, 4)]
    together = train_seeds(configs, [tmp_path / "together3", tmp_path / "together4"])
    alone = train_seeds(configs[1:], [tmp_path / "alone4"])
    assert together[1]["score/p100"] == pytest.approx(alone[0]["score/p100"], rel=1e-3)
    assert together[1]["surrogate/predicted_end"] == pytest.approx(alone[0]["surrogate/predicted_end"], rel=1e-3)


def test_an_interrupted_run_resumes_from_its_checkpoint_exactly(tmp_path: Path) -> None:
    config = smoke_config(epochs=3, regularizer="ignite")
    straight = runs.start(SPEC, config, tmp_path / "straight").final
    runs.write_run_config(tmp_path / "paused", SPEC, config)
    _, _, resumed = pause_then_resume(lambda: MBOTrainer(config, tmp_path / "paused"), stop_at_step=1)
    for key in ("score/p100", "score/p50", "surrogate/predicted_end"):
        assert resumed[key] == straight[key]
    steps = [json.loads(line)["step"] for line in (tmp_path / "paused" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_a_run_resumed_after_its_last_epoch_keeps_the_constraint_diagnostics(tmp_path: Path) -> None:
    # Interrupted during the search: the resumed run trains no epoch, so where the constraint ended
    # comes from the log.
    config = smoke_config(epochs=3, regularizer="ignite")
    straight = runs.start(SPEC, config, tmp_path / "straight").final
    runs.write_run_config(tmp_path / "paused", SPEC, config)
    _, _, resumed = pause_then_resume(lambda: MBOTrainer(config, tmp_path / "paused"), stop_at_step=3)
    steps = [json.loads(line)["step"] for line in (tmp_path / "paused" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the resumed trainer went straight to the search
    for key in ("ignite/sharpness_end", "ignite/multiplier_end", "ignite/constraint_holds"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6)


@pytest.mark.parametrize("optimizer", ["evolution", "reinforce", "cma-es", "cbas"])
def test_ehrlich_runs_report_the_feasible_fraction(tmp_path: Path, optimizer: str) -> None:
    final = train_seeds([smoke_config(task="ehrlich-s", optimizer=optimizer)], [tmp_path])[0]
    assert 0.0 <= final["candidates/feasible_fraction"] <= 1.0


def test_the_released_dual_regime_scales_the_dual_step_to_the_released_number_of_steps() -> None:
    from hybridrl.mbo.experiment import _dual_regime

    # tfbind8: 32,898 offline points, 200 held out; cpu: 20 epochs of 128 against the released 100.
    config = SPEC.make_config("cpu", task="tfbind8", regularizer="ignite", ignite_dual_steps="released").resolved()
    ignite, ratio = _dual_regime(config, 32_898)
    assert ratio == pytest.approx(5.0)
    assert ignite.multiplier_lr == pytest.approx(5e-3)
    same, one = _dual_regime(dataclasses.replace(config, ignite_dual_steps="as-trained"), 32_898)
    assert (same.multiplier_lr, one) == (pytest.approx(1e-3), 1.0)
    # Larger minibatches: fewer dual steps per epoch, a larger ratio (100 x 255 against 20 x 127).
    larger = dataclasses.replace(config, batch_size=256)
    assert _dual_regime(larger, 32_898)[1] == pytest.approx(100 * 255 / (20 * 127))


@pytest.mark.parametrize("overrides, message", [
    ({"ignite_dual_steps": "more"}, "unknown ignite_dual_steps"),
    ({"optimizer": "bo-qei"}, "unknown optimizer"),
    ({"regularizer": "sam"}, "unknown regularizer"),
    ({"epochs": 0}, "epochs must be positive"),
    ({"ignite_rho": -1.0}, "rho must be > 0"),
])
def test_impossible_configs_are_rejected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        smoke_config(**overrides)


def test_runs_trained_together_must_differ_only_in_their_seed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="differ only in their seed"):
        train_seeds([smoke_config(), dataclasses.replace(smoke_config(), hidden_size=8)],
                    [tmp_path / "a", tmp_path / "b"])


def test_cli_runs_seeds_and_writes_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["mbo", "run", "--task", "ackley20", "--optimizer", "grad-ascent", "--regularizer", "ignite2",
                   "--seeds", "2", "--preset", "smoke", "--run-dir", str(tmp_path), "--no-progress"])
    assert status == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    assert set(summary["score/p100"]) >= {"mean", "std", "iqm", "iqm_low", "iqm_high"}
    assert "score/p100" in capsys.readouterr().out


def test_cli_reports_an_unknown_task_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["mbo", "run", "--task", "tfbind9", "--preset", "smoke", "--run-dir", str(tmp_path),
                   "--no-progress"])
    error = capsys.readouterr().err
    assert status == 2
    assert "tfbind8" in error and "Traceback" not in error


def test_coms_trains_two_epochs_at_cpu_scale_unless_told_otherwise() -> None:
    assert SPEC.make_config("cpu", optimizer="coms").epochs == 2
    assert SPEC.make_config("cpu", optimizer="grad-ascent").epochs == 20
    assert SPEC.make_config("cpu", optimizer="coms", epochs=5).epochs == 5


def test_rerunning_seeds_with_another_config_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    from hybridrl.errors import RunDirectoryError

    train_seeds_with_files = runs.execute_seeds
    train_seeds_with_files(SPEC, [smoke_config()], [tmp_path])
    with pytest.raises(RunDirectoryError, match="different config"):
        train_seeds_with_files(SPEC, [smoke_config(regularizer="ignite")], [tmp_path])


def test_train_command_runs_one_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["train", "mbo", "--preset", "smoke", "--task", "ackley20", "--run-dir", str(tmp_path),
                   "--no-progress"])
    assert status == 0
    assert "normalised score p100" in capsys.readouterr().out
    assert json.loads((tmp_path / "final.json").read_text())["task"] == "ackley20"
