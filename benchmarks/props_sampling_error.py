"""Sampling error with a fixed target: on-policy sampling vs PROPS vs ROS, and how the reduction
depends on the target's width, via the sweep machinery.

The paper's fixed-target experiment: the target is a trained expert that is never updated; the
buffer holds b = 16 batches of n = 1024 steps (16,384 transitions) from one env; the sampling
error KL(pi_D || pi_theta) of the buffer is measured every 1024 steps up to 32,768 steps. The
paper's claim: PROPS 30-45% below on-policy sampling; ROS no better than on-policy (numbers from
the authors' released runs, 5 seeds, value at 32k steps, in PAPER below).

**Targets** (`--targets`): ``paper-like`` (default) are the shipped experts of
`benchmarks/props_targets.py` (PPO with entropy 0.01 and step size 1e-4 on one env, as the paper's
were: policy std about 1); ``ppo-cpu`` are our earlier experts (`ppo --preset cpu`, no entropy
bonus, 1M steps, trained here if missing in benchmarks/runs/props_experts/), kept to reproduce the
earlier records.

**Protocol** (`--protocol`): ``released`` (default) is the released `se_fixed` configs' PROPS:
m = 256, delta 0.05, lambda 0.1, behaviour lr 1e-3, 16 epochs x 32 minibatches; ``ours`` is the
lambda 0.3, 16 minibatches this benchmark used before.

**Width sweep**: on-policy sampling and PROPS also run against the same target with its std scaled
by e^-1 and e^-2 (`--fixed-target-std-scale`), so the reduction is measured against the target's
width. ``props-lr-scaled`` is PROPS whose behaviour step of the mean scales with the target's
geometric-mean std (`--behaviour-lr-std-reference 1`: the paper's step size at std 1, the width
of its targets), the remedy for a behaviour update that otherwise reaches its KL stop after ever
fewer steps as the target narrows. ROS runs at the target's own width only.

The report gives, per env and width, the sampling error at the last step and averaged over the
eviction phase (steps after the buffer first fills, 16,384 < t <= 32,768), with 95% bootstrap
intervals over seeds, and the reduction against on-policy sampling at the same width.

Resumable and recorded like every sweep benchmark: records in
benchmarks/results/props_sampling_error/<env>-<targets>-<protocol>/runs/, the report (Markdown +
PNG) in benchmarks/results/props_sampling_error/, the summary in
benchmarks/results/props_sampling_error.json.

    python benchmarks/props_sampling_error.py --seeds 5 --workers 2 [--envs Hopper-v5 Walker2d-v5 HalfCheetah-v5]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS_DIR, peak_memory_mb, recorded_sweep, sweep_or_records, write_result
from props_targets import target_dir

NAME = "props_sampling_error"
REPOSITORY = Path(__file__).resolve().parent.parent
EXPERTS = Path("benchmarks/runs/props_experts")
#: The fixed-target protocol (section 2 of the reference notes): buffer 16 x 1024, 32k steps, the
#: error every 1024 steps; PROPS with m = 256, delta 0.05, behaviour lr 1e-3, 16 epochs.
PROTOCOL: dict[str, Any] = dict(
    total_steps=32_768, num_envs=1, num_steps=1024, buffer_batches=16, sampling_error_interval=1024,
    behaviour_num_steps=256, behaviour_target_kl=0.05, behaviour_learning_rate=1e-3, behaviour_update_epochs=16,
    eval_interval=0, eval_episodes=2, checkpoint_interval=8192,
    # The target never updates, so the ordering of the behaviour reference and the PPO KL check
    # change nothing; pinned to their old defaults so that the records made before stay valid.
    stale_target=False, target_kl_check="epoch",
)
#: lambda and minibatches: the released se_fixed configs, or what this benchmark used before.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "released": {"behaviour_kl_coef": 0.1, "behaviour_num_minibatches": 32},
    "ours": {"behaviour_kl_coef": 0.3, "behaviour_num_minibatches": 16},
}
#: Std scales of the width sweep (1 = the target as trained).
WIDTHS = {"": 1.0, "-std-e-1": math.exp(-1.0), "-std-e-2": math.exp(-2.0)}
#: ``props-lr-scaled``: the behaviour step of the mean scaled by the target's geometric-mean std over
#: this, the std of an untrained policy (log-std 0) and of the paper's targets, whose fixed step
#: size (1e-3) was chosen for that width.
LR_STD_REFERENCE = 1.0
#: The eviction phase: after the buffer (16 x 1024 steps) first fills.
EVICTION_FROM = 16 * 1024
PAPER = {  # mean of 5 seeds at 32k steps, v4 tasks, released data (data/se_fixed), k3 estimator
    "Hopper": {"on-policy": 0.0072, "props": 0.0039, "ros (best lr)": 0.0064},
    "Walker2d": {"on-policy": 0.0173, "props": 0.0101, "ros (best lr)": 0.0170},
    "HalfCheetah": {"on-policy": 0.0160, "props": 0.0103, "ros (best lr)": 0.0150},
}


def variants() -> dict[str, dict[str, Any]]:
    """on-policy, PROPS and PROPS with the width-scaled behaviour step at every width, ROS at the
    target's own width (two step sizes)."""
    table: dict[str, dict[str, Any]] = {}
    for suffix, scale in WIDTHS.items():
        width = {"fixed_target_std_scale": scale} if scale != 1.0 else {}
        table[f"on-policy{suffix}"] = {"sampling": "on-policy", **width}
        table[f"props{suffix}"] = {"sampling": "props", **width}
        table[f"props-lr-scaled{suffix}"] = {"sampling": "props", "behaviour_lr_std_reference": LR_STD_REFERENCE,
                                             **width}
    table["ros-lr1e-3"] = {"sampling": "ros", "behaviour_learning_rate": 1e-3}
    table["ros-lr1e-2"] = {"sampling": "ros", "behaviour_learning_rate": 1e-2}
    return table


