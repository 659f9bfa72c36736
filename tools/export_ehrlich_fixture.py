"""Export reference Ehrlich functions and their values from pytorch-holo 0.0.5 to a test fixture.

``tests/mbo/test_ehrlich.py`` checks :mod:`hybridrl.mbo.ehrlich` against this fixture: built from the
same parameters, our function must give holo's value wherever holo's is finite, and call a design
feasible exactly where holo's value is finite. The fixture records, for each case below, holo's
parameters and its values on DMP samples, single-point mutants of them and of the optimum, uniform
random sequences, and the optimal solution.

holo pins ``numpy<2`` and needs torch; hybridrl needs ``numpy>=2``. So this script runs in its own
virtual environment and imports only torch, holo and numpy. To rerun it, from the repository root::

    python3 -m venv /tmp/holo-venv
    /tmp/holo-venv/bin/pip install torch==2.13.0        # first, else pip pulls the CUDA build of torch
    /tmp/holo-venv/bin/pip install pytorch-holo==0.0.5
    /tmp/holo-venv/bin/python tools/export_ehrlich_fixture.py   # writes tests/mbo/fixtures/ehrlich_holo.npz

Fixture layout (one ``.npz``, no pickles). ``cases`` lists the case names; for a case ``name``:

* ``name__sizes``: int64 ``[num_states, dim, num_motifs, motif_length, quantization, random_seed]``.
* ``name__initial_dist``: ``(V,)`` float32, holo's ``initial_dist`` (uniform; used for feasibility).
* ``name__stationary_dist``: ``(V,)`` float32, holo's ``stationary_dist`` (used to sample first states).
* ``name__transition_matrix``: ``(V, V)`` float32, banned transitions exactly 0.
* ``name__motifs``: ``(c, k)`` int64.
* ``name__gaps``: ``(c, k - 1)`` int64, holo's ``spacings`` (gaps between consecutive motif elements;
  hybridrl stores the offsets ``[0, cumsum(gaps)]``).
* ``name__x``: ``(n, L)`` int8 designs; ``name__kind``: ``(n,)`` int8 (see ``KINDS``).
* ``name__values``: ``(n,)`` float32, holo's ``evaluate_true`` (``-inf`` where infeasible).
"""

from __future__ import annotations

import argparse
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from holo.test_functions.closed_form import Ehrlich

#: (name, num_states, dim, num_motifs, motif_length, quantization, random_seed)
CASES = [
    ("v20_l32_c2_k4_q4_s0", 20, 32, 2, 4, 4, 0),  # ehrlich-s
    ("v32_l32_c4_k4_q4_s0", 32, 32, 4, 4, 4, 0),  # ehrlich-m
    ("v4_l8_c2_k2_q2_s0", 4, 8, 2, 2, 2, 0),  # small
    ("v20_l32_c2_k4_q2_s1", 20, 32, 2, 4, 2, 1),  # quantization below motif_length
    ("v12_l40_c3_k6_q3_s2", 12, 40, 3, 6, 3, 2),  # longer motifs, three levels
]

#: Codes of ``name__kind``: where each design comes from.
KINDS = {"dmp": 0, "dmp_mutant": 1, "uniform": 2, "optimal": 3, "optimal_mutant": 4}

NUM_DMP, NUM_DMP_MUTANTS, NUM_UNIFORM, NUM_OPTIMAL_MUTANTS = 200, 100, 100, 50

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "mbo" / "fixtures" / "ehrlich_holo.npz"


def single_point_mutants(parents: torch.Tensor, num_states: int, count: int, generator: torch.Generator
                         ) -> torch.Tensor:
    """``count`` copies of random rows of ``parents``, each with one position set to a different state."""
    rows = torch.randint(parents.shape[0], (count,), generator=generator)
    mutants = parents[rows].clone()
    positions = torch.randint(parents.shape[1], (count,), generator=generator)
    shifts = torch.randint(1, num_states, (count,), generator=generator)
    index = torch.arange(count)
    mutants[index, positions] = (mutants[index, positions] + shifts) % num_states
    return mutants


def export_case(name: str, num_states: int, dim: int, num_motifs: int, motif_length: int, quantization: int,
                random_seed: int) -> dict[str, np.ndarray]:
    """Build one holo Ehrlich function and return its fixture arrays, keyed ``name__field``."""
    function = Ehrlich(num_states=num_states, dim=dim, num_motifs=num_motifs, motif_length=motif_length,
                       quantization=quantization, noise_std=0.0, negate=False, random_seed=random_seed)
    generator = torch.Generator().manual_seed(1000 + random_seed)
    dmp = function.initial_solution(n=NUM_DMP)
    optimal = function.optimal_solution().unsqueeze(0)
    designs = torch.cat([
        dmp,
        single_point_mutants(dmp, num_states, NUM_DMP_MUTANTS, generator),
        torch.randint(num_states, (NUM_UNIFORM, dim), generator=generator),
        optimal,
        single_point_mutants(optimal, num_states, NUM_OPTIMAL_MUTANTS, generator),
    ])
    kinds = np.repeat([KINDS["dmp"], KINDS["dmp_mutant"], KINDS["uniform"], KINDS["optimal"],
                       KINDS["optimal_mutant"]], [NUM_DMP, NUM_DMP_MUTANTS, NUM_UNIFORM, 1, NUM_OPTIMAL_MUTANTS])
    values = function.evaluate_true(designs)
    if values[NUM_DMP + NUM_DMP_MUTANTS + NUM_UNIFORM].item() != 1.0:
        raise RuntimeError(f"{name}: holo's optimal solution does not score 1.0")
    return {
        f"{name}__sizes": np.array([num_states, dim, num_motifs, motif_length, quantization, random_seed],
                                   dtype=np.int64),
        f"{name}__initial_dist": function.initial_dist.numpy().astype(np.float32),
        f"{name}__stationary_dist": function.stationary_dist.squeeze(-1).numpy().astype(np.float32),
        f"{name}__transition_matrix": function.transition_matrix.numpy().astype(np.float32),
        f"{name}__motifs": torch.stack(list(function.motifs)).numpy().astype(np.int64),
        f"{name}__gaps": torch.stack(list(function.spacings)).numpy().astype(np.int64),
        f"{name}__x": designs.numpy().astype(np.int8),
        f"{name}__kind": kinds.astype(np.int8),
        f"{name}__values": values.numpy().astype(np.float32),
    }


def main() -> None:
    """Export every case in :data:`CASES` to one compressed ``.npz``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the .npz fixture")
    args = parser.parse_args()
    arrays: dict[str, np.ndarray] = {
        "cases": np.array([case[0] for case in CASES]),
        "holo_version": np.array(version("pytorch-holo")),
        "torch_version": np.array(torch.__version__),
    }
    for case in CASES:
        case_arrays = export_case(*case)
        values = case_arrays[f"{case[0]}__values"]
        print(f"{case[0]}: {values.size} designs, {np.isfinite(values).mean():.0%} feasible, "
              f"levels {np.unique(values[np.isfinite(values)]).round(4).tolist()}")
        arrays.update(case_arrays)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
