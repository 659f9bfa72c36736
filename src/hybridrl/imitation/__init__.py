"""Imitation learning from demonstrations: discriminators, DAC and AILBoost."""