def ppo_cpu_expert(env: str) -> Path:
    """Our earlier expert of ``env``: `ppo --preset cpu`, trained once, then reused."""
    from hybridrl import runs

    run_dir = EXPERTS / env
    if not runs.is_finished(run_dir):
        if (run_dir / "config.json").is_file():
            runs.resume(run_dir)
        else:
            runs.train("ppo", preset="cpu", run_dir=run_dir, env=env, seed=1)
    return run_dir


def fixed_target(env: str, targets: str) -> tuple[Path, bool]:
    """The target's run directory and whether its policy has a tanh on the mean."""
    if targets == "ppo-cpu":
        return ppo_cpu_expert(env), False
    folder = target_dir(env)
    if not (folder / "checkpoint.ckpt").is_file():
        raise SystemExit(f"no shipped target for {env} in {folder}: run `python benchmarks/props_targets.py train "
                         f"--envs {env}` and `... export --envs {env}`, or pass --targets ppo-cpu")
    # Relative to the repository, so that records restored on another machine name the same target.
    return (folder.relative_to(REPOSITORY) if folder.is_relative_to(REPOSITORY) else folder), True


def _curves(output: Path) -> dict[str, dict[int, list[float]]]:
    """variant -> step -> sampling error per seed."""
    from hybridrl.core.logging import read_metrics
    from hybridrl.experiments.results import find_run_dirs

    curves: dict[str, dict[int, list[float]]] = {}
    for run_dir in find_run_dirs(output):
        for line in read_metrics(run_dir):
            if "sampling_error" in line:
                curves.setdefault(run_dir.parent.name, {}).setdefault(int(line["step"]), []).append(
                    float(line["sampling_error"]))
    return curves


def _interval(values: list[float] | np.ndarray) -> dict[str, float]:
    from hybridrl.experiments.statistics import confidence_interval, mean_score

    estimate, lower, upper = confidence_interval([np.asarray(values)], mean_score)
    return {"mean": float(estimate), "lower": float(lower), "upper": float(upper), "runs": len(values)}


