"""Offline reinforcement learning: behaviour cloning, IQL, dynamics models, off-policy evaluation
and Uni-O4's offline phase."""
