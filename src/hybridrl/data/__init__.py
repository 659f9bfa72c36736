"""Offline data: datasets of transitions and episodes, Minari and D4RL I/O, validation, generation.

::

    from hybridrl.data import load_dataset
    dataset = load_dataset("hopper-medium-sac-v5")      # ours; or a Minari id, folder or D4RL .hdf5 file
    batch = dataset.sample(256, jax.random.key(0))       # TransitionBatch of device arrays
    for episode in dataset.episodes(): ...

See ``docs/datasets.md`` for the formats and the generation recipes.
"""

from hybridrl.data.d4rl import read_d4rl
from hybridrl.data.dataset import Dataset, DatasetInfo, Episode, TransitionBatch, sample_transitions
from hybridrl.data.loading import load_dataset, resolve_dataset
from hybridrl.data.minari_format import list_local_datasets, minari_root, read_minari, write_minari
from hybridrl.data.summary import format_summary, summarize
from hybridrl.data.validation import DatasetError, DatasetNotFoundError, EnvFacts, env_facts, validate_dataset
from hybridrl.envs.reference import reference_returns as d4rl_reference_returns

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EnvFacts",
    "Episode",
    "TransitionBatch",
    "d4rl_reference_returns",
    "env_facts",
    "format_summary",
    "list_local_datasets",
    "load_dataset",
    "minari_root",
    "read_d4rl",
    "read_minari",
    "resolve_dataset",
    "sample_transitions",
    "summarize",
    "validate_dataset",
    "write_minari",
]
