"""hybridrl against peer libraries, side by side: whole processes, alternating, on this machine.

Each peer runs in its own virtual environment, created from the package index under
``benchmarks/runs/peers/<peer>/`` (git-ignored; created once, reused after). No peer code is copied
into this repository. A peer runs either a script from its own package (CleanRL) or, for a peer that is
a library without command-line scripts (SBX, d3rlpy), a short adapter script of ours beside this file
(``sbx_train.py``, ``d3rlpy_train.py``) that builds its learner with the workload's hyper-parameters and
calls its training function. Where a peer's script needs a small change to run on Gymnasium 1.x, the
change is applied here, at run time, to a copy of the installed script, and listed in :data:`WORKLOADS`
and ``docs/performance.md``.

A workload is one task with one set of hyper-parameters, run by hybridrl and by the peer (or by hybridrl
alone, against the raw simulator). The two
commands alternate (hybridrl, peer, hybridrl, peer, ...), so that drifts in the machine's speed hit
both alike; every run is a fresh process, timed from outside with ``os.wait4`` (wall, user and
system CPU-seconds, peak resident memory), and everything is included: start-up, imports,
compilation, training, logging. Raw simulator steps/s are measured in both environments in the same
session, so the ratios can be read against the simulator. Offline workloads train on a dataset that
``hybridrl data make`` writes once under ``benchmarks/runs/datasets/`` (git-ignored); both sides read
the same file.

    python benchmarks/peers/compare.py [--workloads ppo-hopper-cleanrl sac-hopper-sbx] [--repeats 3] \\
        [--torch "torch==2.13.0+cpu"]

Writes ``benchmarks/results/peers.json``; a workload run again replaces its own entry only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import RESULTS_DIR, write_result

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "benchmarks" / "runs" / "peers"
HYBRIDRL_PYTHON = Path(sys.executable)

#: Raw simulator steps/s, measured with the same random actions in every environment.
RAW_STEPS_SCRIPT = """
import sys, time, numpy as np, gymnasium as gym
env = gym.make(sys.argv[1]); env.reset(seed=0); steps = int(sys.argv[2])
actions = np.random.default_rng(0).uniform(-1, 1, (steps, *env.action_space.shape)).astype(np.float32)
start = time.perf_counter()
for action in actions:
    _, _, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        env.reset()
print(steps / (time.perf_counter() - start))
"""


@dataclass(frozen=True)
class Peer:
    """A peer library's virtual environment: what it installs and how its script is prepared."""

    name: str
    requirements: tuple[str, ...]
    #: pip arguments installed with ``--no-deps`` after the requirements (a peer that pins old versions).
    no_deps: tuple[str, ...] = ()
    #: the installed package whose folder holds the peer's scripts (CleanRL's is a namespace package)
    package: str = ""
    #: distributions whose versions the result records
    versions: tuple[str, ...] = ()

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


#: CleanRL's last release on the index (1.2.0, May 2023) declares Python < 3.11 and gymnasium 0.28; its
#: single-file scripts need neither, so it is installed without its dependencies, beside gymnasium 1.x, the
#: MuJoCo version hybridrl pins and torch (``{torch}``: ``--torch``; one thread, as CleanRL's benchmarks ran).
#: Its SAC script keeps its replay buffer in stable-baselines3's ``ReplayBuffer`` (SB3 2.x runs on gymnasium 1.x).
CLEANRL = Peer("cleanrl", requirements=("{torch}", "gymnasium[mujoco]>=1.1,<2", "mujoco==3.17.0", "tensorboard",
                                        "numpy", "stable-baselines3>=2,<3"),
               no_deps=("--ignore-requires-python", "cleanrl==1.2.0"), package="cleanrl",
               versions=("cleanrl", "stable-baselines3", "torch", "gymnasium", "mujoco", "numpy"))

#: SBX (the JAX Stable-Baselines, ``sbx-rl``): JAX and Flax for the learner, stable-baselines3 for environments,
#: buffers and the training loop (its buffers hand out torch tensors, so torch is installed too: ``{torch}``).
SBX = Peer("sbx", requirements=("{torch}", "sbx-rl==0.28.0", "gymnasium[mujoco]>=1.1,<2", "mujoco==3.17.0", "numpy"),
           package="sbx", versions=("sbx-rl", "stable-baselines3", "jax", "jaxlib", "flax", "optax", "torch",
                                    "gymnasium", "mujoco", "numpy"))

#: d3rlpy 2.8.1 pins gymnasium 1.0.0, so it cannot share hybridrl's or the other peers' environment; the offline
#: workloads need no simulator, only h5py to read the dataset.
D3RLPY = Peer("d3rlpy", requirements=("{torch}", "d3rlpy==2.8.1", "h5py"), package="d3rlpy",
              versions=("d3rlpy", "torch", "gymnasium", "h5py", "numpy"))


@dataclass(frozen=True)
class Edit:
    """One documented change to a peer's script: ``old`` must occur exactly once."""

    why: str
    old: str
    new: str


