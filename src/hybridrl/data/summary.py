"""Summaries of a dataset: size, episodes, return and length distributions, reference scores."""

from __future__ import annotations

from typing import Any

import numpy as np

from hybridrl.data.dataset import Dataset
from hybridrl.envs.reference import reference_returns as d4rl_reference_returns


def summarize(dataset: Dataset) -> dict[str, Any]:
    """A JSON-ready summary of ``dataset``.

    Keys: ``dataset_id``, ``env_id``, ``source``, ``transitions``, ``episodes``, ``observation_shape``,
    ``action_shape``, ``terminations``, ``truncations``, ``return`` and ``length`` (each with
    ``mean``, ``std``, ``min``, ``p25``, ``median``, ``p75``, ``max``), ``reference_returns`` and
    ``normalized_return_mean`` where the dataset records references, and ``d4rl_reference_returns`` /
    ``d4rl_normalized_return_mean`` (D4RL's published constants, for comparison) for the D4RL tasks.
    """
    returns = dataset.episode_returns()
    lengths = dataset.episode_lengths.astype(np.float64)
    arrays = dataset.to_numpy()
    info = dataset.info
    summary: dict[str, Any] = {
        "dataset_id": info.dataset_id,
        "env_id": info.env_id,
        "source": info.source,
        "algorithm": info.algorithm,
        "transitions": len(dataset),
        "episodes": dataset.num_episodes,
        "observation_shape": list(dataset.observation_shape),
        "action_shape": list(dataset.action_shape),
        "terminations": int(arrays["terminations"].sum()),
        "truncations": int(arrays["truncations"].sum()),
        "return": _distribution(returns),
        "length": _distribution(lengths),
    }
    if info.reference_returns is not None and len(returns):
        summary["reference_returns"] = {"random": info.reference_returns[0], "expert": info.reference_returns[1],
                                        "source": info.reference_source}
        summary["normalized_return_mean"] = float(np.mean(dataset.normalized_score(returns)))
    published = d4rl_reference_returns(info.env_id) if info.env_id else None
    if published is not None and len(returns):
        random_return, expert_return = published
        summary["d4rl_reference_returns"] = {"random": random_return, "expert": expert_return,
                                             "source": "D4RL's published constants (d4rl/infos.py), for comparison"}
        summary["d4rl_normalized_return_mean"] = float(
            100.0 * (np.mean(returns) - random_return) / (expert_return - random_return))
    for key in ("seed", "preset", "behaviour_policy", "generation_time_s"):
        if key in info.extra:
            summary[key] = info.extra[key]
    return summary


def _distribution(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    quantiles = np.percentile(values, [0, 25, 50, 75, 100])
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "min": float(quantiles[0]),
            "p25": float(quantiles[1]), "median": float(quantiles[2]), "p75": float(quantiles[3]),
            "max": float(quantiles[4])}


def format_summary(summary: dict[str, Any]) -> str:
    """:func:`summarize` output as a few aligned lines of text."""
    lines = [f"dataset      {summary['dataset_id']} ({summary['source']})",
             f"env          {summary['env_id'] or 'not recorded'}"]
    if summary.get("algorithm"):
        lines.append(f"behaviour    {summary['algorithm']}"
                     + (f", {summary['behaviour_policy']}" if summary.get("behaviour_policy") else ""))
    lines += [
        f"size         {summary['transitions']:,} transitions, {summary['episodes']:,} episodes "
        f"({summary['terminations']:,} terminated, {summary['truncations']:,} truncated)",
        f"shapes       observation {tuple(summary['observation_shape'])}, action {tuple(summary['action_shape'])}",
    ]
    for key in ("return", "length"):
        stats = summary[key]
        if stats:
            lines.append(f"{key:12s} mean {stats['mean']:.1f} ± {stats['std']:.1f}; min {stats['min']:.1f}, "
                         f"quartiles {stats['p25']:.1f} / {stats['median']:.1f} / {stats['p75']:.1f}, "
                         f"max {stats['max']:.1f}")
    if "reference_returns" in summary:
        reference = summary["reference_returns"]
        lines.append(f"reference    random {reference['random']:.1f}, expert {reference['expert']:.1f} "
                     f"({reference['source']}); normalised mean return {summary['normalized_return_mean']:.1f}")
    else:
        lines.append("reference    none recorded (no normalised score from the dataset itself)")
    if "d4rl_reference_returns" in summary:
        reference = summary["d4rl_reference_returns"]
        lines.append(f"D4RL ref.    random {reference['random']:.1f}, expert {reference['expert']:.1f} "
                     f"(published constants, for comparison); normalised mean return "
                     f"{summary['d4rl_normalized_return_mean']:.1f}")
    for key in ("seed", "preset"):
        if key in summary:
            lines.append(f"{key:12s} {summary[key]}")
    if "generation_time_s" in summary:
        lines.append(f"generated in {summary['generation_time_s']} s (collection; behaviour policies trained before)")
    return "\n".join(lines)
