"""Imitation from a few demonstrations at `cpu` scale: AILBoost vs the paper's DAC vs our DAC vs BC
on DeepMind Control, via the sweep machinery.

The paper's claim (Chang et al., ICLR 2024, Fig. 1; 5 DMC tasks, 3 seeds): AILBoost beats DAC,
ValueDICE, IQ-Learn and BC on expert-normalised return at every demonstration count, the gap
largest with 1 demonstration. Per-task numbers are not in our reference notes, so we compare the
methods with each other, not with the paper's values.

Steps:

1. **Expert**: SAC (`cpu` preset, true reward, action repeat 2) for ``EXPERT_STEPS`` agent steps in
   benchmarks/runs/experts/ (kept across invocations).
2. **Demonstrations**: 10 mean-action episodes of the expert (`hybridrl data demos ENV --run-dir
   EXPERT --episodes 10`); their mean return is the expert reference (100), uniform random actions
   the random one (0). They are committed (benchmarks/assets/demos/, a Minari root, with the
   experts' facts in experts.json; about 1 MB) and restored from there on a new machine, with no
   expert trained: the sweep takes several sessions on several machines, and an expert retrained
   elsewhere would not reproduce the demonstrations the recorded runs imitated.
3. **Sweeps** per setting (task x demonstration count, `--settings`), resumable, recorded in
   benchmarks/results/imitation/<sweep>/runs/ with the diagnostics that explain the curves (the
   temperature, the discriminator's loss, gradient penalty and values, its reward on the
   demonstrations and on the learner's newest data, the imitation reward):
   * ``ailboost``: variants ``disc100`` (the official 100 discriminator steps per round) and
     ``disc1000`` (a deviation: ten times the discriminator rate);
   * ``dac``: variants ``stale`` (the paper's baseline, the AILBoost code's DAC: rewards labelled
     once when stored) and ``fresh`` (ours: relabelled with the current discriminator at every update);
   * ``bc`` on the same first N demonstrations.

AILBoost's collection steps count on the agent-step axis, so at equal agent steps it has made half
of DAC's SAC updates; the report compares every method both at equal agent steps (the end of the
budget) and at equal SAC updates (AILBoost's final update count, read off the others' curves).

    python benchmarks/imitation.py --seeds 3 --workers 2 [--steps 400000] \
        [--settings dmc:walker-walk:1 dmc:walker-walk:10 dmc:ball_in_cup-catch:1]

A run is only comparable with runs on the same demonstrations, so each summary records their
fingerprint (a SHA-256 of their arrays), and the script refuses to add runs to recorded ones made
from other demonstrations (e.g. a local ~/.minari copy that differs from the committed one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, iqm_summary, peak_memory_mb, sweep_or_records, write_result

NAME = "imitation"
REPOSITORY = Path(__file__).resolve().parent.parent
EXPERTS = REPOSITORY / "benchmarks" / "runs" / "experts"
#: The committed demonstrations (a Minari root: ``hybridrl/demos/<env>-v0``) and their experts' facts.
DEMOS_ASSETS = REPOSITORY / "benchmarks" / "assets" / "demos"
#: Agent steps of SAC expert training per env (the reference's CPU recipe).
EXPERT_STEPS = {"dmc:walker-walk": 100_000, "dmc:ball_in_cup-catch": 100_000, "dmc:cheetah-run": 200_000}
PAPER = {
    "claim": "AILBoost >= DAC (and > BC) on expert-normalised return at 1 and 10 demonstrations, gap largest at 1",
    "source": "Chang et al. 2024, abstract and Fig. 1 caption (aggregate over 5 DMC tasks, 3 seeds); "
              "per-task values not transcribed",
}


def expert_run(env: str) -> Path:
    """The expert's run directory."""
    return EXPERTS / f"sac-{env.replace(':', '-')}-seed1"