@dataclass(frozen=True)
class Workload:
    """One task and hyper-parameters, as a hybridrl command and a peer command (none: hybridrl against the raw
    simulator only)."""

    name: str
    description: str
    #: the simulator the workload steps; empty for an offline workload (no raw-simulator reference)
    env_id: str
    #: the work of one run, in ``unit``; the rates are these per second
    steps: int
    hybridrl_args: tuple[str, ...]
    peer: Peer | None = None
    #: the peer's script in its installed package, run from a copy with ``edits`` applied
    peer_script: str = ""
    #: instead of ``peer_script``: a script of ours (path from the repository root) that drives a peer without
    #: command-line scripts, run as it is in the peer's environment
    adapter: str = ""
    peer_args: tuple[str, ...] = ()
    edits: tuple[Edit, ...] = ()
    #: the unit of ``steps`` for the rate
    unit: str = "env steps"
    #: env steps of one run where ``unit`` is not env steps (SAC: 15,000 env steps for 10,000 updates), for the
    #: share of the raw simulator
    env_steps: int = 0
    #: what the two sides do differently: hyper-parameters that could not be matched, and work one side does more
    differences: tuple[str, ...] = ()
    #: a dataset made by ``hybridrl data make`` (see :func:`ensure_dataset`); ``{dataset}`` in either side's
    #: arguments is its folder
    dataset: str = ""
    #: hybridrl with its compilation cache warmed by one untimed run (a config run before); otherwise every
    #: hybridrl run compiles everything, as a first run does
    warm_compilation_cache: bool = False
    #: extra environment variables of hybridrl's runs (e.g. XLA's thread settings)
    hybridrl_environment: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.peer is not None and bool(self.peer_script) == bool(self.adapter):
            raise ValueError(f"{self.name}: a peer runs either a script of its package or an adapter of ours")
        if self.adapter and self.edits:
            raise ValueError(f"{self.name}: an adapter is our own script; change it instead of listing edits")
        if self.env_id and self.unit != "env steps" and not self.env_steps:
            raise ValueError(f"{self.name}: give env_steps, the env steps behind {self.steps} {self.unit}")

    @property
    def simulator_steps(self) -> int:
        """Env steps of one run (0: the workload steps no simulator)."""
        if not self.env_id:
            return 0
        return self.steps if self.unit == "env steps" else self.env_steps


CLEANRL_GYMNASIUM_1_EDITS = (
    Edit("gymnasium 1.x's TransformObservation takes the transformed observation space as a third argument",
         "gym.wrappers.TransformObservation(env, lambda obs: np.clip(obs, -10, 10))",
         "gym.wrappers.TransformObservation(env, lambda obs: np.clip(obs, -10, 10), env.observation_space)"),
    Edit("gymnasium 1.x vector envs report finished episodes in infos['episode'] with the mask infos['_episode'], "
         "not in infos['final_info']; without this the script logs no episode at all",
         '''            if "final_info" not in infos:
                continue

            for info in infos["final_info"]:
                # Skip the envs that are not done
                if info is None:
                    continue
                print(f"global_step={global_step}, episodic_return={info['episode']['r']}")
                writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)
                writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)''',
         '''            if "_episode" not in infos:
                continue

            for index in np.flatnonzero(infos["_episode"]):
                print(f"global_step={global_step}, episodic_return={infos['episode']['r'][index]}")
                writer.add_scalar("charts/episodic_return", infos["episode"]["r"][index], global_step)
                writer.add_scalar("charts/episodic_length", infos["episode"]["l"][index], global_step)'''),
)

#: CleanRL 1.2.0's ``sac_continuous_action.py`` predates CleanRL's move to gymnasium: it imports OpenAI Gym 0.23
#: (seeding through ``env.seed``, 4-tuple steps, per-env info dicts) and keeps its replay buffer in
#: stable-baselines3's ``ReplayBuffer``. These edits port it to gymnasium 1.x the way CleanRL's own later version
#: of the script does (terminations as the buffer's done flag, the true last observation of an episode cut by the
#: time limit as its next observation), with gymnasium 1.x's names (``final_obs`` where gymnasium 0.29 had
#: ``final_observation``). Nothing of the algorithm changes.
CLEANRL_SAC_GYMNASIUM_1_EDITS = (
    Edit("the script imports OpenAI Gym 0.23; gymnasium 1.x (hybridrl's simulator) runs it after the edits below",
         "import gym\n", "import gymnasium as gym\n"),
    Edit("gymnasium envs have no seed(): they are seeded by reset(seed=...)", "        env.seed(seed)\n", ""),
    Edit("gymnasium 1.x vector envs reset a finished env on the step after by default, a step this script would "
         "store as a transition; resetting in the same step gives the true last observation in infos['final_obs']",
         "envs = gym.vector.SyncVectorEnv([make_env(args.env_id, args.seed, 0, args.capture_video, run_name)])",
         "envs = gym.vector.SyncVectorEnv([make_env(args.env_id, args.seed, 0, args.capture_video, run_name)],\n"
         "                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)"),
    Edit("gymnasium's reset takes the seed and returns (observation, info)",
         "    obs = envs.reset()\n", "    obs, _ = envs.reset(seed=args.seed)\n"),
    Edit("gymnasium's step returns terminated and truncated apart",
         "next_obs, rewards, dones, infos = envs.step(actions)",
         "next_obs, rewards, terminations, truncations, infos = envs.step(actions)"),
    Edit("gymnasium 1.x vector envs give one info dict of arrays, not a list of per-env dicts: with same-step resets "
         "a finished episode's statistics are in infos['final_info']['episode'] with the mask "
         "infos['final_info']['_episode']",
         '''        for info in infos:
            if "episode" in info.keys():
                print(f"global_step={global_step}, episodic_return={info['episode']['r']}")
                writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)
                writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)
                break''',
         '''        if "final_info" in infos and "_episode" in infos["final_info"]:
            episode = infos["final_info"]["episode"]
            for index in np.flatnonzero(infos["final_info"]["_episode"]):
                print(f"global_step={global_step}, episodic_return={episode['r'][index]}")
                writer.add_scalar("charts/episodic_return", episode["r"][index], global_step)
                writer.add_scalar("charts/episodic_length", episode["l"][index], global_step)
                break'''),
    Edit("the true last observation of a finished episode is infos['final_obs'] (mask infos['_final_obs']), not "
         "infos[i]['terminal_observation'], and only terminations end the bootstrap (time-limit truncations are "
         "bootstrapped through), as in CleanRL's later gymnasium version of the script",
         '''        for idx, d in enumerate(dones):
            if d:
                real_next_obs[idx] = infos[idx]["terminal_observation"]
        rb.add(obs, real_next_obs, actions, rewards, dones, infos)''',
         '''        for idx in np.flatnonzero(infos.get("_final_obs", ())):
            real_next_obs[idx] = infos["final_obs"][idx]
        rb.add(obs, real_next_obs, actions, rewards, terminations, infos)'''),
    Edit("the buffer's done flag is now the termination, so stable-baselines3's own time-limit handling (which "
         "reads per-env info dicts) is off, as in CleanRL's later version of the script",
         "        handle_timeout_termination=True,\n", "        handle_timeout_termination=False,\n"),
)

