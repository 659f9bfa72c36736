"""hybridrl: learning decisions from scarce data, in JAX.

The Python API mirrors the command line::

    import hybridrl
    result = hybridrl.train("ppo", preset="cpu", env="Hopper-v5", seed=1, total_steps=100_000)
    print(result.final["eval/return_mean"], result.run_dir)
    hybridrl.resume(result.run_dir)          # continue an interrupted run
    hybridrl.evaluate(result.run_dir, episodes=20)
    results = hybridrl.train_seeds("iql", seeds=range(1, 5), preset="cpu", dataset="hopper-medium-sac-v5")
"""

from hybridrl.errors import HybridRLError
from hybridrl.runs import RunResult, evaluate, resume, train, train_seeds

__version__ = "0.1.0"
__all__ = ["HybridRLError", "RunResult", "__version__", "evaluate", "resume", "train", "train_seeds"]