def ensure_expert_and_demos(env: str, episodes: int = 10) -> dict[str, Any]:
    """The demonstrations of ``env`` in the local Minari root, and their facts for the result.

    Restored from the committed copy (:data:`DEMOS_ASSETS`) when there is one: a sweep spread over
    several machines must keep imitating the same demonstrations, and an expert retrained on another
    machine (another CPU, another float rounding) would not reproduce them. Otherwise the expert is
    trained, the demonstrations recorded, and both the demonstrations and the expert's facts copied
    into the assets for the next machine."""
    from hybridrl.core.io import atomic_write_json
    from hybridrl.data import DatasetNotFoundError, load_dataset, write_minari

    demos = f"hybridrl/{_demos_name(env)}"
    facts_path = DEMOS_ASSETS / "experts.json"
    committed = json.loads(facts_path.read_text()) if facts_path.is_file() else {}
    try:
        dataset = load_dataset(demos, validate=False)
    except DatasetNotFoundError:
        try:
            dataset = load_dataset(demos, validate=False, root=DEMOS_ASSETS)
            write_minari(dataset, demos)
        except DatasetNotFoundError:
            dataset = None
    if dataset is None or env not in committed:
        expert = _train_expert_and_record_demos(env, episodes, fresh_demos=dataset is None)
        dataset = load_dataset(demos, validate=False)
        write_minari(dataset, demos, root=DEMOS_ASSETS)
        atomic_write_json(facts_path, {**committed, env: expert})
    expert = json.loads(facts_path.read_text())[env]
    random_return, expert_return = dataset.info.reference_returns or (float("nan"), float("nan"))
    return {**expert, "demos": dataset.info.dataset_id, "demos_sha256": demos_fingerprint(dataset),
            "demos_committed": str((DEMOS_ASSETS / demos).relative_to(REPOSITORY)),
            "demo_episodes": dataset.num_episodes, "demo_returns": [float(r) for r in dataset.episode_returns()],
            "reference_returns": {"random": random_return, "expert": expert_return}}


def _train_expert_and_record_demos(env: str, episodes: int, fresh_demos: bool) -> dict[str, Any]:
    """Train (or resume) the SAC expert, record ``episodes`` demonstrations if ``fresh_demos``; its facts."""
    from hybridrl.algorithms import get_algorithm
    from hybridrl.core import provenance
    from hybridrl.data.demos import generate_demos
    from hybridrl.runs import is_finished, resume, start

    run_dir = expert_run(env)
    if not is_finished(run_dir):
        if (run_dir / "config.json").is_file():
            resume(run_dir)
        else:
            config = get_algorithm("sac").make_config("cpu", env=env, total_steps=EXPERT_STEPS.get(env, 300_000),
                                                      seed=1, eval_interval=25_000, checkpoint_interval=25_000)
            start(get_algorithm("sac"), config, run_dir)
    if fresh_demos:
        generate_demos(env, episodes, seed=0, run_dir=run_dir)
    final = json.loads((run_dir / "final.json").read_text())
    return {"expert_run": str(run_dir.relative_to(REPOSITORY)), "expert_steps": final.get("step"),
            "expert_eval_return": final.get("eval/return_mean"), "machine": provenance.machine()}


def demos_fingerprint(dataset: Any) -> str:
    """SHA-256 of the demonstrations' observations, actions and rewards (their bytes, in order)."""
    import hashlib

    digest = hashlib.sha256()
    transitions = dataset.transitions
    for array in (transitions.observations, transitions.actions, transitions.rewards):
        digest.update(np.ascontiguousarray(np.asarray(array, dtype=np.float32)).tobytes())
    return digest.hexdigest()


def check_same_demos(experts: dict[str, dict[str, Any]]) -> None:
    """Refuse to mix runs on other demonstrations: compare with the fingerprints the last summary recorded."""
    summary_path = RESULTS_DIR / f"{NAME}.json"
    if not summary_path.is_file():
        return
    from hybridrl.data.minari_format import minari_root

    recorded = json.loads(summary_path.read_text()).get("experts", {})
    for env, facts in experts.items():
        before = recorded.get(env, {}).get("demos_sha256")
        if before is not None and before != facts["demos_sha256"]:
            raise SystemExit(
                f"the demonstrations of {env} ({facts['demos']}) differ from those the recorded runs used "
                f"(SHA-256 {facts['demos_sha256'][:12]} here, {before[:12]} in {summary_path.name}): they were "
                f"made here. Delete the local copy (`hybridrl data list`; Minari root {minari_root()}) so that the "
                f"committed one in {DEMOS_ASSETS} is restored, or move the recorded runs of this task out of "
                f"{RESULTS_DIR / NAME} to start the task afresh.")


