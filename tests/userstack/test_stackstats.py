"""A stack's counters in a shared page (XDPSTACK_STATS, xdpstack/stackstats.py): the stack counts
there, its TCP too (struct us_shared_stats), a reader of the creator's fd sees the counts live. No
root: this process creates the page (as the launcher does), opens a stack on it over the in-memory
device, and reads /proc/self/fd."""
from __future__ import annotations

import errno
import os

import pytest
from scapy.layers.inet import IP, TCP, Ether

from tests.fixtures.userstack_helpers import ADDR4, MAC, PEER4, PEER_MAC, capture, inject, make_desc, udp4
from userstack._lib import ffi, lib
from userstack.stack import Stack
from xdpstack import stackstats


@pytest.fixture
def page():
    fd, size = stackstats.create()
    yield fd, size
    os.close(fd)


def open_on(page_fd: int, size: int, tuples=None) -> Stack:
    d = make_desc(**({"tuples": tuples} if tuples else {}))
    d.stats_fd, d.stats_size = page_fd, size
    err = ffi.new("int *")
    h = lib.us_test_stack_open(d, 256, err)
    assert h != ffi.NULL, err[0]
    return Stack(h, driver=False)


def test_the_page_is_zeroed_and_holds_the_counters_then_the_capture_area(page):
    fd, size = page
    assert ffi.sizeof("struct us_shared_stats") <= lib.US_CAP_OFFSET
    assert size == lib.US_CAP_AREA_BYTES and size % os.sysconf("SC_PAGE_SIZE") == 0
    parts = ffi.sizeof("struct us_stats") + ffi.sizeof("struct us_tcp_stats")
    assert ffi.sizeof("struct us_shared_stats") == parts
    assert os.fstat(fd).st_size == size
    live = stackstats.read(os.getpid(), fd)
    assert set(live) == {"stack", "tcp"}
    assert {v for part in live.values() for v in part.values()} == {0}


def test_a_stack_counts_in_the_page_and_a_reader_sees_it_live(page):
    fd, size = page
    stack = open_on(fd, size)
    try:
        s = stack.socket()
        s.bind(("0.0.0.0", 7000))
        bad = bytearray(udp4(b"corrupt me"))
        bad[-1] ^= 0xFF
        for f in (bytes(bad), bytes(bad), udp4(b"x", dport=7001), udp4(b"x", dst="198.18.0.99"), udp4(b"ok")):
            inject(stack, f)
        stack.poll()
        live = stackstats.read(os.getpid(), fd)
        assert live["stack"] == stack.stats()             # the stack's counters are the page
        assert live["tcp"] == stack.tcp_stats()
        live = live["stack"]
        assert stackstats.drops(live) == {"rx_bad_csum": 2, "rx_no_socket": 1, "rx_not_local": 1,
                                          "rx_queue_full": 0, "rx_malformed": 0, "rx_fragment": 0,
                                          "rx_other_proto": 0, "neigh_drop": 0}
        assert stackstats.drops_line(live) == ("drops: bad checksum 2, no socket 1, not addressed to it 1; "
                                               "partial checksums accepted 0")
        inject(stack, udp4(b"again"))
        stack.poll()
        assert stackstats.read(os.getpid(), fd)["stack"]["rx_udp"] == 2   # not a copy: the page moves
    finally:
        stack.close()
    assert stackstats.read(os.getpid(), fd)["stack"]["rx_frames"] == 6   # kept after the stack is gone


def test_nothing_dropped_reads_none():
    c = dict.fromkeys(stackstats.drops({}), 0) | {"rx_csum_partial": 7}
    assert stackstats.drops_line(c) == "drops: none; partial checksums accepted 7"
    assert stackstats.drops_line(None).startswith("drops: unknown")


def test_a_page_smaller_than_the_counters_fails_the_open(page):
    fd, size = page
    d = make_desc()
    d.stats_fd, d.stats_size = fd, 8
    err = ffi.new("int *")
    assert lib.us_test_stack_open(d, 256, err) == ffi.NULL and err[0] == -errno.EINVAL
    d.stats_size = ffi.sizeof("struct us_stats")        # the stack's part without the TCP's
    assert lib.us_test_stack_open(d, 256, err) == ffi.NULL and err[0] == -errno.EINVAL
    d.stats_size = size + os.sysconf("SC_PAGE_SIZE")     # larger than the memfd: would SIGBUS
    assert lib.us_test_stack_open(d, 256, err) == ffi.NULL and err[0] == -errno.EINVAL


def test_read_refuses_an_fd_that_is_not_a_counters_page(tmp_path):
    f = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(f, 4096)
        assert stackstats.read(os.getpid(), f) is None
        assert stackstats.read(os.getpid(), 1 << 20) is None            # no such fd
    finally:
        os.close(f)


