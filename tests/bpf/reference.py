"""A reference classifier for the xdpstack BPF programs (XDP, and the TC egress guard), in plain Python.

Written from the specification (bpf/parse.h's header comment, xdpstack.h, the issue), not from
the C: it parses raw bytes with slicing and int.from_bytes only, and looks claims up in a dict
(exact address, then the wildcard). The claims_by_port index the demux reads first is an
optimisation of that lookup, so it does not appear here at all. Tests run both on the same frames
and claim sets and require the same verdict and the same target (slot, stack, counter reason).
"""
from __future__ import annotations

from dataclasses import dataclass, field

ETH_HLEN = 14
VLAN_TPIDS = (0x8100, 0x88A8)
VLAN_MAX = 2
IPV6_EXT_MAX = 6
HOPOPTS, ROUTING, FRAGMENT, DSTOPTS = 0, 43, 44, 60
TCP, UDP = 6, 17
MAX_STACKS, MAX_QUEUES, XSK_SLOTS = 256, 64, 16384
TARGET_XSK, TARGET_PORT = 1, 2
ROLE_INNER, ROLE_OUTER = 1, 2
WILDCARD = bytes(16)

XDP_DROP, XDP_PASS, XDP_REDIRECT = 1, 2, 4
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7       # the egress guard is a TC program


@dataclass(frozen=True)
class Tuple:
    proto: int
    family: int           # 4 or 6
    port: int
    addr: bytes           # 16 bytes, IPv4 in the first 4; all zero for the wildcard


class Unparsed(Exception):
    """A frame the parser gives up on; reason is one of not_ip, not_l4, fragment, malformed,
    too_deep (the pass_* counter names without the prefix)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _u16(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 2], "big")


def parse(frame: bytes, direction: str = "dst") -> Tuple:
    """The local 3-tuple of a frame: destination for received frames, source for sent ones."""
    n = len(frame)
    if n < ETH_HLEN:
        raise Unparsed("malformed")
    ethertype, off = _u16(frame, 12), ETH_HLEN
    tags = 0
    while ethertype in VLAN_TPIDS:
        if tags == VLAN_MAX:
            raise Unparsed("too_deep")
        if off + 4 > n:
            raise Unparsed("malformed")
        ethertype, off, tags = _u16(frame, off + 2), off + 4, tags + 1
    if ethertype == 0x0800:
        proto, family, addr, l4, end = _ipv4(frame, off, direction)
    elif ethertype == 0x86DD:
        proto, family, addr, l4, end = _ipv6(frame, off, direction)
    else:
        raise Unparsed("not_ip")
    # Transport header, inside the datagram: UDP 8 bytes; TCP 20, then its data offset.
    need = 8 if proto == UDP else 20
    if l4 + need > end:
        raise Unparsed("malformed")
    if proto == TCP:
        doff = frame[l4 + 12] >> 4
        if doff < 5 or l4 + doff * 4 > end:
            raise Unparsed("malformed")
    port = _u16(frame, l4 if direction == "src" else l4 + 2)
    return Tuple(proto, family, port, addr)


def _ipv4(frame: bytes, off: int, direction: str):
    if off + 20 > len(frame):
        raise Unparsed("malformed")
    version, ihl = frame[off] >> 4, frame[off] & 0x0F
    total = _u16(frame, off + 2)
    if version != 4 or ihl < 5 or total < ihl * 4 or off + total > len(frame):
        raise Unparsed("malformed")
    if _u16(frame, off + 6) & 0x1FFF:          # fragment offset: not the first fragment
        raise Unparsed("fragment")
    proto = frame[off + 9]
    if proto not in (TCP, UDP):
        raise Unparsed("not_l4")
    a = off + (12 if direction == "src" else 16)
    return proto, 4, frame[a:a + 4] + bytes(12), off + ihl * 4, off + total


def _ipv6(frame: bytes, off: int, direction: str):
    if off + 40 > len(frame):
        raise Unparsed("malformed")
    end = off + 40 + _u16(frame, off + 4)
    if frame[off] >> 4 != 6 or end > len(frame):
        raise Unparsed("malformed")
    nh, pos = frame[off + 6], off + 40
    for _ in range(IPV6_EXT_MAX):
        if nh not in (HOPOPTS, ROUTING, FRAGMENT, DSTOPTS):
            break
        if pos + 8 > end:
            raise Unparsed("malformed")
        if nh == FRAGMENT:
            if _u16(frame, pos + 2) >> 3:      # 13-bit offset
                raise Unparsed("fragment")
            nh, pos = frame[pos], pos + 8
        else:
            nh, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
    if nh in (HOPOPTS, ROUTING, FRAGMENT, DSTOPTS):
        raise Unparsed("too_deep")
    if nh not in (TCP, UDP):
        raise Unparsed("not_l4")
    a = off + (8 if direction == "src" else 24)
    return nh, 6, frame[a:a + 16], pos, end


@dataclass
class State:
    """What the maps hold: claims, occupied XSK slots, stacks with a port, port devices,
    local addresses, the NIC's ifindex."""
    claims: dict[Tuple, tuple[int, int]] = field(default_factory=dict)   # -> (stack, target)
    xsk_slots: set[int] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)                          # stacks whose ports[] is set
    port_of: dict[int, tuple[int, int]] = field(default_factory=dict)     # ifindex -> (stack, role)
    local_addrs: set[tuple[int, bytes]] = field(default_factory=set)      # (family, addr16)
    nic_ifindex: int = 0

    def claim_for(self, t: Tuple):
        """The claim receiving t: exact address first, then the wildcard of the family."""
        c = self.claims.get(t)
        if c is None:
            c = self.claims.get(Tuple(t.proto, t.family, t.port, WILDCARD))
        return c