def summarize(curves: dict[str, dict[int, list[float]]]) -> dict[str, Any]:
    """Per variant: the error at the last step and averaged over the eviction phase (per seed, then
    over seeds), and the reduction against on-policy sampling at the same width."""
    summary: dict[str, Any] = {}
    for variant, steps in curves.items():
        final_step = max(steps)
        eviction = [step for step in sorted(steps) if step > EVICTION_FROM]
        per_seed = np.asarray([steps[step] for step in eviction]).mean(axis=0) if eviction else np.asarray([])
        summary[variant] = {"at_end": _interval(steps[final_step]), "final_step": final_step,
                            "eviction_phase": _interval(per_seed) if per_seed.size else None}
    for variant, entry in summary.items():
        suffix = next((suffix for suffix in sorted(WIDTHS, key=len, reverse=True) if variant.endswith(suffix)), "")
        reference = summary.get(f"on-policy{suffix}")
        if reference is None:
            continue
        entry["std_scale"] = WIDTHS[suffix]
        entry["reduction_at_end"] = 1.0 - entry["at_end"]["mean"] / reference["at_end"]["mean"]
        if entry["eviction_phase"] and reference["eviction_phase"]:
            entry["reduction_eviction_phase"] = (1.0 - entry["eviction_phase"]["mean"]
                                                 / reference["eviction_phase"]["mean"])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--targets", choices=("paper-like", "ppo-cpu"), default="paper-like")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="released")
    parser.add_argument("--total-steps", type=int, default=PROTOCOL["total_steps"])
    parser.add_argument("--fit-epochs", type=int, default=1000,
                        help="Adam steps of each maximum-likelihood fit (the NeurIPS configs used 1000)")
    parser.add_argument("--variants", nargs="+", choices=sorted(variants()), default=None,
                        help="run only these variants (the others' finished runs are still reported)")
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs, run nothing")
    arguments = parser.parse_args()
    os.chdir(REPOSITORY)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results: dict[str, Any] = {}
    setting = f"{arguments.targets}-{arguments.protocol}"
    figure, axes = plt.subplots(1, len(arguments.envs), figsize=(5 * len(arguments.envs), 3.6), squeeze=False)
    for env, axis in zip(arguments.envs, axes[0], strict=True):
        target, tanh_mean = fixed_target(env, arguments.targets)
        mapping = {
            "name": f"{NAME}-{env}-{setting}", "output": f"benchmarks/runs/{NAME}/{env}-{setting}",
            "algorithm": "props", "env": env, "preset": "paper", "seeds": arguments.seeds,
            "variants": variants(),
            "overrides": {**PROTOCOL, **PROTOCOLS[arguments.protocol], "fixed_target": str(target),
                          "policy_tanh_mean": tanh_mean, "sampling_error_epochs": arguments.fit_epochs,
                          "total_steps": arguments.total_steps},
        }
        keep = ("sampling_error", "eval/return_mean")
        if not arguments.report_only:
            chosen = {name: values for name, values in mapping["variants"].items()
                      if arguments.variants is None or name in arguments.variants}
            recorded_sweep(f"{NAME}/{env}-{setting}", {**mapping, "variants": chosen}, keep=keep,
                           workers=arguments.workers)
        spec = sweep_or_records(f"{NAME}/{env}-{setting}", mapping, keep, arguments.workers, report_only=True)
        curves = _curves(spec.output)
        means = {variant: {str(step): float(np.mean(values)) for step, values in sorted(steps.items())}
                 for variant, steps in curves.items()}
        results[env] = {"target": str(target), "summary": summarize(curves), "curves": means}
        for variant, steps in sorted(curves.items()):
            x = np.array(sorted(steps))
            values = [np.asarray(steps[step]) for step in x]
            mean = np.array([v.mean() for v in values])
            sem = np.array([v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for v in values])
            style = ":" if "std-e-2" in variant else "--" if "std-e-1" in variant else "-"
            axis.plot(x, mean, linestyle=style, label=variant)
            axis.fill_between(x, mean - 1.96 * sem, mean + 1.96 * sem, alpha=0.15)
        axis.axvline(EVICTION_FROM, color="grey", linewidth=0.8)
        axis.set(title=f"{env}: fixed {arguments.targets} target", xlabel="env steps",
                 ylabel="sampling error KL(pi_D || pi)", yscale="log")
        axis.legend(fontsize=6)
    figure.tight_layout()
    folder = RESULTS_DIR / NAME
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / f"sampling_error-{setting}.png", dpi=120)
    plt.close(figure)
    report = write_report(results, arguments, setting)
    write_result(NAME, list(range(arguments.seeds)), {
        "benchmark": NAME, "envs": arguments.envs, "targets": arguments.targets, "protocol": arguments.protocol,
        "settings": {**PROTOCOL, **PROTOCOLS[arguments.protocol]},
        "variants": variants(),
        "fit_epochs": arguments.fit_epochs, "results": results, "report": str(report.relative_to(REPOSITORY)),
        "paper": PAPER, "peak_memory_mb": peak_memory_mb(),
    })


