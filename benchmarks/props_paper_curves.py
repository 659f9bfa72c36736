"""The PROPS paper's released learning curves, read at our budget.

Our `props_returns` benchmark stops at 500k steps; the paper ran 1M (Hopper) and 2M (Walker2d,
HalfCheetah) steps. This script reads the authors' released evaluations (50 runs per method, from
`NicholasCorrado/PPOROS`, folder `PROPS/plotting/neurips/data/rl`) and summarises each method's
return at the last evaluation at or before `--budget` steps, and the mean return over the curve up
to it (the area-under-the-curve score), as IQM with 95 % bootstrap intervals, next to the same at
the paper's full budget. The runs are the paper's rows: PROPS (b = 2, its per-task settings), PPO
(`ppo_buffer/b_1`, tuned) and PPO-Buffer (`ppo_buffer/b_2`, tuned).

Caveat: a released run read at 500k is 500k steps into a 1M/2M-step run, whose learning rate is
annealed over the longer budget (ours anneals to zero at 500k), so this is a bar to read our
numbers against, not an identical run.

    python benchmarks/props_paper_curves.py --data PATH/TO/PROPS/plotting/neurips/data/rl [--budget 500000]

Writes benchmarks/results/props_paper_curves.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from common import iqm_summary, write_result

NAME = "props_paper_curves"
#: env (ours) -> method -> the released runs' folder under the data root (see reference/props.md).
RUNS = {
    "Hopper-v5": {
        "props": "props/results/Hopper-v4/ppo_ros/b_2/s_2048/s_256/lr_0.001/lr_0.001/kl_0.03/kl_0.05/l_0.3/e_16/"
                 "mb_16/c_0.3/a_0",
        "ppo": "ppo_buffer/results/Hopper-v4/ppo_buffer/b_1/s_2048/lr_0.001/kl_0.03/e_10",
        "ppo-buffer": "ppo_buffer/results/Hopper-v4/ppo_buffer/b_2/s_1024/lr_0.0001/kl_0.03/e_10",
    },
    "Walker2d-v5": {
        "props": "props/results/Walker2d-v4/ppo_ros/b_2/s_2048/s_256/lr_0.001/lr_0.001/kl_0.03/kl_0.1/l_0.3/e_16/"
                 "mb_32/c_0.3/a_0",
        "ppo": "ppo_buffer/results/Walker2d-v4/ppo_buffer/b_1/s_4096/lr_0.001/kl_0.03/e_10",
        "ppo-buffer": "ppo_buffer/results/Walker2d-v4/ppo_buffer/b_2/s_4096/lr_0.001/kl_0.03/e_10",
    },
    "HalfCheetah-v5": {
        "props": "props/results/HalfCheetah-v4/ppo_ros/b_2/s_1024/s_512/lr_0.0001/lr_0.001/kl_0.03/kl_0.05/l_0.3/"
                 "e_16/mb_16/c_0.3/a_0",
        "ppo": "ppo_buffer/results/HalfCheetah-v4/ppo_buffer/b_1/s_1024/lr_0.0001/kl_0.03/e_10",
        "ppo-buffer": "ppo_buffer/results/HalfCheetah-v4/ppo_buffer/b_2/s_4096/lr_0.001/kl_0.03/e_10",
    },
}


def read_at(run_dirs: list[Path], budget: int | None) -> dict[str, Any]:
    """Per run: the mean evaluation return at the last evaluation at or before ``budget`` (None: the
    run's end) and the mean over its evaluations up to there; summarised over runs."""
    finals, curve_means, last_steps = [], [], []
    for run_dir in run_dirs:
        with np.load(run_dir / "evaluations.npz") as evaluations:
            steps, returns = evaluations["timesteps"], evaluations["returns"].mean(axis=1)
        upto = steps <= (budget if budget is not None else steps[-1])
        finals.append(float(returns[upto][-1]))
        curve_means.append(float(returns[upto].mean()))
        last_steps.append(int(steps[upto][-1]))
    return {"final": iqm_summary(finals), "curve_mean": iqm_summary(curve_means),
            "last_evaluation_step": int(np.median(last_steps)), "runs": len(run_dirs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="the released data folder PROPS/plotting/neurips/data/rl of NicholasCorrado/PPOROS")
    parser.add_argument("--budget", type=int, default=500_000)
    arguments = parser.parse_args()
    summary: dict[str, Any] = {}
    for env, methods in RUNS.items():
        for method, folder in methods.items():
            run_dirs = sorted((arguments.data / folder).glob("run_*"))
            if not run_dirs:
                raise SystemExit(f"no released runs under {arguments.data / folder}: pass --data the folder "
                                 "PROPS/plotting/neurips/data/rl of a PPOROS checkout")
            summary.setdefault(env, {})[method] = {"at_budget": read_at(run_dirs, arguments.budget),
                                                   "at_paper_budget": read_at(run_dirs, None), "folder": folder}
    write_result(NAME, [], {"benchmark": NAME, "budget": arguments.budget,
                            "source": "NicholasCorrado/PPOROS @ a0c8708, PROPS/plotting/neurips/data/rl",
                            "note": "released runs read part-way: their learning rate anneals over 1M/2M steps",
                            "curves": summary})


if __name__ == "__main__":
    main()