PPO_STEPS = 98_304  # 48 rollouts of 2048 steps
#: hybridrl's `paper` PPO preset: CleanRL's recipe (1 env, 2048-step rollouts, 10 epochs x 32 minibatches, 64x64
#: tanh networks, observation and reward normalisation, learning-rate annealing)
PPO_PAPER_ARGS = ("-m", "hybridrl.cli", "train", "ppo", "--env", "Hopper-v5", "--preset", "paper", "--seed", "1",
                  "--total-steps", str(PPO_STEPS), "--eval-interval", "0", "--no-progress")

SAC_STEPS = 15_000
SAC_LEARNING_STARTS = 5_000
SAC_UPDATES = SAC_STEPS - SAC_LEARNING_STARTS
#: SAC with CleanRL's sizes: 2x256 networks, batch 256, one update per env step after 5,000 uniform-random steps,
#: temperature learned from 1.0 towards -|A|; one Adam step size (3e-4) for actor, critic and temperature
SAC_ARGS = ("-m", "hybridrl.cli", "train", "sac", "--env", "Hopper-v5", "--preset", "cpu", "--seed", "1",
            "--total-steps", str(SAC_STEPS), "--learning-starts", str(SAC_LEARNING_STARTS), "--hidden-sizes", "256",
            "256", "--batch-size", "256", "--learning-rate", "3e-4", "--init-temperature", "1.0", "--gamma", "0.99",
            "--tau", "0.005", "--update-every", "1", "--eval-interval", "0", "--no-progress")
SAC_DESCRIPTION = (f"SAC on Hopper-v5: 2x256 ReLU networks, batch 256, {SAC_STEPS:,} env steps of which the first "
                   f"{SAC_LEARNING_STARTS:,} uniform-random, then one update per step ({SAC_UPDATES:,} updates), "
                   "Adam 3e-4 for actor, critic and temperature, temperature learned from 1.0, gamma 0.99, tau 0.005")
SAC_HYBRIDRL_EXTRA = ("hybridrl also evaluates 5 deterministic episodes at the end, writes a checkpoint with its "
                      "replay buffer, a metrics log every 1,000 steps and a learning-curve plot")
#: hybridrl learns once the 5,000th step is in, so at steps 5,000 to 15,000 inclusive
SAC_HYBRIDRL_UPDATES = (f"hybridrl learns at steps {SAC_LEARNING_STARTS:,} to {SAC_STEPS:,} "
                        f"({SAC_UPDATES + 1:,} updates)")

IQL_STEPS = 5_000
BC_STEPS = 10_000
#: The legacy PPO-made dataset the committed speed results were measured on; what the data hold does not
#: change the cost of an update (the SAC-made datasets are the default of the learning benchmarks).
OFFLINE_DATASET = "hopper-medium-v5"
OFFLINE_HYBRIDRL_EXTRA = ("hybridrl also evaluates 10 deterministic episodes in Hopper-v5 at the end, writes a "
                          "checkpoint, a metrics log every 1,000 steps and a learning-curve plot; d3rlpy runs with "
                          "no evaluator and its no-op logger")
OFFLINE_DESCRIPTION = (f"on {OFFLINE_DATASET} (100,000 transitions, `hybridrl data make {OFFLINE_DATASET} --preset "
                       "cpu --seed 0`, one file read by both sides), states standardised with the dataset's mean "
                       "and std, Adam 3e-4, batch 256, 2x256 ReLU networks")

