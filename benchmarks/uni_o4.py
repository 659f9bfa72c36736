"""Uni-O4 at `cpu` scale: offline scores of BC, IQL and Uni-O4 side by side, then online
fine-tuning of Uni-O4 against PPO from scratch, via the sweep machinery.

The paper's claims (Lei et al. 2024; D4RL -v2, 5 seeds): offline, Uni-O4 above IQL and BC on most
datasets (hopper-medium 104.4 vs IQL 66.3; hopper-medium-replay 103.2 vs 97.7; walker2d-medium
90.2 vs 78.3); online, no initial drop and better sample efficiency than every baseline, PPO from
scratch included. Our datasets are hybridrl's own v5 datasets made as D4RL made them (`hybridrl
data make <family>-<kind>-sac-v5 --preset cpu`: SAC behaviour policies, 200k transitions; the
medium-replay buffer as large as the SAC run's up to the medium policy; scores normalised with
their measured random/expert returns), so absolute numbers are not comparable with D4RL's. The
committed records of the legacy PPO-made datasets (`hopper-medium-v5` ...) stay under their names;
pass them with `--datasets` to reproduce those.

Five sweeps, resumable and recorded (run directories in benchmarks/runs/uni_o4/, not
committed; records in benchmarks/results/uni_o4/<sweep>/runs/, keeping every
evaluation and the `ope/`, `critic/`, `dynamics/`, `bc/` and `ppo/` diagnostics):

* baselines: bc and iql on every dataset, `--seeds` seeds;
* uni-o4: both phases (offline, then `--online-steps` of fine-tuning) on every dataset, with every
  member's true return measured at each AM-Q round (`--ope-true-episodes`), so the report gives
  AM-Q's rank correlation with the true return per dataset;
* scratch: PPO (its `cpu` preset, our tuned from-scratch settings) for the same online budget on
  each dataset's environment;
* iql-finetune: IQL as its code runs MuJoCo locomotion (rewards scaled to a return range of 1000,
  `--reward-normalization return-range`), offline, then fine-tuned online for `--online-steps`
  with the dataset seeding its replay: the paper-faithful IQL offline row and the IQL online row
  (`--iql-finetune-seeds`, 3 by default: one update per env step makes a run about 25 core-minutes,
  and the issue asks for this comparison only where it fits);
* critic-actions: Uni-O4's offline phase with the released code's critic queries, the raw Gaussian
  samples (`--ppo-critic-actions raw`), on `--ablation-datasets`, against the uni-o4 sweep's
  clipped ones on the same seeds. It needs the recorded datasets (seed 0 is recorded); the same
  ablation on any one machine's data, both variants, is `benchmarks/uni_o4_critic_actions.py`.

Baselines, then Uni-O4, then the others, each one sweep over every dataset, seed by seed (seed 0 on every dataset,
then seed 1, ...), each run recorded as it finishes, so an interrupted sweep leaves every row with
its finished seeds and no worker idles at a dataset's last seed. Each run's score is its final
evaluation over `--final-eval-episodes` (50) episodes.

The datasets are made on each machine if missing, and a machine with another CPU makes other data
(docs/datasets.md); the script checks each local dataset against the level every recorded run
logged and refuses to train or report on one that differs (`check_same_datasets`).

    python benchmarks/uni_o4.py --seeds 5 --workers 2 [--only baselines uni-o4 scratch iql-finetune critic-actions]
        [--report-only]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, iqm_summary, paired_difference, peak_memory_mb, sweep_or_records, write_result

NAME = "uni_o4"
REPOSITORY = Path(__file__).resolve().parent.parent
PAPER = {
    "claim": "offline: Uni-O4 > IQL and BC on most datasets; online: no initial drop, better sample "
             "efficiency than PPO from scratch",
    "offline normalised scores (D4RL -v2, Table 1)": {
        "hopper-medium": {"uni-o4": 104.4, "iql": 66.3, "bc (BPPO's table)": 52.9},
        "hopper-medium-replay": {"uni-o4": 103.2, "iql": 97.7, "bc (BPPO's table)": 18.1},
        "walker2d-medium": {"uni-o4": 90.2, "iql": 78.3, "bc (BPPO's table)": 75.3},
    },
}


def ensure_datasets(datasets: Sequence[str], preset: str) -> dict[str, tuple[float, float]]:
    """Make the datasets that are missing (seconds each at cpu scale); their reference returns."""
    from hybridrl.data import DatasetNotFoundError, load_dataset, write_minari
    from hybridrl.data.generation import make_dataset

    references = {}
    for name in datasets:
        try:
            dataset = load_dataset(name, validate=False)
        except DatasetNotFoundError:
            dataset = make_dataset(name, preset=preset)
            write_minari(dataset, f"hybridrl/{name}")
        assert dataset.info.reference_returns is not None
        references[name] = dataset.info.reference_returns
    return references


def check_same_datasets(datasets: Sequence[str], references: dict[str, tuple[float, float]]) -> None:
    """Refuse to add runs on, or report runs against, local datasets other than those the recorded runs used.

    The SAC-made datasets are regenerated on each machine, and rollouts on another CPU (other float
    rounding, grown over an episode or a SAC run) give other data: a local copy is only the recorded
    one if its reference returns equal those of the last summary and its level (normalised mean
    episode return) equals the ``offline/data_normalized_score`` every recorded Uni-O4 run logged."""
    summary_path = RESULTS_DIR / f"{NAME}.json"
    recorded_references = json.loads(summary_path.read_text()).get("reference_returns", {}) \
        if summary_path.is_file() else {}
    wrong = []
    for name in datasets:
        levels = recorded_levels((RESULTS_DIR / NAME).glob(f"*/runs/uni-o4/{name}/*/seed*.json"))
        local_level = dataset_level(name, references[name])
        recorded = recorded_references.get(name)
        if (recorded is not None and not np.allclose(recorded, references[name], rtol=0, atol=1e-6)) \
                or (levels and levels != {local_level}):
            wrong.append(f"{name}: here reference returns {tuple(round(v, 3) for v in references[name])}, level "
                         f"{local_level:.3f}; recorded {tuple(round(v, 3) for v in recorded or ())}, "
                         f"level {', '.join(f'{level:.3f}' for level in sorted(levels)) or '-'}")
    if wrong:
        raise SystemExit(
            "the local datasets are not those the recorded runs used (datasets made on another CPU differ):\n  "
            + "\n  ".join(wrong) + f"\nRun on a machine whose `hybridrl data make` reproduces them, or move the "
            f"recorded runs out of {RESULTS_DIR / NAME} to start afresh on these datasets.")


def recorded_levels(records: Iterable[Path]) -> set[float]:
    """The data levels (``offline/data_normalized_score``, rounded as :func:`dataset_level`) the
    recorded Uni-O4 runs ``records`` logged."""
    return {round(float(record["final.json"]["offline/data_normalized_score"]), 6) for path in sorted(records)
            if "offline/data_normalized_score" in (record := json.loads(path.read_text()))["final.json"]}


def dataset_level(name: str, reference: tuple[float, float]) -> float:
    """The local copy of dataset ``name``'s level: its normalised mean episode return, as each Uni-O4
    run logs it (``offline/data_normalized_score``), rounded to 6 decimals for comparison."""
    return round(float(_normalize(np.mean(_load_dataset(name).episode_returns()), reference)), 6)


def _normalize(returns: np.ndarray, reference: tuple[float, float]) -> np.ndarray:
    random_return, expert_return = reference
    return 100.0 * (np.asarray(returns, dtype=np.float64) - random_return) / (expert_return - random_return)


def _curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, returns) of a run's evaluations."""
    from hybridrl.core.logging import read_metrics

    lines = [line for line in read_metrics(run_dir) if "eval/return_mean" in line]
    return (np.asarray([line["step"] for line in lines], dtype=np.float64),
            np.asarray([line["eval/return_mean"] for line in lines], dtype=np.float64))


