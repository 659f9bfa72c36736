"""Reference returns for normalised scores, D4RL style: ``100 * (R - random) / (expert - random)``.

The constants are D4RL's (``d4rl/infos.py``: random and expert policy returns of the v2 MuJoCo
tasks); we use them for the v5 envs, whose dynamics and rewards match v2/v4 closely enough for a
normalised score but not exactly, so compare against D4RL papers with that caveat.
"""

from __future__ import annotations

#: env family -> (random return, expert return), from D4RL.
_D4RL_REFERENCE: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

_FAMILY_OF_ENV: dict[str, str] = {
    "Hopper": "hopper",
    "HalfCheetah": "halfcheetah",
    "Walker2d": "walker2d",
    "Ant": "ant",
}


def reference_returns(env_id: str) -> tuple[float, float] | None:
    """``(random, expert)`` reference returns of ``env_id``, or None if it has none."""
    family = _FAMILY_OF_ENV.get(env_id.split("-v")[0])
    return _D4RL_REFERENCE.get(family) if family else None


def normalized_score(env_id: str, episode_return: float) -> float | None:
    """D4RL-style normalised score (0 = random, 100 = expert) or None without references."""
    reference = reference_returns(env_id)
    if reference is None:
        return None
    random_return, expert_return = reference
    return 100.0 * (episode_return - random_return) / (expert_return - random_return)
