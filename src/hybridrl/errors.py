"""Errors that hybridrl raises for problems a user can fix.

Every error here carries a message that says what is wrong and how to fix it. The CLI prints
the message and exits with status 2, without a traceback; library users catch
:class:`HybridRLError`.
"""

from __future__ import annotations


class HybridRLError(Exception):
    """Base class of every user-facing error: bad input, not a bug in hybridrl."""


class ConfigError(HybridRLError, ValueError):
    """A configuration value is invalid or two values contradict each other."""


class UnknownEnvironmentError(HybridRLError, KeyError):
    """An environment id is not registered in Gymnasium and is not a DeepMind Control task."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class CheckpointError(HybridRLError):
    """A checkpoint is missing, corrupt, or belongs to another algorithm or configuration."""


class RunDirectoryError(HybridRLError):
    """A run directory is missing or lacks the files a command needs."""