def _demos_name(env: str) -> str:
    from hybridrl.data.demos import demos_id

    return demos_id(env)


#: (task, demonstrations) settings of the benchmark: walker-walk at 1 and 10, and a second task at 1:
#: ball_in_cup-catch, which the issue allows beside cheetah-run; the reference notes put cheetah-run
#: at 500k+ agent steps to learn, beyond the 400k budget, and ball_in_cup's expert takes 100k.
SETTINGS = ("dmc:walker-walk:1", "dmc:walker-walk:10", "dmc:ball_in_cup-catch:1")
#: Variants of the adversarial methods (rows of the table).
AILBOOST_VARIANTS = {"disc100": {"discriminator_steps": 100}, "disc1000": {"discriminator_steps": 1000}}
DAC_VARIANTS = {"stale": {"reward_mode": "stale"}, "fresh": {"reward_mode": "fresh"}}
#: The rows of the table: (algorithm, variant) -> label.
METHODS = {("ailboost", "disc100"): "AILBoost", ("ailboost", "disc1000"): "AILBoost, 1000 disc. steps",
           ("dac", "stale"): "DAC (paper's: stale rewards)", ("dac", "fresh"): "DAC (ours: fresh rewards)",
           ("bc", "default"): "BC"}
#: Metrics kept in the per-run records: evaluations and every training diagnostic (logged every
#: LOG_INTERVAL agent steps, so a 400k-step record stays near 60 kB).
KEEP = ("eval/", "train/", "discriminator/")
LOG_INTERVAL = 4_000
DIAGNOSTICS = ("train/alpha", "discriminator/loss", "discriminator/gradient_penalty", "discriminator/reward_gap",
               "train/imitation_reward")


def parse_setting(text: str) -> tuple[str, int]:
    """``"dmc:walker-walk:10"`` -> ``("dmc:walker-walk", 10)``."""
    env, _, count = text.rpartition(":")
    if not env or not count.isdigit():
        raise SystemExit(f"--settings takes ENV:DEMOS, e.g. dmc:walker-walk:1; got {text!r}")
    return env, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="ENV:DEMOS pairs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=400_000, help="agent steps of AILBoost and DAC")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs, run nothing")
    parser.add_argument("--only", nargs="+", choices=("ailboost", "dac", "bc"), default=None,
                        help="run only these sweeps (the others are summarised as they are)")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)
    settings = [parse_setting(text) for text in arguments.settings]
    envs = sorted({env for env, _ in settings})
    if arguments.report_only:  # nothing trained: committed demonstrations restored, else the last summary's facts
        summary_path = RESULTS_DIR / f"{NAME}.json"
        recorded = json.loads(summary_path.read_text()).get("experts", {}) if summary_path.is_file() else {}
        committed = DEMOS_ASSETS / "experts.json"
        committed_envs = json.loads(committed.read_text()) if committed.is_file() else {}
        experts = {env: ensure_expert_and_demos(env) if env in committed_envs else recorded.get(env, {})
                   for env in envs}
    else:
        experts = {env: ensure_expert_and_demos(env) for env in envs}
        check_same_demos(experts)

    def specs(env: str, count: int) -> dict[str, dict[str, Any]]:
        adversarial = {"env": [env], "preset": arguments.preset, "seeds": arguments.seeds,
                       "overrides": {"total_steps": arguments.steps, "num_demos": count,
                                     "log_interval": LOG_INTERVAL}}
        return {
            "ailboost": {"name": f"{NAME}-ailboost-demos{count}", "algorithm": "ailboost",
                         "output": f"benchmarks/runs/{NAME}/ailboost-demos{count}", "variants": AILBOOST_VARIANTS,
                         **adversarial},
            "dac": {"name": f"{NAME}-dac-demos{count}", "algorithm": "dac",
                    "output": f"benchmarks/runs/{NAME}/dac-demos{count}", "variants": DAC_VARIANTS, **adversarial},
            "bc": {"name": f"{NAME}-bc-demos{count}", "output": f"benchmarks/runs/{NAME}/bc-demos{count}",
                   "algorithm": "bc", "dataset": [f"hybridrl/{_demos_name(env)}"], "preset": arguments.preset,
                   "seeds": arguments.seeds,
                   "overrides": {"max_episodes": count, "normalize_states": False, "eval_episodes": 10}},
        }

    for env, count in settings:
        for method, mapping in specs(env, count).items():
            train_now = not arguments.report_only and (arguments.only is None or method in arguments.only)
            sweep_or_records(f"{NAME}/{method}-demos{count}", mapping, KEEP if method != "bc" else ("eval/",),
                             arguments.workers, report_only=not train_now)

    from hybridrl.experiments.spec import expand_sweep, load_sweep_spec
    from hybridrl.runs import is_finished

    runs_by_setting: dict[str, dict[str, list[RunCurves]]] = {}
    wall: dict[str, list[float]] = {}
    for env, count in settings:
        setting = f"{env} / {count} demo{'s' if count > 1 else ''}"
        methods = runs_by_setting.setdefault(setting, {})
        for mapping in specs(env, count).values():
            for run in expand_sweep(load_sweep_spec(mapping)):
                if not is_finished(run.run_dir):
                    continue
                label = METHODS[(run.algorithm, run.variant)]
                curves = read_run(run.run_dir)
                methods.setdefault(label, []).append(curves)
                if curves.mixture is not None:
                    methods.setdefault("AILBoost mixture" if run.variant == "disc100" else f"{label}, mixture",
                                       []).append(dataclasses.replace(curves, final=curves.mixture))
                wall.setdefault(label, []).append(curves.wall_time_s)
    summary = {setting: summarize_setting(methods) for setting, methods in runs_by_setting.items()}
    report = write_report(summary, runs_by_setting, RESULTS_DIR / NAME / "report", arguments)
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME, "settings": arguments.settings, "preset": arguments.preset,
        "agent_steps": arguments.steps, "experts": experts,
        "normalized_score": summary,
        "mean_wall_time_s": {method: float(np.mean(values)) for method, values in wall.items()},
        "report": str(report.relative_to(REPOSITORY)), "paper": PAPER, "peak_memory_mb": peak_memory_mb(),
    })


