"""CPU accounting for the benchmarks: busy time of every core from /proc/stat, and of processes
from /proc/PID/stat.

A core's busy time is the wall time it was neither idle (idle, iowait) nor stolen by the
hypervisor. The figure that compares contenders is the busy time summed over all cores per unit of
work (request, datagram, byte): on veth, and on a 2-core machine, work that belongs to the server
runs on the client's core (veth receives a packet on the CPU that sent it), so one core's figure
charges it to nobody.

Why not user + system + softirq: this kernel samples those at the tick (no
CONFIG_IRQ_TIME_ACCOUNTING), and a load that sleeps between 2 ms bursts is sampled with a bias (one
CI run saw a core doing a paced receive for 2 s charged 0 ticks). A NOHZ kernel measures idle time
exactly, at every idle entry and exit, so wall minus idle is exact up to /proc/stat's print unit
(CLK_TCK, 10 ms): keep each measured interval at seconds. The softirq figure stays tick-sampled
and is shown only as a hint of where the time went.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT_BOUND_UTIL = 0.95          # a load generator's core at or above this: the rate is the client's


def core_times() -> dict[int, tuple[float, float]]:
    """{cpu: (seconds idle or stolen, softirq seconds)} for every CPU in /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                idle, iowait, softirq, steal = (int(v[i]) for i in (3, 4, 6, 7))
                out[int(name[3:])] = ((idle + iowait + steal) / CLK_TCK, softirq / CLK_TCK)
    return out


def proc_cpu(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), seconds; a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])       # utime, stime (fields 14, 15)
    return total / CLK_TCK


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    return out


@dataclass
class Usage:
    """What the cores (and the given processes) did over one interval."""
    wall_s: float
    busy_s: dict[int, float]                 # per core
    softirq_s: dict[int, float]
    procs_s: float = 0.0                     # utime + stime of the sampled processes
    roles: dict[str, int] = field(default_factory=dict)      # "client" -> cpu, "server" -> cpu

    @property
    def total_busy_s(self) -> float:
        return sum(self.busy_s.values())

    def util(self, cpu: int) -> float:
        return self.busy_s.get(cpu, 0.0) / self.wall_s if self.wall_s > 0 else 0.0

    def client_bound(self) -> bool | None:
        """Was the load generator's core saturated (None: no client role)?"""
        c = self.roles.get("client")
        return None if c is None else self.util(c) >= CLIENT_BOUND_UTIL

    def fields(self, units: float, unit: str) -> dict:
        """The standard figures: CPU per unit over all cores (microseconds, or ns for packets),
        each core's busy seconds and utilisation, and client-bound marking."""
        out: dict = {"wall_s": round(self.wall_s, 3), "cores_busy_s": round(self.total_busy_s, 3),
                     f"cpu_{per_unit_suffix(unit)}": per_unit(self.total_busy_s, units, unit)}
        for role, c in self.roles.items():
            out[f"{role}_core_util"] = round(self.util(c), 3)
            out[f"{role}_core_softirq_s"] = round(self.softirq_s.get(c, 0.0), 3)
            out[f"{role}_cpu_{per_unit_suffix(unit)}"] = per_unit(self.busy_s.get(c, 0.0), units, unit)
        if self.procs_s:
            out["procs_cpu_s"] = round(self.procs_s, 3)
        if "client" in self.roles:
            out["client_bound"] = self.client_bound()
        return out


def per_unit_suffix(unit: str) -> str:
    named = {"datagram": "ns_per_datagram", "frame": "ns_per_frame", "GB": "s_per_gb"}
    return named.get(unit, f"us_per_{unit}")


def per_unit(cpu_s: float, units: float, unit: str) -> float | None:
    """cpu_s per unit: ns for datagrams and frames, seconds per GB, microseconds otherwise."""
    if not units:
        return None
    scale = {"datagram": 1e9, "frame": 1e9, "GB": 1.0}.get(unit, 1e6)
    return round(cpu_s * scale / units, 3)


class Meter:
    """Samples every core (and optionally some processes) from start() to stop().

        m = Meter(roles={"server": 1, "client": 0}, pids=[...]).start()
        ... the measured work ...
        usage = m.stop()
    """

    def __init__(self, roles: dict[str, int] | None = None, pids: list[int] | None = None):
        self.roles, self.pids = dict(roles or {}), list(pids or [])

    def start(self) -> Meter:
        self.t0, self.c0, self.p0 = time.monotonic(), core_times(), proc_cpu(self.pids)
        return self

    def stop(self) -> Usage:
        wall, c1 = time.monotonic() - self.t0, core_times()
        cpus = sorted(os.sched_getaffinity(0))
        return Usage(wall_s=wall,
                     busy_s={c: max(0.0, wall - (c1[c][0] - self.c0[c][0])) for c in cpus if c in c1},
                     softirq_s={c: c1[c][1] - self.c0[c][1] for c in cpus if c in c1},
                     procs_s=proc_cpu(self.pids) - self.p0, roles=self.roles)


def cpu_ratio(kernel_per_unit: float | None, user_per_unit: float | None) -> float | None:
    """The kernel contender's CPU per unit over the user stack's: above 1, the user stack is cheaper."""
    if not kernel_per_unit or not user_per_unit:
        return None
    return round(kernel_per_unit / user_per_unit, 3)
