"""The CPU a process runs on: its usable cores, and torch's threads bounded by what other processes leave free."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["threads_for_load", "usable_cores"]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity: a container's or ``taskset``'s share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextmanager
def threads_for_load() -> Iterator[tuple[int, float]]:
    """torch's threads bounded by the cores other processes leave free (the 1-minute load average), restored
    after; yields (threads, load). Many small operations with more threads than free cores spin against the
    other processes: the bundled clip's degradation estimate beside two one-thread trainings on 2 cores took
    29.9 s at 2 threads and 13.1 s at 1 (BENCHMARKS.md, "The main job on a CPU")."""
    before = torch.get_num_threads()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this system
        load = 0.0
    threads = max(1, min(before, int(usable_cores() - load + 0.5)))
    torch.set_num_threads(threads)
    try:
        yield threads, load
    finally:
        torch.set_num_threads(before)
