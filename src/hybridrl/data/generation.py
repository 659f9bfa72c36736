"""D4RL-style datasets generated with hybridrl's own learners, reproducibly from one seed.

Two recipes, ``<family>-<kind>-sac-v5`` (the default of every offline benchmark) and the older
``<family>-<kind>-v5`` (PPO-made, kept so the results committed with it stay reproducible); family
hopper, halfcheetah or walker2d; kind random, medium, medium-replay, expert or medium-expert.

**SAC-made, as D4RL made them** (:mod:`hybridrl.data.sac_behaviour` trains the policies):

* behaviour policies: SAC's expert (its best snapshot) and medium (first reaching about a third of
  the expert's return) actors; actions are sampled and tanh-squashed, as D4RL's;
* ``random``: uniform random actions; ``medium`` / ``expert``: the medium / expert actor's samples;
  ``medium-expert``: ``medium`` followed by ``expert``; ``medium-replay``: the replay buffer of the
  SAC run up to the medium policy (its size is wherever the run got there);
* reference returns: uniformly random actions and the expert actor's mean actions.

**PPO-made (legacy):**

1. **Behaviour policies.** Train PPO on the env, snapshotting the policy every
   ``snapshot_interval`` steps (and once before training) and evaluating each snapshot with
   deterministic episodes. *Expert* is the best snapshot; *medium* is the snapshot before it whose
   return is closest to 1/3 of the expert's (as in D4RL). The snapshots are stored in a
   ``behaviour.json`` folder and reused; for the ``cpu`` preset they ship with hybridrl, so no
   training is needed.
2. **Reference returns.** Random: the mean return of uniformly random actions; expert: the mean
   return of the expert snapshot (deterministic actions), both over ``reference_episodes`` seeded
   episodes. Normalised scores use these; D4RL's published constants are recorded beside them for
   comparison.
3. **Collection.** One env, seeded episodes, stochastic actions (the policy's Gaussian), one
   numpy generator per dataset kind, so a dataset does not depend on which others were made:

   * ``random``: uniform random actions;
   * ``medium`` / ``expert``: the medium / expert snapshot;
   * ``medium-replay``: the snapshots from the start of training to the medium one, each
     collecting an equal share in training order (a replay of the learner's policies);
   * ``medium-expert``: ``medium`` followed by ``expert``.

   A dataset ends after exactly its number of transitions; the episode that cut is marked truncated.

PPO's Gaussian samples are clipped to the action bounds, so 36-44 % of their action components sit
exactly at +-1, and medium-replay is a few snapshots' rollouts, not a replay buffer: the reasons
the SAC recipe replaced it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from hybridrl.core.io import atomic_write_json
from hybridrl.core.seeding import Seeder
from hybridrl.data import sac_behaviour
from hybridrl.data.dataset import Dataset, DatasetInfo
from hybridrl.data.minari_format import HYBRIDRL_NAMESPACE, write_minari
from hybridrl.data.policies import BehaviourPolicy, BoundPolicy
from hybridrl.data.sac_behaviour import SACBehaviourPreset
from hybridrl.data.summary import card_path, summarize, write_card
from hybridrl.data.validation import DatasetError, validate_dataset
from hybridrl.envs.factory import check_env_id, make_env
from hybridrl.envs.reference import reference_returns as d4rl_reference_returns
from hybridrl.errors import ConfigError

#: dataset family -> Gymnasium env name (the version comes from the dataset id).
FAMILIES: dict[str, str] = {"hopper": "Hopper", "halfcheetah": "HalfCheetah", "walker2d": "Walker2d"}
FAMILY_OF_ENV: dict[str, str] = {env: family for family, env in FAMILIES.items()}
KINDS: tuple[str, ...] = ("random", "medium", "medium-replay", "expert", "medium-expert")
ASSETS = Path(__file__).parent / "assets"
BEHAVIOUR_FILE = "behaviour.json"


@dataclass(frozen=True)
class GenerationPreset:
    """Sizes and budgets of one generation preset.

    :param transitions: transitions of ``random``, ``medium``, ``expert`` and ``medium-replay``
        (``medium-expert`` has twice as many).
    :param ppo_preset: the PPO preset the behaviour policies are trained with.
    :param ppo_total_steps: PPO's training budget in env steps.
    :param snapshot_interval: env steps between policy snapshots.
    :param selection_episodes: deterministic episodes that rate each snapshot.
    :param reference_episodes: episodes behind each reference return.
    """

    transitions: int
    ppo_preset: str
    ppo_total_steps: int
    snapshot_interval: int
    selection_episodes: int
    reference_episodes: int


PRESETS: dict[str, GenerationPreset] = {
    "smoke": GenerationPreset(1_000, "smoke", 2_048, 1_024, 1, 2),
    "cpu": GenerationPreset(100_000, "cpu", 1_000_000, 50_000, 5, 10),
    "paper": GenerationPreset(1_000_000, "cpu", 3_000_000, 100_000, 10, 100),
}


@dataclass(frozen=True)
class SACGenerationPreset:
    """Sizes of one preset of the SAC-made datasets.

    :param transitions: transitions of ``random``, ``medium`` and ``expert`` (``medium-expert`` has
        twice as many; ``medium-replay`` is the SAC run's buffer up to the medium policy).
    :param reference_episodes: episodes behind each reference return.
    :param behaviour: the SAC run behind the behaviour policies.
    """

    transitions: int
    reference_episodes: int
    behaviour: SACBehaviourPreset


SAC_PRESETS: dict[str, SACGenerationPreset] = {
    "smoke": SACGenerationPreset(1_000, 2, SACBehaviourPreset("smoke", 1_200, 300, 1, learning_starts=200)),
    # SAC's `cpu` networks (2x256, batch 256, one update per step) for 200k steps, about 35 minutes per
    # task on one core: the shipped policies (docs/datasets.md has their returns and times).
    # Hopper-v5 and Walker2d-v5 start their temperature at 1 (rlkit's SAC, which made D4RL's data): at
    # hybridrl's 0.1, seed 0 stayed at returns of 300-370 (Hopper, 90k steps) and 230-510 (Walker2d,
    # 90k steps); HalfCheetah-v5 climbed at 0.1 and kept it.
    "cpu": SACGenerationPreset(200_000, 10, SACBehaviourPreset(
        "cpu", 200_000, 10_000, 5, env_options={"Hopper-v5": {"init_temperature": 1.0},
                                                "Walker2d-v5": {"init_temperature": 1.0}})),
    # D4RL: 1M transitions per dataset, SAC trained to convergence (1M steps here; HalfCheetah's
    # published expert needed about 3M).
    "paper": SACGenerationPreset(1_000_000, 100, SACBehaviourPreset("cpu", 1_000_000, 20_000, 10)),
}


class DatasetName(NamedTuple):
    """A generated dataset's name taken apart: ``hopper-medium-replay-sac-v5``."""

    family: str
    kind: str
    env_id: str
    #: the learner of the behaviour policies: ``sac``, or ``ppo`` for the legacy names without a suffix
    learner: str


def parse_dataset_name(name: str) -> DatasetName:
    """``"hopper-medium-replay-sac-v5"`` -> ``("hopper", "medium-replay", "Hopper-v5", "sac")``;
    ``"hopper-medium-v5"`` (legacy, PPO-made) -> ``("hopper", "medium", "Hopper-v5", "ppo")``."""
    match = re.fullmatch(r"([a-z0-9]+)-([a-z-]+?)(-sac)?-v(\d+)", name)
    if not match or match.group(1) not in FAMILIES or match.group(2) not in KINDS:
        raise ConfigError(f"cannot make {name!r}: generated datasets are named <family>-<kind>-sac-v5 (or, PPO-made, "
                          f"<family>-<kind>-v5) with family one of {', '.join(FAMILIES)} and kind one of "
                          f"{', '.join(KINDS)} (e.g. hopper-medium-sac-v5)")
    family, kind, sac, version = match.groups()
    env_id = f"{FAMILIES[family]}-v{version}"
    check_env_id(env_id)
    return DatasetName(family, kind, env_id, "sac" if sac else "ppo")


# -- behaviour policies ----------------------------------------------------------------------------


@dataclass
class BehaviourPolicies:
    """The snapshots a family's datasets are collected with, and its reference returns.

    :param folder: where they are stored.
    :param replay: snapshots from the start of training to the medium one, in order.
    :param medium: the medium snapshot.
    :param expert: the expert snapshot.
    :param random_return: mean return of uniformly random actions.
    :param expert_return: mean return of the expert (deterministic actions).
    :param record: the ``behaviour.json`` contents.
    """

    folder: Path
    replay: list[BehaviourPolicy]
    medium: BehaviourPolicy
    expert: BehaviourPolicy
    random_return: float
    expert_return: float
    record: dict[str, Any]

    @classmethod
    def load(cls, folder: Path) -> BehaviourPolicies:
        """Read a folder written by :func:`train_behaviour_policies` or :func:`train_sac_behaviour_policies`."""
        try:
            record = json.loads((folder / BEHAVIOUR_FILE).read_text())
            names = [*record["replay"], record["medium"], record["expert"]]
            snapshots = {name: BehaviourPolicy.load(folder / name) for name in names}
            return cls(folder=folder, replay=[snapshots[name] for name in record["replay"]],
                       medium=snapshots[record["medium"]], expert=snapshots[record["expert"]],
                       random_return=float(record["reference_returns"]["random"]),
                       expert_return=float(record["reference_returns"]["expert"]), record=record)
        except (OSError, KeyError, json.JSONDecodeError) as error:
            raise DatasetError(f"behaviour policies in {folder} are incomplete or corrupt ({error}); delete the "
                               "folder to retrain them") from error

    @property
    def learner(self) -> str:
        """``sac`` or ``ppo``."""
        return str(self.record.get("algorithm", "ppo"))


def behaviour_folder(env_id: str, preset: str, seed: int, work_dir: str | os.PathLike[str] | None = None,
                     learner: str = "ppo") -> Path:
    """Where the behaviour policies of ``env_id`` live: the shipped assets (``cpu``), else the work dir
    (``<Env>-<preset>-s<seed>`` for PPO's, ``<Env>-sac-<preset>-s<seed>`` for SAC's)."""
    name = work_folder(env_id, preset, seed, None, learner).name
    shipped = ASSETS / name
    if (shipped / BEHAVIOUR_FILE).is_file():
        return shipped
    return work_folder(env_id, preset, seed, work_dir, learner)


def work_folder(env_id: str, preset: str, seed: int, work_dir: str | os.PathLike[str] | None, learner: str) -> Path:
    """The folder under ``work_dir`` (default ``runs/data``) where behaviour policies are trained and
    what is derived from them (medium-replay buffers) is kept."""
    infix = "" if learner == "ppo" else f"{learner}-"
    name = f"{env_id.replace(':', '-')}-{infix}{preset}-s{seed}"
    return Path(work_dir if work_dir is not None else Path("runs") / "data") / name


def train_behaviour_policies(env_id: str, preset: str, seed: int, folder: Path,
                             progress: bool = False) -> BehaviourPolicies:
    """Train PPO, snapshot it, choose medium and expert, measure reference returns; write ``folder``."""
    from hybridrl.algorithms import get_algorithm
    from hybridrl.runs import write_run_config

    settings = _preset(preset)
    spec = get_algorithm("ppo")
    config = spec.make_config(settings.ppo_preset, env=env_id, seed=seed, total_steps=settings.ppo_total_steps,
                              eval_interval=0, checkpoint_interval=settings.snapshot_interval)
    run_dir = folder / "ppo"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_config(run_dir, spec, config)
    started = time.perf_counter()
    trainer: Any = spec.make_trainer(config, run_dir, progress)
    try:
        snapshots = [BehaviourPolicy.from_trainer(trainer, _rate(trainer, settings))]
        while trainer.global_step < config.total_steps:
            trainer.train(stop_at_step=trainer.global_step + settings.snapshot_interval)
            snapshots.append(BehaviourPolicy.from_trainer(trainer, _rate(trainer, settings)))
    finally:
        trainer.close()
    training_time = time.perf_counter() - started
    returns = np.asarray([snapshot.eval_return for snapshot in snapshots])
    expert_index = int(len(returns) - 1 - np.argmax(returns[::-1]))  # the latest of equally good ones
    target = returns[expert_index] / 3.0
    medium_index = int(np.argmin(np.abs(returns[: expert_index + 1] - target)))
    names = [f"snapshot_{snapshot.step:08d}.msgpack" for snapshot in snapshots]
    for index in [*range(medium_index + 1), expert_index]:
        snapshots[index].save(folder / names[index])
    expert = snapshots[expert_index]
    random_return = _mean_return(env_id, None, settings.reference_episodes, seed)
    expert_return = _mean_return(env_id, expert, settings.reference_episodes, seed)
    record = {
        "env_id": env_id, "preset": preset, "seed": seed, "algorithm": "ppo",
        "snapshots": [{"step": s.step, "eval_return": s.eval_return} for s in snapshots],
        "replay": names[: medium_index + 1], "medium": names[medium_index], "expert": names[expert_index],
        "reference_returns": {"random": random_return, "expert": expert_return,
                              "episodes": settings.reference_episodes},
        "training_time_s": round(training_time, 1),
    }
    atomic_write_json(folder / BEHAVIOUR_FILE, record)
    return BehaviourPolicies.load(folder)


def _preset(preset: str) -> GenerationPreset:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for dataset generation; choose one of: {', '.join(PRESETS)}")
    return PRESETS[preset]


def _rate(trainer: Any, settings: GenerationPreset) -> float:
    return float(trainer.evaluate(settings.selection_episodes)["eval/return_mean"])


def _mean_return(env_id: str, policy: BehaviourPolicy | None, episodes: int, seed: int,
                 action_repeat: int = 1) -> float:
    """Mean return over seeded episodes: deterministic actions of ``policy``, or uniform random ones."""
    env = make_env(env_id, action_repeat=action_repeat)
    try:
        rng = Seeder(seed).numpy("reference/" + ("random" if policy is None else "expert"))
        act = policy.bind(env.action_space) if policy is not None else None
        reset_seeds = Seeder(seed).env_seeds("reference", episodes)
        total = 0.0
        for episode in range(episodes):
            observation, _ = env.reset(seed=reset_seeds[episode])
            done = False
            while not done:
                action = act(observation[None])[0] if act is not None else _uniform(env.action_space, rng)
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = bool(terminated or truncated)
        return total / episodes
    finally:
        env.close()


def _uniform(space: gym.Space[Any], rng: np.random.Generator) -> np.ndarray:
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"random datasets need a Box action space, not {space}")
    return rng.uniform(space.low, space.high).astype(np.float32)


