"""A run's learning curve as a PNG: evaluation return (and training episode return) vs env steps."""

from __future__ import annotations

from pathlib import Path

from hybridrl.core.logging import read_metrics


def plot_learning_curve(run_dir: str | Path, title: str | None = None) -> Path:
    """Write ``run_dir/learning_curve.png`` from ``metrics.jsonl`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    entries = read_metrics(run_dir)
    train = [(e["step"], e["train/episode_return"]) for e in entries if "train/episode_return" in e]
    evaluation = [(e["step"], e["eval/return_mean"], e.get("eval/return_std", 0.0))
                  for e in entries if "eval/return_mean" in e]
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=120)
    if train:
        steps, returns = zip(*train, strict=True)
        axis.plot(steps, returns, color="tab:blue", alpha=0.45, linewidth=1, label="training episodes (mean)")
    if evaluation:
        steps, means, stds = zip(*evaluation, strict=True)
        axis.errorbar(steps, means, yerr=stds, color="tab:orange", marker="o", markersize=4, capsize=3,
                      linewidth=1.5, label="evaluation (mean ± std)")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("episode return")
    axis.set_title(title or run_dir.name)
    axis.grid(alpha=0.3)
    if train or evaluation:
        axis.legend(loc="best")
    figure.tight_layout()
    path = run_dir / "learning_curve.png"
    figure.savefig(path)
    plt.close(figure)
    return path
