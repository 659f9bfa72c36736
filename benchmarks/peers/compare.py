"""hybridrl against peer libraries, side by side: whole processes, alternating, on this machine.

Each peer runs in its own virtual environment, created from the package index under
``benchmarks/runs/peers/<peer>/`` (git-ignored; created once, reused after). No peer code is copied
into this repository: where a peer's script needs a small change to run on Gymnasium 1.x, the change
is applied here, at run time, to a copy of the installed script, and listed in :data:`WORKLOADS` and
``docs/performance.md``.

A workload is one task with one set of hyper-parameters, run by hybridrl and by the peer (or by hybridrl
alone, against the raw simulator). The two
commands alternate (hybridrl, peer, hybridrl, peer, ...), so that drifts in the machine's speed hit
both alike; every run is a fresh process, timed from outside with ``os.wait4`` (wall, user and
system CPU-seconds, peak resident memory), and everything is included: start-up, imports,
compilation, training, logging. Raw simulator steps/s are measured in both environments in the same
session, so the ratios can be read against the simulator.

    python benchmarks/peers/compare.py [--workloads ppo-hopper-cleanrl ppo-hopper-cpu-preset] [--repeats 3]

Writes ``benchmarks/results/peers.json``; a workload run again replaces its own entry only.
"""

from __future__ import annotations

import argparse
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

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


#: CleanRL's last release on the index (1.2.0, May 2023) declares Python < 3.11 and gymnasium 0.28; its
#: single-file scripts need neither, so it is installed without its dependencies, beside gymnasium 1.x, the
#: MuJoCo version hybridrl pins and torch (``{torch}``: ``--torch``; one thread, as CleanRL's benchmarks ran).
CLEANRL = Peer("cleanrl", requirements=("{torch}", "gymnasium[mujoco]>=1.1,<2", "mujoco==3.17.0", "tensorboard",
                                        "numpy"),
               no_deps=("--ignore-requires-python", "cleanrl==1.2.0"), package="cleanrl")


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
    env_id: str
    steps: int
    hybridrl_args: tuple[str, ...]
    peer: Peer | None = None
    peer_script: str = ""
    peer_args: tuple[str, ...] = ()
    edits: tuple[Edit, ...] = ()
    #: the unit of ``steps`` for the rate
    unit: str = "env steps"
    #: hybridrl with its compilation cache warmed by one untimed run (a config run before); otherwise every
    #: hybridrl run compiles everything, as a first run does
    warm_compilation_cache: bool = False


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

PPO_STEPS = 98_304  # 48 rollouts of 2048 steps

WORKLOADS: dict[str, Workload] = {
    "ppo-hopper-cleanrl": Workload(
        name="ppo-hopper-cleanrl",
        description="PPO on Hopper-v5, CleanRL's hyper-parameters (1 env, 2048-step rollouts, 10 epochs x 32 "
                    "minibatches, 64x64 tanh networks, observation and reward normalisation), "
                    f"{PPO_STEPS:,} steps; hybridrl's `paper` preset is the same recipe",
        env_id="Hopper-v5", steps=PPO_STEPS,
        hybridrl_args=("-m", "hybridrl.cli", "train", "ppo", "--env", "Hopper-v5", "--preset", "paper", "--seed", "1",
                       "--total-steps", str(PPO_STEPS), "--eval-interval", "0", "--no-progress"),
        peer=CLEANRL, peer_script="ppo_continuous_action.py",
        peer_args=("--env-id", "Hopper-v5", "--seed", "1", "--total-timesteps", str(PPO_STEPS), "--cuda", "False"),
        edits=CLEANRL_GYMNASIUM_1_EDITS),
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
}

#: One BLAS/torch thread for every process (CleanRL's published runtimes used OMP_NUM_THREADS=1).
ENVIRONMENT = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "disable"}


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


def prepared_script(workload: Workload, work_dir: Path) -> Path:
    """Copy the peer's installed script into ``work_dir`` with the workload's edits applied."""
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
    """Run ``command`` as a fresh process; its wall time, CPU-seconds and peak memory (from ``wait4``).

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
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "load_average_1min": os.getloadavg()[0]}


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


def summary(runs: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Medians over the runs, and steps per wall-second and per CPU-second."""
    median = {key: float(np.median([run[key] for run in runs])) for key in ("wall_s", "cpu_s", "peak_rss_mb")}
    return {**median, "steps_per_wall_s": steps / median["wall_s"], "steps_per_cpu_s": steps / median["cpu_s"]}


