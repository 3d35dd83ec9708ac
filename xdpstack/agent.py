"""The launcher's end of a stack's control channel (userstack/csrc/ctl.h).

A stack never needs privileges or netlink: it asks here. This agent, a thread of the privileged
launcher in the interface's network namespace, answers with the kernel's own knowledge:
- RESOLVE dst: the kernel FIB gives the next hop (gateway, or dst itself on-link), the kernel
  neighbour table its MAC. A missing entry makes the kernel resolve it (RTM_NEWNEIGH with NTF_USE,
  as `ip neigh replace ... use`); the answer follows when the kernel has it, or FAILED after
  RESOLVE_TIMEOUT. The agent then follows the kernel: neighbour and route changes for anything the
  stack has asked about are pushed to the stack as NEIGH updates.
- CLAIM_EPHEMERAL / RELEASE: handed to callbacks (the launcher claims through the registry).
Frames can only leave through the stack's interface: a destination the FIB routes elsewhere fails.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_NEIGH

from userstack import ctl

log = logging.getLogger("xdpstack.agent")

NUD_INCOMPLETE, NUD_FAILED = 0x01, 0x20
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # REACHABLE STALE DELAY PROBE NOARP PERMANENT
NTF_USE = 0x01
RESOLVE_TIMEOUT = 3.0           # the kernel's own ARP/ND give up after ~3 s (3 probes x 1 s)

ClaimFn = Callable[[ctl.ClaimEphemeral], tuple[str, int]]     # -> (local address, port); raises OSError
ReleaseFn = Callable[[ctl.Release], None]


@dataclass
class _Dst:
    nexthop: str | None = None
    mac: str | None = None
    status: int | None = None       # last status sent, None before any answer
    deadline: float = 0.0           # while waiting for the kernel to resolve


class StackAgent:
    def __init__(self, sock: socket.socket, ifindex: int, claim: ClaimFn | None = None,
                 release: ReleaseFn | None = None):
        self.sock, self.ifindex = sock, ifindex
        self._claim, self._release = claim, release
        self._dsts: dict[str, _Dst] = {}
        self._stop_r, self._stop_w = socket.socketpair()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        # The thread inherits the caller's network namespace. pyroute2 keeps its sockets per thread,
        # so the netlink sockets are opened by the thread that uses them.
        self._thread = threading.Thread(target=self._main, name="xdpstack-agent", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    # -- kernel knowledge ---------------------------------------------------------------------------
    def _nexthop(self, dst: str) -> str | None:
        """The next hop the kernel FIB picks for dst, or None if it is not through our interface."""
        try:
            routes = self._ipr.route("get", dst=dst)
        except Exception:
            return None
        for r in routes:
            if r.get("RTA_OIF") != self.ifindex:
                return None
            return r.get("RTA_GATEWAY") or dst
        return None

    def _neighbour(self, nexthop: str) -> tuple[str | None, int]:
        family = socket.AF_INET6 if ":" in nexthop else socket.AF_INET
        for n in self._ipr.get_neighbours(family=family, ifindex=self.ifindex):
            if n.get("NDA_DST") == nexthop:
                return n.get("NDA_LLADDR"), n["state"]
        return None, 0

    def _trigger(self, nexthop: str):
        family = socket.AF_INET6 if ":" in nexthop else socket.AF_INET
        with contextlib.suppress(Exception):
            self._ipr.neigh("replace", dst=nexthop, ifindex=self.ifindex, family=family, state=0,
                            flags=NTF_USE)

    def _update(self, dst: str, d: _Dst, now: float, trigger: bool = False):
        """Re-read what the kernel knows about dst; tell the stack if the answer changed."""
        d.nexthop = self._nexthop(dst)
        if d.nexthop is None:
            return self._send(dst, d, None, ctl.NEIGH_FAILED)
        mac, state = self._neighbour(d.nexthop)
        if mac and state & NUD_VALID:
            d.deadline = 0.0
            return self._send(dst, d, mac, ctl.NEIGH_OK)
        if state & NUD_FAILED and not trigger:
            d.deadline = 0.0
            return self._send(dst, d, None, ctl.NEIGH_FAILED)
        if trigger or not d.deadline:
            self._trigger(d.nexthop)
            d.deadline = now + RESOLVE_TIMEOUT

    def _send(self, dst: str, d: _Dst, mac: str | None, status: int, seq: int = 0, force: bool = False):
        if not force and (d.mac, d.status) == (mac, status):
            return
        d.mac, d.status = mac, status
        with contextlib.suppress(OSError):
            self.sock.send(ctl.encode(ctl.Neigh(dst=dst, mac=mac, status=status, nexthop=d.nexthop, seq=seq)))

    # -- requests from the stack --------------------------------------------------------------------
    def _on_message(self, m, now: float):
        if isinstance(m, ctl.Resolve):
            d = self._dsts.setdefault(m.dst, _Dst())
            d.status = None                      # the stack asks again: it wants an answer
            self._update(m.dst, d, now, trigger=True)
        elif isinstance(m, ctl.ClaimEphemeral):
            try:
                if self._claim is None:
                    raise OSError(errno.EOPNOTSUPP, "no ephemeral claims here")
                local, port = self._claim(m)
                reply = ctl.Claimed(proto=m.proto, family=m.family, port=port, local=local, seq=m.seq)
            except Exception as e:               # the stack gets an errno whatever went wrong here
                code = e.errno if isinstance(e, OSError) and e.errno else errno.EADDRNOTAVAIL
                log.warning("ephemeral claim for the stack failed: %s", e)
                reply = ctl.Claimed(proto=m.proto, family=m.family, port=0, status=-code, seq=m.seq)
            with contextlib.suppress(OSError):
                self.sock.send(ctl.encode(reply))
        elif isinstance(m, ctl.Release) and self._release is not None:
            try:
                self._release(m)
            except Exception as e:
                log.warning("releasing %s for the stack failed: %s", m, e)

    def _on_netlink(self, now: float):
        changed_routes, nexthops = False, set()
        for msg in self._mon.get():
            ev = msg.get("event", "")
            if ev in ("RTM_NEWNEIGH", "RTM_DELNEIGH"):
                nexthops.add(msg.get("NDA_DST"))
            elif ev in ("RTM_NEWROUTE", "RTM_DELROUTE"):
                changed_routes = True
        for dst, d in self._dsts.items():
            if changed_routes or d.nexthop in nexthops:
                self._update(dst, d, now)

    def _main(self):
        try:
            self._ipr = IPRoute()
            self._mon = IPRoute()
            self._mon.bind(groups=RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._run()
        finally:
            self._ipr.close()
            self._mon.close()

    def _run(self):
        fds = [self.sock.fileno(), self._mon.fileno(), self._stop_r.fileno()]
        while True:
            waiting = [d.deadline for d in self._dsts.values() if d.deadline]
            timeout = max(0.0, min(waiting) - time.monotonic()) if waiting else None
            ready, _, _ = select.select(fds, [], [], timeout)
            now = time.monotonic()
            if self._stop_r.fileno() in ready:
                return
            if self.sock.fileno() in ready:
                try:
                    data = self.sock.recv(ctl.MSG_SIZE)
                except OSError:
                    return
                if not data:                     # the stack closed its end
                    return
                try:
                    self._on_message(ctl.decode(data), now)
                except ValueError as e:
                    log.warning("bad control message from the stack: %s", e)
            if self._mon.fileno() in ready:
                self._on_netlink(now)
            for dst, d in self._dsts.items():
                if d.deadline and now >= d.deadline:
                    self._update(dst, d, now)
                    if d.deadline and now >= d.deadline:      # still nothing: give up
                        d.deadline = 0.0
                        self._send(dst, d, None, ctl.NEIGH_FAILED)

    def close(self):
        with contextlib.suppress(OSError):
            self._stop_w.send(b"x")
        self._thread.join(timeout=2)
        for s in (self._stop_r, self._stop_w):
            s.close()
