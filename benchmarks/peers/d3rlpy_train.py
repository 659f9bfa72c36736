"""d3rlpy's IQL or BC on a hybridrl dataset: the peers benchmark's adapter for d3rlpy (``benchmarks/peers/compare.py``).

d3rlpy's training is a library call, not a script, so this script of ours reads the dataset hybridrl trains on (a
Minari-format folder written by ``hybridrl data make``, read here with h5py), builds d3rlpy's learner with the
hyper-parameters given on the command line and calls ``fit(n_steps=...)`` with no evaluators, no progress bar and
d3rlpy's no-op logger (no metric files, no saved models); its last line gives the counts the benchmark checks. It
runs in the benchmark's d3rlpy environment (``benchmarks/runs/peers/d3rlpy``: d3rlpy 2.8.1 pins gymnasium 1.0.0),
so it imports nothing of hybridrl's.

    python benchmarks/peers/d3rlpy_train.py iql --dataset DATASET_FOLDER --steps 5000
    python benchmarks/peers/d3rlpy_train.py bc --dataset DATASET_FOLDER --steps 10000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import d3rlpy
import h5py
import numpy as np
from d3rlpy.dataset import Episode, InfiniteBuffer, ReplayBuffer
from d3rlpy.models.encoders import VectorEncoderFactory
from d3rlpy.preprocessing import StandardObservationScaler


def load_episodes(folder: Path) -> list[Episode]:
    """Every episode of the Minari dataset in ``folder``, as d3rlpy episodes holding exactly its transitions.

    A Minari episode stores ``T + 1`` observations for ``T`` actions. d3rlpy takes the next observation of step
    ``t`` from row ``t + 1`` and gives a non-terminated episode of ``n`` rows ``n - 1`` transitions, so a truncated
    episode keeps its last observation as one padding row (zero action and reward, never a transition's own
    step); a terminated one drops it (d3rlpy's terminal transition has a zero next observation, which the target
    ignores). d3rlpy's flat-array ``MDPDataset`` would instead lose the last transition of every truncated episode.
    """
    episodes = []
    with h5py.File(folder / "data" / "main_data.hdf5", "r") as handle:
        for name in sorted(handle, key=lambda key: int(key.removeprefix("episode_"))):
            group = handle[name]
            observations = np.asarray(group["observations"], np.float32)
            actions = np.asarray(group["actions"], np.float32)
            rewards = np.asarray(group["rewards"], np.float32).reshape(-1, 1)
            terminated = bool(np.asarray(group["terminations"])[-1])
            if terminated:
                observations = observations[:-1]
            else:
                actions = np.concatenate([actions, np.zeros_like(actions[:1])])
                rewards = np.concatenate([rewards, np.zeros_like(rewards[:1])])
            episodes.append(Episode(observations=observations, actions=actions, rewards=rewards,
                                    terminated=terminated))
    return episodes


def make_learner(args: argparse.Namespace) -> d3rlpy.algos.IQL | d3rlpy.algos.BC:
    """IQL or BC with 2 x ``hidden`` ReLU networks and states standardised with the dataset's statistics."""
    encoder = VectorEncoderFactory(hidden_units=list(args.hidden_sizes), activation="relu")
    scaler = StandardObservationScaler()
    if args.algorithm == "iql":
        config = d3rlpy.algos.IQLConfig(
            batch_size=args.batch_size, gamma=args.gamma, tau=args.tau, n_critics=2, expectile=args.expectile,
            weight_temp=args.temperature, max_weight=args.max_weight, actor_learning_rate=args.learning_rate,
            critic_learning_rate=args.learning_rate, actor_encoder_factory=encoder, critic_encoder_factory=encoder,
            value_encoder_factory=encoder, observation_scaler=scaler)
        return config.create(device=False)
    bc_config = d3rlpy.algos.BCConfig(batch_size=args.batch_size, learning_rate=args.learning_rate,
                                      policy_type="stochastic", encoder_factory=encoder, observation_scaler=scaler)
    return bc_config.create(device=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="algorithm", required=True)
    iql = commands.add_parser("iql", help="Implicit Q-Learning")
    bc = commands.add_parser("bc", help="behaviour cloning (d3rlpy's stochastic policy)")
    for command in (iql, bc):
        command.add_argument("--dataset", type=Path, required=True, help="a Minari dataset folder")
        command.add_argument("--seed", type=int, default=1)
        command.add_argument("--steps", type=int, required=True, help="gradient steps")
        command.add_argument("--batch-size", type=int, default=256)
        command.add_argument("--learning-rate", type=float, default=3e-4, help="Adam step size of every network")
        command.add_argument("--hidden-sizes", type=int, nargs="+", default=[256, 256])
    iql.add_argument("--gamma", type=float, default=0.99)
    iql.add_argument("--tau", type=float, default=0.005, help="Polyak rate of the target Q, every step")
    iql.add_argument("--expectile", type=float, default=0.7)
    iql.add_argument("--temperature", type=float, default=3.0, help="inverse temperature beta of the AWR weights")
    iql.add_argument("--max-weight", type=float, default=100.0, help="cap on the AWR weights")
    args = parser.parse_args()

    d3rlpy.seed(args.seed)
    episodes = load_episodes(args.dataset)
    dataset = ReplayBuffer(InfiniteBuffer(), episodes=episodes, action_space=d3rlpy.ActionSpace.CONTINUOUS,
                           action_size=episodes[0].actions.shape[1])
    learner = make_learner(args)
    # One epoch of all the steps: fit() runs steps // n_steps_per_epoch epochs and closes each with metrics.
    learner.fit(dataset, n_steps=args.steps, n_steps_per_epoch=args.steps, experiment_name=f"d3rlpy-{args.algorithm}",
                with_timestamp=False, logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False,
                evaluators=None)
    print(f"d3rlpy {args.algorithm}: {dataset.transition_count} transitions in {len(episodes)} episodes, "
          f"{learner.grad_step} gradient steps", flush=True)


if __name__ == "__main__":
    main()