@dataclasses.dataclass(frozen=True)
class RunCurves:
    """One run's evaluation curve on both axes, its final scores and its diagnostics over agent steps
    (``updates_at`` maps agent steps to the SAC updates made by then)."""

    steps: np.ndarray
    updates: np.ndarray
    training_steps: np.ndarray
    training_updates: np.ndarray
    scores: np.ndarray
    final: float
    mixture: float | None
    diagnostics: dict[str, tuple[np.ndarray, np.ndarray]]
    wall_time_s: float


def read_run(run_dir: Path) -> RunCurves:
    """A finished run's curves: evaluation scores against agent steps and against SAC updates (the
    update count at each evaluation, interpolated from the training lines), and the diagnostics."""
    from hybridrl.core.logging import read_metrics

    lines = read_metrics(run_dir)
    final = json.loads((run_dir / "final.json").read_text())
    evaluations = [line for line in lines if "eval/normalized_score" in line]
    steps = np.asarray([line["step"] for line in evaluations], dtype=np.float64)
    scores = np.asarray([line["eval/normalized_score"] for line in evaluations], dtype=np.float64)
    training = [(line["step"], line["train/gradient_updates"]) for line in lines if "train/gradient_updates" in line]
    if "gradient_updates" in final:
        training.append((final["step"], final["gradient_updates"]))
    training.insert(0, (0, 0))
    training_steps = np.asarray([step for step, _ in training], dtype=np.float64)
    training_updates = np.asarray([count for _, count in training], dtype=np.float64)
    updates = np.interp(steps, training_steps, training_updates)
    diagnostics: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in DIAGNOSTICS:
        if name == "discriminator/reward_gap":
            points = [(line["step"], line["discriminator/demos_reward"] - line["discriminator/newest_data_reward"])
                      for line in lines if "discriminator/newest_data_reward" in line]
        else:
            points = [(line["step"], line[name]) for line in lines if name in line]
        if points:
            diagnostics[name] = (np.asarray([p[0] for p in points], float), np.asarray([p[1] for p in points], float))
    mixture = final.get("eval/mixture_normalized_score")
    return RunCurves(steps=steps, updates=updates, training_steps=training_steps, training_updates=training_updates,
                     scores=scores, final=float(final["eval/normalized_score"]),
                     mixture=float(mixture) if mixture is not None else None, diagnostics=diagnostics,
                     wall_time_s=float(final.get("wall_time_s", 0.0)))