WORKLOADS: dict[str, Workload] = {
    "ppo-hopper-cleanrl": Workload(
        name="ppo-hopper-cleanrl",
        description="PPO on Hopper-v5, CleanRL's hyper-parameters (1 env, 2048-step rollouts, 10 epochs x 32 "
                    "minibatches, 64x64 tanh networks, observation and reward normalisation), "
                    f"{PPO_STEPS:,} steps; hybridrl's `paper` preset is the same recipe",
        env_id="Hopper-v5", steps=PPO_STEPS, hybridrl_args=PPO_PAPER_ARGS,
        peer=CLEANRL, peer_script="ppo_continuous_action.py",
        peer_args=("--env-id", "Hopper-v5", "--seed", "1", "--total-timesteps", str(PPO_STEPS), "--cuda", "False"),
        edits=CLEANRL_GYMNASIUM_1_EDITS,
        differences=("hybridrl also evaluates 10 deterministic episodes at the end and writes a checkpoint",)),
    "ppo-hopper-cleanrl-warm": Workload(
        name="ppo-hopper-cleanrl-warm",
        description="ppo-hopper-cleanrl with hybridrl run again: its compiled programs come from the compilation "
                    "cache, as in every run of a config after its first (another seed, a resumed run, a sweep)",
        env_id="Hopper-v5", steps=PPO_STEPS, hybridrl_args=PPO_PAPER_ARGS,
        peer=CLEANRL, peer_script="ppo_continuous_action.py",
        peer_args=("--env-id", "Hopper-v5", "--seed", "1", "--total-timesteps", str(PPO_STEPS), "--cuda", "False"),
        edits=CLEANRL_GYMNASIUM_1_EDITS, warm_compilation_cache=True,
        differences=("hybridrl also evaluates 10 deterministic episodes at the end and writes a checkpoint",)),
    "ppo-hopper-sbx": Workload(
        name="ppo-hopper-sbx",
        description=f"PPO on Hopper-v5 with CleanRL's hyper-parameters as in ppo-hopper-cleanrl, {PPO_STEPS:,} "
                    "steps: hybridrl's `paper` preset against SBX's PPO (SB3's VecNormalize for observation and "
                    "reward normalisation, clipped at 10; orthogonal init of the policy's output layer, gain 0.01; "
                    "Adam eps 1e-5; step size annealed linearly to 0)",
        env_id="Hopper-v5", steps=PPO_STEPS, hybridrl_args=PPO_PAPER_ARGS,
        peer=SBX, adapter="benchmarks/peers/sbx_train.py",
        peer_args=("ppo", "--env", "Hopper-v5", "--seed", "1", "--total-timesteps", str(PPO_STEPS), "--n-steps",
                   "2048", "--batch-size", "64", "--n-epochs", "10", "--hidden-sizes", "64", "64", "--learning-rate",
                   "3e-4", "--gamma", "0.99", "--gae-lambda", "0.95", "--clip-range", "0.2"),
        differences=(
            "SBX's PPO does not clip the value loss (its clip_range_vf is accepted but unused); hybridrl clips it "
            "as OpenAI baselines and CleanRL do",
            "SBX clips each network's gradient norm at 0.5 on its own; hybridrl clips the global norm of both",
            "SBX initialises hidden layers with Flax's default (LeCun normal) and only the policy's output layer "
            "orthogonally (gain 0.01); hybridrl initialises every layer orthogonally (sqrt 2 hidden, 0.01 policy "
            "output, 1 value output)",
            "hybridrl also evaluates 10 deterministic episodes at the end and writes a checkpoint",
        )),
    "ppo-hopper-cpu-preset": Workload(
        name="ppo-hopper-cpu-preset",
        description=f"PPO on Hopper-v5 with hybridrl's `cpu` preset (8 sync envs, 256-step rollouts, 10 epochs x 32 "
                    f"minibatches), {PPO_STEPS:,} steps, against the raw simulator",
        env_id="Hopper-v5", steps=PPO_STEPS,
        hybridrl_args=("-m", "hybridrl.cli", "train", "ppo", "--env", "Hopper-v5", "--preset", "cpu", "--seed", "1",
                       "--total-steps", str(PPO_STEPS), "--eval-interval", "0", "--no-progress")),
    "ppo-hopper-cpu-preset-warm": Workload(
        name="ppo-hopper-cpu-preset-warm",
        description="ppo-hopper-cpu-preset run again: its compiled programs come from the compilation cache",
        env_id="Hopper-v5", steps=PPO_STEPS,
        hybridrl_args=("-m", "hybridrl.cli", "train", "ppo", "--env", "Hopper-v5", "--preset", "cpu", "--seed", "1",
                       "--total-steps", str(PPO_STEPS), "--eval-interval", "0", "--no-progress"),
        warm_compilation_cache=True),
    "sac-hopper-cleanrl": Workload(
        name="sac-hopper-cleanrl",
        description=f"{SAC_DESCRIPTION}: hybridrl against CleanRL 1.2.0's sac_continuous_action.py, with its "
                    "--q-lr 3e-4 and --policy-frequency 1 so that both sides take the same steps",
        env_id="Hopper-v5", steps=SAC_UPDATES, unit="updates", env_steps=SAC_STEPS, hybridrl_args=SAC_ARGS,
        peer=CLEANRL, peer_script="sac_continuous_action.py",
        peer_args=("--env-id", "Hopper-v5", "--seed", "1", "--total-timesteps", str(SAC_STEPS), "--learning-starts",
                   str(SAC_LEARNING_STARTS), "--batch-size", "256", "--policy-lr", "3e-4", "--q-lr", "3e-4",
                   "--policy-frequency", "1", "--target-network-frequency", "1", "--gamma", "0.99", "--tau", "0.005",
                   "--autotune", "True", "--cuda", "False"),
        edits=CLEANRL_SAC_GYMNASIUM_1_EDITS,
        differences=(
            "CleanRL's defaults are --q-lr 1e-3 (critic and temperature) and --policy-frequency 2 (two actor and "
            "temperature updates every second step: the same number of updates); hybridrl has one step size for "
            "all three, so CleanRL runs with 3e-4 and one actor update per step",
            "CleanRL's temperature update runs the actor once more (no gradient) for fresh log-probabilities; "
            "hybridrl reuses those of the actor update",
            "CleanRL's replay (stable-baselines3's ReplayBuffer) has room for 1,000,000 transitions and hybridrl's "
            "for the run's 15,000; neither fills",
            f"{SAC_HYBRIDRL_UPDATES}, CleanRL at steps after {SAC_LEARNING_STARTS:,} of 0 to {SAC_STEPS - 1:,} "
            f"({SAC_UPDATES - 1:,})",
            SAC_HYBRIDRL_EXTRA + "; CleanRL logs to TensorBoard every 100 steps",
        )),
    "sac-hopper-one-xla-thread": Workload(
        name="sac-hopper-one-xla-thread",
        description=f"{SAC_DESCRIPTION}: hybridrl alone, as in sac-hopper-cleanrl, with XLA on one thread "
                    "(no intra-op thread pool), so that its CPU-seconds can be set against the peers'",
        env_id="Hopper-v5", steps=SAC_UPDATES, unit="updates", env_steps=SAC_STEPS, hybridrl_args=SAC_ARGS,
        hybridrl_environment=(("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"),)),
    "sac-hopper-sbx": Workload(
        name="sac-hopper-sbx",
        description=f"{SAC_DESCRIPTION}: hybridrl against SBX's SAC",
        env_id="Hopper-v5", steps=SAC_UPDATES, unit="updates", env_steps=SAC_STEPS, hybridrl_args=SAC_ARGS,
        peer=SBX, adapter="benchmarks/peers/sbx_train.py",
        peer_args=("sac", "--env", "Hopper-v5", "--seed", "1", "--total-timesteps", str(SAC_STEPS),
                   "--learning-starts", str(SAC_LEARNING_STARTS), "--batch-size", "256", "--hidden-sizes", "256",
                   "256", "--learning-rate", "3e-4", "--init-temperature", "1.0", "--gamma", "0.99", "--tau",
                   "0.005"),
        differences=(
            "SBX clips the actor's log-std to [-20, 2]; hybridrl bounds it smoothly (tanh) to [-5, 2]",
            "SBX samples each minibatch from stable-baselines3's ReplayBuffer on the host (numpy, through torch "
            "tensors, back to numpy) and reads its losses back every update; hybridrl samples on the device inside "
            "the compiled update and reads metrics back every 1,000 steps",
            f"{SAC_HYBRIDRL_UPDATES}, SBX at steps after {SAC_LEARNING_STARTS:,} ({SAC_UPDATES:,})",
            SAC_HYBRIDRL_EXTRA,
        )),
    "iql-hopper-d3rlpy": Workload(
        name="iql-hopper-d3rlpy",
        description=f"IQL {OFFLINE_DESCRIPTION}, expectile 0.7, inverse temperature 3, AWR weights capped at 100, "
                    f"gamma 0.99, target Q averaged every step at 0.005, {IQL_STEPS:,} gradient steps: hybridrl "
                    "against d3rlpy 2.8.1's IQL",
        env_id="", steps=IQL_STEPS, unit="updates", dataset=OFFLINE_DATASET,
        hybridrl_args=("-m", "hybridrl.cli", "train", "iql", "--dataset", "{dataset}", "--preset", "cpu", "--seed",
                       "1", "--steps", str(IQL_STEPS), "--batch-size", "256", "--critic-learning-rate", "3e-4",
                       "--policy-learning-rate", "3e-4", "--q-hidden", "256", "256", "--value-hidden", "256", "256",
                       "--policy-hidden", "256", "256", "--expectile", "0.7", "--temperature", "3.0", "--max-weight",
                       "100", "--gamma", "0.99", "--polyak", "0.005", "--target-update-period", "1",
                       "--no-timeouts-as-terminals", "--normalize-states", "--eval-interval", "0", "--no-progress"),
        peer=D3RLPY, adapter="benchmarks/peers/d3rlpy_train.py",
        peer_args=("iql", "--dataset", "{dataset}", "--seed", "1", "--steps", str(IQL_STEPS), "--batch-size", "256",
                   "--learning-rate", "3e-4", "--hidden-sizes", "256", "256", "--expectile", "0.7", "--temperature",
                   "3.0", "--max-weight", "100", "--gamma", "0.99", "--tau", "0.005"),
        differences=(
            "d3rlpy fits Q and V in one step of one Adam on the sum of their losses (the Q target from the V before "
            "the step); hybridrl updates V, then the policy, then Q against the new V, each with its own Adam",
            "the AWR policy's log-std is a state-independent parameter in both; d3rlpy maps it into [-5, 2] "
            "through a sigmoid, hybridrl leaves it unbounded",
            "d3rlpy divides states by std + 0.001, hybridrl by max(std, 0.001)",
            "d3rlpy picks each minibatch transition by transition in Python and reads its losses back every step; "
            "hybridrl samples on the device inside the compiled update and reads metrics back every 1,000 steps",
            OFFLINE_HYBRIDRL_EXTRA,
        )),
    "bc-hopper-d3rlpy": Workload(
        name="bc-hopper-d3rlpy",
        description=f"behaviour cloning {OFFLINE_DESCRIPTION}, a Gaussian policy with a tanh mean and a "
                    f"state-dependent log-std, {BC_STEPS:,} gradient steps: hybridrl (1 member) against d3rlpy "
                    "2.8.1's BC with its stochastic policy",
        env_id="", steps=BC_STEPS, unit="updates", dataset=OFFLINE_DATASET,
        hybridrl_args=("-m", "hybridrl.cli", "train", "bc", "--dataset", "{dataset}", "--preset", "cpu", "--seed",
                       "1", "--steps", str(BC_STEPS), "--batch-size", "256", "--learning-rate", "3e-4", "--hidden",
                       "256", "256", "--activation", "relu", "--num-members", "1", "--normalize-states",
                       "--eval-interval", "0", "--no-progress"),
        peer=D3RLPY, adapter="benchmarks/peers/d3rlpy_train.py",
        peer_args=("bc", "--dataset", "{dataset}", "--seed", "1", "--steps", str(BC_STEPS), "--batch-size", "256",
                   "--learning-rate", "3e-4", "--hidden-sizes", "256", "256"),
        differences=(
            "the loss: d3rlpy's stochastic BC minimises the squared error between a reparameterised sample of its "
            "Gaussian and the data action; hybridrl maximises the Gaussian's log-likelihood of the data action",
            "the log-std: d3rlpy clamps it to [-4, 15], hybridrl bounds it smoothly (tanh) to [-5, 0]",
            "d3rlpy divides states by std + 0.001, hybridrl by max(std, 0.001)",
            "d3rlpy picks each minibatch transition by transition in Python and reads its loss back every step; "
            "hybridrl samples on the device inside the compiled update and reads metrics back every 1,000 steps",
            OFFLINE_HYBRIDRL_EXTRA,
        )),
}

