"""A stack's virtual port: the veth pair that isolates one user-level stack on an interface.

    NIC --xdp_demux--> ports[stack] = outer --veth--> inner --xdp_port_rx--> the stack's AF_XDP sockets
    NIC <--bpf_redirect-- outer: tc_port_tx (egress guard) <--veth-- inner <-- the stack transmits

Each stack binds its own UMEM on its own inner device, so stacks never share a UMEM (the kernel
allows one UMEM per device queue), and every frame a stack sends passes the guard, which lets out
only frames from the stack's own 3-tuples. Both ends live in the NIC's network namespace, carry no
address (IPv6 off, so the kernel sends nothing through them), and take the NIC's MTU.

The guard is a TC classifier in direct-action mode on a clsact qdisc at the outer end's ingress
(netlink, like `tc filter add dev O ingress bpf da pinned .../port_tx_tc`), not XDP: it takes the
skb AF_XDP's copy-mode transmit built as it is, where native XDP on a veth would copy the frame
into a new page, and a redirect would turn it into an xdp_frame and the NIC's peer back into an
skb. clsact rather than tcx (BPF_LINK_CREATE, kernel 6.6+): it works on Debian 12's own 6.1
kernel too, and the filter belongs to the device, so it lives exactly as long as the port (no link
fd to hold in the launcher, no link pin to clean up after a launcher killed with SIGKILL).
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

from pyroute2 import IPRoute

from xdpstack import libbpf, paths
from xdpstack.errors import XdpstackError
from xdpstack.layout import CONST, ffi
from xdpstack.maps import open_map

NATIVE = libbpf.XDP_FLAGS_DRV_MODE
TC_INGRESS = 0xFFFFFFF2                # clsact's ingress hook (TC_H_CLSACT:TC_H_MIN_INGRESS)


@dataclass
class Port:
    outer: str
    inner: str
    outer_index: int
    inner_index: int
    queues: int


def port_names(nic_index: int, stack: int) -> tuple[str, str]:
    """Interface names of a stack's port: unique per (NIC, stack) within the namespace, <16 bytes."""
    return f"xs{nic_index}.{stack}o", f"xs{nic_index}.{stack}i"


def _disable_ipv6(ifname: str):
    # /proc/sys/net is the opener's namespace: ours, the NIC's.
    with contextlib.suppress(OSError), open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
        f.write("1")


def create(nic: str, nic_index: int, stack: int, queues: int, mtu: int) -> Port:
    """Make the veth pair, attach the pinned port programs, and point the maps at it.
    On any failure nothing is left (the pair is deleted)."""
    outer, inner = port_names(nic_index, stack)
    q = {"num_rx_queues": queues, "num_tx_queues": queues}
    with IPRoute() as ipr:
        for name in (outer, inner):                 # left over from a launcher killed with SIGKILL
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)
        ipr.link("add", ifname=outer, kind="veth", mtu=mtu, **q, peer={"ifname": inner, "mtu": mtu, **q})
        try:
            port = Port(outer, inner, ipr.link_lookup(ifname=outer)[0], ipr.link_lookup(ifname=inner)[0],
                        queues)
            for name in (outer, inner):
                _disable_ipv6(name)
            with _pinned_prog(nic, "port_rx") as fd:
                libbpf.xdp_attach(port.inner_index, fd, NATIVE)
            with _pinned_prog(nic, "port_tx_tc") as fd:
                ipr.tc("add", "clsact", port.outer_index)
                ipr.tc("add-filter", "bpf", port.outer_index, ":1", parent=TC_INGRESS, fd=fd,
                       name="tc_port_tx", direct_action=True)
            with open_map(nic, "port_of") as port_of:
                for idx, role in ((port.inner_index, CONST["XS_PORT_INNER"]),
                                  (port.outer_index, CONST["XS_PORT_OUTER"])):
                    port_of.update(idx, ffi.new("struct xs_port *", {"stack": stack, "role": role}))
            with open_map(nic, "ports") as ports:
                ports.update(stack, port.outer_index)
            for idx in (port.inner_index, port.outer_index):
                ipr.link("set", index=idx, state="up")
        except BaseException:
            with contextlib.suppress(Exception):
                ipr.link("del", ifname=outer)
            _forget(nic, stack, None)
            raise
    return port


@contextlib.contextmanager
def _pinned_prog(nic: str, pin: str):
    path = paths.pin_dir(nic) / pin
    try:
        fd = libbpf.obj_get(str(path))
    except FileNotFoundError:
        raise XdpstackError(f"{path} is missing: {nic} was attached by an older xdpstack; "
                            f"`xdpstack detach {nic}` and attach it again") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _forget(nic: str, stack: int, indexes: tuple[int, int] | None):
    with contextlib.suppress(Exception), open_map(nic, "ports") as ports:
        ports.delete(stack)
    if indexes:
        with contextlib.suppress(Exception), open_map(nic, "port_of") as port_of:
            for idx in indexes:
                port_of.delete(idx)


def delete_stale(outer_index: int) -> None:
    """Delete the port of a stack whose launcher died (SIGKILL), found by its outer ifindex. Only a
    link named like a port is touched, in case the index now belongs to something else."""
    with IPRoute() as ipr, contextlib.suppress(Exception):
        name = ipr.get_links(outer_index)[0].get("IFLA_IFNAME") or ""
        if re.fullmatch(r"xs\d+\.\d+o", name):
            ipr.link("del", index=outer_index)


def remove(nic: str, stack: int, port: Port) -> None:
    """Undo create(): map entries first (the demux stops redirecting), then the pair."""
    _forget(nic, stack, (port.inner_index, port.outer_index))
    with IPRoute() as ipr:
        for idx in ipr.link_lookup(ifname=port.outer):
            with contextlib.suppress(Exception):
                ipr.link("del", index=idx)