#: The six datasets of the issue's table: medium and medium-replay of each task, mediums first so that
#: a partial sweep covers every task.
DATASETS = ("hopper-medium-sac-v5", "walker2d-medium-sac-v5", "halfcheetah-medium-sac-v5",
            "hopper-medium-replay-sac-v5", "walker2d-medium-replay-sac-v5", "halfcheetah-medium-replay-sac-v5")
#: Metric prefixes kept in the committed per-run records: the evaluations, AM-Q's scores with the true
#: returns and survival it is checked against, and the critic, dynamics, BC and offline PPO diagnostics.
KEEP = ("eval/", "offline/", "ope/", "critic/", "dynamics/", "bc/", "ppo/")
#: The same for IQL fine-tuned: its losses and value statistics, offline and online.
KEEP_IQL = ("eval/", "iql/", "train/")
#: One colour per method in every panel of the online figure.
ONLINE_COLOURS = {"uni-o4": "C0", "ppo": "C1", "iql fine-tuned": "C2"}
#: Sweeps of the benchmark, in the order they run.
SWEEPS = ("baselines", "uni-o4", "scratch", "iql-finetune", "critic-actions")
#: Datasets of the critic-actions ablation: where the review measured most sampled actions outside
#: the bounds (walker2d-medium) and a replay set.
ABLATION_DATASETS = ("walker2d-medium-sac-v5", "hopper-medium-replay-sac-v5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iql-finetune-seeds", type=int, default=3,
                        help="seeds of IQL fine-tuned online (about 25 core-minutes a run at cpu scale)")
    parser.add_argument("--ablation-datasets", nargs="+", default=list(ABLATION_DATASETS),
                        help="datasets of the critic-actions ablation (Uni-O4 offline with the code's raw actions)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--online-steps", type=int, default=100_000,
                        help="env steps of Uni-O4's fine-tuning and of PPO from scratch (0: offline only)")
    parser.add_argument("--final-eval-episodes", type=int, default=50, help="episodes of each run's final score")
    parser.add_argument("--ope-true-episodes", type=int, default=2,
                        help="real episodes per member at every AM-Q round (AM-Q's fidelity)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs, run nothing")
    parser.add_argument("--only", nargs="+", choices=SWEEPS, default=None,
                        help="run only these sweeps (the others are summarised as they are)")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)

    def skip(sweep: str) -> bool:
        return arguments.report_only or (arguments.only is not None and sweep not in arguments.only)

    ablation_datasets = [name for name in arguments.ablation_datasets if name in arguments.datasets]
    references = ensure_datasets(arguments.datasets, arguments.preset)
    check_same_datasets(arguments.datasets, references)
    envs = sorted({_env_of(name) for name in arguments.datasets})

    def baselines_spec(datasets: Sequence[str]) -> dict[str, Any]:
        return {"name": f"{NAME}-baselines", "output": f"benchmarks/runs/{NAME}/baselines", "algorithm": ["bc", "iql"],
                "dataset": list(datasets), "preset": arguments.preset, "seeds": arguments.seeds,
                "overrides": {"final_eval_episodes": arguments.final_eval_episodes}}

    def uni_o4_spec(datasets: Sequence[str]) -> dict[str, Any]:
        overrides: dict[str, Any] = {"final_eval_episodes": arguments.final_eval_episodes,
                                     "ope_true_episodes": arguments.ope_true_episodes}
        if arguments.online_steps:
            overrides.update(online_steps=arguments.online_steps, online_eval_interval=10_000)
        else:
            overrides["phase"] = "offline"
        return {"name": f"{NAME}-uni-o4", "output": f"benchmarks/runs/{NAME}/uni-o4", "algorithm": "uni-o4",
                "dataset": list(datasets), "preset": arguments.preset, "seeds": arguments.seeds,
                "overrides": overrides}

    # Every dataset in one sweep each (runs are recorded as they finish), so that no worker idles
    # at the end of each dataset's last seed; the sweeps run seed by seed over the datasets.
    sweep_or_records(f"{NAME}/baselines", baselines_spec(arguments.datasets), KEEP, arguments.workers,
                     skip("baselines"))
    sweep_or_records(f"{NAME}/uni-o4", uni_o4_spec(arguments.datasets), KEEP, arguments.workers, skip("uni-o4"),
                     extra_metrics=("online",))
    # Ablation: offline PPO's critic scores the raw Gaussian samples (the released code's), against
    # the main sweep's clipped ones; offline only, since the choice acts on the offline policy.
    raw_actions = sweep_or_records(f"{NAME}/critic-actions", {
        "name": f"{NAME}-critic-actions", "output": f"benchmarks/runs/{NAME}/critic-actions", "algorithm": "uni-o4",
        "dataset": ablation_datasets, "preset": arguments.preset, "seeds": arguments.seeds,
        "variants": {"raw": {"ppo_critic_actions": "raw"}},
        "overrides": {"final_eval_episodes": arguments.final_eval_episodes,
                      "ope_true_episodes": arguments.ope_true_episodes, "phase": "offline"},
    }, KEEP, arguments.workers, skip("critic-actions")) if ablation_datasets else None
    scratch = iql_finetune = None
    if arguments.online_steps:
        scratch = sweep_or_records(f"{NAME}/scratch", {
            "name": f"{NAME}-scratch", "output": f"benchmarks/runs/{NAME}/scratch", "algorithm": "ppo", "env": envs,
            "preset": arguments.preset, "seeds": arguments.seeds,
            "overrides": {"total_steps": arguments.online_steps, "eval_interval": 10_000},
        }, ("eval/return_mean",), arguments.workers, skip("scratch"))
        iql_finetune = sweep_or_records(f"{NAME}/iql-finetune", {
            "name": f"{NAME}-iql-finetune", "output": f"benchmarks/runs/{NAME}/iql-finetune", "algorithm": "iql",
            "dataset": list(arguments.datasets), "preset": arguments.preset, "seeds": arguments.iql_finetune_seeds,
            "overrides": {"phase": "both", "reward_normalization": "return-range",
                          "final_eval_episodes": arguments.final_eval_episodes,
                          "online_steps": arguments.online_steps, "online_eval_interval": 10_000},
        }, KEEP_IQL, arguments.workers, skip("iql-finetune"), extra_metrics=("online",))

    from hybridrl.experiments.spec import expand_sweep, load_sweep_spec
    from hybridrl.runs import is_finished

    offline_scores: dict[str, dict[str, list[float]]] = {name: {} for name in arguments.datasets}
    fidelity: dict[str, dict[str, list[float]]] = {name: {} for name in arguments.datasets}
    amq_points: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    survival: dict[str, list[dict[str, Any]]] = {}
    curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    wall: dict[str, list[float]] = {}
    # The released selection of runs that finished before Uni-O4 logged it (uni_o4_released_selection.py).
    backfill_path = RESULTS_DIR / "uni_o4_released_selection.json"
    backfilled = json.loads(backfill_path.read_text())["runs"] if backfill_path.is_file() else {}

    def released_selection(run: Any, final: dict[str, Any]) -> float:
        """The released code's selection's score: logged by the run, else backfilled, else NaN."""
        key = "offline/released_selection_normalized_score"
        return float(final.get(key, backfilled.get(f"{run.task}/seed{run.seed}", {}).get(key, float("nan"))))

    runs = [*expand_sweep(load_sweep_spec(baselines_spec(arguments.datasets))),
            *expand_sweep(load_sweep_spec(uni_o4_spec(arguments.datasets)))]
    for run in runs:
        if not is_finished(run.run_dir):
            continue
        final = json.loads((run.run_dir / "final.json").read_text())
        reference = references[run.task]
        scores = offline_scores[run.task]
        if run.algorithm != "uni-o4":
            scores.setdefault(run.algorithm, []).append(float(_normalize(final["eval/return_mean"], reference)))
            wall.setdefault(run.algorithm, []).append(float(final.get("wall_time_s", 0.0)))
            continue
        scores.setdefault("uni-o4", []).append(float(_normalize(final["offline/eval/return_mean"], reference)))
        if "offline/bc_normalized_score" in final:
            scores.setdefault("uni-o4 bc start", []).append(float(final["offline/bc_normalized_score"]))
        if "offline/data_normalized_score" in final:
            scores.setdefault("data", []).append(float(final["offline/data_normalized_score"]))
        released = released_selection(run, final)
        if np.isfinite(released):
            scores.setdefault("released selection", []).append(released)
        for name in ("pooled", "within_rounds", "over_time"):
            if f"offline/ope_spearman_{name}" in final:
                fidelity[run.task].setdefault(name, []).append(float(final[f"offline/ope_spearman_{name}"]))
        amq_points.setdefault(run.task, []).append(_amq_and_true_returns(run.run_dir, reference))
        survival.setdefault(run.task, []).append(_survival(run.run_dir))
        wall.setdefault("uni-o4", []).append(float(final.get("offline/wall_time_s", 0.0)))
        if arguments.online_steps and (run.run_dir / "online").is_dir():
            steps, returns = _curve(run.run_dir / "online")
            curves.setdefault(run.task, {}).setdefault("uni-o4", []).append((steps, _normalize(returns, reference)))
    for run in expand_sweep(iql_finetune) if iql_finetune is not None else []:
        if not is_finished(run.run_dir):
            continue
        final = json.loads((run.run_dir / "final.json").read_text())
        reference = references[run.task]
        offline_scores[run.task].setdefault("iql, reward-scaled", []).append(
            float(_normalize(final["offline/eval/return_mean"], reference)))
        steps, returns = _curve(run.run_dir / "online")
        curves.setdefault(run.task, {}).setdefault("iql fine-tuned", []).append((steps, _normalize(returns, reference)))
    for run in expand_sweep(scratch) if scratch is not None else []:
        if not is_finished(run.run_dir):
            continue
        steps, returns = _curve(run.run_dir)
        for dataset in arguments.datasets:
            if _env_of(dataset) == run.task:
                normalized = _normalize(np.concatenate([[np.nan], returns]), references[dataset])
                steps_from_zero = np.concatenate([[0.0], steps])
                curves.setdefault(dataset, {}).setdefault("ppo", []).append((steps_from_zero, normalized))

    critic_actions_by_seed: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    ablation_runs = [(run, "clip") for run in runs if run.algorithm == "uni-o4" and run.task in ablation_datasets]
    ablation_runs += [(run, "raw") for run in (expand_sweep(raw_actions) if raw_actions is not None else [])]
    for run, mode in ablation_runs:
        if is_finished(run.run_dir):
            final = json.loads((run.run_dir / "final.json").read_text())
            facts = critic_actions_facts(run.run_dir, final, released_selection(run, final))
            critic_actions_by_seed.setdefault(run.task, {}).setdefault(mode, {})[run.seed] = {
                name: value for name, value in facts.items() if np.isfinite(value)}

    offline_table = {dataset: {method: iqm_summary(values) for method, values in methods.items()}
                     for dataset, methods in offline_scores.items() if methods}
    comparisons = {dataset: _comparisons(methods) for dataset, methods in offline_table.items()}
    fidelity_table = {dataset: {name: _mean_and_values(values) for name, values in entry.items()}
                      for dataset, entry in fidelity.items() if entry}
    online_table = {dataset: _online_summary(methods) for dataset, methods in curves.items()}
    survival_table = {dataset: _survival_summary(runs) for dataset, runs in survival.items()
                      if any(len(run["model"]) for run in runs)}
    critic_actions_table: dict[str, dict[str, dict[str, Any]]] = {
        dataset: {mode: {name: iqm_summary([facts[name] for facts in seeds.values() if name in facts])
                         for name in dict.fromkeys(name for facts in seeds.values() for name in facts)}
                  for mode, seeds in modes.items()} for dataset, modes in critic_actions_by_seed.items()}
    # Raw against clip on the same seeds: the seed fixes the data split, BC start and critic, so the
    # paired difference is the sharper test of the one change.
    for dataset, by_seed in critic_actions_by_seed.items():
        if "raw" in by_seed and "clip" in by_seed:
            critic_actions_table[dataset]["raw - clip, paired"] = {
                name: difference for name in ("offline score", "released selection")
                if (difference := paired_difference(by_seed["raw"], by_seed["clip"], name)) is not None}
    report = write_report(offline_table, comparisons, fidelity_table, amq_points, online_table, curves,
                          RESULTS_DIR / NAME / "report", arguments, survival_table, critic_actions_table)
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME,
        "datasets": arguments.datasets,
        "preset": arguments.preset,
        "online_steps": arguments.online_steps,
        "final_eval_episodes": arguments.final_eval_episodes,
        "ope_true_episodes": arguments.ope_true_episodes,
        "reference_returns": {name: list(value) for name, value in references.items()},
        "offline_normalized_score": offline_table,
        "offline_comparisons": comparisons,
        "amq_rank_correlation": fidelity_table,
        "amq_survival": survival_table,
        "critic_actions_ablation": critic_actions_table,
        "online": online_table,
        "mean_offline_wall_time_s": {method: float(np.mean(values)) for method, values in wall.items()},
        "report": str(report.relative_to(REPOSITORY)),
        "paper": PAPER,
        "peak_memory_mb": peak_memory_mb(),
    })


