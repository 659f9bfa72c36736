"""Tests of D4RL-style reference scores (hybridrl.envs.reference)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrl.envs.reference import normalized_score, reference_returns

ENVS_WITH_REFERENCES = ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5"]


@pytest.mark.parametrize("env_id", ENVS_WITH_REFERENCES)
def test_random_scores_zero_and_expert_scores_one_hundred(env_id: str) -> None:
    reference = reference_returns(env_id)
    assert reference is not None
    random_return, expert_return = reference
    assert random_return < expert_return
    assert normalized_score(env_id, random_return) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score(env_id, expert_return) == pytest.approx(100.0)


def test_hopper_uses_the_d4rl_constants() -> None:
    assert reference_returns("Hopper-v5") == (-20.272305, 3234.3)


@pytest.mark.parametrize("version", ["v2", "v4", "v5"])
def test_every_version_of_a_family_shares_the_references(version: str) -> None:
    assert reference_returns(f"Hopper-{version}") == reference_returns("Hopper-v5")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "dmc:walker-walk", "Humanoid-v5"])
def test_envs_without_references_have_no_score(env_id: str) -> None:
    assert reference_returns(env_id) is None
    assert normalized_score(env_id, 100.0) is None


@given(st.sampled_from(ENVS_WITH_REFERENCES), st.floats(-1e4, 1e4), st.floats(-1e4, 1e4))
@settings(deadline=None)
def test_normalized_score_is_affine_and_increasing(env_id: str, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    low_score, high_score = normalized_score(env_id, low), normalized_score(env_id, high)
    assert low_score is not None and high_score is not None
    assert low_score <= high_score
    random_return, expert_return = reference_returns(env_id)  # type: ignore[misc]
    assert high_score - low_score == pytest.approx(100.0 * (high - low) / (expert_return - random_return),
                                                   abs=1e-9)
