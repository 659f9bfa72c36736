"""SAC behaviour policies made the way D4RL made them (Fu et al. 2020, section 5 and appendix C).

D4RL trained SAC online on each MuJoCo task and kept two policies: the fully trained *expert*, and
a *medium* policy, training stopped once it reached about a third of the expert's return. The
*medium-replay* dataset is the replay buffer of that run up to the medium policy. Here:

1. **Train** SAC (``hybridrl train sac``'s preset, one env, one update per step) for the preset's
   budget, snapshotting the actor every ``snapshot_interval`` steps (and before training). Each
   snapshot is rated by deterministic (mean-action) and stochastic (sampled, squashed) episodes.
   Training checkpoints at every snapshot and resumes from its last one when interrupted.
2. **Choose.** *Expert*: the best snapshot by deterministic return (the latest of equals).
   *Medium*: the snapshot closest to a third of the expert's return among those up to the first
   that reaches it *and is followed by one that also does*, so medium-replay is the buffer of a run
   stopped as soon as it got there to stay. One rating is a few episodes: a snapshot alone above
   the bar can be a lucky rating (Walker2d-v5 seed 0 rated 681 at step 10k, then 275-335 for
   60k steps), which made a 10k-transition medium-replay of a run that had barely started.
3. **Medium-replay**: rows ``[0, medium step)`` of the run's replay buffer (uniform warm-up steps,
   then the learner's own samples), written to ``medium_replay.npz`` when the policies are
   trained. Where only the shipped snapshots exist, :func:`medium_replay_arrays` regenerates the
   buffer by re-running the same SAC run (config and seed) to the medium step; on the machine
   that trained the assets this is the same run bit for bit, elsewhere float round-off makes it
   another run of the same recipe (recorded in the dataset's card).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hybridrl.core.io import atomic_write_bytes, atomic_write_json
from hybridrl.core.seeding import Seeder
from hybridrl.data.policies import BehaviourPolicy
from hybridrl.data.validation import DatasetError
from hybridrl.envs.factory import make_env
from hybridrl.errors import ConfigError

#: Written beside the snapshots as each is rated, so an interrupted training resumes.
PROGRESS_FILE = "snapshots.json"
MEDIUM_REPLAY_FILE = "medium_replay.npz"


@dataclass(frozen=True)
class SACBehaviourPreset:
    """Budget of the SAC run behind a family's datasets.

    :param sac_preset: the ``hybridrl train sac`` preset (networks, batch, step size).
    :param total_steps: SAC's training budget in env steps.
    :param snapshot_interval: env steps between actor snapshots (and checkpoints).
    :param selection_episodes: deterministic and stochastic episodes that rate each snapshot.
    :param learning_starts: uniform-random steps before the first update (None: the preset's).
    :param env_options: per env id, SAC options that differ from the preset's (each with its reason
        in ``docs/datasets.md``); the run's config, recorded with its policies, says what was used.
    """

    sac_preset: str
    total_steps: int
    snapshot_interval: int
    selection_episodes: int
    learning_starts: int | None = None
    env_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def sac_config(env_id: str, settings: SACBehaviourPreset, seed: int) -> Any:
    """The SAC config of the behaviour-policy run of ``env_id``."""
    from hybridrl.algorithms import get_algorithm

    overrides: dict[str, Any] = dict(env=env_id, seed=seed, total_steps=settings.total_steps, eval_interval=0,
                                     checkpoint_interval=settings.snapshot_interval)
    if settings.learning_starts is not None:
        overrides["learning_starts"] = settings.learning_starts
    overrides.update(settings.env_options.get(env_id, {}))
    return get_algorithm("sac").make_config(settings.sac_preset, **overrides)


def rate(policy: BehaviourPolicy, episodes: int, seed: int) -> tuple[float, float]:
    """Mean deterministic and stochastic return of ``policy`` over ``episodes`` seeded episodes each."""
    return (episode_return(policy, episodes, seed, stochastic=False),
            episode_return(policy, episodes, seed, stochastic=True))


def episode_return(policy: BehaviourPolicy, episodes: int, seed: int, stochastic: bool) -> float:
    """Mean return of ``policy``'s mean actions (or sampled ones, with a stream of ``seed``) over
    ``episodes`` episodes reset from seeds of ``seed``."""
    env = make_env(policy.env_id)
    try:
        act = policy.bind(env.action_space)
        seeder = Seeder(seed)
        rng = seeder.numpy("rate/stochastic") if stochastic else None
        total = 0.0
        for reset_seed in seeder.env_seeds("rate", episodes):
            observation, _ = env.reset(seed=reset_seed)
            done = False
            while not done:
                observation, reward, terminated, truncated, _ = env.step(act(observation[None], rng)[0])
                total += float(reward)
                done = bool(terminated or truncated)
        return total / episodes
    finally:
        env.close()


def choose_medium_and_expert(returns: list[float]) -> tuple[int, int]:
    """Indices of the medium and expert snapshots among ``returns`` (deterministic, in training order):
    expert the best (the latest of equals); medium the closest to a third of the expert's return
    among the snapshots up to the first that reaches it and whose successor reaches it too (the
    expert when none does)."""
    values = np.asarray(returns, dtype=np.float64)
    expert = int(len(values) - 1 - np.argmax(values[::-1]))
    target = values[expert] / 3.0
    above = values >= target
    held = np.flatnonzero(above[:-1] & above[1:])
    last = int(held[0]) if len(held) else expert
    medium = int(np.argmin(np.abs(values[: last + 1] - target)))
    return medium, expert


def train(env_id: str, settings: SACBehaviourPreset, seed: int, folder: Path,
          progress: bool = False) -> tuple[list[dict[str, Any]], int, int, float]:
    """Train SAC on ``env_id``, rating a snapshot every ``snapshot_interval`` steps, and write the chosen
    snapshots and the medium-replay buffer into ``folder`` (resuming an interrupted run there).

    :returns: every snapshot's record (step, deterministic and stochastic return, file), the medium
        and expert indices, and the training time in seconds (summed over resumed parts).
    """
    from hybridrl.algorithms import get_algorithm
    from hybridrl.rl.sac import SACTrainer
    from hybridrl.runs import read_run_config, write_run_config

    spec = get_algorithm("sac")
    config = sac_config(env_id, settings, seed)
    run_dir = folder / "sac"
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "config.json").is_file():
        if read_run_config(run_dir)[1] != config:
            raise ConfigError(f"{folder} holds behaviour-policy training of another config; delete it to retrain")
    else:
        write_run_config(run_dir, spec, config)
    checkpoint = run_dir / "checkpoint.ckpt"
    trainer = SACTrainer(config, run_dir, progress)
    try:
        records: list[dict[str, Any]] = []
        training_time = 0.0
        if checkpoint.is_file() and (folder / PROGRESS_FILE).is_file():
            trainer.load_checkpoint(checkpoint)
            saved = json.loads((folder / PROGRESS_FILE).read_text())
            records = [record for record in saved["snapshots"] if record["step"] <= trainer.global_step]
            training_time = float(saved["training_time_s"])
        started = time.perf_counter()
        while True:
            if not records or records[-1]["step"] < trainer.global_step:
                records.append(_snapshot(trainer, settings, seed, folder))
                atomic_write_json(folder / PROGRESS_FILE, {
                    "snapshots": records, "training_time_s": training_time + time.perf_counter() - started})
            if trainer.global_step >= config.total_steps:
                break
            trainer.train(stop_at_step=trainer.global_step + settings.snapshot_interval)
        training_time += time.perf_counter() - started
        medium, expert = choose_medium_and_expert([record["eval_return"] for record in records])
        medium_step = int(records[medium]["step"])
        write_medium_replay(folder / MEDIUM_REPLAY_FILE, _buffer_rows(trainer, medium_step), env_id, seed,
                            medium_step, source="the training run's replay buffer")
    finally:
        trainer.close()
    return records, medium, expert, training_time


def _snapshot(trainer: Any, settings: SACBehaviourPreset, seed: int, folder: Path) -> dict[str, Any]:
    """Rate the trainer's current actor and save it; its record."""
    policy = BehaviourPolicy.from_sac_trainer(trainer, float("nan"))
    deterministic, stochastic = rate(policy, settings.selection_episodes, seed)
    policy.eval_return, policy.stochastic_return = deterministic, stochastic
    name = f"snapshot_{policy.step:08d}.msgpack"
    policy.save(folder / "snapshots" / name)
    return {"step": policy.step, "eval_return": deterministic, "stochastic_return": stochastic,
            "file": name, "temperature": _temperature(trainer)}


