"""SBX's SAC or PPO on a Gymnasium task: the peers benchmark's adapter for SBX (``benchmarks/peers/compare.py``).

SBX (the JAX Stable-Baselines, PyPI ``sbx-rl``) has no command-line script, so this script of ours builds its
learner with the hyper-parameters given on the command line and calls ``learn(total_timesteps)``; it adds no
evaluation, checkpoint or logging of its own, only a last line with the counts the benchmark checks. It runs in the
benchmark's SBX environment (``benchmarks/runs/peers/sbx``), so it imports nothing of hybridrl's.

    python benchmarks/peers/sbx_train.py sac --env Hopper-v5 --total-timesteps 15000 --learning-starts 5000
    python benchmarks/peers/sbx_train.py ppo --env Hopper-v5 --total-timesteps 98304
"""

from __future__ import annotations

import argparse

import flax.linen as nn
from sbx import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize


def train_sac(args: argparse.Namespace) -> None:
    """SAC with a learned temperature, one gradient update per env step once ``learning_starts`` steps are in.

    SB3's loop learns when more than ``learning_starts`` steps are collected, so a run does
    ``total_timesteps - learning_starts`` updates; one Adam step size for actor, critic and temperature
    (``qf_learning_rate`` left unset).
    """
    env = make_vec_env(args.env, n_envs=1, seed=args.seed)
    model = SAC("MlpPolicy", env, learning_rate=args.learning_rate, buffer_size=args.total_timesteps,
                learning_starts=args.learning_starts, batch_size=args.batch_size, tau=args.tau, gamma=args.gamma,
                train_freq=1, gradient_steps=1, policy_delay=1, ent_coef=f"auto_{args.init_temperature}",
                policy_kwargs={"net_arch": list(args.hidden_sizes)}, seed=args.seed, verbose=0)
    model.learn(total_timesteps=args.total_timesteps)
    print(f"sbx sac: {model.num_timesteps} env steps, {model._n_updates} gradient updates", flush=True)


def train_ppo(args: argparse.Namespace) -> None:
    """PPO on one env with observation and reward normalisation (SB3's ``VecNormalize``, clipped at 10, as
    CleanRL's wrappers) and the step size annealed linearly to 0 over the run."""
    env = VecNormalize(make_vec_env(args.env, n_envs=1, seed=args.seed), norm_obs=True, norm_reward=True,
                       clip_obs=10.0, clip_reward=10.0, gamma=args.gamma)
    initial_learning_rate = args.learning_rate

    def annealed_learning_rate(progress_remaining: float) -> float:
        return initial_learning_rate * progress_remaining

    policy_kwargs = {"net_arch": {"pi": list(args.hidden_sizes), "vf": list(args.hidden_sizes)},
                     "activation_fn": nn.tanh, "ortho_init": True, "log_std_init": 0.0}
    model = PPO("MlpPolicy", env, learning_rate=annealed_learning_rate, n_steps=args.n_steps,
                batch_size=args.batch_size, n_epochs=args.n_epochs, gamma=args.gamma, gae_lambda=args.gae_lambda,
                clip_range=args.clip_range, normalize_advantage=True, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
                policy_kwargs=policy_kwargs, seed=args.seed, verbose=0)
    model.learn(total_timesteps=args.total_timesteps)
    minibatches = model._n_updates * (args.n_steps // args.batch_size)
    print(f"sbx ppo: {model.num_timesteps} env steps, {model.num_timesteps // args.n_steps} rollouts, "
          f"{model._n_updates} epochs, {minibatches} minibatch updates", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="algorithm", required=True)
    sac = commands.add_parser("sac", help="Soft Actor-Critic")
    ppo = commands.add_parser("ppo", help="Proximal Policy Optimisation")
    for command in (sac, ppo):
        command.add_argument("--env", default="Hopper-v5", help="Gymnasium id")
        command.add_argument("--seed", type=int, default=1)
        command.add_argument("--total-timesteps", type=int, required=True, help="env steps of the run")
        command.add_argument("--gamma", type=float, default=0.99)
        command.add_argument("--learning-rate", type=float, default=3e-4, help="Adam step size (PPO: initial)")
    sac.add_argument("--learning-starts", type=int, default=5_000, help="uniform-random steps before learning")
    sac.add_argument("--batch-size", type=int, default=256)
    sac.add_argument("--hidden-sizes", type=int, nargs="+", default=[256, 256], help="actor and each Q network")
    sac.add_argument("--tau", type=float, default=0.005, help="Polyak rate of the target critic")
    sac.add_argument("--init-temperature", type=float, default=1.0, help="initial entropy temperature (learned)")
    ppo.add_argument("--n-steps", type=int, default=2048, help="steps per rollout")
    ppo.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    ppo.add_argument("--n-epochs", type=int, default=10)
    ppo.add_argument("--hidden-sizes", type=int, nargs="+", default=[64, 64], help="policy and value network (tanh)")
    ppo.add_argument("--gae-lambda", type=float, default=0.95)
    ppo.add_argument("--clip-range", type=float, default=0.2)
    args = parser.parse_args()
    if args.algorithm == "sac":
        train_sac(args)
    else:
        train_ppo(args)


if __name__ == "__main__":
    main()