#: XLA on one thread: no intra-op thread pool (a hybridrl run's CPU-seconds against its wall time)
ONE_XLA_THREAD = (("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"),)
WORKLOADS["iql-hopper-one-xla-thread"] = dataclasses.replace(
    WORKLOADS["iql-hopper-d3rlpy"], name="iql-hopper-one-xla-thread",
    description="iql-hopper-d3rlpy's hybridrl command alone, with XLA on one thread (no intra-op thread pool), so "
                "that its CPU-seconds can be set against d3rlpy's",
    peer=None, adapter="", peer_args=(), differences=(), hybridrl_environment=ONE_XLA_THREAD)

#: One BLAS/torch thread for every process (CleanRL's published runtimes used OMP_NUM_THREADS=1).
ENVIRONMENT = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "disable"}

#: The Minari root of the offline workloads' datasets (git-ignored), and how they are made.
DATASETS = ROOT / "benchmarks" / "runs" / "datasets"
DATASET_PRESET = "cpu"
DATASET_SEED = 0


def ensure_venv(peer: Peer, torch: str, log: Callable[[str], None]) -> None:
    """Create the peer's virtual environment once (a stamp file records what was installed)."""
    requirements = [requirement.format(torch=torch) for requirement in peer.requirements]
    stamp = peer.venv / ".installed"
    wanted = json.dumps([requirements, peer.no_deps])
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    log(f"creating {peer.venv} (pip install {' '.join(requirements)})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(peer.venv)], check=True)
    pip = [str(peer.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True)
    if peer.no_deps:
        subprocess.run([*pip, "--no-deps", *peer.no_deps], check=True)
    stamp.write_text(wanted)


def ensure_dataset(name: str, log: Callable[[str], None]) -> Path:
    """The folder of the dataset ``name``, made once with ``hybridrl data make`` under :data:`DATASETS`.

    The ``cpu`` preset collects 100,000 transitions with the behaviour policies that ship with hybridrl, so no
    training is needed: seconds.
    """
    folder = DATASETS / "hybridrl" / name
    if (folder / "data" / "main_data.hdf5").is_file():
        return folder
    command = [str(HYBRIDRL_PYTHON), "-m", "hybridrl.cli", "data", "make", name, "--preset", DATASET_PRESET,
               "--seed", str(DATASET_SEED), "--work-dir", str(DATASETS / "behaviour"), "--no-progress"]
    log(f"making {folder} ({shlex.join(['hybridrl', *command[3:]])})")
    subprocess.run(command, check=True, cwd=ROOT,
                   env={**os.environ, **ENVIRONMENT, "MINARI_DATASETS_PATH": str(DATASETS)})
    return folder


def peer_script(workload: Workload, work_dir: Path) -> Path:
    """The script the peer runs: the workload's adapter of ours, or a copy of the peer's installed script in
    ``work_dir`` with the workload's edits applied."""
    assert workload.peer is not None
    if workload.adapter:
        adapter = ROOT / workload.adapter
        if not adapter.is_file():
            raise SystemExit(f"{workload.name}: the adapter {adapter} does not exist")
        return adapter
    package = workload.peer.package
    located = subprocess.run([str(workload.peer.python), "-c",
                              f"import {package}, os; print(os.path.join(list({package}.__path__)[0], "
                              f"{workload.peer_script!r}))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    text = Path(located).read_text()
    for edit in workload.edits:
        count = text.count(edit.old)
        if count != 1:
            raise SystemExit(f"{workload.name}: an edit's text occurs {count} times in {located}, not once: "
                             f"the peer's script changed; update the edit ({edit.why})")
        text = text.replace(edit.old, edit.new)
    script = work_dir / workload.peer_script
    script.write_text(text)
    return script


def timed_run(command: list[str], cwd: Path, extra_environment: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` as a fresh process; its wall time, CPU-seconds and peak memory (from ``wait4``), and the
    last line it printed (the peers' adapters print what they did there).

    The process gets this one's environment without JAX's compilation cache setting (so that only the workload
    decides whether hybridrl's runs compile), :data:`ENVIRONMENT`, and ``extra_environment``.
    """
    inherited = {key: value for key, value in os.environ.items() if key != "JAX_COMPILATION_CACHE_DIR"}
    environment = {**inherited, **ENVIRONMENT, **(extra_environment or {})}
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        output.seek(0)
        tail = output.read().decode(errors="replace")[-2000:]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{shlex.join(command)} exited with {code}:\n{tail}")
    lines = tail.strip().splitlines()
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "load_average_1min": os.getloadavg()[0], "last_output_line": lines[-1] if lines else ""}


def raw_steps_per_second(python: Path, env_id: str, steps: int = 20_000) -> float:
    result = subprocess.run([str(python), "-c", RAW_STEPS_SCRIPT, env_id, str(steps)], check=True,
                            capture_output=True, text=True, env={**os.environ, **ENVIRONMENT})
    return float(result.stdout.strip().splitlines()[-1])


def package_versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    script = ("import importlib.metadata as m, json, sys\n"
              "out = {}\n"
              "for n in sys.argv[1:]:\n"
              "    try: out[n] = m.version(n)\n"
              "    except m.PackageNotFoundError: pass\n"
              "print(json.dumps(out))")
    result = subprocess.run([str(python), "-c", script, *names], check=True, capture_output=True, text=True)
    return dict(json.loads(result.stdout))


def hybridrl_record(run_dir: Path) -> dict[str, Any]:
    """What hybridrl's run directory says it did: steps and gradient updates (from ``final.json``)."""
    final_path = run_dir / "final.json"
    if not final_path.is_file():
        return {}
    final = json.loads(final_path.read_text())
    return {key: final[key] for key in ("step", "gradient_updates") if key in final}


def summary(runs: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Medians over the runs, and steps (in the workload's unit) per wall-second and per CPU-second."""
    median = {key: float(np.median([run[key] for run in runs])) for key in ("wall_s", "cpu_s", "peak_rss_mb")}
    return {**median, "steps_per_wall_s": steps / median["wall_s"], "steps_per_cpu_s": steps / median["cpu_s"]}


def measure(workload: Workload, repeats: int, torch: str, log: Callable[[str], None]) -> dict[str, Any]:
    pythons = {"hybridrl": HYBRIDRL_PYTHON}
    if workload.peer is not None:
        ensure_venv(workload.peer, torch, log)
        pythons[workload.peer.name] = workload.peer.python
    dataset = ensure_dataset(workload.dataset, log) if workload.dataset else None

    def arguments(args: tuple[str, ...]) -> list[str]:
        return [arg.replace("{dataset}", str(dataset)) if dataset else arg for arg in args]

    with tempfile.TemporaryDirectory(prefix=f"peers-{workload.name}-") as tmp:
        work_dir = Path(tmp)
        run_dir = work_dir / "hybridrl"
        commands = {"hybridrl": [str(HYBRIDRL_PYTHON), *arguments(workload.hybridrl_args), "--run-dir",
                                 str(run_dir)]}
        if workload.peer is not None:
            script = peer_script(workload, work_dir)
            commands[workload.peer.name] = [str(workload.peer.python), str(script), *arguments(workload.peer_args)]
        cache = {"JAX_COMPILATION_CACHE_DIR": str(work_dir / "jax-compilation")}
        hybridrl_environment = {**(cache if workload.warm_compilation_cache else {"HYBRIDRL_COMPILATION_CACHE": "0"}),
                                **dict(workload.hybridrl_environment)}
        if workload.warm_compilation_cache:
            timed_run(commands["hybridrl"], work_dir, hybridrl_environment)  # untimed: fills the cache
        simulated = bool(workload.simulator_steps)
        raw_before = ({name: raw_steps_per_second(python, workload.env_id) for name, python in pythons.items()}
                      if simulated else {})
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
        for repeat in range(repeats):
            for name, command in commands.items():
                shutil.rmtree(run_dir, ignore_errors=True)  # every hybridrl run starts afresh
                run = timed_run(command, work_dir, hybridrl_environment if name == "hybridrl" else None)
                if name == "hybridrl":
                    run["hybridrl_record"] = hybridrl_record(run_dir)
                runs[name].append(run)
                log(f"{workload.name} {name} run {repeat + 1}/{repeats}: {run['wall_s']:.1f} s wall, "
                    f"{run['cpu_s']:.1f} CPU-s, {run['peak_rss_mb']:.0f} MB; {run['last_output_line']}")
        raw_after = ({name: raw_steps_per_second(python, workload.env_id) for name, python in pythons.items()}
                     if simulated else {})
    medians = {name: summary(rows, workload.steps) for name, rows in runs.items()}
    result: dict[str, Any] = {
        "description": workload.description,
        "env_id": workload.env_id,
        "steps": workload.steps,
        "unit": workload.unit,
        "repeats": repeats,
        "commands": {name: shlex.join(command) for name, command in commands.items()},
        "edits": [edit.why for edit in workload.edits],
        "differences": list(workload.differences),
        "environment": ENVIRONMENT,
        "hybridrl_compilation_cache": "warm" if workload.warm_compilation_cache else "off (every run compiles)",
        "hybridrl_environment": dict(workload.hybridrl_environment),
        "runs": runs,
        "median": medians,
        "hybridrl_versions": package_versions(HYBRIDRL_PYTHON, ("jax", "jaxlib", "gymnasium", "mujoco", "numpy")),
    }
    if simulated:
        raw = {name: float(np.median([raw_before[name], raw_after[name]])) for name in commands}
        result["env_steps"] = workload.simulator_steps
        result["raw_simulator_steps_per_s"] = {"before": raw_before, "after": raw_after, "median": raw}
        result["fraction_of_raw_simulator"] = {name: workload.simulator_steps / medians[name]["wall_s"] / raw[name]
                                               for name in commands}
    if dataset is not None:
        result["dataset"] = {"name": workload.dataset, "folder": str(dataset.relative_to(ROOT)),
                             "made_with": f"hybridrl data make {workload.dataset} --preset {DATASET_PRESET} "
                                          f"--seed {DATASET_SEED}"}
    if workload.peer is not None:
        # Ratios pair by pair (run i of one against run i of the other), then their median: robust to drift.
        paired = {key: float(np.median([peer_run[key] / our_run[key] for our_run, peer_run in
                                        zip(runs["hybridrl"], runs[workload.peer.name], strict=True)]))
                  for key in ("wall_s", "cpu_s")}
        result["speedup"] = {"wall": paired["wall_s"], "per_cpu_second": paired["cpu_s"]}
        result["peer_script"] = workload.adapter or f"{workload.peer.package}/{workload.peer_script} (installed)"
        result["peer_versions"] = package_versions(workload.peer.python, workload.peer.versions)
    return result


def report(results: dict[str, Any]) -> str:
    """The Markdown table of docs/performance.md."""
    lines = ["| workload | hybridrl: wall / CPU-s / peak MB | peer: wall / CPU-s / peak MB "
             "| hybridrl's speed-up (wall, per CPU-s) | rate per wall-second (hybridrl, peer) "
             "| env steps/s as a share of the raw simulator (hybridrl, peer) |",
             "|---|---|---|---|---|---|"]
    for name, result in results.items():
        ours, unit = result["median"]["hybridrl"], result.get("unit", "env steps")
        fraction = result.get("fraction_of_raw_simulator", {})
        ours_cell = f"{ours['wall_s']:.1f} s / {ours['cpu_s']:.1f} / {ours['peak_rss_mb']:.0f}"
        rate = f"{ours['steps_per_wall_s']:,.0f} {unit}/s"
        share = f"{fraction['hybridrl']:.0%}" if fraction else "(offline)"
        peer = next((key for key in result["median"] if key != "hybridrl"), None)
        if peer is None:
            lines.append(f"| {name} | {ours_cell} | (none) | | {rate} | {share} |")
            continue
        theirs = result["median"][peer]
        if fraction:
            share += f", {fraction[peer]:.0%}"
        lines.append(f"| {name} | {ours_cell} "
                     f"| {peer}: {theirs['wall_s']:.1f} s / {theirs['cpu_s']:.1f} / {theirs['peak_rss_mb']:.0f} "
                     f"| {result['speedup']['wall']:.2f}×, {result['speedup']['per_cpu_second']:.2f}× "
                     f"| {rate}, {theirs['steps_per_wall_s']:,.0f} | {share} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--torch", default="torch",
                        help="the torch requirement of the peers' environments: plain `torch` from the index is "
                             "the CUDA build on Linux (5 GB, slower to import); a CPU build such as "
                             "`torch==2.13.0+cpu` where pip can find one")
    args = parser.parse_args()
    path = RESULTS_DIR / "peers.json"
    previous = json.loads(path.read_text())["workloads"] if path.is_file() else {}
    results = dict(previous)
    for name in args.workloads:
        results[name] = measure(WORKLOADS[name], args.repeats, args.torch, lambda message: print(message, flush=True))
        write_result("peers", [1], {"repeats": args.repeats, "workloads": results})
    print(report(results))


if __name__ == "__main__":
    main()
