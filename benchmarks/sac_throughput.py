"""SAC gradient updates per second at the ``cpu`` preset, next to the fraction of this machine's
matmul FLOP rate they achieve (target: at least 40% of the peak rate), all measured in one process
with one XLA and one BLAS thread.

What it measures, in order:

1. this machine's matmul rate: a jitted float32 1024x1024x1024 dot in a ``fori_loop`` (the peak),
   and numpy's BLAS at one thread; the peak call is timed again right before every timed repeat
   of the updates, and each repeat is compared with its own peak (other processes share the
   machine, so its rate drifts); fractions are also given of the best matmul rate seen anywhere in
   the run (a conservative denominator);
2. the FLOPs of one update, three ways: counted analytically (every matmul of the forward and
   backward passes, see :func:`update_matmuls`), XLA's ``cost_analysis()`` of the compiled update
   (which also counts elementwise work), and the ``dot`` instructions of XLA's optimised HLO;
3. the matmul rate at the update's own shapes: every distinct ``dot`` of the compiled update, timed
   alone in a ``fori_loop``; their FLOP-weighted harmonic mean is the rate the update's matmuls
   would reach if nothing else cost time;
4. updates/s of :func:`hybridrl.rl.sac.sac_updates` sampling from a 100k-row device replay buffer,
   for ``updates_per_call`` 1 (the trainer's default), 10 and 100: calls issued back to back, and
   calls in the trainer's pattern (wait for each call, then copy the actor's parameters to the host,
   timed separately); compilation excluded, median of ``--repeats``. Every rate is given per
   wall-clock second and per second of this process's CPU time;
5. the same at the ``paper`` preset's sizes (2x1024 networks, batch 1024), fewer updates.

The env is not built: walker-walk's dimensions (observation 24, action 6) are used directly.
Writes ``benchmarks/results/sac_throughput.json``.

    python benchmarks/sac_throughput.py [--presets cpu paper] [--repeats 5]
"""

# ruff: noqa: E402  (the thread settings must be in the environment before JAX and numpy load)
from __future__ import annotations

import os

from hybridrl.experiments.sweep import worker_environment

THREAD_ENVIRONMENT = worker_environment()  # OMP/OPENBLAS/MKL_NUM_THREADS=1 and XLA's one-thread flags
os.environ.update(THREAD_ENVIRONMENT)

import argparse
import dataclasses
import functools
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common import peak_memory_mb, write_result
from hybridrl.algorithms import get_algorithm
from hybridrl.core.replay import ReplayBuffer, add_transitions, replay_buffer
from hybridrl.data.dataset import TransitionBatch
from hybridrl.rl import sac
from hybridrl.rl.sac import SACNetworks, SACSettings

NAME = "sac_throughput"
ENV = "dmc:walker-walk"
OBSERVATION_DIM, ACTION_DIM = 24, 6  # walker-walk's observation and action sizes
REPLAY_ROWS = 100_000
TARGET_FRACTION_OF_PEAK = 0.4
SECONDS_PER_MATMUL_CALL = 0.1  # each timed matmul call runs about this long at 100 GFLOP/s

# --------------------------------------------------------------------------------------------
# FLOPs of one update, counted analytically
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Matmul:
    """``count`` products of a (m, k) and a (k, n) matrix: ``2 m k n`` FLOPs each."""

    label: str
    m: int
    k: int
    n: int
    count: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count