def _temperature(trainer: Any) -> float:
    """SAC's entropy temperature alpha now (a diagnostic of the snapshot's record)."""
    return float(np.exp(np.asarray(jax.device_get(trainer.state.params["log_alpha"]))).reshape(-1)[0])


def _buffer_rows(trainer: Any, rows: int) -> dict[str, np.ndarray]:
    """The first ``rows`` transitions of a SAC trainer's replay buffer, as host arrays in env units."""
    transitions = jax.device_get(jax.tree_util.tree_map(lambda leaf: leaf[:rows], trainer.buffer.transitions))
    if int(jax.device_get(trainer.buffer.size)) < rows:
        raise DatasetError(f"the replay buffer holds {int(trainer.buffer.size)} transitions, fewer than {rows}")
    return {"observations": np.asarray(transitions.observations, np.float32),
            "actions": np.asarray(trainer.scaler.to_env(transitions.actions), np.float32),
            "rewards": np.asarray(transitions.rewards, np.float32),
            "next_observations": np.asarray(transitions.next_observations, np.float32),
            "terminations": np.asarray(transitions.terminations) > 0.5,
            "truncations": np.asarray(transitions.truncations) > 0.5}


def write_medium_replay(path: Path, arrays: dict[str, np.ndarray], env_id: str, seed: int, step: int,
                        source: str) -> None:
    """Write the medium-replay buffer atomically, with what it is."""
    import io

    meta = json.dumps({"env_id": env_id, "seed": seed, "step": step, "source": source})
    buffer = io.BytesIO()
    contents: dict[str, Any] = {"meta": np.asarray(meta), **arrays}
    np.savez_compressed(buffer, **contents)
    atomic_write_bytes(path, buffer.getvalue())