def measure(workload: Workload, repeats: int, torch: str, log: Callable[[str], None]) -> dict[str, Any]:
    pythons = {"hybridrl": HYBRIDRL_PYTHON}
    if workload.peer is not None:
        ensure_venv(workload.peer, torch, log)
        pythons[workload.peer.name] = workload.peer.python
    with tempfile.TemporaryDirectory(prefix=f"peers-{workload.name}-") as tmp:
        work_dir = Path(tmp)
        commands = {"hybridrl": [str(HYBRIDRL_PYTHON), *workload.hybridrl_args, "--run-dir",
                                 str(work_dir / "hybridrl")]}
        if workload.peer is not None:
            script = prepared_script(workload, work_dir)
            commands[workload.peer.name] = [str(workload.peer.python), str(script), *workload.peer_args]
        cache = {"JAX_COMPILATION_CACHE_DIR": str(work_dir / "jax-compilation")}
        hybridrl_environment = cache if workload.warm_compilation_cache else {"HYBRIDRL_COMPILATION_CACHE": "0"}
        if workload.warm_compilation_cache:
            timed_run(commands["hybridrl"], work_dir, hybridrl_environment)  # untimed: fills the cache
        raw_before = {name: raw_steps_per_second(python, workload.env_id) for name, python in pythons.items()}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
        for repeat in range(repeats):
            for name, command in commands.items():
                shutil.rmtree(work_dir / "hybridrl", ignore_errors=True)  # every hybridrl run starts afresh
                run = timed_run(command, work_dir, hybridrl_environment if name == "hybridrl" else None)
                runs[name].append(run)
                log(f"{workload.name} {name} run {repeat + 1}/{repeats}: {run['wall_s']:.1f} s wall, "
                    f"{run['cpu_s']:.1f} CPU-s, {run['peak_rss_mb']:.0f} MB")
        raw_after = {name: raw_steps_per_second(python, workload.env_id) for name, python in pythons.items()}
    medians = {name: summary(rows, workload.steps) for name, rows in runs.items()}
    raw = {name: float(np.median([raw_before[name], raw_after[name]])) for name in commands}
    result: dict[str, Any] = {
        "description": workload.description,
        "env_id": workload.env_id,
        "steps": workload.steps,
        "unit": workload.unit,
        "commands": {name: shlex.join(command) for name, command in commands.items()},
        "edits": [edit.why for edit in workload.edits],
        "environment": ENVIRONMENT,
        "hybridrl_compilation_cache": "warm" if workload.warm_compilation_cache else "off (every run compiles)",
        "runs": runs,
        "median": medians,
        "raw_simulator_steps_per_s": {"before": raw_before, "after": raw_after, "median": raw},
        "fraction_of_raw_simulator": {name: medians[name]["steps_per_wall_s"] / raw[name] for name in commands},
        "hybridrl_versions": package_versions(HYBRIDRL_PYTHON, ("jax", "jaxlib", "gymnasium", "mujoco", "numpy")),
    }
    if workload.peer is not None:
        # Ratios pair by pair (run i of one against run i of the other), then their median: robust to drift.
        paired = {key: float(np.median([peer_run[key] / our_run[key] for our_run, peer_run in
                                        zip(runs["hybridrl"], runs[workload.peer.name], strict=True)]))
                  for key in ("wall_s", "cpu_s")}
        result["speedup"] = {"wall": paired["wall_s"], "per_cpu_second": paired["cpu_s"]}
        result["peer_versions"] = package_versions(workload.peer.python,
                                                   (workload.peer.package, "torch", "gymnasium", "mujoco", "numpy"))
    return result


def report(results: dict[str, Any]) -> str:
    """The Markdown table of docs/performance.md."""
    lines = ["| workload | hybridrl: wall / CPU-s / peak MB | peer: wall / CPU-s / peak MB "
             "| hybridrl's speed-up (wall, per CPU-s) | steps/s as a share of the raw simulator (hybridrl, peer) |",
             "|---|---|---|---|---|"]
    for name, result in results.items():
        ours, fraction = result["median"]["hybridrl"], result["fraction_of_raw_simulator"]
        ours_cell = f"{ours['wall_s']:.1f} s / {ours['cpu_s']:.1f} / {ours['peak_rss_mb']:.0f}"
        share = f"{fraction['hybridrl']:.0%} ({ours['steps_per_wall_s']:,.0f} steps/s)"
        peer = next((key for key in result["median"] if key != "hybridrl"), None)
        if peer is None:
            lines.append(f"| {name} | {ours_cell} | (none) | | {share} |")
            continue
        theirs = result["median"][peer]
        lines.append(f"| {name} | {ours_cell} "
                     f"| {peer}: {theirs['wall_s']:.1f} s / {theirs['cpu_s']:.1f} / {theirs['peak_rss_mb']:.0f} "
                     f"| {result['speedup']['wall']:.2f}×, {result['speedup']['per_cpu_second']:.2f}× "
                     f"| {share}, {fraction[peer]:.0%} ({theirs['steps_per_wall_s']:,.0f}) |")
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
