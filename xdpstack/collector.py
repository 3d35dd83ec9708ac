"""Everything the read commands show, read in one place: the demux's pinned counters (counters),
each stack's own counters in its shared page (stackstats), the registry, and the launchers'
records (AF_XDP ring statistics, refreshed by each launcher every STATUS_INTERVAL).
`stacks`, `status`, `stats`, `top` and `metrics` all read through `collect`.

    snap = collect(["veth0"])          # [Iface(...)], one per interface
    rates = snap[0].rates(prev[0])     # per-second rates between two collections
"""
from __future__ import annotations

from dataclasses import dataclass, field

from xdpstack import counters, launcher, loader, registry, stackstats
from xdpstack.errors import XdpstackError


@dataclass
class Stack:
    ifname: str
    id: int
    name: str
    launcher_pid: int
    pid: int | None
    user: str
    uid: int
    cmd: list[str] | None
    queues: int
    port_ifindex: int
    tuples: list[str]
    demux: dict[str, int]                      # struct xs_stack_stats: the demux's and guard's view
    own: dict[str, dict[str, int]] | None      # {"stack": us_stats, "tcp": us_tcp_stats}, or None
    xsk: list[dict] = field(default_factory=list)   # XDP_STATISTICS per queue (launcher's record)
    mode: str = "isolated"                     # or "direct, unguarded" (registry.MODES)
    xsk_bind: str | None = None                # "copy" or "zero-copy" (launcher's record)

    def row(self) -> dict:
        """The `xdpstack stacks --json` row."""
        return {"ifname": self.ifname, "id": self.id, "name": self.name, "launcher_pid": self.launcher_pid,
                "pid": self.pid, "user": self.user, "uid": self.uid, "cmd": self.cmd, "queues": self.queues,
                "port_ifindex": self.port_ifindex, "tuples": self.tuples, "counters": self.demux,
                "xdp_statistics": self.xsk, "stack_counters": self.own, "mode": self.mode,
                "xsk_bind": self.xsk_bind}


@dataclass
class Iface:
    ifname: str
    time: float
    mode: str | None                            # native | generic
    prog_id: int | None
    totals: dict[str, int]                      # struct xs_stats, summed over CPUs
    stacks: list[Stack]

    def rates(self, prev: Iface | None) -> dict:
        """Per-second rates since prev: {"totals": {...}, "stacks": {name: {"demux": .., "stack": ..,
        "tcp": ..}}} (a stack new since prev counts from zero)."""
        dt = max(self.time - prev.time, 1e-9) if prev else None
        old = {s.name: s for s in prev.stacks} if prev else {}

        def per(cur: dict, before: dict | None) -> dict[str, float]:
            if dt is None:
                return {k: 0.0 for k in cur}
            return {k: (v - (before or {}).get(k, 0)) / dt for k, v in cur.items() if isinstance(v, int)}

        out = {"totals": per(self.totals, prev.totals if prev else None), "stacks": {}}
        for s in self.stacks:
            p = old.get(s.name)
            r = {"demux": per(s.demux, p.demux if p and p.id == s.id else None)}
            if s.own:
                po = p.own if p and p.id == s.id and p.own else {}
                r["stack"] = per(s.own["stack"], po.get("stack"))
                r["tcp"] = per(s.own["tcp"], po.get("tcp"))
            out["stacks"][s.name] = r
        return out


def stacks_of(ifname: str, snap: counters.Snapshot | None = None) -> list[Stack]:
    snap = snap or counters.snapshot(ifname)
    claims = registry.list_claims(ifname)
    live = {s["stack"]: s for s in launcher.read_status(ifname)}
    out = []
    for r in snap.records.values():
        st = live.get(r.id, {})
        own = stackstats.read(st["launcher_pid"], st["stats_fd"]) if "stats_fd" in st else None
        out.append(Stack(ifname, r.id, r.name, r.pid, st.get("pid"), r.user, r.uid, st.get("cmd"),
                         r.xsk_slots, r.port_ifindex, [str(c) for c in claims if c.stack == r.id],
                         snap.stacks.get(r.id, {}), own, st.get("xdp_statistics", []),
                         registry.MODES.get(r.target, "?"), st.get("xsk_bind")))
    return sorted(out, key=lambda s: s.id)


def collect_one(ifname: str) -> Iface:
    loader.require_pins(ifname)
    snap = counters.snapshot(ifname)
    try:
        a = loader.status(ifname)
        mode, prog = a.mode, a.prog_id
    except XdpstackError:           # pins without an attachment (half torn down): counters only
        mode, prog = None, None
    return Iface(ifname, snap.time, mode, prog, snap.totals, stacks_of(ifname, snap))


def collect(ifnames: list[str] | None = None) -> list[Iface]:
    """Every attached interface (or those named), now."""
    return [collect_one(n) for n in (ifnames or loader.attached_interfaces())]
