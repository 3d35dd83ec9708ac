"""Netlink through pyroute2: links, XDP attachment state, addresses, and entering a network namespace.

`netns(NAME)` enters only the network namespace, in this process (setns on the calling thread), the
way `xdpstack --netns NAME` needs it: `ip netns exec` would also give a fresh /sys without bpffs, and
pins made there would vanish with the command. Sockets and child processes created inside the block
belong to that namespace; the mount namespace (and so every pin) stays the host's.
"""
from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute

from xdpstack import libbpf
from xdpstack.errors import BadNamespace, NoSuchInterface

NETNS_DIRS = ("/run/netns", "/var/run/netns")

# IFLA_XDP_ATTACHED as pyroute2 decodes it -> our mode names
_MODES = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "multi": "multi",
          1: "native", 2: "generic", 3: "offload", 4: "multi"}


@dataclass(frozen=True)
class XdpState:
    prog_id: int
    mode: str                # native | generic | offload | multi


@dataclass(frozen=True)
class Address:
    family: int              # 4 or 6
    addr: str
    prefixlen: int

    @property
    def address(self) -> str:
        return self.addr


@dataclass(frozen=True)
class LinkInfo:
    ifindex: int
    ifname: str
    mac: str
    mtu: int
    rx_queues: int
    tx_queues: int
    kind: str                # veth, bridge, ... ("" for a plain device)


def _link(ipr: IPRoute, ifname: str):
    links = ipr.get_links(ifname=ifname) if ifname else []
    return links[0] if links else None


def link_index(ifname: str) -> int:
    """ifindex of `ifname` in the current network namespace, or NoSuchInterface."""
    try:
        with IPRoute() as ipr:
            link = _link(ipr, ifname)
    except Exception:              # pyroute2 raises NetlinkError(19) for unknown names
        link = None
    if link is None:
        raise NoSuchInterface(ifname)
    return link["index"]


def link_exists(ifname: str) -> bool:
    try:
        link_index(ifname)
        return True
    except NoSuchInterface:
        return False


def xdp_state(ifindex: int) -> XdpState | None:
    """The XDP program attached to ifindex (id and mode), None when there is none."""
    with IPRoute() as ipr:
        link = ipr.get_links(ifindex)[0]
    xdp = link.get("IFLA_XDP")
    if not xdp:
        return None
    attrs = dict(xdp.get("attrs", []))
    attached = attrs.get("IFLA_XDP_ATTACHED")
    if not attached:
        return None
    prog_id = (attrs.get("IFLA_XDP_PROG_ID") or attrs.get("IFLA_XDP_DRV_PROG_ID")
               or attrs.get("IFLA_XDP_SKB_PROG_ID") or attrs.get("IFLA_XDP_HW_PROG_ID") or 0)
    return XdpState(prog_id=int(prog_id), mode=_MODES.get(attached, str(attached)))


def link_info(ifindex: int) -> LinkInfo:
    """Name, MAC, MTU, queue counts and kind of a link in the current namespace."""
    try:
        with IPRoute() as ipr:
            link = ipr.get_links(ifindex)[0]
    except Exception:
        raise NoSuchInterface(f"#{ifindex}") from None
    info = link.get("IFLA_LINKINFO")
    kind = (info.get("IFLA_INFO_KIND") if info else None) or ""
    return LinkInfo(ifindex, link.get("IFLA_IFNAME"), link.get("IFLA_ADDRESS") or "",
                    link.get("IFLA_MTU") or 0, link.get("IFLA_NUM_RX_QUEUES") or 1,
                    link.get("IFLA_NUM_TX_QUEUES") or 1, kind)


def addresses(ifindex: int) -> list[Address]:
    """Every address configured on the interface (IPv4 and IPv6, link-local included)."""
    out = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr(index=ifindex):
            fam = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(msg["family"])
            addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            if fam and addr:
                out.append(Address(fam, addr, msg["prefixlen"]))
    return out


def link_names() -> list[str]:
    with IPRoute() as ipr:
        return [link.get("IFLA_IFNAME") for link in ipr.get_links()]


def netns_path(name: str) -> str:
    """Path of a named network namespace (`ip netns` names), or a path given as such."""
    if name.startswith("/"):
        if os.path.exists(name):
            return name
    elif name and "/" not in name and name not in (".", ".."):
        for d in NETNS_DIRS:
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
    raise BadNamespace(f"no network namespace {name!r}: see `ip netns list` for the names there are")


@contextlib.contextmanager
def netns(name: str | None) -> Iterator[None]:
    """Run the block inside network namespace `name` (None: stay where we are), then come back."""
    if not name:
        yield
        return
    path = netns_path(name)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            libbpf.setns(target)
        except OSError as e:
            raise BadNamespace(f"cannot enter network namespace {name!r}: {e.strerror}") from None
        try:
            yield
        finally:
            libbpf.setns(back)
    finally:
        os.close(target)
        os.close(back)
