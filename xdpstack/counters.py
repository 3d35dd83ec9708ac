"""Counters of an attached interface: the global `stats` and per-stack `stack_stats`, summed over
CPUs, and rates between two snapshots. Field names come from the layouts (struct xs_stats,
struct xs_stack_stats), so a counter added to the header shows up here without a change."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from xdpstack.maps import open_map
from xdpstack.registry import StackRecord, list_stacks


@dataclass
class Snapshot:
    ifname: str
    time: float
    totals: dict[str, int]                                  # struct xs_stats, summed over CPUs
    stacks: dict[int, dict[str, int]] = field(default_factory=dict)   # stack id -> xs_stack_stats
    records: dict[int, StackRecord] = field(default_factory=dict)


def snapshot(ifname: str) -> Snapshot:
    with open_map(ifname, "stats") as m:
        totals = m.sum(0)
        t = time.monotonic()
    records = {r.id: r for r in list_stacks(ifname)}
    per = {}
    with open_map(ifname, "stack_stats") as m:
        for sid in records:
            per[sid] = m.sum(sid)
    return Snapshot(ifname, t, totals, per, records)


def rates(prev: Snapshot, cur: Snapshot) -> dict[str, float]:
    """Per-second rate of every global counter between two snapshots."""
    dt = max(cur.time - prev.time, 1e-9)
    return {k: (v - prev.totals.get(k, 0)) / dt for k, v in cur.totals.items()}


def stack_rates(prev: Snapshot, cur: Snapshot) -> dict[int, dict[str, float]]:
    dt = max(cur.time - prev.time, 1e-9)
    out = {}
    for sid, vals in cur.stacks.items():
        before = prev.stacks.get(sid, {})
        out[sid] = {k: (v - before.get(k, 0)) / dt for k, v in vals.items()}
    return out
