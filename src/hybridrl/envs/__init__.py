"""Environments: one factory for Gymnasium and DeepMind Control, vector envs, and reference scores."""

from hybridrl.envs.factory import make_env, make_vector_env, registered_env_ids
from hybridrl.envs.reference import normalized_score, reference_returns

__all__ = ["make_env", "make_vector_env", "normalized_score", "reference_returns", "registered_env_ids"]
