"""In-process neighbour resolution for stacks created with Stack.create (no launcher).

Answers the stack's RESOLVE messages on its control channel the way the launcher does: the kernel
FIB gives the next hop, the kernel neighbour table its MAC. This one only looks up (it does not
trigger resolution or follow changes): enough for tests and benchmarks on hosts whose neighbours
are known; launched stacks get the launcher's agent.
"""
from __future__ import annotations

import errno
import socket
import threading

from userstack import ctl

_NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # REACHABLE STALE DELAY PROBE NOARP PERMANENT


class Resolver:
    def __init__(self, sock: socket.socket, ifindex: int):
        from pyroute2 import IPRoute
        self._sock = sock
        self._ifindex = ifindex
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
                # no claim registry in-process: refuse
                reply = ctl.Claimed(proto=m.proto, family=m.family, port=0, status=-errno.EADDRNOTAVAIL,
                                    seq=m.seq)
            else:
                continue
            try:
                self._sock.send(ctl.encode(reply))
            except OSError:
                return

    def close(self):
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(timeout=2)
        self._sock.close()
        self._ipr.close()