def summarize_setting(methods: dict[str, list[RunCurves]]) -> dict[str, Any]:
    """Per method: IQM of the final score (equal agent steps), of the score at the reference update
    count (AILBoost's final one, the fewest: equal SAC updates), and the final update counts."""
    finals = {label: [run.updates[-1] for run in runs if len(run.updates)] for label, runs in methods.items()}
    reference = min((float(np.mean(values)) for label, values in finals.items() if label.startswith("AILBoost")
                     and "mixture" not in label and values), default=None)
    summary: dict[str, Any] = {"equal_updates_at": reference}
    for label, runs in methods.items():
        entry: dict[str, Any] = {"final": iqm_summary([run.final for run in runs]),
                                 "final_updates": float(np.mean(finals[label])) if finals[label] else None}
        if reference is not None and "mixture" in label and label.startswith("AILBoost"):
            # The reference is AILBoost's own final update count: its mixture's final score is at it.
            entry["at_equal_updates"] = entry["final"]
        elif reference is not None and "mixture" not in label:
            # Read off a curve only inside it: evaluated at or before the reference count and reaching it.
            at_reference = [float(np.interp(reference, run.updates, run.scores)) for run in runs
                            if len(run.updates) and run.updates[0] <= reference <= run.updates[-1] + 1]
            if at_reference:
                entry["at_equal_updates"] = iqm_summary(at_reference)
        summary[label] = entry
    return summary


def claim_lines(entry: dict[str, Any]) -> list[str]:
    """The paper's claim (AILBoost >= DAC) judged on one setting's table, at both comparisons: the
    IQMs and whether their 95 % intervals overlap."""
    ailboost, lines = entry.get(METHODS[("ailboost", "disc100")]), []
    for key, where in (("final", "equal agent steps"), ("at_equal_updates", "equal SAC updates")):
        for dac_key in (("dac", "stale"), ("dac", "fresh")):
            dac = entry.get(METHODS[dac_key])
            if not ailboost or not dac or key not in ailboost or key not in dac:
                continue
            mine, theirs = ailboost[key], dac[key]
            overlap = mine["iqm_low"] <= theirs["iqm_high"] and theirs["iqm_low"] <= mine["iqm_high"]
            verdict = ("AILBoost ≥ DAC" if mine["iqm"] >= theirs["iqm"] else "AILBoost < DAC") + (
                " (intervals overlap: not resolved)" if overlap else " (intervals apart)")
            lines.append(f"- At {where}, against {METHODS[dac_key]}: {verdict}, IQM {mine['iqm']:.1f} vs "
                         f"{theirs['iqm']:.1f}.")
    return lines


