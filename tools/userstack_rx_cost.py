#!/usr/bin/env python3
"""CPU ns per received frame through a stack's poll loop, on the in-memory device: no generator and
no NIC, so the figure is the stack's own RX path (Ethernet/IPv4/UDP checks, the checksum, the
socket lookup, the receive queue) and moves only with its code. 18-byte UDP payloads in 200-frame
batches; the best of 15 rounds of 50 batches.

    .venv/bin/python tools/userstack_rx_cost.py [CHECKOUT]

CHECKOUT (default: this one) is a tree whose cffi extension is built in place
(`python setup.py build_ext --inplace`): run it once per tree, alternating, to compare two
versions of the stack on the same machine.
"""
from __future__ import annotations

import ipaddress
import os
import sys
import time

sys.path.insert(0, os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from userstack._lib import ffi, lib  # noqa: E402  (the tree's own build, by the path above)
from userstack.stack import Stack  # noqa: E402
from xdpstack.bench.rx import udp4_frame  # noqa: E402

MAC, PEER_MAC, ADDR, PEER, PORT = "02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.1", "198.18.0.2", 7000


def stack() -> tuple[Stack, object]:
    d = ffi.new("struct us_desc *")
    d.name = b"rxcost"
    ffi.memmove(d.mac, bytes.fromhex(MAC.replace(":", "")), 6)
    d.mtu, d.nqueues, d.frame_size = 1500, 1, 2048
    d.addrs[0].family = 4
    ffi.memmove(d.addrs[0].a, ipaddress.IPv4Address(ADDR).packed, 4)
    d.naddrs = 1
    d.tuples[0].proto, d.tuples[0].port, d.tuples[0].addr.family = 17, PORT, 4
    d.ntuples = 1
    d.ctl_fd = -1
    err = ffi.new("int *")
    h = lib.us_test_stack_open(d, 256, err)
    if h == ffi.NULL:
        sys.exit(f"userstack_rx_cost: cannot open an in-memory stack ({err[0]})")
    return Stack(h, driver=False), h


def main() -> None:
    st, h = stack()
    s = st.socket()
    s.bind(("0.0.0.0", PORT))
    s.setblocking(False)
    f = udp4_frame(PEER_MAC, MAC, PEER, ADDR, 40000, PORT, b"x" * 18)
    buf = ffi.new("char[]", f)
    best = float("inf")
    for _ in range(15):
        spent = 0
        for _ in range(50):
            for _ in range(200):
                lib.us_test_inject(h, 0, buf, len(f))
            t = time.perf_counter_ns()
            st.poll(0)
            spent += time.perf_counter_ns() - t
            for _ in range(200):
                try:
                    s.recv(64)
                except BlockingIOError:
                    break
        best = min(best, spent / (50 * 200))
    got = st.stats()["rx_udp"]
    st.close()
    print(f"{best:.1f} ns/frame ({got} frames to the socket)")


if __name__ == "__main__":
    main()
