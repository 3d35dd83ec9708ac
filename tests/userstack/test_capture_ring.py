"""The capture ring between a stack (userstack/csrc/stack/capture.c) and xdpstack.capture, over
the in-memory device: frames come out in order across many wraps of the 4 MB ring, the filter
(libpcap's, compiled from an expression) decides inside the stack, a ring that is not read
overflows into an exact drop count, a stack that is not captured copies nothing, and a filter
that fails libpcap's validation is refused."""
from __future__ import annotations

import os

import pytest

from tests.fixtures.userstack_helpers import inject, udp4
from tests.userstack.test_stackstats import open_on
from xdpstack import capture, pcapfilter, stackstats

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="opens the page through /proc/PID/fd as root")


@pytest.fixture
def captured():
    fd, size = stackstats.create()
    stack = open_on(fd, size)
    area = capture.Area(capture.Target("mem0", 0, "unit", os.getuid(), "root", os.getpid(), os.getpid(), fd))
    try:
        yield stack, area
    finally:
        area.close()
        stack.close()
        os.close(fd)


def frames_in(stack, first: int, n: int, size: int = 1000, dport: int = 7000) -> None:
    """n frames numbered from first (the number in the payload's first 4 bytes)."""
    t = bytearray(udp4(bytes(size), dport=dport))
    t[40:42] = b"\0\0"                         # no UDP checksum (IPv4 allows it): payloads may change
    for seq in range(first, first + n):
        t[42:46] = seq.to_bytes(4, "big")
        inject(stack, bytes(t))
        if seq % 100 == 99:
            stack.poll(0)                      # the in-memory device holds 256 frames
    stack.poll(0)


def seqs(area) -> list[int]:
    return [int.from_bytes(data[42:46], "big") for _, d, _, data in area.records(limit=1 << 20)
            if d == capture.DIR_IN]


def test_in_order_across_wraps_and_filtered_in_the_stack(captured):
    stack, area = captured
    area.start(pcapfilter.compile_filter("udp dst port 7000"), 262144, capture.DIR_IN)
    stack.poll(0)
    assert area.acked()
    got, seq = [], 0
    for _ in range(50):                        # 10,000 frames of ~1 KB: the 4 MB ring wraps twice
        frames_in(stack, seq, 200)
        frames_in(stack, 0, 3, dport=7001)     # claimed, but the filter leaves them out
        seq += 200
        got += seqs(area)
    assert got == list(range(seq))
    c = area.counts()
    assert c == {"matched": seq, "captured": seq, "dropped": 0}, c
    assert stack.stats()["rx_frames"] == seq + 150


def test_a_ring_nobody_reads_drops_exactly_what_does_not_fit(captured):
    stack, area = captured
    area.start([], 128, capture.DIR_IN | capture.DIR_OUT)
    stack.poll(0)
    assert area.acked()
    frames_in(stack, 0, 40000, size=1400)      # 128-byte records: ~27,000 fit in the ring
    c = area.counts()
    assert c["matched"] == 40000 and c["dropped"] > 0 and c["captured"] + c["dropped"] == 40000, c
    records = list(area.records(limit=1 << 20))
    assert len(records) == c["captured"]
    assert all(len(data) == 128 and wirelen == 1400 + 42 for _, _, wirelen, data in records)
    assert [int.from_bytes(r[3][42:46], "big") for r in records] == list(range(c["captured"]))


def test_an_uncaptured_or_stopped_stack_copies_nothing(captured):
    stack, area = captured
    frames_in(stack, 0, 10)                    # before any capture
    area.start([], 0, capture.DIR_IN)
    stack.poll(0)
    assert area.acked() and seqs(area) == []
    frames_in(stack, 10, 5)
    area.stop(wait=0)
    stack.poll(0)                              # the stack sees the stop at its next poll
    frames_in(stack, 15, 5)
    assert seqs(area) == [10, 11, 12, 13, 14]


def test_a_filter_libpcap_rejects_is_refused(captured):
    stack, area = captured
    area.start([(0x06, 0, 0, 0), (0x15, 0, 0, 0)], 0, capture.DIR_IN)   # falls off the end
    stack.poll(0)
    with pytest.raises(capture.CaptureError, match="refused the filter"):
        area.acked()
    frames_in(stack, 0, 3)
    assert area.ctl.captured == 0


def test_filter_errors_are_libpcaps():
    with pytest.raises(pcapfilter.FilterError, match="syntax error"):
        pcapfilter.compile_filter("udp and port")
    assert pcapfilter.compile_filter("  ") == []


def test_describe_is_tcpdumps_one_line():
    f = udp4(b"hello", sport=40000, dport=7000)
    assert capture.describe(f, len(f)) == "IP 198.18.0.2.40000 > 198.18.0.1.7000: UDP, length 5"