def _amq_and_true_returns(run_dir: Path, reference: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Every member-round's AM-Q score and normalised true return of a run (empty without --ope-true-episodes)."""
    from hybridrl.core.logging import read_metrics

    scores, returns = [], []
    for line in read_metrics(run_dir):
        members = sorted(int(key.rsplit("_", 1)[1]) for key in line if key.startswith("ope/true_return_"))
        scores += [line[f"ope/score_{index}"] for index in members]
        returns += [line[f"ope/true_return_{index}"] for index in members]
    return np.asarray(scores, dtype=np.float64), _normalize(np.asarray(returns), reference)


@functools.cache
def _load_dataset(name: str) -> Any:
    """A dataset by name, loaded once for all its runs."""
    from hybridrl.data import load_dataset

    return load_dataset(name if "/" in name else f"hybridrl/{name}", validate=False)


def critic_actions_facts(run_dir: Path, final: dict[str, Any], released: float) -> dict[str, float]:
    """What the critic-actions ablation compares: the offline policy's score, the released selection's,
    AM-Q's pooled rank correlation, and the mean share of sampled action components outside the bounds."""
    from hybridrl.core.logging import read_metrics

    outside = [line["ppo/actions_outside_bounds"] for line in read_metrics(run_dir)
               if "ppo/actions_outside_bounds" in line]
    facts = {"offline score": final["offline/eval/normalized_score"],
             "released selection": released,
             "amq spearman": final.get("offline/ope_spearman_pooled", float("nan")),
             "actions outside bounds": float(np.mean(outside)) if outside else float("nan")}
    return {name: float(value) for name, value in facts.items()}


def _survival(run_dir: Path) -> dict[str, Any]:
    """A Uni-O4 run's survival at its AM-Q rounds: every member-round's survival in the model (from
    AM-Q's start states, random dataset states) and in the real env (from reset), both within the
    horizon; and the dataset's own survival from AM-Q's start states (steps to the end of each start
    state's episode if it ended in a termination, else the whole horizon), which is what the model's
    survival of a behaviour-like policy should match: the real survival from reset is not comparable."""
    from hybridrl.core.logging import read_metrics
    from hybridrl.core.seeding import Seeder
    from hybridrl.runs import read_run_config

    _, config = read_run_config(run_dir)
    model, real, saturation = [], [], []
    for line in read_metrics(run_dir):
        members = sorted(int(key.rsplit("_", 1)[1]) for key in line if key.startswith("ope/true_survival_"))
        model += [line[f"ope/model_survival_{index}"] for index in members]
        real += [line[f"ope/true_survival_{index}"] for index in members]
        saturation += [line.get(f"ope/mean_action_saturation_{index}", np.nan) for index in members]
    dataset = _load_dataset(config.dataset)
    size = int(dataset.episode_starts[-1])
    # The start states AM-Q drew (uni_o4.py: the "ope-starts" stream of the run's seed).
    starts = Seeder(config.seed).numpy("ope-starts").integers(0, size, size=config.ope_start_states)
    episode = np.searchsorted(dataset.episode_starts, starts, side="right") - 1
    ends = dataset.episode_starts[episode + 1]
    terminated = np.asarray(dataset.transitions.terminations, dtype=bool)[ends - 1]
    data_survival = np.where(terminated, np.minimum(ends - starts, config.ope_horizon), config.ope_horizon)
    return {"model": np.asarray(model, float), "real": np.asarray(real, float),
            "saturation": np.asarray(saturation, float),
            "data_from_starts": float(data_survival.mean()), "horizon": int(config.ope_horizon)}


def _survival_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over a dataset's runs: mean survival in the model, of the data from the same states, and real
    from reset; their rank correlation over member-rounds; and the model's survival of the member-rounds
    that really fell within half the horizon against the others'."""
    from hybridrl.experiments.statistics import spearman

    model = np.concatenate([run["model"] for run in runs])
    real = np.concatenate([run["real"] for run in runs])
    saturation = np.concatenate([run["saturation"] for run in runs])
    fell = real < runs[0]["horizon"] / 2

    def mean_saturation(rows: np.ndarray) -> float | None:
        """Mean over the rows that logged it (runs from before it was logged have none)."""
        values = saturation[rows & np.isfinite(saturation)]
        return float(values.mean()) if values.size else None

    return {"model_survival": float(model.mean()), "data_survival_from_amq_starts":
            float(np.mean([run["data_from_starts"] for run in runs])), "real_survival_from_reset": float(real.mean()),
            "spearman_model_real": spearman(model, real), "member_rounds": int(model.size),
            "member_rounds_that_fell": int(fell.sum()),
            "model_survival_of_those_that_fell": float(model[fell].mean()) if fell.any() else None,
            "model_survival_of_the_others": float(model[~fell].mean()) if (~fell).any() else None,
            "mean_action_saturation_of_those_that_fell": mean_saturation(fell),
            "mean_action_saturation_of_the_others": mean_saturation(~fell),
            "horizon": runs[0]["horizon"], "runs": len(runs)}


def _mean_and_values(values: list[float]) -> dict[str, Any]:
    finite = [value for value in values if np.isfinite(value)]
    return {"mean": float(np.mean(finite)) if finite else float("nan"), "seeds": len(values),
            "values": [round(value, 3) for value in values]}


def _comparisons(methods: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Plain verdicts from the IQM intervals: Uni-O4 against its own BC start, the BC baseline and IQL."""
    def verdict(first: str, second: str) -> str:
        a, b = methods.get(first), methods.get(second)
        if a is None or b is None:
            return "not run"
        if min(a["seeds"], b["seeds"]) < 2:  # one seed has no interval: a difference is not resolved
            return f"{first} {'≥' if a['iqm'] >= b['iqm'] else '<'} {second} (one seed: no interval)"
        if a["iqm_low"] > b["iqm_high"]:
            return f"{first} > {second} (intervals apart)"
        if a["iqm_high"] < b["iqm_low"]:
            return f"{first} < {second} (intervals apart)"
        return f"{first} {'≥' if a['iqm'] >= b['iqm'] else '<'} {second} by IQM, intervals overlap"

    return {"uni-o4 vs its bc start": verdict("uni-o4", "uni-o4 bc start"), "uni-o4 vs bc": verdict("uni-o4", "bc"),
            "uni-o4 vs iql": verdict("uni-o4", "iql"),
            "uni-o4 vs iql, reward-scaled": verdict("uni-o4", "iql, reward-scaled"),
            "released selection vs iql": verdict("released selection", "iql")}


def _env_of(dataset: str) -> str:
    from hybridrl.data.generation import parse_dataset_name

    return parse_dataset_name(dataset)[2]


def _online_summary(methods: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, Any]:
    """Per method: the score before fine-tuning (Uni-O4's step 0), the lowest score in the first
    quarter of the budget (the initial drop), the final score and the curve's average (AUC)."""
    from hybridrl.experiments.statistics import area_under_curve

    summary: dict[str, Any] = {}
    for method, runs in methods.items():
        start, lowest, final, auc = [], [], [], []
        for steps, scores in runs:
            valid = ~np.isnan(scores)
            first_quarter = valid & (steps <= steps.max() / 4)
            start.append(float(scores[0]) if valid[0] else float("nan"))
            lowest.append(float(np.min(scores[first_quarter])) if first_quarter.any() else float("nan"))
            final.append(float(scores[valid][-1]))
            auc.append(area_under_curve(steps[valid], scores[valid]))
        summary[method] = {"start": iqm_summary(start) if not np.isnan(start).any() else None,
                           "lowest_in_first_quarter": iqm_summary(lowest) if not np.isnan(lowest).any() else None,
                           "final": iqm_summary(final), "auc": iqm_summary(auc)}
    return summary


def write_report(offline: dict[str, Any], comparisons: dict[str, Any], fidelity: dict[str, Any],
                 amq_points: dict[str, list[tuple[np.ndarray, np.ndarray]]], online: dict[str, Any],
                 curves: dict[str, Any], folder: Path, arguments: argparse.Namespace,
                 survival: dict[str, Any] | None = None, critic_actions: dict[str, Any] | None = None) -> Path:
    """report.md: the offline table with its verdicts, AM-Q's rank correlation with true return (and its
    scatter), the online table and the fine-tuning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)

    def cell(entry: dict[str, Any] | None) -> str:
        if entry is None:
            return "–"
        return (f"{entry['iqm']:.1f} [{entry['iqm_low']:.1f}, {entry['iqm_high']:.1f}] "
                f"(mean {entry['mean']:.1f}, n={entry['seeds']})")

    columns = ("data", "bc", "iql", "iql, reward-scaled", "uni-o4 bc start", "uni-o4", "released selection")
    lines = [f"# Uni-O4 at `{arguments.preset}` scale", "",
             f"Seeds: {arguments.seeds}. Scores: normalised with each dataset's measured random and expert returns "
             "(0 = random, 100 = expert); each run's score is its final evaluation over "
             f"{arguments.final_eval_episodes} episodes; IQM over seeds with a 95% bootstrap interval. *data*: the "
             "dataset's own episodes; *uni-o4 bc start*: Uni-O4's BC ensemble before offline PPO (its last "
             "10-episode evaluation); *uni-o4*: the policy the AM-Q gate returns (this issue's rule); *released "
             "selection*: from the same run, the released code's choice, AM-Q's top 3 screened with 10 real episodes "
             "each (a small online budget), scored on the same final episodes (runs from December 2026 on); "
             "*iql, reward-scaled*: IQL with the IQL code's locomotion rewards (x 1000 / the dataset's range of "
             "episode returns), before its fine-tuning. "
             "Generated by "
             "`python benchmarks/uni_o4.py`.", "", "## Offline", "",
             "| dataset | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for dataset, methods in offline.items():
        lines.append(f"| {dataset} | " + " | ".join(cell(methods.get(m)) for m in columns) + " |")
    lines += ["", "| dataset | Uni-O4 vs its BC start | Uni-O4 vs BC | Uni-O4 vs IQL (the paper: Uni-O4 > IQL) "
              "| Uni-O4 vs IQL, reward-scaled | released selection vs IQL |", "|---|---|---|---|---|---|"]
    lines += [f"| {dataset} | {entry['uni-o4 vs its bc start']} | {entry['uni-o4 vs bc']} | {entry['uni-o4 vs iql']} "
              f"| {entry['uni-o4 vs iql, reward-scaled']} | {entry['released selection vs iql']} |"
              for dataset, entry in comparisons.items()]
    if fidelity:
        lines += ["", "## AM-Q against the true return", "",
                  "At every AM-Q round each member's offline policy is also run for "
                  f"{arguments.ope_true_episodes} real episodes. Spearman rank correlation of AM-Q with the true "
                  "return, mean over seeds: pooled over every member-round, across members within a round, and "
                  "over time within a member.", "",
                  "| dataset | pooled | within rounds | over time | seeds |", "|---|---|---|---|---|"]
        for dataset, entry in fidelity.items():
            values = [f"{entry[name]['mean']:+.2f}" if name in entry else "–"
                      for name in ("pooled", "within_rounds", "over_time")]
            seeds = max(item["seeds"] for item in entry.values())
            lines.append(f"| {dataset} | " + " | ".join(values) + f" | {seeds} |")
        populated = {dataset: runs for dataset, runs in amq_points.items() if any(len(x) for x, _ in runs)}
        if populated:
            figure, axes = plt.subplots(1, len(populated), figsize=(3.8 * len(populated), 3.3), squeeze=False)
            for axis, (dataset, runs) in zip(axes[0], populated.items(), strict=False):
                for seed, (scores, returns) in enumerate(runs):
                    axis.scatter(scores, returns, s=6, alpha=0.5, label=f"run {seed}")
                axis.set_title(dataset, fontsize=9)
                axis.set_xlabel("AM-Q score")
                axis.set_ylabel("true normalised return")
            figure.tight_layout()
            figure.savefig(folder / "amq_vs_true.png", dpi=110)
            plt.close(figure)
            lines += ["", "![AM-Q score against true return, every member at every round, one colour per run]"
                          "(amq_vs_true.png)"]
    if survival:
        lines += ["", "## Survival in the model", "",
                  "Steps a member's branches stay alive within AM-Q's horizon: in the model from AM-Q's start states "
                  "(random dataset states); the dataset's own survival from those same states (steps to the end of "
                  "their episodes where they ended in a fall), which a behaviour-like policy's model survival "
                  "should match; and in the real env from reset (not comparable with the two before: a reset is "
                  "the start of an episode, a random state is half-way). *fell*: member-rounds whose real "
                  "episodes ended within half the horizon; does the model see it? *saturation*: the share of mean "
                  "action components within 1 % of the bounds at AM-Q's start states (logged from December 2026).",
                  "",
                  "| dataset | horizon | model | data, same states | real, from reset | Spearman model-real "
                  "| fell / member-rounds | model survival: fell vs others | saturation: fell vs others |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for dataset, entry in survival.items():
            fell = entry["model_survival_of_those_that_fell"]
            contrast = (f"{fell:.0f} vs {entry['model_survival_of_the_others']:.0f}" if fell is not None else "–")
            saturated, others = (entry["mean_action_saturation_of_those_that_fell"],
                                 entry["mean_action_saturation_of_the_others"])
            saturation = (f"{saturated:.2f} vs {others:.2f}" if saturated is not None and others is not None
                          else "–")
            lines.append(f"| {dataset} | {entry['horizon']} | {entry['model_survival']:.0f} | "
                         f"{entry['data_survival_from_amq_starts']:.0f} | {entry['real_survival_from_reset']:.0f} | "
                         f"{entry['spearman_model_real']:+.2f} | {entry['member_rounds_that_fell']} / "
                         f"{entry['member_rounds']} | {contrast} | {saturation} |")
    if critic_actions:
        lines += ["", "## Critic's actions in offline PPO: clipped (ours) vs raw (the released code's)", "",
                  "The main sweep's Uni-O4 (`--ppo-critic-actions clip`: the reference's sampled actions clipped to "
                  "the bounds before Q) against the same offline phase with the raw Gaussian samples "
                  "(`--ppo-critic-actions raw`, the `critic-actions` sweep). *outside*: the mean share of sampled "
                  "action components outside [-1, 1] over offline PPO.", "",
                  "| dataset | critic's actions | offline score | released selection | AM-Q Spearman | outside |",
                  "|---|---|---|---|---|---|"]
        for dataset, modes in critic_actions.items():
            for mode, facts in modes.items():
                if mode == "raw - clip, paired":
                    cells = [f"{entry['absolute']:+.1f} [{entry['low']:+.1f}, {entry['high']:+.1f}] "
                             f"(n={entry['seeds']})" if (entry := facts.get(name)) else "–"
                             for name in ("offline score", "released selection")]
                    lines.append(f"| {dataset} | raw − clip, same seeds (mean [95% CI]) | "
                                 + " | ".join(cells) + " | – | – |")
                    continue
                cells = [cell(facts.get(name)) for name in ("offline score", "released selection")]
                spearman, outside = facts.get("amq spearman"), facts.get("actions outside bounds")
                cells += [f"{spearman['mean']:+.2f}" if spearman else "–", f"{outside['mean']:.2f}" if outside else "–"]
                lines.append(f"| {dataset} | {mode} | " + " | ".join(cells) + " |")
    if online:
        lines += ["", f"## Online fine-tuning ({arguments.online_steps:,} env steps)", "",
                  "| dataset | method | before fine-tuning | lowest in first quarter | final "
                  "| average over the curve |",
                  "|---|---|---|---|---|---|"]
        for dataset, methods in online.items():
            for method, entry in methods.items():
                lines.append(f"| {dataset} | {method} | {cell(entry['start'])} | "
                             f"{cell(entry['lowest_in_first_quarter'])} | {cell(entry['final'])} "
                             f"| {cell(entry['auc'])} |")
        figure, axes = plt.subplots(1, len(curves), figsize=(4.4 * len(curves), 3.3), squeeze=False)
        for axis, (dataset, methods) in zip(axes[0], curves.items(), strict=False):
            for method, runs in methods.items():
                grid = runs[0][0]
                stacked = np.stack([np.interp(grid, steps, scores) for steps, scores in runs])
                with warnings.catch_warnings():  # PPO from scratch has no score before its first step
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean, low, high = (np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0))
                colour = ONLINE_COLOURS.get(method)
                axis.plot(grid, mean, label=f"{method} (n={len(runs)})", color=colour)
                axis.fill_between(grid, low, high, alpha=0.2, color=colour)
            level = offline.get(dataset, {}).get("data")
            if level is not None:
                axis.axhline(level["mean"], color="grey", linestyle=":", label="data")
            axis.set_title(dataset, fontsize=9)
            axis.set_xlabel("environment steps")
            axis.set_ylabel("normalised score")
            axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / "online.png", dpi=110)
        plt.close(figure)
        lines += ["", "![online fine-tuning: mean over seeds, band = min..max](online.png)", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    main()