def train_sac_behaviour_policies(env_id: str, preset: str, seed: int, folder: Path,
                                 progress: bool = False) -> BehaviourPolicies:
    """Train SAC and choose its medium and expert actors (:mod:`hybridrl.data.sac_behaviour`), measure
    the reference returns, and write ``folder``: ``behaviour.json`` with every snapshot's returns and
    temperature, the two chosen snapshots, and the medium-replay buffer."""
    settings = _sac_preset(preset)
    records, medium, expert, training_time = sac_behaviour.train(env_id, settings.behaviour, seed, folder, progress)
    chosen = {index: BehaviourPolicy.load(folder / "snapshots" / records[index]["file"]) for index in (medium, expert)}
    for index, policy in chosen.items():
        policy.save(folder / records[index]["file"])
    random_return = _mean_return(env_id, None, settings.reference_episodes, seed)
    expert_return = _mean_return(env_id, chosen[expert], settings.reference_episodes, seed)
    medium_return = _mean_return(env_id, chosen[medium], settings.reference_episodes, seed)
    config = sac_behaviour.sac_config(env_id, settings.behaviour, seed)
    from hybridrl.runs import config_to_dict

    record = {
        "env_id": env_id, "preset": preset, "seed": seed, "algorithm": "sac",
        "sac_config": config_to_dict(config),
        "command": f"hybridrl data make {FAMILY_OF_ENV[env_id.split('-v')[0]]}-medium-sac-v5 --preset {preset} "
                   f"--seed {seed} --retrain",
        "snapshots": records, "replay": [], "medium": records[medium]["file"], "expert": records[expert]["file"],
        "medium_step": int(records[medium]["step"]),
        "reference_returns": {"random": random_return, "expert": expert_return, "medium": medium_return,
                              "episodes": settings.reference_episodes},
        "training_time_s": round(training_time, 1),
    }
    atomic_write_json(folder / BEHAVIOUR_FILE, record)
    return BehaviourPolicies.load(folder)


