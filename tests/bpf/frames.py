"""Frames for the BPF tests, built with scapy."""
from __future__ import annotations

import logging

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

__all__ = ["ARP", "ICMP", "IP", "TCP", "UDP", "ICMPv6EchoRequest", "IPv6", "IPv6ExtHdrDestOpt",
           "IPv6ExtHdrFragment", "IPv6ExtHdrHopByHop", "IPv6ExtHdrRouting", "Dot1AD", "Dot1Q", "Ether",
           "Raw", "eth", "frame", "A4", "B4", "PEER4", "A6", "B6", "PEER6"]

A4, B4, PEER4 = "198.18.0.1", "198.18.0.3", "198.18.0.2"         # local, local, remote
A6, B6, PEER6 = "2001:db8::1", "2001:db8::3", "2001:db8::2"


def eth(*tags: str):
    """Ethernet with VLAN tags given outermost first: "q" (802.1Q, 0x8100), "ad" (802.1ad, 0x88a8)."""
    p = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    for i, t in enumerate(tags):
        p = p / (Dot1AD if t == "ad" else Dot1Q)(vlan=100 + i)
    return p


def frame(pkt, pad_to: int = 0) -> bytes:
    """The bytes of a scapy packet, zero-padded to pad_to (a NIC pads frames to 60 bytes)."""
    b = bytes(pkt)
    return b + bytes(max(0, pad_to - len(b)))
