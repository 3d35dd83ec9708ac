"""The agent on the far end of a stack's control channel (userstack/csrc/stack/ctl.h), for every
stack.

One implementation answers both kinds of stack: a launched one (`xdpstack run`: the launcher runs
this agent in a thread, in the interface's network namespace) and an in-process one
(Stack.create). A stack never needs privileges or netlink: it asks here, and the agent answers
with the kernel's own knowledge:
- RESOLVE dst: the kernel FIB gives the next hop (gateway, or dst itself on-link), the kernel
  neighbour table its MAC. A missing entry makes the kernel resolve it (RTM_NEWNEIGH with NTF_USE,
  as `ip neigh replace ... use`); the answer (with the request's seq) follows when the kernel has
  it, or FAILED after RESOLVE_TIMEOUT. The agent then follows the kernel: neighbour and route
  changes for anything the stack has asked about are pushed to the stack as NEIGH updates (seq 0).
  Frames can only leave through the stack's interface: a destination the FIB routes elsewhere fails.
- CLAIM_EPHEMERAL / RELEASE: handed to the claim/release callbacks of whoever runs the agent. The
  launcher passes its own (claims in the registry and the demux maps, bound as the user);
  Stack.create(claims=True) passes KernelPortClaims (a kernel socket held in this process). Without
  a claim callback every claim is refused with EOPNOTSUPP; whatever the callback raises reaches
  the stack as an errno (EADDRNOTAVAIL when the exception carries none).

This module knows nothing of xdpstack: the launcher injects what only it can do.
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

log = logging.getLogger("userstack.agent")

NUD_INCOMPLETE, NUD_FAILED = 0x01, 0x20
NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # REACHABLE STALE DELAY PROBE NOARP PERMANENT
NTF_USE = 0x01
RESOLVE_TIMEOUT = 3.0           # the kernel's own ARP/ND give up after ~3 s (3 probes x 1 s)

ClaimFn = Callable[[ctl.ClaimEphemeral], tuple[str | None, int]]   # -> (local address, port); raises OSError
ReleaseFn = Callable[[ctl.Release], None]


@dataclass
class _Dst:
    nexthop: str | None = None
    mac: str | None = None
    status: int | None = None       # last status sent, None before any answer
    deadline: float = 0.0           # while waiting for the kernel to resolve
    seq: int = 0                    # of the RESOLVE still to be answered (0: none)


class StackAgent:
    """Answers the stack at the other end of `sock` (SOCK_SEQPACKET) from a thread of its own,
    in the caller's network namespace, for the interface `ifindex`. close() stops it; the socket
    stays the caller's to close."""

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
        self._thread = threading.Thread(target=self._main, name="userstack-agent", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._close_stop()
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
            d.deadline = 0.0
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

    def _send(self, dst: str, d: _Dst, mac: str | None, status: int):
        if (d.mac, d.status) == (mac, status):
            return
        d.mac, d.status = mac, status
        seq, d.seq = d.seq, 0                    # the answer to a RESOLVE carries its seq
        with contextlib.suppress(OSError):
            self.sock.send(ctl.encode(ctl.Neigh(dst=dst, mac=mac, status=status, nexthop=d.nexthop, seq=seq)))

    # -- requests from the stack --------------------------------------------------------------------
    def _on_message(self, m, now: float):
        if isinstance(m, ctl.Resolve):
            d = self._dsts.setdefault(m.dst, _Dst())
            d.status = None                      # the stack asks again: it wants an answer
            d.seq = m.seq
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

    def _close_stop(self):
        for s in (self._stop_r, self._stop_w):
            s.close()

    def close(self):
        if self._stop_w.fileno() < 0:
            return
        with contextlib.suppress(OSError):
            self._stop_w.send(b"x")
        self._thread.join(timeout=2)
        self._close_stop()


class KernelPortClaims:
    """Ephemeral claims for an in-process stack (Stack.create(claims=True)): the kernel picks the
    port, as for the launcher's claims. A socket bound to port 0 on the local address the kernel
    would use toward the remote (with no remote: the wildcard of the family) is held until RELEASE
    or close(), so the kernel never hands that port to anyone else. Steering the port's packets to
    the stack is the caller's business (an XDP program), as with every in-process stack."""

    def __init__(self):
        self._lock = threading.Lock()
        self.held: dict[tuple[int, int, str | None, int], socket.socket] = {}  # (proto, family, local, port)

    def claim(self, m: ctl.ClaimEphemeral) -> tuple[str | None, int]:
        if m.proto not in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
            raise OSError(errno.EPROTONOSUPPORT, "tcp or udp only")
        if m.family not in (4, 6):
            raise OSError(errno.EAFNOSUPPORT, "family must be 4 or 6")
        fam = socket.AF_INET6 if m.family == 6 else socket.AF_INET
        src = None
        if m.remote:
            with socket.socket(fam, socket.SOCK_DGRAM) as probe:   # a UDP connect only asks the FIB
                probe.connect((m.remote, 9))
                src = probe.getsockname()[0]
        s = socket.socket(fam, socket.SOCK_STREAM if m.proto == socket.IPPROTO_TCP else socket.SOCK_DGRAM)
        try:
            s.bind((src or ("::" if m.family == 6 else "0.0.0.0"), 0))
        except OSError:
            s.close()
            raise
        port = s.getsockname()[1]
        with self._lock:
            self.held[(m.proto, m.family, src, port)] = s
        return src, port

    def release(self, m: ctl.Release) -> None:
        with self._lock:
            s = self.held.pop((m.proto, m.family, m.local, m.port), None)
        if s is not None:
            s.close()

    def close(self) -> None:
        with self._lock:
            held, self.held = list(self.held.values()), {}
        for s in held:
            s.close()


class InProcessAgent:
    """The agent for a stack this process made (Stack.create) or handed its XDPSTACK_* environment
    to (tests, tools): a StackAgent on `sock`, with KernelPortClaims when claims=True. It owns
    `sock`: close() stops the agent, closes the socket and gives back every port still held."""

    def __init__(self, sock: socket.socket, ifindex: int, claims: bool = False):
        self.sock = sock
        self.ports = KernelPortClaims() if claims else None
        try:
            self.agent = StackAgent(sock, ifindex, claim=self.ports.claim if self.ports else None,
                                    release=self.ports.release if self.ports else None)
        except BaseException:
            if self.ports:
                self.ports.close()
            raise

    def close(self) -> None:
        self.agent.close()
        self.sock.close()
        if self.ports:
            self.ports.close()