def write_report(results: dict[str, Any], arguments: argparse.Namespace, setting: str) -> Path:
    """report.md: per env, every variant's error at the end and over the eviction phase, and the width table."""
    def cell(entry: dict[str, float] | None) -> str:
        return "–" if not entry else f"{entry['mean']:.4f} [{entry['lower']:.4f}, {entry['upper']:.4f}]"

    protocol = PROTOCOLS[arguments.protocol]
    lines = ["# PROPS: sampling error with a fixed target", "",
             f"`python benchmarks/props_sampling_error.py --seeds {arguments.seeds} --targets {arguments.targets} "
             f"--protocol {arguments.protocol}`: buffer of 16 x 1024 steps, sampling error every 1024 steps up to "
             f"{arguments.total_steps:,}, {arguments.seeds} seeds; PROPS with lambda "
             f"{protocol['behaviour_kl_coef']} and {protocol['behaviour_num_minibatches']} minibatches. Mean over "
             "seeds with a 95% bootstrap interval, at "
             "the last step and averaged over the eviction phase (after the buffer first fills); reductions are "
             "against on-policy sampling at the same target width.", "",
             "| env | method | target std x | SE at the end | reduction | SE over the eviction phase | reduction "
             "| paper (v4, 5 seeds, at 32k) |", "|---|---|---|---|---|---|---|---|"]
    for env, result in results.items():
        family = env.split("-")[0]
        for variant, entry in sorted(result["summary"].items(), key=lambda item: (item[1].get("std_scale", 1.0) < 1,
                                                                                 item[0])):
            base = variant.split("-std")[0]
            paper_key = "props" if base == "props" else ("ros (best lr)" if base.startswith("ros") else base)
            paper = PAPER.get(family, {}).get(paper_key, "") if entry.get("std_scale", 1.0) == 1.0 else ""
            reduction = f"{entry['reduction_at_end']:+.0%}" if "reduction_at_end" in entry else "–"
            eviction = (f"{entry['reduction_eviction_phase']:+.0%}" if "reduction_eviction_phase" in entry else "–")
            scale = entry.get("std_scale", 1.0)
            lines.append(f"| {env} | {base} | {scale:.3f} | {cell(entry['at_end'])} | {reduction} | "
                         f"{cell(entry['eviction_phase'])} | {eviction} | {paper} |")
    lines += ["", "Target width sweep: PROPS's reduction against on-policy sampling over the eviction phase "
              f"(`props-lr-scaled`: the mean's behaviour step scaled by the target's std over {LR_STD_REFERENCE}, "
              "`--behaviour-lr-std-reference`).", "",
              "| env | method | " + " | ".join(f"std x {scale:.3f}" for scale in WIDTHS.values()) + " |",
              "|---" * (len(WIDTHS) + 2) + "|"]
    for env, result in results.items():
        for method in ("props", "props-lr-scaled"):
            cells = []
            for suffix in WIDTHS:
                name = f"{method}{suffix}"
                entry = result["summary"].get(name, {})
                cells.append(f"{entry['reduction_eviction_phase']:+.0%}" if "reduction_eviction_phase" in entry
                             else "–")
            if method == "props" or any(cell != "–" for cell in cells):
                lines.append(f"| {env} | {method} | " + " | ".join(cells) + " |")
    lines += ["", f"![Sampling error over steps](sampling_error-{setting}.png)", ""]
    path = RESULTS_DIR / NAME / f"report-{setting}.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    main()