def update_matmuls(observation_dim: int, action_dim: int, hidden_sizes: tuple[int, ...],
                   batch: int) -> list[Matmul]:
    """Every matrix product of one :func:`~hybridrl.rl.sac.sac_update`.

    A dense layer ``y = x W`` (``x``: batch x in, ``W``: in x out) costs ``2 batch in out`` FLOPs
    forward; its backward pass costs as much again for ``dW = x^T dy`` and again for
    ``dx = dy W^T``. JAX computes ``dx`` only where the input carries a gradient, so a network's
    first layer has no ``dx`` when its input is data. Biases, activations, the tanh-Gaussian's
    log-prob, Adam and the Polyak update are elementwise (no matmuls); XLA's cost analysis counts
    them, this count does not.

    The actor is a torso (observation -> hidden...) with two heads (mean and log-std, hidden ->
    action); each of the two Q members is (observation + action -> hidden... -> 1). One update:

    1. critic target (no gradient): actor forward on s'; target-critic forward on (s', a'), 2 members;
    2. critic loss and gradient: critic forward on (s, a), 2 members; backward: dW of every layer,
       dx of every layer but the first (its input is data);
    3. actor loss and gradient: actor forward on s; critic forward on (s, a ~ pi(s)), 2 members;
       backward through the critic: dx of every layer including the first (the action half of
       the concatenated input carries the gradient; JAX differentiates the whole concatenation),
       no dW (the critic is a constant here); backward through the actor: dW of every layer and
       both heads, dx of every layer but the first (its input is the observation).

    XLA turns the products with a contracted length of one (dx of each Q member's 1-wide output)
    into broadcasts, so the ``dot`` instructions of the compiled update hold slightly fewer FLOPs.
    """
    members = 2
    actor_torso = list(zip((observation_dim, *hidden_sizes[:-1]), hidden_sizes, strict=True))
    actor_heads = [(hidden_sizes[-1], action_dim)] * 2
    critic_layers = list(zip((observation_dim + action_dim, *hidden_sizes), (*hidden_sizes, 1), strict=True))

    def forward(phase: str, layers: list[tuple[int, int]], count: int = 1) -> list[Matmul]:
        return [Matmul(f"{phase} forward {n_in}->{n_out}", batch, n_in, n_out, count) for n_in, n_out in layers]

    def weight_grads(phase: str, layers: list[tuple[int, int]], count: int = 1) -> list[Matmul]:
        return [Matmul(f"{phase} dW {n_in}->{n_out}", n_in, batch, n_out, count) for n_in, n_out in layers]

    def input_grads(phase: str, layers: list[tuple[int, int]], count: int = 1) -> list[Matmul]:
        return [Matmul(f"{phase} dx {n_in}->{n_out}", batch, n_out, n_in, count) for n_in, n_out in layers]

    return [
        *forward("1 target: actor", actor_torso + actor_heads),
        *forward("1 target: target critic", critic_layers, members),
        *forward("2 critic loss: critic", critic_layers, members),
        *weight_grads("2 critic loss: critic", critic_layers, members),
        *input_grads("2 critic loss: critic", critic_layers[1:], members),
        *forward("3 actor loss: actor", actor_torso + actor_heads),
        *forward("3 actor loss: critic", critic_layers, members),
        *input_grads("3 actor loss: critic", critic_layers, members),
        *weight_grads("3 actor loss: actor", actor_torso + actor_heads),
        *input_grads("3 actor loss: actor", actor_torso[1:] + actor_heads),
    ]


# --------------------------------------------------------------------------------------------
# FLOPs of one update, as XLA compiled it
# --------------------------------------------------------------------------------------------

DotShape = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[tuple[int, ...], tuple[int, ...]],
                                                         tuple[tuple[int, ...], tuple[int, ...]]]]
_DEFINITION = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]")
_DOT = re.compile(r"= \w+\[[\d,]*\]\S* dot\(([^)]*)\)(.*)")


def _dims(attributes: str, name: str) -> tuple[int, ...]:
    found = re.search(name + r"=\{([\d,]*)\}", attributes)
    return tuple(int(d) for d in found.group(1).split(",") if d) if found else ()


def hlo_dots(hlo_text: str) -> list[DotShape]:
    """``(lhs shape, rhs shape, dimension numbers)`` of every ``dot`` in optimised HLO text.

    Operands are printed by name only, so their shapes come from the lines defining them (HLO
    instruction names are unique within a module)."""
    shapes = {match.group(1): tuple(int(d) for d in match.group(2).split(",") if d)
              for match in map(_DEFINITION.search, hlo_text.splitlines()) if match}
    dots = []
    for line in hlo_text.splitlines():
        match = _DOT.search(line)
        if not match:
            continue
        lhs, rhs = (operand.split()[-1].lstrip("%") for operand in match.group(1).split(", "))
        attributes = match.group(2)
        dimension_numbers = ((_dims(attributes, "lhs_contracting_dims"), _dims(attributes, "rhs_contracting_dims")),
                             (_dims(attributes, "lhs_batch_dims"), _dims(attributes, "rhs_batch_dims")))
        dots.append((shapes[lhs], shapes[rhs], dimension_numbers))
    return dots


