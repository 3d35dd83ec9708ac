"""In-process neighbour resolution (and port claims) for stacks created with Stack.create.

Answers the stack's RESOLVE messages on its control channel the way the launcher does: the kernel
FIB gives the next hop, the kernel neighbour table its MAC. This one only looks up (it does not
trigger resolution or follow changes): enough for tests and benchmarks on hosts whose neighbours
are known; launched stacks get the launcher's agent.

With claims=True it also answers CLAIM_EPHEMERAL the way the launcher reserves a port: a kernel
socket bound to port 0 on the address the kernel would use toward the remote, held until RELEASE
(or close), so the kernel never hands that port to anyone else. Steering that port's packets to
the stack is the caller's business (an XDP program), as with every in-process stack.
"""
from __future__ import annotations

import errno
import socket
import threading

from userstack import ctl

_NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # REACHABLE STALE DELAY PROBE NOARP PERMANENT


class Resolver:
    def __init__(self, sock: socket.socket, ifindex: int, claims: bool = False):
        from pyroute2 import IPRoute
        self._sock = sock
        self._ifindex = ifindex
        self._claims = claims
        self.held: dict[tuple[int, str, int], socket.socket] = {}   # (proto, addr, port) -> socket
        self._ipr = IPRoute()            # bound to this thread's network namespace now
        self._thread = threading.Thread(target=self._run, name="userstack-resolver", daemon=True)
        self._thread.start()

    def lookup(self, dst: str) -> tuple[str | None, str]:
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        nexthop = dst
        try:
            for r in self._ipr.route("get", dst=dst):
                nexthop = r.get("RTA_GATEWAY") or dst
        except Exception:
            return None, nexthop
        for n in self._ipr.get_neighbours(family=family, ifindex=self._ifindex):
            if n.get("NDA_DST") == nexthop and n["state"] & _NUD_VALID and n.get("NDA_LLADDR"):
                return n.get("NDA_LLADDR"), nexthop
        return None, nexthop

    def _run(self):
        while True:
            try:
                data = self._sock.recv(ctl.MSG_SIZE)
            except OSError:
                return
            if not data:
                return
            try:
                m = ctl.decode(data)
            except ValueError:
                continue
            if isinstance(m, ctl.Resolve):
                mac, nh = self.lookup(m.dst)
                reply = ctl.Neigh(dst=m.dst, mac=mac, status=ctl.NEIGH_OK if mac else ctl.NEIGH_FAILED,
                                  nexthop=nh, seq=m.seq)
            elif isinstance(m, ctl.ClaimEphemeral):
                reply = self._claim(m)
            elif isinstance(m, ctl.Release):
                s = self.held.pop((m.proto, m.local, m.port), None)
                if s is not None:
                    s.close()
                continue
            else:
                continue
            try:
                self._sock.send(ctl.encode(reply))
            except OSError:
                return

    def _claim(self, m) -> ctl.Claimed:
        fam = socket.AF_INET6 if m.family == 6 else socket.AF_INET
        if not self._claims or not m.remote:
            return ctl.Claimed(proto=m.proto, family=m.family, port=0, status=-errno.EADDRNOTAVAIL, seq=m.seq)
        try:
            with socket.socket(fam, socket.SOCK_DGRAM) as probe:   # the source toward remote
                probe.connect((m.remote, 9))
                src = probe.getsockname()[0]
            s = socket.socket(fam, socket.SOCK_STREAM if m.proto == 6 else socket.SOCK_DGRAM)
            try:
                s.bind((src, 0))
            except OSError:
                s.close()
                raise
        except OSError as e:
            status = -(e.errno or errno.EIO)
            return ctl.Claimed(proto=m.proto, family=m.family, port=0, status=status, seq=m.seq)
        port = s.getsockname()[1]
        self.held[(m.proto, src, port)] = s
        return ctl.Claimed(proto=m.proto, family=m.family, port=port, local=src, seq=m.seq)

    def close(self):
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(timeout=2)
        self._sock.close()
        self._ipr.close()
        for s in self.held.values():
            s.close()
        self.held.clear()