def syn(dport: int, sport: int, flags: str = "S", seq: int = 1000, ack: int = 0) -> bytes:
    return bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src=PEER4, dst=ADDR4)
                 / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack))


def tcp_replies(stack: Stack) -> list:
    out = []
    while (f := capture(stack)) is not None:
        if TCP in Ether(f):
            out.append(Ether(f)[TCP])
    return out


def test_the_tcp_counts_in_the_page_gauges_included(page):
    """SYNs to a claimed port nobody listens on: no_socket and rst_out move by exactly N in the
    page; a listener shows as a gauge while it exists; a handshake counts a passive open and a
    connection; all of it is what Stack.tcp_stats() says."""
    fd, size = page
    stack = open_on(fd, size, tuples=(("tcp", "0.0.0.0", 8000), ("tcp", "0.0.0.0", 8001)))
    rd = lambda: stackstats.read(os.getpid(), fd)["tcp"]      # noqa: E731
    try:
        stack.neigh_set(PEER4, PEER_MAC)
        for i in range(5):
            inject(stack, syn(8001, 40000 + i))
        stack.poll()
        t = rd()
        assert (t["segs_in"], t["no_socket"], t["rst_out"], t["segs_out"]) == (5, 5, 5, 5)
        assert [r.flags for r in tcp_replies(stack)] == ["RA"] * 5
        assert not stackstats.tcp_active(dict.fromkeys(t, 0))
        assert stackstats.tcp_active(t)

        ls = stack.tcp_socket()
        ls.bind(("0.0.0.0", 8000))
        ls.listen(4)
        assert rd()["listeners"] == 1 and rd()["conns"] == 0
        inject(stack, syn(8000, 41000))
        stack.poll()
        (synack,) = tcp_replies(stack)
        assert synack.flags == "SA"
        inject(stack, syn(8000, 41000, "A", seq=1001, ack=synack.seq + 1))
        stack.poll()
        t = rd()
        assert (t["passive_opens"], t["active_opens"], t["conns"], t["listeners"]) == (1, 0, 1, 1)
        assert (t["no_socket"], t["rst_out"], t["bad_segs"], t["listen_drops"]) == (5, 5, 0, 0)
        assert t == stack.tcp_stats()                 # the API reads the same counters
        c, _ = ls.accept()
        c.abort()
        ls.close()
        stack.poll()
        t = rd()
        assert (t["conns"], t["listeners"], t["rst_out"]) == (0, 0, 6) and t == stack.tcp_stats()
    finally:
        stack.close()
    t = rd()
    assert (t["conns"], t["listeners"], t["time_wait"]) == (0, 0, 0)     # the TCP is gone
    assert t["no_socket"] == 5 and t["passive_opens"] == 1               # its counts stay


def test_decode_gives_both_parts_and_the_tcp_line():
    p = ffi.new("struct us_shared_stats *")
    p.stack.rx_frames, p.stack.rx_no_socket = 9, 2
    p.tcp.segs_in, p.tcp.segs_out, p.tcp.no_socket, p.tcp.bad_segs = 1200, 1100, 5, 1
    p.tcp.conns, p.tcp.listeners, p.tcp.rst_out, p.tcp.retransmits = 3, 1, 5, 2
    p.tcp.port_claims = 7
    data = bytes(ffi.buffer(p)) + b"\0" * 100          # the page is longer than the struct
    d = stackstats.decode(data)
    assert set(d) == {"stack", "tcp"}
    assert set(d["stack"]) == {n for n, _ in ffi.typeof("struct us_stats").fields}
    assert set(d["tcp"]) == {n for n, _ in ffi.typeof("struct us_tcp_stats").fields}
    assert (d["stack"]["rx_frames"], d["stack"]["rx_no_socket"], d["tcp"]["port_claims"]) == (9, 2, 7)
    assert stackstats.tcp_drops(d["tcp"]) == {"no_socket": 5, "bad_segs": 1, "listen_drops": 0,
                                              "paws_drops": 0}
    assert stackstats.tcp_line(d["tcp"]) == (
        "tcp: 3 conns, 1 listener; in 1200 segs, out 1100; drops: no listener 5, bad segment 1, "
        "backlog full 0, PAWS 0; resets out 5, retransmits 2")
    d["tcp"].update(conns=1, time_wait=1, listeners=2)
    assert stackstats.tcp_line(d["tcp"]).startswith("tcp: 1 conn (1 time-wait), 2 listeners; ")
    with pytest.raises(ValueError):
        stackstats.decode(data[:ffi.sizeof("struct us_stats")])