def behaviour_policies(env_id: str, preset: str = "cpu", seed: int = 0, work_dir: str | os.PathLike[str] | None = None,
                       retrain: bool = False, progress: bool = False, learner: str = "ppo") -> BehaviourPolicies:
    """The behaviour policies of ``env_id`` made by ``learner`` (``ppo`` or ``sac``): shipped, already
    trained in ``work_dir``, or trained now."""
    folder = behaviour_folder(env_id, preset, seed, work_dir, learner)
    if retrain and folder.is_relative_to(ASSETS):
        folder = work_folder(env_id, preset, seed, work_dir, learner)
    if (folder / BEHAVIOUR_FILE).is_file() and not retrain:
        return BehaviourPolicies.load(folder)
    if learner == "sac":
        return train_sac_behaviour_policies(env_id, preset, seed, folder, progress)
    return train_behaviour_policies(env_id, preset, seed, folder, progress)


def _sac_preset(preset: str) -> SACGenerationPreset:
    if preset not in SAC_PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for dataset generation; choose one of: {', '.join(SAC_PRESETS)}")
    return SAC_PRESETS[preset]


# -- collection ------------------------------------------------------------------------------------


def collect(env_id: str, act: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
            num_transitions: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Exactly ``num_transitions`` transitions of ``act`` (uniform random actions if None) on ``env_id``.

    Episodes start from seeds drawn from ``rng``; actions are clipped to the action space. Returns
    preallocated host arrays in :meth:`Dataset.from_arrays`'s layout.
    """
    env = make_env(env_id)
    try:
        observation_shape = tuple(env.observation_space.shape or ())
        action_shape = tuple(env.action_space.shape or ())
        arrays = {
            "observations": np.empty((num_transitions, *observation_shape), np.float32),
            "actions": np.empty((num_transitions, *action_shape), np.float32),
            "rewards": np.empty(num_transitions, np.float32),
            "next_observations": np.empty((num_transitions, *observation_shape), np.float32),
            "terminations": np.zeros(num_transitions, bool),
            "truncations": np.zeros(num_transitions, bool),
        }
        starts = np.empty(num_transitions + 1, np.int64)
        episodes, observation = 0, None
        box = env.action_space
        for step in range(num_transitions):
            if observation is None:
                observation, _ = env.reset(seed=int(rng.integers(2**31)))
                starts[episodes], episodes = step, episodes + 1
            action = _uniform(box, rng) if act is None else act(np.asarray(observation, np.float32)[None], rng)[0]
            next_observation, reward, terminated, truncated, _ = env.step(action)
            arrays["observations"][step] = observation
            arrays["actions"][step] = action
            arrays["rewards"][step] = reward
            arrays["next_observations"][step] = next_observation
            arrays["terminations"][step] = terminated
            arrays["truncations"][step] = truncated and not terminated
            observation = None if terminated or truncated else next_observation
        if observation is not None:
            arrays["truncations"][-1] = True  # the dataset's size, not the env, cut this episode
        starts[episodes] = num_transitions
        arrays["episode_starts"] = starts[: episodes + 1].copy()
        return arrays
    finally:
        env.close()


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    joined = {key: np.concatenate([part[key] for part in parts]) for key in parts[0] if key != "episode_starts"}
    offsets = np.cumsum([0] + [len(part["rewards"]) for part in parts[:-1]])
    joined["episode_starts"] = np.concatenate(
        [part["episode_starts"][:-1] + offset for part, offset in zip(parts, offsets, strict=True)]
        + [np.asarray([sum(len(part["rewards"]) for part in parts)])])
    return joined


def _with_policy(policy: BoundPolicy) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    return lambda observations, rng: policy(observations, rng)


def make_dataset(name: str, preset: str = "cpu", seed: int = 0, work_dir: str | os.PathLike[str] | None = None,
                 retrain: bool = False, progress: bool = False) -> Dataset:
    """Generate the dataset ``name`` (``hopper-medium-sac-v5`` ...) in memory; see the module docs for the recipe.

    :param preset: ``smoke`` (seconds, for tests), ``cpu`` (shipped policies; 200k transitions SAC-made,
        100k PPO-made) or ``paper`` (1M transitions, D4RL's size).
    :param seed: seeds training, reference episodes and collection.
    :param work_dir: where behaviour policies are trained and kept (default ``runs/data``).
    :param retrain: train new behaviour policies even if some exist.
    """
    _, kind, env_id, learner = parse_dataset_name(name)
    started = time.perf_counter()
    if learner == "sac":
        sac_settings = _sac_preset(preset)
        size, reference_episodes = sac_settings.transitions, sac_settings.reference_episodes
    else:
        settings = _preset(preset)
        size, reference_episodes = settings.transitions, settings.reference_episodes
    policies = behaviour_policies(env_id, preset, seed, work_dir, retrain, progress, learner)
    seeder = Seeder(seed)
    probe = make_env(env_id)
    action_space = probe.action_space
    probe.close()

    def collect_with(stream: str, policy: BehaviourPolicy | None, size: int) -> dict[str, np.ndarray]:
        act = _with_policy(policy.bind(action_space)) if policy is not None else None
        return collect(env_id, act, size, seeder.numpy(f"collect/{stream}"))

    extra: dict[str, Any] = {}
    if kind == "random":
        arrays = collect_with("random", None, size)
    elif kind in ("medium", "expert"):
        arrays = collect_with(kind, policies.medium if kind == "medium" else policies.expert, size)
    elif kind == "medium-expert":
        arrays = _concatenate([collect_with("medium", policies.medium, size),
                               collect_with("expert", policies.expert, size)])
    elif learner == "sac":
        arrays, extra["medium_replay_source"] = _sac_medium_replay(env_id, preset, seed, work_dir, policies, progress)
    else:
        shares = np.diff(np.linspace(0, size, len(policies.replay) + 1).round().astype(np.int64))
        arrays = _concatenate([collect_with(f"medium-replay/{index}", snapshot, int(share))
                               for index, (snapshot, share) in enumerate(zip(policies.replay, shares, strict=True))
                               if share > 0])
    name_of = learner.upper()
    medium_step, expert_step = policies.medium.step, policies.expert.step
    behaviour = {"random": "uniform random actions",
                 "medium": f"{name_of} snapshot at step {medium_step}",
                 "expert": f"{name_of} snapshot at step {expert_step}",
                 "medium-expert": f"{name_of} snapshots at steps {medium_step} and {expert_step}",
                 "medium-replay": (f"the SAC run's replay buffer, steps 0 to {medium_step}" if learner == "sac" else
                                   f"{len(policies.replay)} PPO snapshots, steps 0 to {medium_step}")}[kind]
    actions = "tanh-squashed samples" if learner == "sac" else "Gaussian samples clipped to the bounds"
    legacy = "" if learner == "sac" else " (legacy PPO-made recipe)"
    info = DatasetInfo(
        dataset_id=name, env_id=env_id, source="hybridrl",
        reference_returns=(policies.random_return, policies.expert_return),
        reference_source=f"measured by hybridrl data make ({reference_episodes} episodes each: uniform "
                         "random actions; the expert snapshot's deterministic actions)",
        algorithm="random" if kind == "random" else learner,
        description=f"{name}{legacy}: {behaviour}, {actions}; generated by `hybridrl data make {name} "
                    f"--preset {preset} --seed {seed}`",
        extra={"seed": seed, "preset": preset, "kind": kind, "behaviour_policy": behaviour, "learner": learner,
               "medium_eval_return": policies.medium.eval_return, "expert_eval_return": policies.expert.eval_return,
               "medium_stochastic_return": policies.medium.stochastic_return,
               "expert_stochastic_return": policies.expert.stochastic_return,
               "d4rl_reference_returns": list(d4rl_reference_returns(env_id) or []) or None,
               "generation_time_s": round(time.perf_counter() - started, 1), **extra},
    )
    arrays_info = {key: value for key, value in arrays.items() if key != "episode_starts"}
    dataset = Dataset.from_arrays(**arrays_info, episode_starts=arrays["episode_starts"], info=info)
    validate_dataset(dataset, env_id)
    return dataset


def _sac_medium_replay(env_id: str, preset: str, seed: int, work_dir: str | os.PathLike[str] | None,
                       policies: BehaviourPolicies, progress: bool) -> tuple[dict[str, np.ndarray], str]:
    """The SAC run's replay buffer up to the medium policy: the one written when the policies were
    trained, else one regenerated earlier into the work folder, else regenerated now."""
    step = int(policies.record["medium_step"])
    for folder in (policies.folder, work_folder(env_id, preset, seed, work_dir, "sac")):
        stored = sac_behaviour.read_medium_replay(folder / sac_behaviour.MEDIUM_REPLAY_FILE, env_id, seed, step)
        if stored is not None:
            arrays, source = stored
            break
    else:
        arrays, source = sac_behaviour.regenerate_medium_replay(
            env_id, policies.record["sac_config"], step, work_folder(env_id, preset, seed, work_dir, "sac"),
            policies.medium, progress)
    arrays = dict(arrays)
    arrays["truncations"] = arrays["truncations"].copy()
    arrays["truncations"][-1] |= not arrays["terminations"][-1]  # the medium step, not the env, cut this episode
    arrays["episode_starts"] = sac_behaviour.episode_starts(arrays["terminations"], arrays["truncations"])
    return arrays, source


def generate(name: str, preset: str = "cpu", seed: int = 0, root: str | os.PathLike[str] | None = None,
             overwrite: bool = False, work_dir: str | os.PathLike[str] | None = None, retrain: bool = False,
             progress: bool = False) -> Path:
    """:func:`make_dataset` and write it in Minari format as ``hybridrl/<name>``; returns its folder."""
    dataset = make_dataset(name, preset, seed, work_dir, retrain, progress)
    folder = write_minari(dataset, f"{HYBRIDRL_NAMESPACE}/{name}", root=root, overwrite=overwrite)
    write_card(dataset, summarize(dataset), card_path(folder))
    return folder
