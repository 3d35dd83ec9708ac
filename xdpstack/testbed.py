"""Throwaway testbeds for tests, the demo and benchmarks: namespaces joined by veth pairs, removed
on every exit path.

    ns "<id>-dut"                          ns "<id>-peer"
    +------------------------+             +------------------------+
    | dut  (xdpstack side)   |   veth pair | peer (kernel peer)     |
    | 198.18.0.1/24          |-------------| 198.18.0.2/24          |
    | 2001:db8::1/64         |             | 2001:db8::2/64         |
    +------------------------+             +------------------------+

Interface names are random per testbed by default, so that a leftover link names its testbed. They
need not be unique: xdpstack's state is per network namespace, and the pair is made inside the
namespaces, never in the host's, so `Testbed(dut_ifname="eth0")` works beside the host's eth0.
Addresses come from 198.18.0.0/15 and 2001:db8::/32 only. Both veths keep the kernel's default
offloads: the peer's TCP/UDP frames reach XDP with partial checksums (tx checksum offload on), which
a stack accepts because its NIC is a veth (XDPSTACK_LOCAL_PEER, userstack/csrc/base/env.h).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field

from pyroute2 import IPRoute, netns

PREFIX = "xst"          # every namespace a testbed makes starts with this
_created: set[str] = set()   # namespaces this process made (concurrent runs never touch each other's)
IFA_F_NODAD = 0x02


@dataclass
class Host:
    ns: str
    ifname: str
    ifindex: int = 0
    mac: str = ""
    addr4: str = ""
    addr6: str = ""

    def run(self, cmd: str | list[str], check: bool = True, timeout: float = 60,
            **kw) -> subprocess.CompletedProcess:
        """Run a command inside this host's namespace (`ip netns exec`, fine for kernel tools)."""
        argv = ["ip", "netns", "exec", self.ns] + (["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd))
        return subprocess.run(argv, check=check, timeout=timeout, capture_output=True, text=True, **kw)

    def popen(self, cmd: str | list[str], **kw) -> subprocess.Popen:
        argv = ["ip", "netns", "exec", self.ns] + (["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd))
        return subprocess.Popen(argv, **kw)

    def ipr(self) -> IPRoute:
        return IPRoute(netns=self.ns)


@dataclass
class Testbed:
    queues: int = 1
    mtu: int = 1500
    id: str = field(default_factory=lambda: f"{PREFIX}{secrets.token_hex(3)}")
    dut_ifname: str = ""                  # default: "<id>d"
    dut: Host = None  # type: ignore[assignment]
    peer: Host = None  # type: ignore[assignment]
    _procs: list = field(default_factory=list)

    def __post_init__(self):
        self.dut = Host(ns=f"{self.id}-dut", ifname=self.dut_ifname or f"{self.id}d", addr4="198.18.0.1",
                        addr6="2001:db8::1")
        self.peer = Host(ns=f"{self.id}-peer", ifname=f"{self.id}p", addr4="198.18.0.2", addr6="2001:db8::2")

    # -- life cycle -------------------------------------------------------------------------------
    def up(self) -> Testbed:
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self):
        for h in (self.dut, self.peer):
            netns.create(h.ns)
            _created.add(h.ns)
        q = {"num_rx_queues": self.queues, "num_tx_queues": self.queues}
        with self.dut.ipr() as ipr:         # made in the dut namespace: no name meets the host's
            ipr.link("add", ifname=self.dut.ifname, kind="veth", **q,
                     peer={"ifname": self.peer.ifname, "net_ns_fd": self.peer.ns, **q})
        for h in (self.dut, self.peer):
            with h.ipr() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                idx = ipr.link_lookup(ifname=h.ifname)[0]
                ipr.link("set", index=idx, mtu=self.mtu)
                ipr.addr("add", index=idx, address=h.addr4, prefixlen=24)
                ipr.addr("add", index=idx, address=h.addr6, prefixlen=64, flags=IFA_F_NODAD)
                ipr.link("set", index=idx, state="up")
                link = ipr.get_links(idx)[0]
                h.ifindex, h.mac = idx, link.get("address")
        # Static neighbours: tests do not wait for ARP/ND unless they test it.
        for a, b in ((self.dut, self.peer), (self.peer, self.dut)):
            a.run(f"ip neigh replace {b.addr4} lladdr {b.mac} dev {a.ifname} nud permanent && "
                  f"ip -6 neigh replace {b.addr6} lladdr {b.mac} dev {a.ifname} nud permanent")

    def down(self):
        for p in self._procs:
            with contextlib.suppress(Exception):
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=5)
        for h in (self.dut, self.peer):
            if h is not None:
                with contextlib.suppress(Exception):
                    netns.remove(h.ns)
                if h.ns not in netns.listnetns():
                    _created.discard(h.ns)

    def __enter__(self) -> Testbed:
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def track(self, p: subprocess.Popen) -> subprocess.Popen:
        """Kill this process when the testbed goes down."""
        self._procs.append(p)
        return p


def leftover_namespaces() -> list[str]:
    """Namespaces this process made that still exist."""
    return [n for n in netns.listnetns() if n in _created]


def remove_leftovers():
    for n in leftover_namespaces():
        with contextlib.suppress(Exception):
            netns.remove(n)


def wait_until(pred, timeout: float = 5.0, interval: float = 0.02):
    """Poll pred() until it is truthy or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def is_root() -> bool:
    return os.geteuid() == 0
