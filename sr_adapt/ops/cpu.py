"""The CPU a process runs on: its usable cores, and torch's threads bounded by what other processes leave free."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["busy_cores", "cpu_identity", "threads_for_load", "usable_cores"]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity: a container's or ``taskset``'s share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _allowed_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return None


def _cpu_times() -> dict[int, tuple[float, float]] | None:
    """(busy, total) jiffies since boot of each CPU this process may run on (Linux ``/proc/stat``), None elsewhere."""
    allowed = _allowed_cpus()
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if not name[3:].isdigit():
                    break
                cpu = int(name[3:])
                if allowed is None or cpu in allowed:
                    values = [float(v) for v in fields[:8]]
                    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
                    out[cpu] = (sum(values) - idle, sum(values))
    except (OSError, ValueError):
        return None
    return out or None


def busy_cores(window: float = 0.1) -> float:
    """Of the cores this process may run on, how many other processes keep busy now: their CPU time over
    ``window`` seconds while this one waits (Linux), else the 1-minute load average (which lags: it still
    reads ~1 a minute after a job ended)."""
    first = _cpu_times()
    if first is not None:
        time.sleep(window)
        second = _cpu_times()
        if second is not None:
            busy = 0.0
            for cpu, (b0, t0) in first.items():
                b1, t1 = second.get(cpu, (b0, t0))
                busy += (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
            return busy
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this system
        return 0.0


@contextmanager
def threads_for_load() -> Iterator[tuple[int, float]]:
    """torch's threads bounded by the cores other processes leave free (:func:`busy_cores`), restored after;
    yields (threads, busy cores). Many small operations with more threads than free cores spin against the
    other processes: the bundled clip's degradation estimate beside two one-thread trainings on 2 cores took
    29.9 s at 2 threads and 12.7 s at 1 (BENCHMARKS.md, "The main job as a user lives it")."""
    before = torch.get_num_threads()
    load = busy_cores()
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
