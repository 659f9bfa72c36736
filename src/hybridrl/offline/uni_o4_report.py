"""What a Uni-O4 run produced, as one figure and one line: the offline stages (BC, offline PPO with
each member's AM-Q score and, where measured, its true return) and online fine-tuning, each beside
the data's own level (the mean normalised return of the dataset's episodes).

``hybridrl train uni-o4`` writes the figure as the run's ``learning_curve.png`` and prints the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hybridrl.core.logging import read_metrics

SCORE = "eval/normalized_score"


def summary_line(final: dict[str, Any]) -> str:
    """``offline score X (BC Y), online score Z after N env steps; the data's own level W``."""
    parts = []
    if "offline/eval/normalized_score" in final:
        offline = f"offline score {final['offline/eval/normalized_score']:.1f}"
        if "offline/bc_normalized_score" in final:
            offline += f" (BC {final['offline/bc_normalized_score']:.1f})"
        parts.append(offline)
    if final.get("step") and SCORE in final:
        parts.append(f"online score {final[SCORE]:.1f} after {int(final['step']):,} env steps")
    if "offline/data_normalized_score" in final:
        parts.append(f"the data's own level {final['offline/data_normalized_score']:.1f}")
    return ", ".join(parts) + " (normalised scores: 0 random, 100 the dataset's expert)"


def plot(run_dir: str | Path, final: dict[str, Any], title: str) -> Path:
    """Write ``run_dir/learning_curve.png``: offline evaluations by stage, AM-Q (and true returns) of
    every member during offline PPO, and the online curve; the data's level dashed throughout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    offline = read_metrics(run_dir)
    online = read_metrics(run_dir / "online") if (run_dir / "online" / "metrics.jsonl").is_file() else []
    data_level = final.get("offline/data_normalized_score")
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)

    def level(axis: Any) -> None:
        if data_level is not None:
            axis.axhline(data_level, color="grey", linestyle="--", linewidth=1, label="the data's level")

    # 1. Offline evaluations, coloured by the stage they came from.
    axis = axes[0]
    for stage, colour in (("bc", "tab:green"), ("ppo", "tab:blue")):
        points = [(line["step"], line[SCORE]) for line in _after_stage(offline, stage) if SCORE in line]
        if points:
            steps, scores = zip(*points, strict=True)
            axis.plot(steps, scores, marker="o", color=colour, label={"bc": "BC", "ppo": "offline PPO"}[stage])
    level(axis)
    axis.set(xlabel="offline gradient steps (all stages)", ylabel="normalised score", title="offline: true return")

    # 2. Offline PPO: every member's AM-Q score per round, and its true return where measured.
    axis = axes[1]
    rounds = [line for line in offline if "ope/score_0" in line]
    members = sum(1 for key in (rounds[0] if rounds else {}) if key.startswith("ope/score_"))
    round_steps = [line["step"] for line in rounds]
    for index in range(members):
        axis.plot(round_steps, [line[f"ope/score_{index}"] for line in rounds], color=f"C{index}",
                  label=f"AM-Q {index}")
    accepted = [line["step"] for line in rounds if line.get("ope/replaced", 0) > 0]
    for step in accepted:
        axis.axvline(step, color="black", alpha=0.15, linewidth=0.8)
    axis.set(xlabel="offline gradient steps", ylabel="AM-Q score", title="offline PPO: AM-Q (lines: accepted)")
    if rounds and "ope/true_return_0" in rounds[0]:
        twin = axis.twinx()
        for index in range(members):
            twin.plot(round_steps, [line[f"ope/true_return_{index}"] for line in rounds],
                      color=f"C{index}", linestyle=":", marker=".")
        twin.set_ylabel("true return (dotted)")
    if members:
        axis.legend(loc="best", fontsize=7)

    # 3. Online fine-tuning from the offline policy (step 0).
    axis = axes[2]
    points = [(line["step"], line[SCORE]) for line in online if SCORE in line]
    if points:
        steps, scores = zip(*points, strict=True)
        axis.plot(steps, scores, marker="o", color="tab:orange", label="Uni-O4 online")
    level(axis)
    axis.set(xlabel="environment steps", ylabel="normalised score", title="online fine-tuning")
    for axis in (axes[0], axes[2]):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize=8)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    path = run_dir / "learning_curve.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def _after_stage(lines: list[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    """Log lines of the stage ``stage`` and its evaluations: from its first own metric to the next
    stage's first."""
    starts = {name: next((line["step"] for line in lines if any(key.startswith(f"{name}/") for key in line)), None)
              for name in ("critic", "dynamics", "bc", "ppo")}
    begin = starts.get(stage)
    if begin is None:
        return []
    later = [step for name, step in starts.items() if step is not None and step > begin]
    end = min(later) if later else np.inf
    return [line for line in lines if begin <= line["step"] < end]