def dot_flops(dot: DotShape) -> int:
    """``2 x (output elements) x (contracted length)`` of a ``dot_general``."""
    lhs, rhs, ((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch)) = dot
    contracted = math.prod(lhs[d] for d in lhs_contracting)
    lhs_free = math.prod(size for d, size in enumerate(lhs) if d not in (*lhs_contracting, *lhs_batch))
    rhs_free = math.prod(size for d, size in enumerate(rhs) if d not in (*rhs_contracting, *rhs_batch))
    return 2 * math.prod(lhs[d] for d in lhs_batch) * lhs_free * rhs_free * contracted


def compiled_update(networks: SACNetworks, settings: SACSettings, state: Any, batch: TransitionBatch) -> Any:
    """One update on a fixed batch, compiled (the scan of :func:`sac_updates` adds only sampling)."""
    update = jax.jit(functools.partial(sac.sac_update, networks=networks, settings=settings))
    return update.lower(state, batch).compile()


def xla_flops(compiled: Any) -> float | None:
    """XLA's ``cost_analysis()`` FLOPs (matmuls and elementwise work), or None if unavailable."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # backends without cost analysis raise various errors
        return None
    if isinstance(analysis, list):  # older JAX: one dict per computation
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None else None


# --------------------------------------------------------------------------------------------
# Matmul rates
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rate:
    """GFLOP/s over wall time and over this process's CPU time. Other processes share the machine;
    CPU time leaves out the time the OS gave them instead of us (not what they take from caches)."""

    wall: float
    cpu: float


def timed(call: Callable[[], Any]) -> tuple[float, float]:
    """Wall and process-CPU seconds of ``call``, waiting for its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(call())
    return time.perf_counter() - wall, time.process_time() - cpu


def median_rate(call: Callable[[], Any], flops: float, repeats: int) -> Rate:
    """GFLOP/s of ``call`` doing ``flops``: medians of ``repeats`` calls after a warm-up (compiling) one."""
    jax.block_until_ready(call())
    seconds = [timed(call) for _ in range(repeats)]
    return Rate(wall=flops / statistics.median(wall for wall, _ in seconds) / 1e9,
                cpu=flops / statistics.median(cpu for _, cpu in seconds) / 1e9)


