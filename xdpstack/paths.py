"""Where xdpstack keeps its state: everything is scoped by network namespace.

    <bpffs root>/netns-<inode>/identity            the namespace's netns cookie (nsstate.py)
    <bpffs root>/netns-<inode>/<IFACE>/prog, ...   the pins of one interface (loader.py)
    /run/xdpstack/netns-<inode>/lock               the flock every change takes (nsstate.locked)
    /run/xdpstack/netns-<inode>/cookie             the netns cookie again, as text
    /run/xdpstack/netns-<inode>/stacks/*.json      one record per running launcher (launcher.py)

<inode> is what `ls -l /proc/PID/ns/net` and `lsns -t net` show, so a person can map a directory to
its namespace. An inode number is reused once its namespace is gone; the cookie (SO_NETNS_COOKIE)
never is while the machine runs, so nsstate recognises a directory of a dead namespace by it.

netns_key() is the one place the key comes from, computed for the namespace this *thread* is in now:
the CLI enters --netns in-process after import, a test enters several in turn, and setns(2) moves
only the calling thread (hence /proc/thread-self, not /proc/self). Nothing here is cached.
"""
from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BPFFS = "/sys/fs/bpf/xdpstack"
RUN_DIR = Path("/run/xdpstack")
PROG_PINS = ("prog", "port_rx", "port_tx_tc")    # pin name of xdp_demux, xdp_port_rx, tc_port_tx
NETNS_PREFIX = "netns-"
SO_NETNS_COOKIE = 71                               # <asm-generic/socket.h>, Linux 5.14+


@dataclass(frozen=True)
class NetnsKey:
    inode: int               # st_ino of /proc/thread-self/ns/net: reused after the namespace is gone
    cookie: int              # SO_NETNS_COOKIE: never reused while the machine runs

    @property
    def dirname(self) -> str:
        return f"{NETNS_PREFIX}{self.inode}"


def netns_key() -> NetnsKey:
    """The key of the network namespace the calling thread is in now."""
    inode = os.stat("/proc/thread-self/ns/net").st_ino
    # A socket belongs to the namespace of the thread that creates it; AF_UNIX needs no protocol.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            raw = s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
        except OSError as e:
            from xdpstack.errors import XdpstackError
            raise XdpstackError(f"this kernel has no SO_NETNS_COOKIE ({e.strerror}): xdpstack needs "
                                "Linux 5.14 or later") from None
    return NetnsKey(inode, struct.unpack("=Q", raw)[0])


def bpffs_root() -> Path:
    """$XDPSTACK_BPFFS, else /sys/fs/bpf/xdpstack: one directory per network namespace below it."""
    return Path(os.environ.get("XDPSTACK_BPFFS") or DEFAULT_BPFFS)


def netns_dir(key: NetnsKey | None = None) -> Path:
    """The namespace's directory of pins: its identity map and one directory per interface."""
    return bpffs_root() / (key or netns_key()).dirname


def pin_dir(ifname: str, key: NetnsKey | None = None) -> Path:
    if not ifname or "/" in ifname or ifname in (".", ".."):
        from xdpstack.errors import UsageError
        raise UsageError(f"{ifname!r} is not an interface name")
    return netns_dir(key) / ifname


def run_dir(key: NetnsKey | None = None) -> Path:
    return RUN_DIR / (key or netns_key()).dirname


def lock_path(key: NetnsKey | None = None) -> Path:
    return run_dir(key) / "lock"


def stacks_dir(key: NetnsKey | None = None) -> Path:
    """Where launchers in the namespace keep their status records."""
    return run_dir(key) / "stacks"


# Before state was per namespace: pins at <root>/<IFACE>/, one global lock and status directory.
LEGACY_LOCK = RUN_DIR / "lock"
LEGACY_STACKS = RUN_DIR / "stacks"
