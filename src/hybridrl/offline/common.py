"""What every offline learner shares: the dataset on device with its frozen state normaliser, the
config fields of a run on a dataset, and a trainer loop over stages of jitted gradient-step chunks.

An offline run is a sequence of *stages* (``bc``; or ``critic``, ``dynamics``, ``bc``, ``ppo`` for
Uni-O4). A stage advances in chunks: ``run_chunk(n)`` performs ``n`` gradient steps as one
compiled ``lax.scan`` and returns host scalars, so the host syncs once per chunk. The loop logs
each chunk, evaluates the policy in the real environment every ``eval_interval`` steps, and
checkpoints every ``checkpoint_interval`` steps and at every stage boundary, so an interrupted
run resumes inside the stage it was in.

Seeds in one process (``hybridrl train iql --seeds N``): a one-stage learner that writes its chunk
as a pure function, :meth:`OfflineTrainer.train_steps`, trains runs that differ only in their seed
together (:func:`train_seeds`). Their states are stacked on a leading seed axis and the chunk is
vmapped over it, with the dataset on the device once; each seed keeps its own trainer (run
directory, log, evaluation environment, checkpoint), and the loop is the one a single run uses.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from hybridrl.core.checkpoint import load_checkpoint, save_checkpoint
from hybridrl.core.evaluation import ActFunction, evaluate_policy
from hybridrl.core.logging import RunLogger
from hybridrl.core.networks import GaussianPolicy, Params
from hybridrl.core.seeding import check_seed_configs, seed_sharding, stack_seeds, train_in_seed_groups
from hybridrl.data.dataset import Dataset, TransitionBatch
from hybridrl.data.loading import load_dataset
from hybridrl.envs.factory import make_env
from hybridrl.errors import ConfigError, RunDirectoryError
from hybridrl.rl.ppo import interval_crossed

# --------------------------------------------------------------------------------------------
# Config fields of every offline run
# --------------------------------------------------------------------------------------------


@dataclass
class OfflineConfig:
    """Options every offline learner has (its own config adds the algorithm's)."""

    dataset: str = "hopper-medium-sac-v5"
    """Dataset: ours (hopper-medium-sac-v5, from `hybridrl data make`), a Minari id or folder, or a D4RL .hdf5 file."""
    env: str = ""
    """Environment to evaluate in; empty: the one the dataset records. A dataset of another env is an error."""
    seed: int = 1
    """Seed of every random stream of the run (networks, minibatches, evaluation episodes)."""
    preset: str = "cpu"
    """Preset the defaults came from: smoke, cpu or paper."""
    normalize_states: bool = True
    """Standardise states with the dataset's mean and std (frozen; evaluation uses the same)."""
    eval_interval: int = 10_000
    """Evaluate in the environment every this many gradient steps (0: only at the end)."""
    eval_episodes: int = 10
    """Deterministic (mean-action) episodes per evaluation."""
    final_eval_episodes: int = 0
    """Episodes of the evaluation at the end, whose score is the run's result (0: ``eval_episodes``);
    benchmarks use 50, as papers do, without paying for it at every interval."""
    checkpoint_interval: int = 10_000
    """Checkpoint every this many gradient steps (and at every stage boundary and the end)."""
    log_interval: int = 1_000
    """Gradient steps per compiled chunk; metrics are logged once per chunk."""
    max_episodes: int = 0
    """Learn from the first N episodes of the dataset only (0: all), e.g. N demonstrations."""

    def validate_offline(self) -> None:
        """Raise :class:`ConfigError` for impossible settings of the shared fields."""
        if not self.dataset:
            raise ConfigError("--dataset is required: e.g. --dataset hopper-medium-sac-v5 (`hybridrl data list`)")
        for name in ("eval_episodes", "log_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("eval_interval", "checkpoint_interval", "max_episodes", "final_eval_episodes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.env:
            from hybridrl.envs.factory import check_env_id

            check_env_id(self.env)


Phase = Literal["offline", "online", "both"]


@dataclass
class OfflineToOnlineConfig(OfflineConfig):
    """Options of a learner that can fine-tune online what it learned offline (Uni-O4, IQL)."""

    phase: Phase = "both"
    """Which phases to run: offline, online (fine-tunes --offline-run), or both."""
    offline_run: str = ""
    """With --phase online: the run directory of a finished offline phase to fine-tune from."""
    online_steps: int = 1_000_000
    """Environment steps of online fine-tuning."""

    def validate_phase(self, algorithm: str) -> None:
        """Raise :class:`ConfigError` for a phase that cannot run."""
        if self.phase not in ("offline", "online", "both"):
            raise ConfigError(f"--phase must be offline, online or both, got {self.phase!r}")
        if self.phase == "online" and not self.offline_run:
            raise ConfigError(f"--phase online fine-tunes a finished offline phase: pass --offline-run RUN_DIR "
                              f"(a run of `hybridrl train {algorithm} --phase offline`), or use --phase both")
        if self.phase != "online" and self.offline_run:
            raise ConfigError("--offline-run is only used with --phase online")
        if self.online_steps <= 0:
            raise ConfigError(f"--online-steps must be positive, got {self.online_steps}")


def read_offline_run(config: OfflineToOnlineConfig, algorithm: str) -> Any:
    """The config of the offline run ``config.offline_run`` fine-tunes, checked for use.

    :raises RunDirectoryError: it is not a finished offline phase of ``algorithm``, or its dataset
        differs from ``config.dataset``.
    """
    from hybridrl.runs import is_finished, read_run_config

    folder = Path(config.offline_run)
    spec, offline = read_run_config(folder)
    if spec.name != algorithm:
        raise RunDirectoryError(f"--offline-run {folder} is a {spec.name} run; pass a run directory of {algorithm}")
    if offline.phase == "online" or not (folder / "checkpoint.ckpt").is_file() or not is_finished(folder):
        raise RunDirectoryError(f"--offline-run {folder} has no finished offline phase; finish it with "
                                f"`hybridrl resume {folder}` or train one with --phase offline")
    if offline.dataset != config.dataset:
        raise RunDirectoryError(f"--offline-run {folder} was trained on {offline.dataset!r}, not {config.dataset!r}; "
                                f"pass --dataset {offline.dataset}")
    return offline


# --------------------------------------------------------------------------------------------
# The dataset on device
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateNormalizer:
    """Frozen standardisation ``(s - mean) / std`` with the dataset's statistics (identity when off)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, observations: np.ndarray, enabled: bool = True, epsilon: float = 1e-3) -> StateNormalizer:
        """The statistics of ``observations`` (std floored at ``epsilon``), or identity if not ``enabled``."""
        observations = np.asarray(observations, dtype=np.float64)
        if not enabled:
            shape = observations.shape[1:]
            return cls(np.zeros(shape, np.float32), np.ones(shape, np.float32))
        return cls(observations.mean(axis=0).astype(np.float32),
                   np.maximum(observations.std(axis=0), epsilon).astype(np.float32))

    def __call__(self, observations: Any) -> Any:
        """Normalised ``observations``: numpy in, numpy (float32) out; JAX in, JAX out."""
        if isinstance(observations, np.ndarray):
            return ((observations - self.mean) / self.std).astype(np.float32)
        return (observations - jnp.asarray(self.mean)) / jnp.asarray(self.std)


@dataclass(frozen=True)
class OfflineData:
    """A dataset ready for offline learning.

    :param dataset: the loaded, validated dataset (raw observations).
    :param env_id: the environment it belongs to.
    :param normalizer: the frozen state normaliser.
    :param transitions: every transition with *normalised* observations and next observations,
        on device, as the learners sample them.
    """

    dataset: Dataset
    env_id: str
    normalizer: StateNormalizer
    transitions: TransitionBatch

    @property
    def observation_dim(self) -> int:
        """Size of one (flat) observation."""
        return int(np.prod(self.dataset.observation_shape))

    @property
    def action_dim(self) -> int:
        """Size of one action."""
        return int(np.prod(self.dataset.action_shape))

    def normalized_score(self, episode_return: float) -> float | None:
        """The dataset's normalised score of a return (None without reference returns)."""
        if self.dataset.info.reference_returns is None:
            return None
        return float(self.dataset.normalized_score(episode_return))


def load_offline_data(dataset_id: str, env: str = "", normalize_states: bool = True,
                      max_episodes: int = 0) -> OfflineData:
    """Load and validate ``dataset_id`` for an offline learner.

    :param env: the environment to check the dataset against; empty: the one it records.
    :param max_episodes: keep only the first this many episodes (0: all).
    :raises DatasetError: the dataset is missing, malformed, or of another environment.
    :raises ConfigError: the dataset records no environment and none is given, or has discrete actions.
    """
    dataset = load_dataset(dataset_id, env=env or None)
    if max_episodes:
        dataset = dataset.first_episodes(max_episodes)
    env_id = env or dataset.info.env_id
    if not env_id:
        raise ConfigError(f"dataset {dataset_id!r} does not record its environment; pass --env ENV_ID")
    if np.issubdtype(np.asarray(dataset.transitions.actions).dtype, np.integer):
        raise ConfigError(f"dataset {dataset_id!r} has discrete actions; hybridrl's offline learners need "
                          "continuous (Box) actions")
    normalizer = StateNormalizer.fit(np.asarray(dataset.transitions.observations), normalize_states)
    raw = dataset.transitions
    transitions = dataclasses.replace(raw, observations=normalizer(raw.observations),
                                      next_observations=normalizer(raw.next_observations))
    return OfflineData(dataset=dataset, env_id=env_id, normalizer=normalizer, transitions=transitions)


# --------------------------------------------------------------------------------------------
# The trainer loop over stages
# --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One stage of an offline run.

    :param name: the stage's name (its metrics are logged under ``<name>/``).
    :param total_steps: gradient steps of the stage.
    :param run_chunk: ``n -> scalars``: perform the next ``n`` steps, return host metrics.
    :param chunk_size: steps per chunk (default: the config's ``log_interval``); a stage that
        cannot be split (e.g. one with its own stopping rule) uses its ``total_steps``.
    :param evaluate: evaluate the policy during this stage at ``eval_interval``.
    """

    name: str
    total_steps: int
    run_chunk: Callable[[int], dict[str, float]]
    chunk_size: int | None = None
    evaluate: bool = True


class OfflineTrainer:
    """Runs the stages of an offline learner in a run directory, with evaluation and checkpoints.

    Subclasses set ``algorithm`` and implement :meth:`stages`, :meth:`act_deterministic`,
    :meth:`checkpoint_state` and :meth:`restore_checkpoint_state`. ``self.step`` counts gradient
    steps over all stages; the metrics file's ``step`` is that counter.
    """

    algorithm = "offline"

    def __init__(self, config: OfflineConfig, run_dir: Path, progress: bool = False,
                 data: OfflineData | None = None) -> None:
        """:param data: the config's dataset, already loaded (seeds trained together share one copy)."""
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.data = data or load_offline_data(config.dataset, config.env, config.normalize_states,
                                              config.max_episodes)
        self.env_id = self.data.env_id
        # Demonstrations of DMC tasks are recorded with an action repeat; evaluate with the same.
        self.eval_env = make_env(self.env_id, action_repeat=self.data.dataset.action_repeat)
        self.step = 0
        self.elapsed = 0.0
        self.last_eval: dict[str, float] = {}
        self.last_eval_step = -1

    # -- what a learner defines ---------------------------------------------------------------

    def stages(self) -> list[Stage]:
        """The stages, in order."""
        raise NotImplementedError

    def deterministic_policy(self) -> ActFunction:
        """The current policy as a raw-observation -> mean-action function (host parameters
        fetched once, so an evaluation does not sync per step)."""
        raise NotImplementedError

    def act_deterministic(self, observations: np.ndarray) -> np.ndarray:
        """The current policy's mean action for raw observations."""
        return self.deterministic_policy()(observations)

    def checkpoint_state(self) -> Any:
        """The device state a checkpoint stores: a pytree whose structure does not change during the run."""
        raise NotImplementedError

    def restore_checkpoint_state(self, state: Any) -> None:
        """Take back :meth:`checkpoint_state` output."""
        raise NotImplementedError

    def train_steps(self, state: Any, data: TransitionBatch, num_steps: int) -> tuple[Any, dict[str, jax.Array]]:
        """Pure and jittable: ``num_steps`` gradient steps of a one-stage learner from ``state`` (its
        :meth:`checkpoint_state`) on ``data``; the new state and device metrics. A learner that
        defines it can train several seeds in one process (:func:`train_seeds`)."""
        raise NotImplementedError(f"{self.algorithm} does not train seeds in one process")

    def host_state(self) -> dict[str, Any]:
        """Host-side state for checkpoints (a learner may add to it)."""
        return {"step": self.step, "elapsed": self.elapsed, "last_eval": self.last_eval,
                "last_eval_step": self.last_eval_step}

    def restore_host_state(self, host: dict[str, Any]) -> None:
        """Take back :meth:`host_state` output."""
        self.step = int(host["step"])
        self.elapsed = float(host["elapsed"])
        self.last_eval = dict(host["last_eval"])
        self.last_eval_step = int(host["last_eval_step"])

    def after_stages(self) -> None:
        """Called once the last stage is done, before the final evaluation (and again on a resume of
        a finished run, so it must be idempotent)."""

    def final_metrics(self) -> dict[str, Any]:
        """What ``final.json`` records beyond the last evaluation (a learner may add to it)."""
        return {}

    # -- evaluation ------------------------------------------------------------------------------

    @property
    def eval_seed(self) -> int:
        """Seed of the first evaluation episode (episode i uses eval_seed + i)."""
        from hybridrl.core.seeding import Seeder

        return Seeder(self.config.seed).env_seeds("eval", 1)[0]

    def evaluate_act(self, act: Callable[[np.ndarray], np.ndarray], episodes: int,
                     length_cap: int | None = None, seed: int | None = None) -> dict[str, float]:
        """Evaluate a policy given as a raw-observation -> action function; the normalised score
        uses the dataset's reference returns (``length_cap``: see :func:`evaluate_policy`; ``seed``:
        the first episode's, default :attr:`eval_seed`)."""
        result = evaluate_policy(self.eval_env, act, episodes, self.eval_seed if seed is None else seed,
                                 length_cap=length_cap)
        score = self.data.normalized_score(result["eval/return_mean"])
        if score is not None:
            result["eval/normalized_score"] = score
        return result

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Deterministic evaluation of the current policy in the environment."""
        return self.evaluate_act(self.deterministic_policy(), episodes)

    # -- the loop ----------------------------------------------------------------------------------

    def train(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Run every stage to its end (resuming where a checkpoint left off), evaluate, return final metrics.

        :param stop_at_step: pause (with a checkpoint) at the first chunk boundary at or after this
            gradient step, returning ``{"step": ..., "paused": True}``; resume with a new trainer.
        """
        return train_in_lockstep([self], lambda stage, steps: [stage.run_chunk(steps)], stop_at_step)[0]

    def evaluate_and_log(self, logger: RunLogger, episodes: int | None = None) -> None:
        """Evaluate with ``episodes`` (default ``eval_episodes``) episodes and log the result at the current step."""
        self.last_eval = self.evaluate(episodes or self.config.eval_episodes)
        self.last_eval_step = self.step
        logger.log(self.step, self.last_eval)

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write the full train state to ``run_dir/checkpoint.ckpt`` atomically."""
        path = self.run_dir / "checkpoint.ckpt"
        save_checkpoint(path, algorithm=self.algorithm, step=self.step, state=self.checkpoint_state(),
                        host_state=self.host_state(), blobs=self.checkpoint_blobs())
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` of the same config."""
        state, host, blobs, _ = load_checkpoint(path, algorithm=self.algorithm, template=self.checkpoint_state())
        self.restore_checkpoint_state(state)
        self.restore_host_state(host)
        self.restore_checkpoint_blobs(blobs)

    def checkpoint_blobs(self) -> dict[str, bytes]:
        """Serialised state of a stage in progress that is not part of :meth:`checkpoint_state`
        (whose structure is fixed), e.g. a dynamics fit between two of its chunks; none by default."""
        return {}

    def restore_checkpoint_blobs(self, blobs: dict[str, bytes]) -> None:
        """Take back :meth:`checkpoint_blobs` output (called after :meth:`restore_host_state`)."""

    def close(self) -> None:
        """Close the evaluation environment."""
        self.eval_env.close()


class OnlineTrainer(Protocol):
    """What an offline-to-online learner needs of its fine-tuning trainer (a PPO or SAC trainer)."""

    run_dir: Path

    def train(self, stop_at_step: int | None = None) -> dict[str, Any]: ...

    def evaluate(self, episodes: int) -> dict[str, float]: ...

    def act_deterministic(self, observations: np.ndarray) -> np.ndarray: ...

    def load_checkpoint(self, path: Path) -> None: ...

    def close(self) -> None: ...


#: Folder of an offline-to-online run directory that holds online fine-tuning.
ONLINE_DIR = "online"


class OfflineToOnlineTrainer(OfflineTrainer):
    """An offline learner whose policy is then fine-tuned online (Uni-O4, IQL), by the trainer its
    :meth:`make_online_trainer` builds, in ``run_dir/online``.

    Beyond :mod:`hybridrl.runs`'s layout: ``metrics.jsonl``/``tb`` hold the offline phase (step =
    gradient steps) and ``checkpoint.ckpt`` its state; ``online/`` holds fine-tuning (step = env
    steps, its own ``metrics.jsonl``, ``tb`` and ``checkpoint.ckpt``), whose first entry (step 0)
    evaluates the offline policy before any online update. With ``--phase online`` the run directory
    starts from the checkpoint of ``--offline-run`` (the subclass loads it).
    """

    config: OfflineToOnlineConfig

    def __init__(self, config: OfflineToOnlineConfig, run_dir: Path, progress: bool = False,
                 data: OfflineData | None = None) -> None:
        super().__init__(config, run_dir, progress, data)
        self.online_trainer: OnlineTrainer | None = None

    def make_online_trainer(self) -> OnlineTrainer:
        """The fine-tuning trainer, in ``run_dir/online``, starting from the offline policy."""
        raise NotImplementedError

    def offline_final_metrics(self) -> dict[str, Any]:
        """What ``final.json`` records about the offline phase beyond its last evaluation (a learner may add)."""
        return {}

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Deterministic evaluation of the current policy: the fine-tuned one once fine-tuning has begun."""
        if self.online_trainer is not None:
            return self.online_trainer.evaluate(episodes)
        return super().evaluate(episodes)

    def train(self, stop_at_step: int | None = None, stop_online_at_step: int | None = None) -> dict[str, Any]:
        """The offline phase (unless ``--phase online``), then fine-tuning (unless ``--phase offline``).

        :param stop_at_step: pause the offline phase at this gradient step (see :class:`OfflineTrainer`).
        :param stop_online_at_step: pause fine-tuning at this env step.
        :returns: the final metrics: the offline phase's under ``offline/``, then fine-tuning's.
        """
        final: dict[str, Any] = {}
        if self.config.phase == "online":
            self.save_checkpoint()  # the run directory holds the offline state it fine-tunes
        else:
            offline = super().train(stop_at_step)
            if offline.get("paused"):
                return offline
            final.update(offline)
        final.update(self.offline_final_metrics())
        final.update({f"offline/{name}": value for name, value in self.last_eval.items()})
        final["offline/gradient_steps"] = self.step
        final["offline/wall_time_s"] = self.elapsed
        if self.config.phase != "offline":
            online = self.train_online(stop_online_at_step)
            if online.get("paused"):
                return online
            final.update(online)
            final["online/wall_time_s"] = online.get("wall_time_s", 0.0)
            final["wall_time_s"] = self.elapsed + final["online/wall_time_s"]
        return final

    def train_online(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Fine-tune online (resuming ``online/checkpoint.ckpt`` if there is one)."""
        trainer = self.online_trainer
        if trainer is None:
            trainer = self.online_trainer = self.make_online_trainer()
            checkpoint = trainer.run_dir / "checkpoint.ckpt"
            if checkpoint.is_file():
                trainer.load_checkpoint(checkpoint)
            else:
                # Step 0 of the online curve: the offline policy before any online update.
                with RunLogger(trainer.run_dir, self.config.online_steps, progress=False) as logger:
                    logger.log(0, trainer.evaluate(self.config.eval_episodes))
        return trainer.train(stop_at_step)

    def load_checkpoint(self, path: Path) -> None:
        """Restore the offline state; where fine-tuning has a checkpoint, restore that too."""
        super().load_checkpoint(path)
        online_checkpoint = self.run_dir / ONLINE_DIR / "checkpoint.ckpt"
        if path.parent == self.run_dir and online_checkpoint.is_file() and self.config.phase != "offline":
            self.online_trainer = self.make_online_trainer()
            self.online_trainer.load_checkpoint(online_checkpoint)

    def close(self) -> None:
        """Close environments."""
        super().close()
        if self.online_trainer is not None:
            self.online_trainer.close()


def train_in_lockstep(trainers: Sequence[OfflineTrainer],
                      run_chunk: Callable[[Stage, int], list[dict[str, float]]],
                      stop_at_step: int | None = None) -> list[dict[str, Any]]:
    """The loop of :meth:`OfflineTrainer.train`, for one run or for seeds trained together.

    The trainers are at the same step and share their stages (those of the first). ``run_chunk(stage,
    n)`` performs the next ``n`` steps of every run and returns each run's host scalars; logging,
    evaluation and checkpoints are then done per run, each in its own run directory.

    :param stop_at_step: pause (with checkpoints) at the first chunk boundary at or after this step,
        returning ``{"step": ..., "paused": True}`` per run.
    :returns: each run's final metrics, in order.
    """
    lead = trainers[0]
    config = lead.config
    stages = lead.stages()
    total = sum(stage.total_steps for stage in stages)
    loggers = [RunLogger(trainer.run_dir, total, start_step=trainer.step, progress=trainer.progress,
                         elapsed=trainer.elapsed) for trainer in trainers]
    runs = list(zip(trainers, loggers, strict=True))
    try:
        stage_start = 0
        for stage in stages:
            stage_end = stage_start + stage.total_steps
            chunk = stage.chunk_size or config.log_interval
            while lead.step < stage_end:
                previous = lead.step
                steps = min(chunk, stage_end - previous)
                scalars = run_chunk(stage, steps)
                step = previous + steps
                pause = stop_at_step is not None and step >= stop_at_step
                checkpoint = pause or step == stage_end or interval_crossed(previous, step, config.checkpoint_interval)
                for (trainer, logger), run_scalars in zip(runs, scalars, strict=True):
                    trainer.step = step
                    trainer.elapsed = logger.elapsed
                    if run_scalars:  # a chunk after a stage stopped early has nothing to log
                        logger.log(step, {f"{stage.name}/{name}" if "/" not in name else name: value
                                          for name, value in run_scalars.items()})
                    # The last step's evaluation is the final one, with its own episode count.
                    final_step = step == total and config.final_eval_episodes > 0
                    if stage.evaluate and interval_crossed(previous, step, config.eval_interval) and not final_step:
                        trainer.evaluate_and_log(logger)
                    if checkpoint:
                        trainer.save_checkpoint()
                    logger.update_progress(step)
                if pause and step < total:
                    return [{"step": step, "paused": True} for _ in trainers]
            stage_start = stage_end
        for trainer, logger in runs:
            trainer.after_stages()
            # Done once: a run resumed after its final evaluation (e.g. to continue an online phase
            # of its own) keeps it, rather than evaluating a policy that may have moved on since.
            if trainer.last_eval_step != trainer.step:
                trainer.evaluate_and_log(logger, trainer.config.final_eval_episodes or None)
                trainer.save_checkpoint()
    finally:
        for logger in loggers:
            logger.close()
    return [{"step": trainer.step, **trainer.last_eval, **trainer.final_metrics(), "wall_time_s": trainer.elapsed}
            for trainer in trainers]


# --------------------------------------------------------------------------------------------
# Seeds in one process
# --------------------------------------------------------------------------------------------


TrainSteps = Callable[[Any, TransitionBatch, int], tuple[Any, dict[str, jax.Array]]]


def train_steps_over_seeds(train_steps: TrainSteps, states: Any, data: TransitionBatch,
                           num_steps: int) -> tuple[Any, dict[str, jax.Array]]:
    """``train_steps`` of every seed at once, vmapped: ``states`` stacked on a leading seed axis,
    ``data`` shared (jit the caller, with ``num_steps`` static). Each seed draws its minibatches from
    its own key, so its random stream is the one it has when trained alone; only the float round-off
    of the batched matrix products differs.

    :param train_steps: a learner's :meth:`OfflineTrainer.train_steps`.
    :returns: the new stacked states and each metric with a leading seed axis.
    """
    return jax.vmap(lambda state: train_steps(state, data, num_steps))(states)


@functools.partial(jax.jit, static_argnames=("count",))
def _unstack(tree: Any, count: int) -> list[Any]:
    return [jax.tree_util.tree_map(lambda leaf, index=index: leaf[index], tree) for index in range(count)]


class SeedGroup:
    """Runs of a one-stage offline learner that differ only in their seed, trained together.

    The group holds the runs' states stacked on a seed axis (split over the local devices where
    there are several, :func:`seed_sharding`) and advances them with :func:`train_steps_over_seeds`;
    after every chunk each trainer gets its seed's state back, so evaluation, checkpoints and the
    final metrics are those of a single run.

    :param trainers: one trainer per seed, at the same step, sharing one :class:`OfflineData`.
    """

    def __init__(self, trainers: Sequence[OfflineTrainer]) -> None:
        if len(trainers[0].stages()) != 1:
            raise ConfigError(f"{trainers[0].algorithm} has several stages; it cannot train seeds in one process")
        self.trainers = list(trainers)
        self.states = stack_seeds([trainer.checkpoint_state() for trainer in self.trainers])
        self.data = self.trainers[0].data.transitions
        sharding = seed_sharding(len(self.trainers))
        if sharding is not None:
            self.states, self.data = jax.device_put(self.states, sharding[0]), jax.device_put(self.data, sharding[1])
        # Compiled once per chunk length; the program lives (and is freed) with the group.
        self._train_steps = jax.jit(functools.partial(train_steps_over_seeds, self.trainers[0].train_steps),
                                    static_argnames=("num_steps",))

    def run_chunk(self, steps: int) -> list[dict[str, float]]:
        """The next ``steps`` gradient steps of every seed; each seed's host scalars."""
        self.states, metrics = self._train_steps(self.states, self.data, num_steps=steps)
        for trainer, state in zip(self.trainers, _unstack(self.states, len(self.trainers)), strict=True):
            trainer.restore_checkpoint_state(state)
        metrics = jax.device_get(metrics)
        return [host_scalars({name: value[index] for name, value in metrics.items()})
                for index in range(len(self.trainers))]

    def train(self, stop_at_step: int | None = None) -> list[dict[str, Any]]:
        """Train every seed to the end (see :meth:`OfflineTrainer.train`); each run's final metrics,
        its ``wall_time_s`` being its share of the group's."""
        finals = train_in_lockstep(self.trainers, lambda _, steps: self.run_chunk(steps), stop_at_step)
        for final in finals:
            if "wall_time_s" in final:  # absent from a paused run's
                final["wall_time_s"] /= len(self.trainers)
        return finals


def train_seeds(make_trainer: Callable[..., OfflineTrainer], configs: Sequence[OfflineConfig],
                run_dirs: Sequence[Path], progress: bool = False) -> list[dict[str, Any]]:
    """The ``train_seeds`` hook (:class:`~hybridrl.algorithms.AlgorithmSpec`) of a one-stage offline
    learner: train runs that differ only in their seed in this process, seeds vmapped.

    The dataset is loaded once. Each run resumes from its checkpoint when it has one; runs whose
    checkpoints stopped at different steps (an interruption between two runs' writes) are trained
    in separate groups, one per step.

    :param make_trainer: ``(config, run_dir, progress, data=...) -> trainer``, e.g. the trainer class.
    :param configs: one config per run, equal but for ``seed``.
    :param run_dirs: one run directory per config (its ``config.json`` already written).
    :param progress: show a progress bar (of the first run).
    :returns: each run's final metrics, in order.
    """
    check_seed_configs(configs, run_dirs)
    first = configs[0]
    data = load_offline_data(first.dataset, first.env, first.normalize_states, first.max_episodes)

    def train_group(trainers: list[OfflineTrainer]) -> list[dict[str, Any]]:
        return [{"env": trainer.env_id, **final} for trainer, final in
                zip(trainers, SeedGroup(trainers).train(), strict=True)]

    return train_in_seed_groups(
        len(configs), lambda index: make_trainer(configs[index], Path(run_dirs[index]), progress and index == 0,
                                                 data=data),
        lambda trainer: trainer.step, train_group)


def gaussian_mean_policy(policy: GaussianPolicy, params: Params, normalizer: StateNormalizer) -> ActFunction:
    """``raw observations -> mean action`` (clipped to [-1, 1]) of ``policy`` with host ``params``,
    in numpy: evaluation episodes step one env at a time, where a jitted call costs a MuJoCo step."""
    host_params = jax.device_get(params)

    def act(observations: np.ndarray) -> np.ndarray:
        distribution = policy.apply_numpy(host_params, normalizer(np.asarray(observations, dtype=np.float32)))
        return np.clip(np.asarray(distribution.mode()), -1.0, 1.0)

    return act


def host_scalars(metrics: Any) -> dict[str, float]:
    """A chunk's metrics (device or host arrays) as host floats, each averaged over its entries
    (per member where a metric has a member axis): one transfer per chunk."""
    return {name: float(np.mean(value)) for name, value in jax.device_get(metrics).items()}
