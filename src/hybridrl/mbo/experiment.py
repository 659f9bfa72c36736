"""One offline model-based optimisation experiment: train surrogates, search, score with the oracle.

The Design-Bench protocol, per seed (Trabucco et al. 2022; IGNITE's scripts):

1. Encode the task's offline designs and z-score their scores (:mod:`hybridrl.mbo.surrogate`).
2. Train the optimiser's surrogate(s) on the offline data, all but ``validation_size`` held-out
   points, optionally with the IGNITE regulariser (:mod:`hybridrl.mbo.ignite`).
3. Start from the top-``num_candidates`` (128) offline designs and search with the optimiser
   (:mod:`hybridrl.mbo.optimizers`): gradient ascent on one model (``grad-ascent``), on the mean or
   the minimum of an ensemble (``ens-mean``, ``ens-min``), on a conservative model (``coms``), or a
   gradient-free evolutionary search on the surrogate (``evolution``).
4. Score the decoded candidates with the oracle, normalise with the task's full-data min and max,
   and report the 100th, 80th and 50th percentiles of the candidates' normalised scores (and, for
   constrained tasks, the fraction of feasible candidates).

Seeds are vmapped: :func:`train_seeds` trains the surrogates of several seeds (× ensemble members)
in one compiled program, one run directory per seed. A run checkpoints every epoch and resumes
from its last one. ``hybridrl train mbo --task tfbind8 --optimizer coms`` runs one seed;
``hybridrl mbo run ... --seeds 8`` runs several and prints the protocol's table.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from hybridrl.algorithms import AlgorithmSpec
from hybridrl.core.checkpoint import load_checkpoint, read_checkpoint_step, save_checkpoint
from hybridrl.core.logging import RunLogger, read_metrics
from hybridrl.core.seeding import Seeder, check_seed_configs, groups_by_step
from hybridrl.errors import ConfigError
from hybridrl.mbo.cbas import CbASSettings, cbas_search
from hybridrl.mbo.ignite import REGULARIZERS, IgniteSettings, Regularizer
from hybridrl.mbo.optimizers import (
    CMAESSettings,
    EvolutionSettings,
    GradientAscentSettings,
    ReinforceSettings,
    aggregate_prediction,
    cma_es_search,
    evolutionary_search,
    gradient_ascent,
    reinforce_search,
)
from hybridrl.mbo.surrogate import (
    DesignEncoder,
    ScoreScaler,
    SurrogateSettings,
    SurrogateState,
    init_surrogates,
    predict_gaussian,
    predict_mean,
    split_rows,
    train_epoch,
    validation_metrics,
)
from hybridrl.mbo.tasks import MBOTask, make_task, percentile_scores

OptimizerName = Literal["grad-ascent", "ens-mean", "ens-min", "coms", "evolution", "cma-es", "reinforce", "cbas"]
OPTIMIZERS: tuple[OptimizerName, ...] = ("grad-ascent", "ens-mean", "ens-min", "coms", "evolution", "cma-es",
                                         "reinforce", "cbas")
#: Optimisers searching a 5-member ensemble's mean (or min) by default, as Design-Bench's did.
ENSEMBLE_OPTIMIZERS = ("ens-mean", "ens-min", "cma-es", "reinforce", "cbas")

#: How many dual steps IGNITE's multiplier takes: as this run trains, or scaled to the released scripts'.
DUAL_STEPS = ("as-trained", "released")
#: The released scripts' surrogate training: 100 epochs (COMs: 2) of 128-point minibatches.
RELEASED_EPOCHS = {"coms": 2}
RELEASED_DEFAULT_EPOCHS = 100
RELEASED_BATCH_SIZE = 128

CHECKPOINT_FILE = "checkpoint.ckpt"
CANDIDATES_FILE = "candidates.npz"


@dataclass(frozen=True)
class MBOConfig:
    """One offline MBO experiment (task × optimiser × regulariser × seed).

    ``None`` fields take the optimiser's published setting: see :meth:`resolved`.
    """

    task: str = "tfbind8"
    """the task (`hybridrl mbo tasks`): tfbind8[-factor], ehrlich-s/m, ackley20, levy20, styblinski-tang20"""
    optimizer: str = "grad-ascent"
    """grad-ascent, ens-mean, ens-min, coms, evolution, cma-es, reinforce or cbas"""
    regularizer: str = "none"
    """none, ignite (Lagrangian, dual ascent on lambda) or ignite2 (fixed penalty)"""
    seed: int = 0
    """seed of the training split, initialisation, shuffles and search"""
    preset: str = "cpu"
    """the preset this config started from (recorded for provenance)"""
    num_candidates: int = 128
    """designs proposed, starting from the top offline designs"""
    hidden_size: int = 2048
    """width of each of the surrogate's two hidden layers"""
    epochs: int | None = None
    """surrogate training epochs (None: 100; COMs 2)"""
    batch_size: int = 128
    """surrogate minibatch size"""
    learning_rate: float = 3e-4
    """surrogate Adam learning rate"""
    validation_size: int = 200
    """offline points held out for validation metrics"""
    ensemble_size: int | None = None
    """surrogates per seed (None: 5 for ens-mean, ens-min, cma-es, reinforce and cbas, else 1)"""
    solver_steps: int | None = None
    """gradient-ascent steps (None: 200; COMs 50)"""
    solver_lr: float | None = None
    """gradient-ascent step size, times sqrt(D) (None: 0.01; COMs 2.0)"""
    coms_particle_steps: int = 50
    """COMs: ascent steps that make the adversarial designs in training"""
    evolution_generations: int = 50
    """evolution: generations of 128 offspring"""
    cma_sigma: float = 0.5
    """cma-es: initial step size in encoded units (Design-Bench's 0.5)"""
    cma_max_iterations: int | None = 100
    """cma-es: generations per run (None: the cma library's stopping rule, as released)"""
    cma_diagonal_above: int | None = 100
    """cma-es: separable (diagonal) CMA-ES above this many encoded dimensions (None: always full covariance)"""
    reinforce_iterations: int = 200
    """reinforce: policy-gradient steps"""
    reinforce_batch_size: int = 2048
    """reinforce: designs sampled per step"""
    reinforce_lr: float = 0.01
    """reinforce: Adam step size of the design distribution"""
    reinforce_exploration_std: float = 0.1
    """reinforce, continuous tasks: the Gaussian's initial std (encoded units)"""
    cbas_offline_epochs: int = 200
    """cbas: epochs of the first VAE on the offline designs"""
    cbas_iterations: int = 20
    """cbas: rounds of sampling, weighting and refitting the search VAE"""
    cbas_online_epochs: int = 10
    """cbas: epochs of each round's refit (on 10 batches of 100 sampled designs)"""
    ignite_rho: float | None = None
    """IGNITE rho (None: 0.05; IGNITE2 0.2)"""
    ignite_epsilon: float = 0.1
    """IGNITE epsilon, the bound on rho*||grad G|| (z-scored score scale)"""
    ignite_multiplier_init: float | None = None
    """IGNITE lambda_0 (None: 1e-3), or IGNITE2's fixed lambda (None: 0.01)"""
    ignite_multiplier_lr: float = 1e-3
    """IGNITE dual step size eta_lambda"""
    ignite_clamp_multiplier: bool = True
    """keep lambda >= 0 (the paper's Lagrangian); false = the released code's unclamped lambda"""
    ignite_gradient: str = "exact"
    """exact (JAX gradient of the gradient norm) or finite-difference (the released code)"""
    ignite_radius: float | None = None
    """finite-difference radius r (None: rho)"""
    ignite_dual_steps: str = "as-trained"
    """as-trained: eta_lambda as given; released: eta_lambda times (the released scripts' dual steps, 100 epochs
    (COMs 2) of 128-point minibatches) / (this run's), so lambda travels as far as in the paper at any budget"""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.regularizer not in REGULARIZERS:
            raise ConfigError(f"unknown regularizer {self.regularizer!r}; choose one of {', '.join(REGULARIZERS)}")
        for name in ("num_candidates", "hidden_size", "batch_size", "evolution_generations", "coms_particle_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("epochs", "ensemble_size", "solver_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if min(self.reinforce_iterations, self.reinforce_batch_size) <= 0 or \
                min(self.reinforce_lr, self.reinforce_exploration_std) <= 0:
            raise ConfigError("reinforce_iterations, reinforce_batch_size, reinforce_lr and "
                              "reinforce_exploration_std must be positive")
        if self.cma_sigma <= 0 or (self.cma_max_iterations is not None and self.cma_max_iterations <= 0):
            raise ConfigError(f"cma_sigma and cma_max_iterations must be positive, got {self.cma_sigma} and "
                              f"{self.cma_max_iterations}")
        if self.validation_size < 0:
            raise ConfigError(f"validation_size must be >= 0, got {self.validation_size}")
        if self.ignite_dual_steps not in DUAL_STEPS:
            raise ConfigError(f"unknown ignite_dual_steps {self.ignite_dual_steps!r}; choose one of "
                              f"{', '.join(DUAL_STEPS)}")
        self.ignite_settings()  # validates the regulariser's values

    def resolved(self) -> MBOConfig:
        """This config with every ``None`` replaced by the optimiser's published setting."""
        coms = self.optimizer == "coms"
        return replace(
            self,
            epochs=self.epochs if self.epochs is not None else (2 if coms else 100),
            ensemble_size=self.ensemble_size if self.ensemble_size is not None
            else (5 if self.optimizer in ENSEMBLE_OPTIMIZERS else 1),
            solver_steps=self.solver_steps if self.solver_steps is not None else (50 if coms else 200),
            solver_lr=self.solver_lr if self.solver_lr is not None else (2.0 if coms else 0.01),
        )

    def ignite_settings(self) -> IgniteSettings:
        """The regulariser this config asks for."""
        overrides: dict[str, Any] = {"epsilon": self.ignite_epsilon, "clamp_multiplier": self.ignite_clamp_multiplier,
                                     "gradient": self.ignite_gradient}
        if self.regularizer == "ignite":
            overrides["multiplier_lr"] = self.ignite_multiplier_lr
        if self.ignite_rho is not None:
            overrides["rho"] = self.ignite_rho
        if self.ignite_multiplier_init is not None:
            overrides["multiplier_init"] = self.ignite_multiplier_init
        settings = IgniteSettings.preset(self.regularizer, **overrides)  # type: ignore[arg-type]
        radius = self.ignite_radius if self.ignite_radius is not None else settings.rho
        return replace(settings, radius=radius)

    def surrogate_settings(self) -> SurrogateSettings:
        """The surrogate this config trains."""
        resolved = self.resolved()
        coms = self.optimizer == "coms"
        assert resolved.epochs is not None and resolved.solver_lr is not None
        return SurrogateSettings(
            objective="coms" if coms else "nll", hidden_sizes=(self.hidden_size, self.hidden_size),
            activation="relu" if coms else "leaky_relu", learning_rate=self.learning_rate,
            batch_size=self.batch_size, epochs=resolved.epochs, validation_size=self.validation_size,
            coms_particle_steps=self.coms_particle_steps, coms_particle_lr=resolved.solver_lr)


#: Scale presets. ``paper``: the released scripts' sizes (2 × 2048 MLPs, 100 epochs; COMs 2).
#: ``cpu``: 2 × 256 MLPs and 20 epochs (COMs 2, from :func:`optimizer_presets`), a minute or two per
#: 8 vmapped seeds on 2 cores. ``smoke``: seconds.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"hidden_size": 32, "epochs": 1, "solver_steps": 10, "coms_particle_steps": 5,
              "evolution_generations": 4, "cma_max_iterations": 5, "reinforce_iterations": 5,
              "reinforce_batch_size": 64, "cbas_offline_epochs": 1, "cbas_iterations": 2, "cbas_online_epochs": 1,
              "validation_size": 64},
    "cpu": {"hidden_size": 256, "epochs": 20, "cbas_offline_epochs": 20},
    "paper": {},
}


