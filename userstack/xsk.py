"""AF_XDP sockets for a stack, created by a privileged process (the launcher, or Stack.create).

    xs = userstack.xsk.create("eth1", queues=4)          # UMEM on a memfd, one socket per queue
    for slot, fd in zip(slots, xs.fds): xskmap[slot] = fd  # the caller fills its XSKMAP
    env = xs.env(name="app", mac=..., mtu=1500, addrs=[...], tuples=[("udp", "0.0.0.0", 7000)],
                 ctl_fd=ctl_child)
    subprocess.Popen(cmd, env={**os.environ, **env}, pass_fds=xs.pass_fds + [ctl_child])
    ...
    xs.close()                                           # after the application is gone

The sockets are bound (the rings are empty: the application fills them) and stay alive here until
close(); the application maps the UMEM memfd and the rings itself (csrc/dev/xsk.c, us_xdev_open).
"""
from __future__ import annotations

import errno
import ipaddress
import time

from userstack._lib import PROTOS, check, ffi, lib, set_addr, struct_dict


def rx_queue_count(ifname: str) -> int:
    """RX queues of a device in the current network namespace (netlink, not /sys)."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise OSError(19, f"no such device: {ifname}")
        return ipr.get_links(idx[0])[0].get("IFLA_NUM_RX_QUEUES") or 1


class XskSet:
    """One UMEM and its sockets. `desc` is the struct us_desc the stack is opened from."""

    def __init__(self, handle, desc):
        self._handle = handle
        self.desc = desc

    @property
    def fds(self) -> list[int]:
        """Socket fds, in queue order (desc.queues[i].queue_id is the queue of fds[i])."""
        return [self.desc.queues[i].fd for i in range(self.desc.nqueues)]

    @property
    def queue_ids(self) -> list[int]:
        return [self.desc.queues[i].queue_id for i in range(self.desc.nqueues)]

    @property
    def umem_fd(self) -> int:
        return self.desc.umem_fd

    @property
    def pass_fds(self) -> list[int]:
        """Everything the application must inherit (add the control fd yourself)."""
        return [self.umem_fd, *self.fds]

    def set_identity(self, *, name: str = "stack", stack_id: int = 0, mac: str, mtu: int,
                     addrs: list[str], tuples: list[tuple[str, str | None, int]], ctl_fd: int = -1,
                     busy_poll: bool = False, local_peer: bool = False, stats_fd: int = -1,
                     stats_size: int = 0) -> None:
        """Fill the rest of the description. tuples: (proto, address, port); address "0.0.0.0" or
        "::" claims the port on every local address of that family. local_peer: the NIC's peer is
        a kernel on this host (a veth), whose partial checksums the stack accepts. stats_fd,
        stats_size: a shared page for the stack's counters (XDPSTACK_STATS in csrc/base/env.h)."""
        d = self.desc
        d.name = name.encode()[: lib.US_NAME_LEN - 1]
        d.stack_id = stack_id
        ffi.memmove(d.mac, bytes.fromhex(mac.replace(":", "")), 6)
        d.mtu = mtu
        if len(addrs) > lib.US_MAX_ADDRS or len(tuples) > lib.US_MAX_TUPLES:
            raise ValueError("too many addresses or tuples")
        for i, a in enumerate(addrs):
            set_addr(d.addrs[i], a)
        d.naddrs = len(addrs)
        for i, (proto, addr, port) in enumerate(tuples):
            t = d.tuples[i]
            t.proto = PROTOS[proto] if isinstance(proto, str) else proto
            t.port = port
            if addr in (None, ""):
                raise ValueError("write the wildcard as 0.0.0.0 or ::")
            fam = ipaddress.ip_address(addr).version
            set_addr(t.addr, None if ipaddress.ip_address(addr).is_unspecified else addr, fam)
        d.ntuples = len(tuples)
        d.ctl_fd = ctl_fd
        d.busy_poll = int(busy_poll)
        d.local_peer = int(local_peer)
        d.stats_fd, d.stats_size = stats_fd, stats_size

    def env(self, **identity) -> dict[str, str]:
        """The XDPSTACK_* variables (csrc/base/env.h); keyword arguments as for set_identity."""
        if identity:
            self.set_identity(**identity)
        n = lib.us_desc_format_env(self.desc, ffi.NULL, 0)
        buf = ffi.new("char[]", check(n) + 1)
        lib.us_desc_format_env(self.desc, buf, n + 1)
        out = {}
        for line in ffi.string(buf).decode().splitlines():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    @property
    def zerocopy(self) -> bool:
        """Every socket bound in zero-copy mode (XDP_OPTIONS); False in copy mode."""
        return all(check(lib.us_xsk_fd_zerocopy(fd)) == 1 for fd in self.fds)

    def busy_poll(self, usecs: int = 20, budget: int = 64) -> None:
        """Preferred busy polling on every socket (SO_PREFER_BUSY_POLL, SO_BUSY_POLL,
        SO_BUSY_POLL_BUDGET): the stack's own poll calls drive the NIC's NAPI. Needs CAP_NET_ADMIN."""
        for fd in self.fds:
            check(lib.us_xsk_fd_busy_poll(fd, usecs, budget))

    def stats(self) -> list[dict]:
        """XDP_STATISTICS of each socket."""
        out = []
        for qid, fd in zip(self.queue_ids, self.fds, strict=True):
            s = ffi.new("struct us_xdp_stats *")
            check(lib.us_xsk_fd_stats(fd, s))
            s.queue_id = qid
            out.append({k: v for k, v in struct_dict(s).items() if k not in ("fill_free", "tx_free_frames")})
        return out

    def close(self) -> None:
        if self._handle is not None:
            lib.us_xsk_destroy(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def create(ifname: str, queues: int | list[int] | None = None, frames: int = 4096, frame_size: int = 2048,
           ring_size: int = 2048, need_wakeup: bool = True, copy: bool = False,
           zerocopy: bool = False, busy_wait: float = 2.0) -> XskSet:
    """UMEM on a memfd plus one socket per queue (all RX queues of ifname by default).
    frames: per queue (half receive, half transmit); frame_size: 2048 or 4096 (MTU > ~2000).
    A queue still busy from a socket just closed is retried for busy_wait seconds."""
    if queues is None:
        queues = rx_queue_count(ifname)
    ids = list(range(queues)) if isinstance(queues, int) else list(queues)
    flags = (lib.US_XSK_NEED_WAKEUP if need_wakeup else 0) | (lib.US_XSK_COPY if copy else 0) \
        | (lib.US_XSK_ZEROCOPY if zerocopy else 0)
    desc = ffi.new("struct us_desc *")
    desc.ctl_fd = desc.stats_fd = -1
    err = ffi.new("int *")
    qids = ffi.new("uint32_t[]", ids)
    # Socket teardown is asynchronous: a queue whose last socket just closed answers EBUSY briefly.
    deadline = time.monotonic() + busy_wait
    while True:
        h = lib.us_xsk_create(ifname.encode(), qids, len(ids), frames, frame_size, ring_size, flags, desc,
                              err)
        if h != ffi.NULL:
            return XskSet(h, desc)
        if err[0] != -errno.EBUSY or time.monotonic() >= deadline:
            check(err[0])
        time.sleep(0.05)
