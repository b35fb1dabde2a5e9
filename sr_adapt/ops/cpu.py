"""The CPU a process runs on: its usable cores, and torch's threads bounded by what other processes leave free."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["cpu_identity", "threads_for_load", "usable_cores"]


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


_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_identity() -> str:
    """This machine's CPU as far as speed goes: model name, family / model numbers, the vector extensions that
    choose kernels (AVX-512, BF16, AMX), and the usable cores -- one string, a cache key for measured choices
    (the same "Intel(R) Xeon(R) Processor" name covers models with and without AMX)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        import platform  # noqa: PLC0415 - only where /proc is missing

        return f"{platform.processor() or platform.machine()}, {usable_cores()} cores"
    flags = set(fields.get("flags", "").split())
    extensions = "+".join(f for f in _FLAGS if f in flags) or "base"
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, "
            f"{extensions}), {usable_cores()} cores")