@dataclass(frozen=True)
class Verdict:
    action: int               # XDP_*, or TC_ACT_* for the egress guard
    reason: str               # the counter that moves: redirected or a pass_* name, rx_dropped, ...
    stack: int | None = None  # the stack whose stack_stats move, if any
    slot: int | None = None   # the XSK slot (or, for ports, the stack) redirected to


def demux(frame: bytes, st: State, rx_queue: int = 0) -> Verdict:
    """xdp_demux on the NIC."""
    try:
        t = parse(frame, "dst")
    except Unparsed as e:
        return Verdict(XDP_PASS, "pass_" + e.reason)
    c = st.claim_for(t)
    if c is None:
        return Verdict(XDP_PASS, "pass_no_claim")
    stack, target = c
    counted = stack if stack < MAX_STACKS else None
    if target == TARGET_XSK and stack < MAX_STACKS:     # a stack id beyond the maps owns nothing
        if rx_queue >= MAX_QUEUES:
            return Verdict(XDP_PASS, "pass_bad_queue")
        slot = stack * MAX_QUEUES + rx_queue
        if slot in st.xsk_slots:
            return Verdict(XDP_REDIRECT, "redirected", counted, slot)
    elif target == TARGET_PORT and stack < MAX_STACKS and stack in st.ports:
        return Verdict(XDP_REDIRECT, "redirected", counted, stack)
    return Verdict(XDP_PASS, "pass_orphaned", counted)


def port_rx(frame: bytes, st: State, ifindex: int, rx_queue: int = 0) -> Verdict:
    """xdp_port_rx on a port's inner end: only its stack's traffic, to its socket on this queue."""
    p = st.port_of.get(ifindex)
    if p is None or p[1] != ROLE_INNER or p[0] >= MAX_STACKS:
        return Verdict(XDP_DROP, "unconfigured")
    stack = p[0]
    try:
        c = st.claim_for(parse(frame, "dst"))
    except Unparsed:
        c = None
    if c is None or c[0] != stack:
        return Verdict(XDP_DROP, "rx_dropped", stack)
    slot = stack * MAX_QUEUES + rx_queue
    if rx_queue < MAX_QUEUES and slot in st.xsk_slots:
        return Verdict(XDP_REDIRECT, "delivered", stack, slot)
    return Verdict(XDP_DROP, "orphaned", stack)


def port_tx(frame: bytes, st: State, ifindex: int) -> Verdict:
    """tc_port_tx on a port's outer end (clsact ingress): the egress guard."""
    p = st.port_of.get(ifindex)
    if p is None or p[1] != ROLE_OUTER or p[0] >= MAX_STACKS:
        return Verdict(TC_ACT_SHOT, "unconfigured")
    stack = p[0]
    try:
        t = parse(frame, "src")
    except Unparsed:
        return Verdict(TC_ACT_SHOT, "tx_denied", stack)
    exact = st.claims.get(t) if t.addr != WILDCARD else None      # from 0.0.0.0 or ::: no address's
    if exact is not None:
        ok = exact[0] == stack
    else:
        wild = st.claims.get(Tuple(t.proto, t.family, t.port, WILDCARD))
        ok = wild is not None and wild[0] == stack and (t.family, t.addr) in st.local_addrs
    if not ok or not st.nic_ifindex:
        return Verdict(TC_ACT_SHOT, "tx_denied", stack)
    return Verdict(TC_ACT_REDIRECT, "tx", stack, st.nic_ifindex)