def optimizer_presets(preset: str, values: Any) -> dict[str, Any]:
    """Per-optimiser settings between the preset and the user's options: COMs trains its model for
    2 epochs at every scale but ``smoke`` (the released scripts' ``--forward-model-epochs 2``)."""
    if values["optimizer"] == "coms" and preset != "smoke":
        return {"epochs": 2}
    return {}


# --- One group of seeds -----------------------------------------------------------------------


@dataclass
class _Prepared:
    task: MBOTask
    encoder: DesignEncoder
    scaler: ScoreScaler
    z_all: jax.Array
    y_all: jax.Array
    start_designs: np.ndarray
    start_z: jax.Array


def _prepare(task: MBOTask, num_candidates: int) -> _Prepared:
    if num_candidates > task.x.shape[0]:
        raise ConfigError(f"num_candidates {num_candidates} exceeds the {task.x.shape[0]} offline designs of "
                          f"{task.name}")
    encoder = DesignEncoder.fit(task.x, task.kind, num_classes=task.num_classes, lower=task.lower, upper=task.upper)
    scaler = ScoreScaler.fit(task.y)
    top = np.argsort(-task.y, kind="stable")[:num_candidates]
    z_all = encoder.encode(jnp.asarray(task.x))
    return _Prepared(task=task, encoder=encoder, scaler=scaler, z_all=z_all,
                     y_all=jnp.asarray(scaler.scale(task.y), jnp.float32),
                     start_designs=task.x[top], start_z=z_all[top])


