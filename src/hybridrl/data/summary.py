"""Summaries of a dataset (its data card): size, episodes, return and length distributions,
actions at the bounds, the behaviour policies' returns, reference scores, and, for a replay
buffer, its composition by training stage; as text, JSON and a PNG."""

from __future__ import annotations

import os
from pathlib import Path
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
    ``d4rl_normalized_return_mean`` (D4RL's published constants, for comparison) for the D4RL tasks;
    ``return_quantiles`` (5th to 95th percentile), ``actions_at_bounds`` (the share of action
    components exactly at a bound of the env's Box, or at +-1 where the env is unknown),
    ``behaviour_returns`` of generated datasets, and ``stages`` (the episodes in five consecutive
    parts of the data, in the order they were collected: for a replay buffer, its composition by
    training stage).
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
        "return_quantiles": _quantiles(returns),
        "length": _distribution(lengths),
        "actions_at_bounds": actions_at_bounds(arrays["actions"], info.env_id),
        "stages": stages(returns, dataset.episode_lengths, dataset.num_episodes),
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
    for key in ("seed", "preset", "behaviour_policy", "generation_time_s", "medium_replay_source"):
        if key in info.extra:
            summary[key] = info.extra[key]
    behaviour = {name: {"deterministic": info.extra[f"{name}_eval_return"],
                        "stochastic": info.extra.get(f"{name}_stochastic_return")}
                 for name in ("medium", "expert") if info.extra.get(f"{name}_eval_return") is not None}
    if behaviour:
        summary["behaviour_returns"] = behaviour
    return summary


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    levels = (5, 10, 25, 50, 75, 90, 95)
    return {f"p{level}": float(value) for level, value in zip(levels, np.percentile(values, levels), strict=True)}


def actions_at_bounds(actions: np.ndarray, env_id: str | None) -> float | None:
    """The share of continuous action components exactly at a bound of ``env_id``'s Box (at +-1
    where the env cannot be made); None for discrete actions. Clipped Gaussian samples pile up
    there; tanh-squashed ones almost never reach it."""
    if not np.issubdtype(actions.dtype, np.floating) or actions.size == 0:
        return None
    low, high = -1.0, 1.0
    if env_id:
        try:
            from hybridrl.envs.factory import make_env

            env = make_env(env_id)
            low, high = env.action_space.low, env.action_space.high  # type: ignore[attr-defined]
            env.close()
        except Exception:  # an env this install cannot make: fall back to [-1, 1]
            pass
    return float(np.mean((actions <= low) | (actions >= high)))


def stages(returns: np.ndarray, lengths: np.ndarray, episodes: int, count: int = 5) -> list[dict[str, float]]:
    """The episodes in ``count`` consecutive parts of the data with about equal transitions each:
    first row, episodes, and mean / min / max return per part."""
    if episodes == 0:
        return []
    ends = np.cumsum(lengths)
    part = np.minimum((ends - 1) * count // max(int(ends[-1]), 1), count - 1)
    result = []
    for index in range(count):
        chosen = part == index
        if not chosen.any():
            continue
        first = int(np.flatnonzero(chosen)[0])
        result.append({"first_transition": int(ends[first] - lengths[first]), "episodes": int(chosen.sum()),
                       "return_mean": float(returns[chosen].mean()), "return_min": float(returns[chosen].min()),
                       "return_max": float(returns[chosen].max())})
    return result


def card_path(dataset_path: Path) -> Path:
    """Where a dataset's card goes: ``data_card.png`` in a Minari dataset's folder, ``<file>.card.png``
    beside a D4RL file."""
    return dataset_path / "data_card.png" if dataset_path.is_dir() else dataset_path.with_suffix(".card.png")


def write_card(dataset: Dataset, summary: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The data card as a PNG at ``path``: histograms of episode returns, episode lengths and action
    components (bounds marked), and the episode returns in the order they were collected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    returns, lengths = dataset.episode_returns(), dataset.episode_lengths
    actions = np.asarray(dataset.to_numpy()["actions"])
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=110)
    axes[0, 0].hist(returns, bins=40, color="tab:blue")
    axes[0, 0].set(xlabel="episode return", ylabel="episodes", title="returns")
    axes[0, 1].hist(lengths, bins=40, color="tab:green")
    axes[0, 1].set(xlabel="episode length", ylabel="episodes", title="lengths")
    if np.issubdtype(actions.dtype, np.floating):
        axes[1, 0].hist(actions.ravel(), bins=60, color="tab:purple")
        share = summary.get("actions_at_bounds")
        title = "action components" + (f" ({100 * share:.2f} % at a bound)" if share is not None else "")
        axes[1, 0].set(xlabel="action component", ylabel="count", title=title, yscale="log")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    axes[1, 1].scatter(starts, returns, s=4, color="tab:orange")
    for stage in summary.get("stages", [])[1:]:
        axes[1, 1].axvline(stage["first_transition"], color="grey", linewidth=0.8, alpha=0.6)
    axes[1, 1].set(xlabel="first transition of the episode", ylabel="episode return",
                   title="returns in collection order (stages marked)")
    figure.suptitle(f"{summary['dataset_id']}: {summary['transitions']:,} transitions, "
                    f"{summary['episodes']:,} episodes")
    figure.tight_layout()
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    os.replace(temporary, path)
    return path


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
    quantiles = summary.get("return_quantiles")
    if quantiles:
        lines.append("return pct.  " + ", ".join(f"{name} {value:.1f}" for name, value in quantiles.items()))
    if summary.get("actions_at_bounds") is not None:
        lines.append(f"at bounds    {100 * summary['actions_at_bounds']:.2f} % of action components")
    for name, values in summary.get("behaviour_returns", {}).items():
        stochastic = values.get("stochastic")
        lines.append(f"{name + ' pol.':12s} return {values['deterministic']:.1f} deterministic"
                     + (f", {stochastic:.1f} stochastic" if stochastic is not None else "")
                     + " (at its snapshot)")
    if len(summary.get("stages", [])) > 1:
        lines.append("stages       " + "; ".join(
            f"from {stage['first_transition']:,}: {stage['episodes']} ep., mean {stage['return_mean']:.1f}"
            for stage in summary["stages"]))
    if summary.get("medium_replay_source"):
        lines.append(f"buffer       {summary['medium_replay_source']}")
    for key in ("seed", "preset"):
        if key in summary:
            lines.append(f"{key:12s} {summary[key]}")
    if "card" in summary:
        lines.append(f"card         {summary['card']}")
    if "generation_time_s" in summary:
        lines.append(f"generated in {summary['generation_time_s']} s (collection; behaviour policies trained before)")
    return "\n".join(lines)