def dot_loop(dot: DotShape) -> tuple[Callable[[], jax.Array], float]:
    """A compiled ``fori_loop`` of float32 ``dot_general``s of these shapes taking about
    ``SECONDS_PER_MATMUL_CALL`` at 100 GFLOP/s, and the FLOPs of one call.

    Each iteration adds a scalar taken from the previous product to the smaller operand, so XLA can
    neither hoist the product out of the loop nor skip iterations; that add and the mean feeding it
    are at most a few percent of the product's FLOPs, except for products with a contracted length
    of one or two, which are a negligible share of an update."""
    lhs_shape, rhs_shape, dimension_numbers = dot
    iterations = max(2, round(SECONDS_PER_MATMUL_CALL * 100e9 / dot_flops(dot)))
    lhs = jax.random.normal(jax.random.key(1), lhs_shape, jnp.float32)
    rhs = jax.random.normal(jax.random.key(2), rhs_shape, jnp.float32)
    nudge_lhs = math.prod(lhs_shape) <= math.prod(rhs_shape)

    @jax.jit
    def loop(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        def body(_: int, nudge: jax.Array) -> jax.Array:
            product = jax.lax.dot_general(lhs + nudge if nudge_lhs else lhs, rhs if nudge_lhs else rhs + nudge,
                                          dimension_numbers)
            return jnp.mean(product) * 1e-20
        return jax.lax.fori_loop(0, iterations, body, jnp.zeros((), jnp.float32))

    return functools.partial(loop, lhs, rhs), float(iterations * dot_flops(dot))


def square_dot(size: int) -> DotShape:
    return (size, size), (size, size), (((1,), (0,)), ((), ()))


def numpy_matmul_rate(m: int, k: int, n: int, repeats: int) -> Rate:
    """GFLOP/s of numpy's ``a @ b`` (its BLAS, limited to one thread by the environment)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    iterations = max(2, round(SECONDS_PER_MATMUL_CALL * 100e9 / (2 * m * k * n)))

    def call() -> None:
        for _ in range(iterations):
            a @ b

    return median_rate(call, iterations * 2 * m * k * n, repeats)


def rate_at_shapes(dots: list[DotShape], repeats: int) -> dict[str, Any]:
    """Each distinct shape's rate, and the FLOP-weighted harmonic mean over all ``dots``: their
    total FLOPs over the time they would take at their measured rates."""
    per_shape = []
    for dot, count in Counter(dots).items():
        call, flops = dot_loop(dot)
        rate = median_rate(call, flops, repeats)
        per_shape.append({"lhs": list(dot[0]), "rhs": list(dot[1]),
                          "contracting": [list(d) for d in dot[2][0]], "batch": [list(d) for d in dot[2][1]],
                          "count": count, "flops": dot_flops(dot) * count,
                          "gflops_per_s": rate.wall, "gflops_per_cpu_s": rate.cpu})
    total = sum(entry["flops"] for entry in per_shape)
    for entry in per_shape:
        entry["flop_share"] = entry["flops"] / total
    per_shape.sort(key=lambda entry: -entry["flops"])

    def harmonic(key: str) -> float:
        return total / sum(entry["flops"] / entry[key] for entry in per_shape)

    return {"gflops_per_s": harmonic("gflops_per_s"), "gflops_per_cpu_s": harmonic("gflops_per_cpu_s"),
            "shapes": per_shape}


# --------------------------------------------------------------------------------------------
# Update throughput
# --------------------------------------------------------------------------------------------


def filled_buffer(rows: int, key: jax.Array) -> ReplayBuffer:
    """A device replay buffer of ``rows`` random walker-walk-sized transitions."""
    keys = jax.random.split(key, 3)
    transitions = TransitionBatch(
        observations=jax.random.normal(keys[0], (rows, OBSERVATION_DIM)),
        actions=jax.random.uniform(keys[1], (rows, ACTION_DIM), minval=-1.0, maxval=1.0),
        rewards=jax.random.uniform(keys[2], (rows,)),
        next_observations=jax.random.normal(keys[0], (rows, OBSERVATION_DIM)) + 0.1,
        terminations=jnp.zeros((rows,)), truncations=jnp.zeros((rows,)))
    return jax.block_until_ready(add_transitions(replay_buffer(rows, OBSERVATION_DIM, ACTION_DIM), transitions))


def update_throughput(state: Any, buffer: ReplayBuffer, networks: SACNetworks, settings: SACSettings,
                      updates_per_call: int, calls: int, repeats: int, flops_per_update: float,
                      peak: tuple[Callable[[], jax.Array], float]) -> tuple[dict[str, Any], Any]:
    """Updates/s with ``calls`` calls issued back to back, each repeat right after one call of the
    peak matmul loop ``peak`` (so each fraction compares two measurements seconds apart); then in
    the trainer's pattern: wait for each call, then ``jax.device_get`` the actor's parameters, as
    :meth:`~hybridrl.rl.sac.SACTrainer.refresh_host_actor` does (timed separately)."""
    def run(state: Any) -> Any:
        return sac.sac_updates(state, buffer, updates_per_call, networks=networks, settings=settings)[0]

    for _ in range(2):  # the first call compiles; the second settles allocations
        state = jax.block_until_ready(run(state))
    peak_call, peak_flops = peak
    flops = flops_per_update * updates_per_call * calls
    peaks, achieved = [], []
    for _ in range(repeats):
        peak_wall, peak_cpu = timed(peak_call)
        peaks.append(Rate(peak_flops / peak_wall / 1e9, peak_flops / peak_cpu / 1e9))
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            state = run(state)
        jax.block_until_ready(state)
        achieved.append(Rate(flops / (time.perf_counter() - wall) / 1e9, flops / (time.process_time() - cpu) / 1e9))
    update_seconds, copy_seconds = [], []
    for _ in range(repeats):
        for _ in range(calls):
            started = time.perf_counter()
            state = jax.block_until_ready(run(state))
            copied = time.perf_counter()
            jax.device_get(state.params["actor"])
            update_seconds.append(copied - started)
            copy_seconds.append(time.perf_counter() - copied)
    achieved_wall = statistics.median(rate.wall for rate in achieved)
    peak_wall = statistics.median(rate.wall for rate in peaks)
    call_seconds, copy = statistics.median(update_seconds), statistics.median(copy_seconds)
    trainer_updates_per_s = updates_per_call / (call_seconds + copy)
    return {
        "updates_per_s": achieved_wall * 1e9 / flops_per_update,
        "updates_per_cpu_s": statistics.median(rate.cpu for rate in achieved) * 1e9 / flops_per_update,
        "updates_per_s_each_repeat": [rate.wall * 1e9 / flops_per_update for rate in achieved],
        "gflops_per_s": achieved_wall,
        "gflops_per_cpu_s": statistics.median(rate.cpu for rate in achieved),
        "adjacent_peak_gflops_per_s_each_repeat": [rate.wall for rate in peaks],
        "adjacent_peak_gflops_per_cpu_s_each_repeat": [rate.cpu for rate in peaks],
        "fraction_of_peak": statistics.median(a.wall / p.wall for a, p in zip(achieved, peaks, strict=True)),
        "fraction_of_peak_cpu_time": statistics.median(a.cpu / p.cpu for a, p in zip(achieved, peaks, strict=True)),
        "fraction_of_peak_each_repeat": [a.wall / p.wall for a, p in zip(achieved, peaks, strict=True)],
        "fraction_of_peak_cpu_time_each_repeat": [a.cpu / p.cpu for a, p in zip(achieved, peaks, strict=True)],
        "process_cpu_seconds_per_wall_second": statistics.median(a.wall / a.cpu for a in achieved),
        "trainer_pattern_updates_per_s_excluding_copy": updates_per_call / call_seconds,
        "host_actor_copy_ms": copy * 1e3,
        "trainer_pattern_updates_per_s": trainer_updates_per_s,
        "trainer_pattern_fraction_of_peak": trainer_updates_per_s * flops_per_update / 1e9 / peak_wall,
    }, state


def measure_preset(preset: str, buffer: ReplayBuffer, updates_per_call: list[int], updates_per_repeat: int,
                   repeats: int, seed: int, peak: tuple[Callable[[], jax.Array], float]) -> dict[str, Any]:
    """FLOPs, matmul rate at the update's shapes, and throughput of SAC at ``preset``'s sizes."""
    config = get_algorithm("sac").make_config(preset, env=ENV)
    networks = sac.make_sac_networks(config.hidden_sizes, ACTION_DIM, config.log_std_bounds)
    settings = sac.sac_settings(config, ACTION_DIM)
    state = sac.init_sac_state(networks, settings, OBSERVATION_DIM, config.init_temperature,
                               jax.random.key_data(jax.random.key(seed)))
    batch = jax.tree_util.tree_map(lambda leaf: leaf[: config.batch_size], buffer.transitions)

    matmuls = update_matmuls(OBSERVATION_DIM, ACTION_DIM, config.hidden_sizes, config.batch_size)
    analytic = sum(matmul.flops for matmul in matmuls)
    phases: Counter[str] = Counter()
    for matmul in matmuls:
        phases[matmul.label.split(":")[0]] += matmul.flops
    compiled = compiled_update(networks, settings, state, batch)
    dots = compiled_dots = hlo_dots(compiled.as_text())
    if not dots:  # HLO without plain dots (e.g. library calls): time the analytic shapes instead
        dots = [((m.m, m.k), (m.k, m.n), (((1,), (0,)), ((), ()))) for m in matmuls for _ in range(m.count)]
    print(f"{preset}: {analytic / 1e9:.3f} GFLOP/update analytically; timing {len(set(dots))} matmul shapes",
          flush=True)
    shapes = rate_at_shapes(dots, repeats)

    throughput = {}
    for count in updates_per_call:
        calls = max(1, updates_per_repeat // count)
        numbers, state = update_throughput(state, buffer, networks, settings, count, calls, repeats, analytic, peak)
        numbers["fraction_of_rate_at_update_shapes"] = numbers["gflops_per_s"] / shapes["gflops_per_s"]
        numbers["fraction_of_rate_at_update_shapes_cpu_time"] = (numbers["gflops_per_cpu_s"]
                                                                 / shapes["gflops_per_cpu_s"])
        throughput[str(count)] = numbers
        print(f"{preset}: {count} updates/call: {numbers['updates_per_s']:.1f} updates/s, "
              f"{numbers['fraction_of_peak']:.1%} of the adjacent peak", flush=True)
    return {
        "preset": preset, "hidden_sizes": list(config.hidden_sizes), "batch_size": config.batch_size,
        "flops_per_update": {
            "analytic_matmuls": analytic,
            "analytic_by_phase": dict(phases),
            "analytic_matmul_list": [dataclasses.asdict(matmul) | {"flops": matmul.flops} for matmul in matmuls],
            "xla_cost_analysis": xla_flops(compiled),
            "xla_hlo_dots": sum(dot_flops(dot) for dot in compiled_dots) or None,
        },
        "matmul_rate_at_update_shapes": shapes,
        "throughput": throughput,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--updates-per-call", nargs="+", type=int, default=[1, 10, 100])
    parser.add_argument("--updates-per-repeat", type=int, default=100, help="timed updates per repeat (cpu)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paper-updates-per-call", nargs="+", type=int, default=[5],
                        help="updates per call at the paper preset (about 35 GFLOP per update)")
    parser.add_argument("--paper-updates-per-repeat", type=int, default=5)
    parser.add_argument("--paper-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()

    peak = dot_loop(square_dot(1024))
    peak_start = median_rate(peak[0], peak[1], arguments.repeats)
    print(f"peak matmul (1024^3): {peak_start.wall:.1f} GFLOP/s, {peak_start.cpu:.1f} per CPU-second", flush=True)
    numpy_rates = {f"{m}x{k}x{n}": numpy_matmul_rate(m, k, n, arguments.repeats)
                   for m, k, n in ((1024, 1024, 1024), (256, 256, 256), (256, 30, 512))}
    buffer = filled_buffer(REPLAY_ROWS, jax.random.key(arguments.seed + 1))
    measurements = []
    for preset in arguments.presets:
        paper = preset == "paper"
        measurements.append(measure_preset(
            preset, buffer, arguments.paper_updates_per_call if paper else arguments.updates_per_call,
            arguments.paper_updates_per_repeat if paper else arguments.updates_per_repeat,
            arguments.paper_repeats if paper else arguments.repeats, arguments.seed, peak))
    peak_end = median_rate(peak[0], peak[1], arguments.repeats)
    best = best_matmul_rate([peak_start, peak_end], measurements)
    for entry in measurements:
        for numbers in entry["throughput"].values():
            numbers["fraction_of_best_matmul_rate"] = numbers["gflops_per_s"] / best.wall
            numbers["fraction_of_best_matmul_rate_cpu_time"] = numbers["gflops_per_cpu_s"] / best.cpu

    cpu = next((entry for entry in measurements if entry["preset"] == "cpu"), None)
    target = None
    if cpu is not None:
        target = {"fraction_of_peak": TARGET_FRACTION_OF_PEAK, "met_at_updates_per_call": {
            count: {"wall_time": numbers["fraction_of_peak"] >= TARGET_FRACTION_OF_PEAK,
                    "cpu_time": numbers["fraction_of_peak_cpu_time"] >= TARGET_FRACTION_OF_PEAK,
                    "best_matmul_rate_cpu_time": numbers["fraction_of_best_matmul_rate_cpu_time"]
                    >= TARGET_FRACTION_OF_PEAK,
                    "trainer_pattern_wall_time": numbers["trainer_pattern_fraction_of_peak"]
                    >= TARGET_FRACTION_OF_PEAK}
            for count, numbers in cpu["throughput"].items()}}
    path = write_result(NAME, [arguments.seed], {
        "benchmark": NAME, "env": ENV, "observation_dim": OBSERVATION_DIM, "action_dim": ACTION_DIM,
        "env_note": "the env is not built; walker-walk's observation and action sizes are used directly",
        "replay_rows": REPLAY_ROWS, "thread_environment": THREAD_ENVIRONMENT, "devices": str(jax.devices()),
        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()},
        "matmul_peak": {"shape": "float32 1024x1024 @ 1024x1024, XLA, in a fori_loop",
                        "start": dataclasses.asdict(peak_start), "end": dataclasses.asdict(peak_end),
                        "note": "fractions of peak use the peak call timed right before each repeat "
                                "(adjacent_peak_* in each throughput entry), median over repeats"},
        "best_matmul_rate_in_run": {**dataclasses.asdict(best),
                                    "note": "the highest wall and CPU-time rates of any matmul timed in this run "
                                            "(peak calls and the updates' shapes): a conservative denominator, "
                                            "since the 1024^3 product spills the per-core L2 into the shared L3"},
        "numpy_matmul": {"blas": _numpy_blas(),
                         "gflops": {shape: dataclasses.asdict(rate) for shape, rate in numpy_rates.items()}},
        "flops_note": "achieved GFLOP/s = analytic matmul FLOPs per update x updates/s; XLA's cost analysis "
                      "also counts elementwise work; XLA's HLO dots lack the contracted-length-1 products",
        "target": target, "measurements": measurements, "peak_memory_mb": peak_memory_mb(),
        "wall_time_s": time.perf_counter() - started,
        "note": "medians of --repeats after two untimed calls (compilation); 'updates_per_s' issues calls back "
                "to back, 'trainer_pattern' waits for each call and copies the actor to the host as the trainer "
                "does; '_cpu_s'/'cpu_time' divide by this process's CPU time instead of wall time, since other "
                "processes share the machine (see load_average)",
    })
    print_table(measurements, peak_start, peak_end, best, numpy_rates)
    print("->", path)


def best_matmul_rate(peaks: list[Rate], measurements: list[dict[str, Any]]) -> Rate:
    """The highest rates of any matmul timed in the run (a maximum of noisy rates: conservative)."""
    rates = [*peaks]
    for entry in measurements:
        rates += [Rate(shape["gflops_per_s"], shape["gflops_per_cpu_s"])
                  for shape in entry["matmul_rate_at_update_shapes"]["shapes"]]
        for numbers in entry["throughput"].values():
            rates += [Rate(wall, cpu) for wall, cpu in zip(numbers["adjacent_peak_gflops_per_s_each_repeat"],
                                                           numbers["adjacent_peak_gflops_per_cpu_s_each_repeat"],
                                                           strict=True)]
    return Rate(max(rate.wall for rate in rates), max(rate.cpu for rate in rates))


def _numpy_blas() -> str | None:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except (KeyError, TypeError):
        return None


def print_table(measurements: list[dict[str, Any]], peak_start: Rate, peak_end: Rate, best: Rate,
                numpy_rates: dict[str, Rate]) -> None:
    print(f"\nmatmul peak (XLA, 1024^3), start/end: {peak_start.wall:.1f}/{peak_end.wall:.1f} GFLOP/s, "
          f"{peak_start.cpu:.1f}/{peak_end.cpu:.1f} per CPU-s; best matmul in the run: {best.wall:.1f} GFLOP/s, "
          f"{best.cpu:.1f} per CPU-s; numpy 1 thread: "
          + ", ".join(f"{shape} {rate.wall:.1f}" for shape, rate in numpy_rates.items()))
    print("of peak: achieved / the 1024^3 rate timed just before (median of repeats); CPU: both per CPU-second; "
          "best: per CPU-second, of the best matmul rate in the run; shapes: of the rate at the update's shapes")
    for entry in measurements:
        flops = entry["flops_per_update"]
        shapes = entry["matmul_rate_at_update_shapes"]
        print(f"\n{entry['preset']} ({'x'.join(map(str, entry['hidden_sizes']))}, batch {entry['batch_size']}): "
              f"GFLOP/update {flops['analytic_matmuls'] / 1e9:.3f} analytic, "
              f"{(flops['xla_cost_analysis'] or 0) / 1e9:.3f} XLA cost analysis, "
              f"{(flops['xla_hlo_dots'] or 0) / 1e9:.3f} HLO dots; matmul rate at its shapes "
              f"{shapes['gflops_per_s']:.1f} GFLOP/s, {shapes['gflops_per_cpu_s']:.1f} per CPU-s")
        print(f"{'upd/call':>8} {'upd/s':>7} {'upd/CPU-s':>9} {'GFLOP/s':>7} {'of peak':>7} {'CPU':>6} {'best':>6} "
              f"{'shapes':>6} {'trainer upd/s':>13} {'of peak':>7} {'copy ms':>7}")
        for count, numbers in entry["throughput"].items():
            columns = [f"{count:>8}", f"{numbers['updates_per_s']:>7.1f}", f"{numbers['updates_per_cpu_s']:>9.1f}",
                       f"{numbers['gflops_per_s']:>7.1f}", f"{numbers['fraction_of_peak']:>7.0%}",
                       f"{numbers['fraction_of_peak_cpu_time']:>6.0%}",
                       f"{numbers['fraction_of_best_matmul_rate_cpu_time']:>6.0%}",
                       f"{numbers['fraction_of_rate_at_update_shapes']:>6.0%}",
                       f"{numbers['trainer_pattern_updates_per_s']:>13.1f}",
                       f"{numbers['trainer_pattern_fraction_of_peak']:>7.0%}", f"{numbers['host_actor_copy_ms']:>7.3f}"]
            print(" ".join(columns))


if __name__ == "__main__":
    main()
