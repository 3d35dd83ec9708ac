"""The CPU meter charges a core the time it really worked, even for a load that sleeps between bursts
(the paced benchmarks' pattern, which tick sampling mis-charges)."""
from __future__ import annotations

import os
import time

import pytest

from xdpstack.bench.cpu import Meter


def _spin(seconds: float):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_bursty_load_is_charged_its_work():
    cpu = max(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        meter, worked = Meter(roles={"load": cpu}).start(), 0.0
        for _ in range(150):                 # 150 bursts of 2 ms, 8 ms asleep: 0.3 s of work in 1.5 s
            t = time.perf_counter()
            _spin(0.002)
            worked += time.perf_counter() - t
            time.sleep(0.008)
        usage = meter.stop()
    finally:
        os.sched_setaffinity(0, old)
    busy = usage.busy_s[cpu]
    # never under-charged (other work on the core, on a used machine, may add to it), never over wall
    assert worked - 0.06 <= busy <= usage.wall_s + 0.02, (busy, worked, usage.wall_s)
