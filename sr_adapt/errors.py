"""Every error a user can act on: the message names the file or config key and what to do.

The command-line tasks catch :class:`SRAdaptError` (by type, also when it was re-raised from a
DataLoader worker) and print its message without a traceback, exit status 2. Each class takes a
single message string, so it pickles and survives torch's worker re-raise with its type intact.
"""

from __future__ import annotations

__all__ = ["SRAdaptError", "ConfigError", "DataError", "CheckpointError", "CheckpointNotFoundError", "OutputError"]


class SRAdaptError(Exception):
    """Base of every user-facing error."""


class ConfigError(SRAdaptError, ValueError):
    """A config value is missing or inconsistent (the message names the key)."""


class DataError(SRAdaptError, ValueError):
    """A dataset folder, file or setting the user has to fix.

    The message names the offending file or folder, the config key to change (e.g.
    ``data.train_sources.paired.hr_dir``) and what to do about it.
    """


class CheckpointError(SRAdaptError, ValueError):
    """A checkpoint file cannot be loaded as the requested model (the message says why and what to do)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


class UnknownArchitectureError(CheckpointError):
    """Weights of no architecture we or spandrel know (the message lists what each loader expected)."""


class OutputError(SRAdaptError, OSError):
    """An output cannot be written (full disk, no permission, read-only filesystem): the message names
    the file and the free space."""
