"""The one exception type the data pipeline raises for bad user input."""

from __future__ import annotations

from sr_adapt.errors import SRAdaptError

__all__ = ["DataError"]


class DataError(SRAdaptError, ValueError):
    """A dataset folder, file or setting the user has to fix.

    The message always names the offending file or folder, the config key to change
    (e.g. ``data.train.hr_dir``) and what to do about it. Being a ``ValueError`` with a
    single string argument, it pickles cleanly and survives the re-raise of torch's
    DataLoader workers with its message intact.
    """