def read_medium_replay(path: Path, env_id: str, seed: int, step: int) -> tuple[dict[str, np.ndarray], str] | None:
    """The buffer at ``path`` and its source if it is ``env_id``'s at ``step`` for ``seed``; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            meta = json.loads(str(stored["meta"]))
            arrays = {key: stored[key] for key in stored.files if key != "meta"}
    except Exception as error:  # a torn or foreign file is regenerated, never trusted
        raise DatasetError(f"{path} is not a readable medium-replay buffer ({error}); delete it to regenerate") \
            from error
    if (meta["env_id"], meta["seed"], meta["step"]) != (env_id, seed, step):
        return None
    return arrays, str(meta["source"])


def regenerate_medium_replay(env_id: str, config_values: dict[str, Any], step: int, folder: Path,
                             medium: BehaviourPolicy, progress: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """Re-run the behaviour-policy SAC run (its recorded config, seed included) to ``step`` and take
    its buffer; writes it to ``folder`` so it is made once. Its source says whether the re-run
    reached the shipped medium actor exactly (the same machine arithmetic) or another run of the recipe."""
    from hybridrl.algorithms import get_algorithm
    from hybridrl.rl.sac import SACTrainer
    from hybridrl.runs import config_from_dict

    config = config_from_dict(get_algorithm("sac"), config_values)
    seed = int(config.seed)
    run_dir = folder / "medium-replay-rerun"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = SACTrainer(config, run_dir, progress)
    try:
        trainer.train(stop_at_step=step)
        arrays = _buffer_rows(trainer, step)
        rerun = jax.tree_util.tree_leaves(jax.device_get(trainer.state.params["actor"]))
        shipped = jax.tree_util.tree_leaves(medium.params)
        difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
                         zip(rerun, shipped, strict=True))
    finally:
        trainer.close()
    source = (f"regenerated by re-running the SAC run (seed {seed}) to step {step}; its actor "
              + ("equals the shipped medium policy bit for bit" if difference == 0.0 else
                 f"differs from the shipped medium policy by up to {difference:.3g} per parameter (float "
                 "round-off of another machine grown over training), so this is another run of the same recipe"))
    write_medium_replay(folder / MEDIUM_REPLAY_FILE, arrays, env_id, seed, step, source)
    return arrays, source


def episode_starts(terminations: np.ndarray, truncations: np.ndarray) -> np.ndarray:
    """Start indices of the episodes of a time-ordered buffer (and its length at the end): an episode
    ends at a termination or truncation; the buffer's cut marks its last row truncated."""
    ends = np.flatnonzero(terminations | truncations)
    starts = np.concatenate([[0], ends + 1])
    length = len(terminations)
    return np.unique(np.concatenate([starts[starts < length], [length]])).astype(np.int64)