def write_report(summary: dict[str, Any], runs_by_setting: dict[str, dict[str, list[RunCurves]]], folder: Path,
                 arguments: argparse.Namespace) -> Path:
    """report.md: the table at equal agent steps and at equal SAC updates, the curves on both axes and
    the diagnostics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)

    def cell(entry: dict[str, Any] | None) -> str:
        if not entry:
            return "–"
        return f"{entry['iqm']:.1f} [{entry['iqm_low']:.1f}, {entry['iqm_high']:.1f}] (n={entry['seeds']})"

    lines = [f"# Imitation from demonstrations at `{arguments.preset}` scale", "",
             f"Seeds: {arguments.seeds}; {arguments.steps:,} agent steps for AILBoost and DAC (AILBoost's collection "
             "steps included); BC: its cpu preset on the same demonstrations. Scores: 0 = uniform random actions, "
             "100 = the demonstrations' mean return; IQM over seeds with a 95% bootstrap interval. AILBoost's "
             "headline is its current learner (mean action); *mixture* is the true boosted mixture. *At equal "
             "updates*: each curve read at AILBoost's final SAC update count. Generated by "
             "`python benchmarks/imitation.py`.", ""]
    for setting, entry in summary.items():
        reference = entry.get("equal_updates_at")
        lines += [f"## {setting}", "", f"| method | equal agent steps (final) | equal SAC updates "
                  f"({reference:,.0f}) | SAC updates at the end |" if reference else
                  "| method | equal agent steps (final) | equal SAC updates | SAC updates at the end |",
                  "|---|---|---|---|"]
        for label in [*METHODS.values(), "AILBoost mixture", f"{METHODS[('ailboost', 'disc1000')]}, mixture"]:
            if label in entry:
                method = entry[label]
                updates = f"{method['final_updates']:,.0f}" if method.get("final_updates") else "–"
                lines.append(f"| {label} | {cell(method['final'])} | {cell(method.get('at_equal_updates'))} "
                             f"| {updates} |")
        lines += ["", *claim_lines(entry), ""]
    colours = {label: f"C{index}" for index, label in enumerate(METHODS.values())}
    settings = [setting for setting, methods in runs_by_setting.items() if methods]
    if settings:
        figure, axes = plt.subplots(len(settings), 2, figsize=(10, 3.4 * len(settings)), squeeze=False)
        for row, setting in zip(axes, settings, strict=True):
            for axis, axis_name in zip(row, ("steps", "updates"), strict=True):
                for label, runs in runs_by_setting[setting].items():
                    if "mixture" in label or label == "BC":
                        continue
                    grid = np.linspace(0, min(getattr(run, axis_name)[-1] for run in runs), 50)
                    stacked = np.stack([np.interp(grid, getattr(run, axis_name), run.scores) for run in runs])
                    axis.plot(grid, stacked.mean(0), color=colours[label], label=f"{label} (n={len(runs)})")
                    axis.fill_between(grid, stacked.min(0), stacked.max(0), color=colours[label], alpha=0.15)
                bc = runs_by_setting[setting].get("BC")
                if bc:
                    axis.axhline(float(np.mean([run.final for run in bc])), color="grey", linestyle=":", label="BC")
                axis.set_title(setting, fontsize=9)
                axis.set_xlabel("agent steps (incl. AILBoost's collection)" if axis_name == "steps"
                                else "SAC updates")
                axis.set_ylabel("expert-normalised score")
            row[0].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / "curves.png", dpi=110)
        plt.close(figure)
        lines += ["![learning curves against agent steps and against SAC updates: mean over seeds, band = "
                  "min..max](curves.png)", ""]
        figure, axes = plt.subplots(len(settings), len(DIAGNOSTICS), figsize=(3.3 * len(DIAGNOSTICS),
                                    2.8 * len(settings)), squeeze=False)
        for row, setting in zip(axes, settings, strict=True):
            for axis, name in zip(row, DIAGNOSTICS, strict=True):
                for label, runs in runs_by_setting[setting].items():
                    for index, run in enumerate(runs):
                        if name in run.diagnostics and "mixture" not in label:
                            steps, values = run.diagnostics[name]
                            # Against SAC updates: AILBoost makes half of DAC's per agent step.
                            updates = np.interp(steps, run.training_steps, run.training_updates)
                            axis.plot(updates, values, color=colours[label], alpha=0.6, linewidth=0.8,
                                      label=label if index == 0 else None)
                axis.set_title(f"{setting}\n{name}", fontsize=8)
                axis.set_xlabel("SAC updates", fontsize=8)
                if name == "train/alpha":
                    axis.set_yscale("log")
            if row[0].get_legend_handles_labels()[0]:
                row[0].legend(fontsize=6)
        figure.tight_layout()
        figure.savefig(folder / "diagnostics.png", dpi=100)
        plt.close(figure)
        lines += ["Diagnostics against SAC updates (AILBoost makes half of DAC's per agent step), one line per "
                  "run: the SAC temperature; the discriminator's loss and gradient "
                  "penalty (on its training batches); *reward gap*: the current discriminator's mean reward on "
                  "the demonstrations minus on the learner's newest 1,000 replay rows (what separates expert from "
                  "learner now); the imitation reward of the SAC minibatch.", "",
                  "![diagnostics](diagnostics.png)", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    main()
