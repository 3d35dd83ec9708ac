"""The Python API of a user-level stack: Stack (its sockets: userstack.udp, userstack.tcp).

Inside an application launched by `xdpstack run`:

    stack = userstack.Stack.from_env()
    s = stack.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 7000))
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)
    t = stack.socket(socket.AF_INET, socket.SOCK_STREAM)     # a TcpSocket

A background thread (C, no GIL) drives the stack; every call into the C fast path releases the
GIL. Sockets behave like the socket module's: blocking by default, settimeout/setblocking,
fileno() usable with selectors and asyncio's add_reader, OSError with the kernel's errno.
"""
from __future__ import annotations

import errno
import socket as _socket
import weakref

from userstack._lib import PROTOS, addr_text, check, ffi, lib, struct_dict
from userstack.udp import UdpSocket

__all__ = ["Stack", "UdpSocket"]      # UdpSocket: re-exported from userstack.udp, where it lives


class Stack:
    def __init__(self, handle, *, xsks=None, agent=None, driver: bool = True):
        self._st = handle
        self._xsks = xsks
        self._agent = agent                 # userstack.agent.InProcessAgent, or None
        self._socks: set[UdpSocket] = set()
        self._tcp: weakref.WeakSet = weakref.WeakSet()   # a TCP socket nobody holds is closed
        if driver:
            check(lib.us_driver_start(handle))
        self.driven = driver

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, driver: bool = True) -> Stack:
        """The stack the launcher prepared for this process (XDPSTACK_* environment)."""
        err = ffi.new("int *")
        h = lib.us_stack_open_env(err)
        if h == ffi.NULL:
            if err[0] == -errno.ENOENT:
                raise RuntimeError("no XDPSTACK_* environment: run this under `xdpstack run`")
            check(err[0])
        return cls(h, driver=driver)

    @classmethod
    def create(cls, ifname: str, *, queues=None, udp=(), tcp=(), tuples=(), addrs=None, mac=None,
               mtu=None, frames: int = 4096, frame_size: int | None = None, ring_size: int = 2048,
               need_wakeup: bool = True, resolve: bool = True, driver: bool = True,
               busy_poll: bool = False, name: str = "inproc", claims: bool = False,
               local_peer: bool | None = None) -> Stack:
        """A stack in this (privileged) process on ifname, for tests and benchmarks.
        udp/tcp: ports claimed on every local address (IPv4 and IPv6); tuples: explicit
        (proto, address, port). addrs, mac and mtu default to the interface's own. Redirecting the
        packets into the sockets (XSKMAP) is the caller's business: see `fds`/`queue_ids`.
        resolve=True: the stack's control channel is answered in this process by the agent that
        answers launched stacks (userstack.agent: neighbours from the kernel, resolved on demand and
        followed). claims=True: active opens (TCP connect) claim their local ports by binding kernel
        sockets in this network namespace (userstack.agent.KernelPortClaims), for the caller to
        redirect; without it they fail (EOPNOTSUPP from the agent).
        local_peer: accept the partial checksums of a kernel peer on this host (csrc/base/wire.h);
        default: when ifname is a veth, as the launcher decides."""
        from userstack import xsk
        info = _link_info(ifname)
        addrs = list(addrs) if addrs is not None else info["addrs"]
        mtu = mtu or info["mtu"]
        if local_peer is None:
            local_peer = info["kind"] == "veth"
        tuples = list(tuples)
        fams = {("::" if ":" in a else "0.0.0.0") for a in addrs}
        for proto, ports in (("udp", udp), ("tcp", tcp)):
            tuples += [(proto, w, p) for p in ports for w in sorted(fams)]
        if frame_size is None:
            frame_size = 2048 if mtu + 22 <= 2048 else 4096
        xs = xsk.create(ifname, queues, frames=frames, frame_size=frame_size, ring_size=ring_size,
                        need_wakeup=need_wakeup)
        agent = None
        try:
            ctl_fd = -1
            if resolve:
                from userstack.agent import InProcessAgent
                a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
                try:
                    agent = InProcessAgent(b, info["ifindex"], claims=claims)
                except BaseException:
                    a.close()
                    b.close()
                    raise
                ctl_fd = a.detach()
            xs.set_identity(name=name, mac=mac or info["mac"], mtu=mtu, addrs=addrs, tuples=tuples,
                            ctl_fd=ctl_fd, busy_poll=busy_poll, local_peer=local_peer)
            err = ffi.new("int *")
            h = lib.us_stack_open(xs.desc, err)
            if h == ffi.NULL:
                if ctl_fd >= 0:
                    _socket.close(ctl_fd)
                check(err[0])
        except BaseException:
            if agent:
                agent.close()
            xs.close()
            raise
        st = cls(h, xsks=xs, agent=agent, driver=driver)
        st._ctl_fd = ctl_fd
        return st

    # -- properties ---------------------------------------------------------------------------
    @property
    def _desc(self):
        self._check_open()
        return lib.us_stack_desc(self._st)

    @property
    def ifname(self) -> str:
        return ffi.string(self._desc.ifname).decode()

    @property
    def mtu(self) -> int:
        return self._desc.mtu

    @property
    def addrs(self) -> list[str]:
        d = self._desc
        return [addr_text(d.addrs[i]) for i in range(d.naddrs)]

    @property
    def tuples(self) -> list[tuple[str, str, int]]:
        """Claimed (proto, address, port); the address "0.0.0.0"/"::" means every local one."""
        d = self._desc
        names = {v: k for k, v in PROTOS.items()}
        return [(names.get(d.tuples[i].proto, str(d.tuples[i].proto)), addr_text(d.tuples[i].addr),
                 d.tuples[i].port) for i in range(d.ntuples)]

    @property
    def queue_ids(self) -> list[int]:
        d = self._desc
        return [d.queues[i].queue_id for i in range(d.nqueues)]

    @property
    def fds(self) -> list[int]:
        """AF_XDP socket fds in queue order (for an XSKMAP, in-process use)."""
        d = self._desc
        return [d.queues[i].fd for i in range(d.nqueues)]

    def fileno(self) -> int:
        """The stack's epoll fd: readable when it has work (for driving it without the thread)."""
        self._check_open()
        return lib.us_stack_fd(self._st)

    # -- operation ----------------------------------------------------------------------------
    def socket(self, family=_socket.AF_INET, type=_socket.SOCK_DGRAM, proto=0):
        """A UdpSocket (SOCK_DGRAM) or a TcpSocket (SOCK_STREAM), as socket.socket would."""
        kind = type & ~(_socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
        if kind == _socket.SOCK_DGRAM and proto in (0, _socket.IPPROTO_UDP):
            s = UdpSocket(self, family)
        elif kind == _socket.SOCK_STREAM and proto in (0, _socket.IPPROTO_TCP):
            from userstack.tcp import TcpSocket
            s = TcpSocket(self, family)
        else:
            raise OSError(errno.EPROTONOSUPPORT, "TCP (SOCK_STREAM) or UDP (SOCK_DGRAM) only")
        if type & _socket.SOCK_NONBLOCK:
            s.setblocking(False)
        return s

    def tcp_socket(self, family=_socket.AF_INET):
        from userstack.tcp import TcpSocket
        return TcpSocket(self, family)

    def tcp_configure(self, spec: str = "", **knobs) -> None:
        """Set the stack's TCP knobs (the XDPSTACK_TCP syntax of csrc/base/env.h, or keywords:
        cc="newreno", sndbuf=4 << 20, rto_min_ms=5 ...) before its first TCP socket."""
        words = [spec] + [f"{k}={v}" for k, v in knobs.items()]
        self._check_open()
        check(lib.us_stack_tcp_configure(self._st, " ".join(w for w in words if w).encode()))

    def tcp_stats(self) -> dict:
        self._check_open()
        s = ffi.new("struct us_tcp_stats *")
        lib.us_tcp_stack_stats(self._st, s)
        return struct_dict(s)

    def poll(self, timeout: float = 0) -> int:
        """Process RX/control/timers once (only without the driver thread). Returns frames."""
        self._check_open()
        return check(lib.us_poll(self._st, int(timeout * 1000)))

    def neigh_set(self, dst: str, mac: str | None) -> None:
        """Tell the stack dst's next-hop MAC (None: unreachable)."""
        a = ffi.new("struct us_addr *")
        from userstack._lib import set_addr
        set_addr(a, dst)
        m = ffi.new("uint8_t[6]", bytes.fromhex(mac.replace(":", ""))) if mac else ffi.NULL
        check(lib.us_neigh_set(self._st, a, m))

    def set_faults(self, *, seed: int = 1, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                   corrupt: float = 0.0, rx: bool = True, tx: bool = True) -> None:
        """Inject faults between the stack and its device (csrc/stack/faults.h): each rate is a
        probability per frame; the same seed gives the same faults for the same frames."""
        self._check_open()
        c = ffi.new("struct us_fault_config *")
        c.seed = seed
        c.drop_ppm, c.dup_ppm = round(drop * 1e6), round(duplicate * 1e6)
        c.reorder_ppm, c.corrupt_ppm = round(reorder * 1e6), round(corrupt * 1e6)
        c.dirs = (lib.US_FAULT_RX if rx else 0) | (lib.US_FAULT_TX if tx else 0)
        check(lib.us_stack_set_faults(self._st, c))

    def configure_faults(self, spec: str) -> None:
        """Fault injection from the XDPSTACK_FAULTS syntax: "seed=1 drop=0.05 reorder=0.02 dir=both"."""
        self._check_open()
        check(lib.us_stack_faults_configure(self._st, spec.encode()))

    def fault_stats(self) -> dict:
        s = ffi.new("struct us_fault_stats *")
        check(lib.us_stack_fault_stats(self._st, s))
        return struct_dict(s)

    def stats(self) -> dict:
        self._check_open()
        s = ffi.new("struct us_stats *")
        lib.us_stack_stats(self._st, s)
        return struct_dict(s)

    def xdp_stats(self) -> list[dict]:
        """XDP_STATISTICS and ring state per queue."""
        out = []
        for i in range(self._desc.nqueues):
            s = ffi.new("struct us_xdp_stats *")
            check(lib.us_stack_xdp_stats(self._st, i, s))
            out.append(struct_dict(s))
        return out

    def close(self) -> None:
        if self._st is None:
            return
        for s in list(self._socks) + list(self._tcp):
            s.close()
        lib.us_stack_close(self._st)
        self._st = None
        if self._agent:
            self._agent.close()
        if self._xsks:
            self._xsks.close()
            if getattr(self, "_ctl_fd", -1) >= 0:
                _socket.close(self._ctl_fd)

    def _check_open(self):
        if self._st is None:
            raise OSError(errno.EBADF, "stack is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _link_info(ifname: str) -> dict:
    """ifindex, MAC, MTU, kind ("veth", ... or "") and addresses of ifname (this thread's network
    namespace). The addresses are the ones the launcher hands a stack: every address configured
    on the interface, IPv4 and IPv6, link-local included, in the kernel's order (IFA_LOCAL, the
    local end on a point-to-point link, else IFA_ADDRESS)."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise OSError(errno.ENODEV, f"no such device: {ifname}")
        link = ipr.get_links(idx[0])[0]
        addrs = [a.get("IFA_LOCAL") or a.get("IFA_ADDRESS") for a in ipr.get_addr(index=idx[0])
                 if a["family"] in (_socket.AF_INET, _socket.AF_INET6)]
        addrs = [a for a in addrs if a]
        linkinfo = link.get("IFLA_LINKINFO")
        kind = (linkinfo.get("IFLA_INFO_KIND") if linkinfo else None) or ""
        return {"ifindex": idx[0], "mac": link.get("IFLA_ADDRESS"), "mtu": link.get("IFLA_MTU"),
                "kind": kind, "addrs": addrs}
