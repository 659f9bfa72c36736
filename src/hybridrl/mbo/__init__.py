"""Offline model-based optimisation: tasks with offline data and hidden oracles (TF-Bind-8, Ehrlich
functions, continuous test functions), probabilistic and conservative surrogates, offline
optimisers, the IGNITE sharpness regulariser, and the Design-Bench evaluation protocol.

See ``docs/mbo.md`` and ``docs/algorithms/ignite.md``.
"""
