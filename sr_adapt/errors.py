"""Errors users can act on: the message names the file or config key and what to do."""

from __future__ import annotations


class SRAdaptError(Exception):
    """Base of every user-facing error; scripts print its message without a traceback."""


class ConfigError(SRAdaptError, ValueError):
    """A config value is missing or inconsistent (the message names the key)."""