class MBOGroup:
    """Runs that differ only in their seed, trained together with the seeds vmapped.

    :param configs: one config per run; all equal but for ``seed``.
    :param run_dirs: one run directory per config.
    :param progress: show a progress bar (of the first run).
    """

    def __init__(self, configs: Sequence[MBOConfig], run_dirs: Sequence[Path], progress: bool = False) -> None:
        check_seed_configs(configs, run_dirs)
        self.config = configs[0].resolved()
        self.seeds = [config.seed for config in configs]
        self.run_dirs = [Path(run_dir) for run_dir in run_dirs]
        self.progress = progress
        self.surrogate = self.config.surrogate_settings()
        self.data = _prepare(make_task(self.config.task), self.config.num_candidates)
        assert self.config.ensemble_size is not None
        self.members = self.config.ensemble_size
        self.ignite, self.dual_step_ratio = _dual_regime(self.config, self.data.task.x.shape[0])
        self.last_train_metrics: dict[str, np.ndarray] = {}
        # One predict and one encode for the group: the optimisers compile once per function object.
        self.predict = functools.partial(predict_mean, self.surrogate.model())
        self.predict_gaussian = functools.partial(predict_gaussian, self.surrogate.model())
        self.encode = self.data.encoder.encode
        self.epoch = 0
        self.states = self._fresh_states()
        self.train_rows, self.validation_rows = self._splits()
        self.loggers: list[RunLogger] = []

    # Per seed: (members) model keys, one split, one search key, one key per epoch.
    def _fresh_states(self) -> SurrogateState:
        keys = jnp.concatenate([jax.random.split(Seeder(seed).jax_key("surrogate"), self.members)
                                for seed in self.seeds])
        return init_surrogates(self.surrogate, self.ignite, keys, self.data.encoder.dim)

    def _splits(self) -> tuple[jax.Array, jax.Array]:
        train, validation = [], []
        for seed in self.seeds:
            rng = Seeder(seed).numpy("split")
            for _ in range(self.members):
                # Each ensemble member sees its own split: a bootstrap-like diversity of the data.
                rows = split_rows(self.data.task.x.shape[0], self.config.validation_size, rng)
                train.append(rows[0])
                validation.append(rows[1])
        return jnp.asarray(np.stack(train)), jnp.asarray(np.stack(validation))

    def _epoch_keys(self, epoch: int) -> jax.Array:
        return jnp.concatenate([jax.random.split(jax.random.fold_in(Seeder(seed).jax_key("epochs"), epoch),
                                                 self.members) for seed in self.seeds])

    # --- checkpoints: one per run directory, holding that seed's members ---

    def _seed_slice(self, tree: Any, index: int) -> Any:
        start = index * self.members
        return jax.tree_util.tree_map(lambda leaf: leaf[start:start + self.members], tree)

    def save_checkpoints(self) -> None:
        """Write each seed's surrogates and epoch to its run directory, atomically."""
        for index, run_dir in enumerate(self.run_dirs):
            save_checkpoint(run_dir / CHECKPOINT_FILE, algorithm="mbo", step=self.epoch,
                            state=self._seed_slice(self.states, index), host_state={"epoch": self.epoch})

    def load_checkpoints(self) -> None:
        """Resume every run from its checkpoint (all must be at the same epoch; :func:`train_seeds` groups them)."""
        slices, epochs = [], []
        for index, run_dir in enumerate(self.run_dirs):
            state, host, _, _ = load_checkpoint(run_dir / CHECKPOINT_FILE, algorithm="mbo",
                                                template=self._seed_slice(self.states, index))
            slices.append(state)
            epochs.append(int(host["epoch"]))
        if len(set(epochs)) != 1:
            raise ConfigError(f"runs resumed together are at different epochs {epochs}; resume them separately")
        self.states = jax.tree_util.tree_map(lambda *leaves: jnp.concatenate(leaves), *slices)
        self.epoch = epochs[0]

    # --- training and search ---

    def train(self, stop_at_step: int | None = None) -> list[dict[str, Any]]:
        """Train the surrogates to the end (checkpointing every epoch), search, score; final metrics per run.

        :param stop_at_step: pause after this epoch's checkpoint instead (returns empty metrics);
            for resume tests.
        """
        assert self.config.epochs is not None
        self.loggers = [RunLogger(run_dir, total_steps=self.config.epochs, start_step=self.epoch,
                                  progress=self.progress and index == 0)
                        for index, run_dir in enumerate(self.run_dirs)]
        started = time.perf_counter()
        try:
            while self.epoch < self.config.epochs:
                self.states, train_metrics = train_epoch(self.states, self.train_rows, self._epoch_keys(self.epoch),
                                                         self.data.z_all, self.data.y_all, settings=self.surrogate,
                                                         ignite=self.ignite)
                self.epoch += 1
                self._log_epoch(train_metrics)
                self.save_checkpoints()
                if stop_at_step is not None and self.epoch >= stop_at_step:
                    return [{} for _ in self.run_dirs]
            finals = self._search_and_score()
        finally:
            for logger in self.loggers:
                logger.close()
        elapsed = time.perf_counter() - started
        return [{**final, "task": self.config.task, "wall_time_s": elapsed / len(finals)} for final in finals]

    def _log_epoch(self, train_metrics: dict[str, jax.Array]) -> None:
        metrics = {f"train/{name}": np.asarray(value) for name, value in train_metrics.items()}
        self.last_train_metrics = metrics
        if self.config.validation_size > 1:
            validation = validation_metrics(self.states, self.validation_rows, self.data.z_all, self.data.y_all,
                                            settings=self.surrogate, rho=self.ignite.rho)
            metrics.update({f"validation/{name}": np.asarray(value) for name, value in validation.items()})
        for index, logger in enumerate(self.loggers):
            members = slice(index * self.members, (index + 1) * self.members)
            logger.log(self.epoch, {name: float(np.mean(value[members])) for name, value in metrics.items()})

    def _search_and_score(self) -> list[dict[str, Any]]:
        finals = []
        for index, (seed, run_dir) in enumerate(zip(self.seeds, self.run_dirs, strict=True)):
            params = self._model_params(self._seed_slice(self.states, index).params)
            designs, predicted_curve = self._search(params, Seeder(seed).jax_key("search"))
            designs_np = np.asarray(designs)
            scores = self.data.task.oracle(designs_np)
            np.savez_compressed(run_dir / CANDIDATES_FILE, designs=designs_np, scores=np.asarray(scores))
            final = self._score(designs_np, scores, params, predicted_curve)
            final.update(self._ignite_summary(index))
            finals.append(final)
        return finals

    def _ignite_summary(self, index: int) -> dict[str, Any]:
        """Where the constraint ended: the last epoch's sharpness ρ‖∇G‖ against ε, and λ."""
        if not self.ignite.active:
            return {}
        members = slice(index * self.members, (index + 1) * self.members)
        summary: dict[str, Any] = {"ignite/epsilon": self.ignite.epsilon,
                                   "ignite/multiplier_lr": self.ignite.multiplier_lr,
                                   "ignite/dual_step_ratio": self.dual_step_ratio}
        logged: dict[str, float] = {}
        if not self.last_train_metrics:
            # Resumed after the last epoch (e.g. interrupted during the search): the last epoch's
            # values are those this seed logged.
            for line in read_metrics(self.run_dirs[index]):
                logged.update({name: value for name, value in line.items() if name.startswith("train/")})
        for name in ("sharpness", "multiplier"):
            if f"train/{name}" in self.last_train_metrics:
                summary[f"ignite/{name}_end"] = float(np.mean(self.last_train_metrics[f"train/{name}"][members]))
            elif f"train/{name}" in logged:
                summary[f"ignite/{name}_end"] = float(logged[f"train/{name}"])
        if "ignite/sharpness_end" in summary:
            summary["ignite/constraint_holds"] = bool(summary["ignite/sharpness_end"] <= self.ignite.epsilon)
        return summary

    def _aggregation(self) -> Literal["single", "mean", "min"]:
        # ens-min takes the minimum over members; any other optimiser with several members their mean.
        if self.config.optimizer == "ens-min":
            return "min"
        return "mean" if self.members > 1 else "single"

    def _model_params(self, params: Any) -> Any:
        # One model: drop the member axis (members = 1); ensembles keep it.
        return params if self._aggregation() != "single" else jax.tree_util.tree_map(lambda leaf: leaf[0], params)

    def _search(self, params: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Candidates (designs) from the top offline designs, and the surrogate's score per search step."""
        aggregation = self._aggregation()
        if self.config.optimizer == "cma-es":
            settings_cma = CMAESSettings(sigma=self.config.cma_sigma, max_iterations=self.config.cma_max_iterations,
                                         aggregation=aggregation, diagonal_above=self.config.cma_diagonal_above)
            seed = int(jax.random.randint(key, (), 0, 2**30))
            z, curve = cma_es_search(self.predict, params, self.data.start_z, seed, settings_cma)
            return self.data.encoder.decode(z), curve
        if self.config.optimizer == "reinforce":
            return self._reinforce(params, key, aggregation)
        if self.config.optimizer == "cbas":
            return self._cbas(params, key, aggregation)
        if self.config.optimizer == "evolution":
            settings = EvolutionSettings(generations=self.config.evolution_generations,
                                         offspring=self.config.num_candidates, aggregation=aggregation)
            task = self.data.task
            return evolutionary_search(
                self.predict, params, jnp.asarray(self.data.start_designs), self.encode, key, settings,
                num_classes=task.num_classes, lower=None if task.lower is None else jnp.asarray(task.lower),
                upper=None if task.upper is None else jnp.asarray(task.upper))
        assert self.config.solver_steps is not None and self.config.solver_lr is not None
        ascent = GradientAscentSettings(steps=self.config.solver_steps, learning_rate=self.config.solver_lr,
                                        aggregation=aggregation)
        z, curve = gradient_ascent(self.predict, params, self.data.start_z, ascent)
        return self.data.encoder.decode(z), curve

    def _reinforce(self, params: Any, key: jax.Array, aggregation: Literal["single", "mean", "min"]
                   ) -> tuple[jax.Array, jax.Array]:
        config, task = self.config, self.data.task
        settings = ReinforceSettings(iterations=config.reinforce_iterations, batch_size=config.reinforce_batch_size,
                                     learning_rate=config.reinforce_lr,
                                     exploration_std=config.reinforce_exploration_std, aggregation=aggregation)
        discrete = task.kind == "discrete"
        start = jnp.asarray(self.data.start_designs) if discrete else self.data.start_z
        samples, curve = reinforce_search(self.predict, params, start, self.encode, key, settings,
                                          num_classes=task.num_classes if discrete else None,
                                          count=config.num_candidates)
        return (samples if discrete else self.data.encoder.decode(samples)), curve

    def _cbas(self, params: Any, key: jax.Array, aggregation: Literal["single", "mean", "min"]
              ) -> tuple[jax.Array, jax.Array]:
        config, task = self.config, self.data.task
        settings = CbASSettings(offline_epochs=config.cbas_offline_epochs, iterations=config.cbas_iterations,
                                online_epochs=config.cbas_online_epochs,
                                aggregation="mean" if aggregation == "min" else aggregation)
        discrete = task.kind == "discrete"
        designs = jnp.asarray(task.x) if discrete else self.data.z_all
        candidates, curve = cbas_search(self.predict_gaussian, params, designs,
                                        self.encode if discrete else _identity, key, settings,
                                        num_classes=task.num_classes if discrete else None,
                                        count=config.num_candidates)
        return (candidates if discrete else self.data.encoder.decode(candidates)), curve

    def _score(self, designs: np.ndarray, scores: np.ndarray, params: Any, predicted_curve: jax.Array
               ) -> dict[str, Any]:
        task = self.data.task
        normalized = task.normalize(scores)
        aggregation = self._aggregation()
        predicted_start = aggregate_prediction(self.predict, params, self.data.start_z, aggregation)
        predicted_end = aggregate_prediction(self.predict, params, self.encode(jnp.asarray(designs)), aggregation)
        final: dict[str, Any] = {f"score/{name}": value for name, value in percentile_scores(normalized).items()}
        # The surrogate's overestimation at its own candidates, on the normalised score scale.
        predicted = task.normalize(self.data.scaler.unscale(np.asarray(predicted_end, np.float64)))
        top = int(np.argmax(predicted))
        final.update({
            "overestimation/mean": float(np.mean(predicted - normalized)),
            "overestimation/top": float(predicted[top] - normalized[top]),
            "surrogate/predicted_normalized_mean": float(np.mean(predicted)),
            "score/mean": float(np.mean(normalized)),
            "score/offline_best": task.best_normalized,
            "surrogate/predicted_start": float(jnp.mean(predicted_start)),
            "surrogate/predicted_end": float(jnp.mean(predicted_end)),
            "surrogate/predicted_curve_end": float(predicted_curve[-1]),
            "candidates/unique": int(np.unique(designs.reshape(len(designs), -1), axis=0).shape[0]),
        })
        if task.feasibility is not None:
            final["candidates/feasible_fraction"] = float(np.mean(task.feasibility(designs)))
        return final


def _identity(z: jax.Array) -> jax.Array:
    return z


def _dual_regime(config: MBOConfig, num_rows: int) -> tuple[IgniteSettings, float]:
    """The regulariser's settings, with η_λ scaled to the released number of dual steps if asked,
    and the ratio (released dual steps / this run's; 1 when not scaled)."""
    ignite = config.ignite_settings()
    assert config.epochs is not None
    train_rows = max(num_rows - config.validation_size, 1)
    ours = config.epochs * max(train_rows // config.batch_size, 1)
    released = RELEASED_EPOCHS.get(config.optimizer, RELEASED_DEFAULT_EPOCHS) * max(train_rows // RELEASED_BATCH_SIZE,
                                                                                    1)
    ratio = released / ours
    if config.ignite_dual_steps != "released" or ignite.regularizer != "ignite":
        return ignite, 1.0
    return replace(ignite, multiplier_lr=ignite.multiplier_lr * ratio), ratio


def train_seeds(configs: Sequence[MBOConfig], run_dirs: Sequence[Path], progress: bool = False
                ) -> list[dict[str, Any]]:
    """Train runs that differ only in their seed, seeds vmapped; resume each from its checkpoint.

    Runs whose checkpoints stopped at different epochs (an interruption between two runs' writes)
    are resumed in separate groups. Returns each run's final metrics, in order.
    """
    epochs = [_checkpoint_epoch(Path(run_dir)) for run_dir in run_dirs]
    finals: list[dict[str, Any]] = [{} for _ in configs]
    for indices in groups_by_step(epochs):
        group = MBOGroup([configs[i] for i in indices], [Path(run_dirs[i]) for i in indices], progress)
        if epochs[indices[0]] > 0:
            group.load_checkpoints()
        for index, final in zip(indices, group.train(), strict=True):
            finals[index] = final
    return finals


def _checkpoint_epoch(run_dir: Path) -> int:
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        return 0
    return read_checkpoint_step(path, algorithm="mbo")


class MBOTrainer:
    """One seed as a :class:`~hybridrl.algorithms.Trainer` (``hybridrl train mbo``)."""

    def __init__(self, config: MBOConfig, run_dir: Path, progress: bool = False) -> None:
        self.group = MBOGroup([config], [run_dir], progress)
        self.run_dir = Path(run_dir)
        self.final: dict[str, Any] = {}

    def train(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train, search and score; the final metrics (``stop_at_step``: pause after that epoch)."""
        self.final = self.group.train(stop_at_step)[0]
        return self.final

    def save_checkpoint(self) -> Path:
        """Write the surrogates and the epoch."""
        self.group.save_checkpoints()
        return self.group.run_dirs[0] / CHECKPOINT_FILE

    def load_checkpoint(self, path: Path) -> None:
        """Resume from the run directory's checkpoint."""
        self.group.load_checkpoints()

    def evaluate(self, episodes: int) -> dict[str, float]:
        """The candidates' scores (MBO has no episodes; ``episodes`` is ignored)."""
        return {name: value for name, value in self.final.items() if name.startswith("score/")}

    def close(self) -> None:
        """Nothing to release."""


ALGORITHM = AlgorithmSpec(
    name="mbo",
    config_cls=MBOConfig,
    presets=PRESETS,
    make_trainer=MBOTrainer,
    summary="offline model-based optimisation (Design-Bench protocol), optionally with IGNITE",
    task_presets=optimizer_presets,
    train_seeds=train_seeds,
)

__all__ = ["ALGORITHM", "OPTIMIZERS", "MBOConfig", "MBOGroup", "MBOTrainer", "Regularizer", "train_seeds"]
