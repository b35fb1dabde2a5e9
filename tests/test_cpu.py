"""The CPU helpers: torch's threads follow the cores other processes leave free (issue 25: the estimate
took 10-20x longer beside two trainings when it ran as many threads as the machine has cores)."""

from __future__ import annotations

import logging
import os

import torch

from sr_adapt.ops import cpu


def test_threads_follow_the_free_cores_and_are_restored(monkeypatch) -> None:
    monkeypatch.setattr(cpu, "usable_cores", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        for load, expect in ((0.0, 4), (1.2, 3), (2.6, 1), (7.5, 1)):
            monkeypatch.setattr(cpu, "busy_cores", lambda load=load: load)
            with cpu.threads_for_load() as (threads, seen):
                assert threads == expect == torch.get_num_threads() and seen == load
            assert torch.get_num_threads() == 4
        torch.set_num_threads(2)  # never more threads than the process had
        monkeypatch.setattr(cpu, "busy_cores", lambda: 0.0)
        with cpu.threads_for_load() as (threads, _):
            assert threads == 2
    finally:
        torch.set_num_threads(before)


def test_busy_cores_counts_the_allowed_cpus_time_over_the_window(monkeypatch) -> None:
    # cpu0 fully busy over the window, cpu1 idle, cpu2 half busy (jiffies: busy, total)
    samples = iter([{0: (100.0, 200.0), 1: (50.0, 200.0), 2: (10.0, 100.0)},
                    {0: (110.0, 210.0), 1: (50.0, 210.0), 2: (15.0, 110.0)}])
    monkeypatch.setattr(cpu, "_cpu_times", lambda: next(samples))
    assert cpu.busy_cores(0.0) == 1.5
    monkeypatch.setattr(cpu, "_cpu_times", lambda: None)  # no /proc/stat: the load average
    monkeypatch.setattr(os, "getloadavg", lambda: (0.7, 0.5, 0.2))
    assert cpu.busy_cores(0.0) == 0.7
    monkeypatch.undo()
    assert 0.0 <= cpu.busy_cores(0.05) <= cpu.usable_cores() + 1e-6  # this machine, whatever else runs on it


def test_the_estimate_says_how_many_threads_it_runs_on_a_busy_machine(monkeypatch, caplog) -> None:
    from sr_adapt.degradation import Degradation
    from sr_adapt.training.target_degradation import EstimateRequest

    monkeypatch.setattr(cpu, "busy_cores", lambda: 9.0)
    g = torch.Generator().manual_seed(0)
    hr = [torch.rand(3, 256, 256, generator=g) for _ in range(2)]
    lrs = [Degradation(4, 1.5, downsample="decimate")(h[None])[0] for h in hr]
    with caplog.at_level(logging.INFO, logger="sr_adapt.training"):
        EstimateRequest(lrs, ["a", "b"], hr, 4, {"method": "cross_scale"}).estimate()
    assert "on 1 thread (the machine is busy: 9.0 of" in caplog.text
