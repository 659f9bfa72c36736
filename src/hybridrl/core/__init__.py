"""Shared components every algorithm is built on: networks, normalisers, rollout storage, seeding,
logging, checkpoints and evaluation."""
