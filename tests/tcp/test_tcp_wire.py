"""TCP unit tests: the header on the wire. Malformed headers and options from an untrusted peer,
and the headers we build (Linux's option layout, 4-byte aligned, at most 40 bytes)."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.tcp_harness import Seg, Stack, passive_open


def test_short_and_bad_offset_segments_are_dropped():
    stk = Stack()
    stk.listen()
    good = Seg(seq=1, flags="S").build()
    for bad in (good[:19], good[:0], Seg(seq=1, flags="S", doff=4).build(),
                Seg(seq=1, flags="S", doff=15).build(), Seg(seq=1, flags="S", sport=0).build()):
        assert stk.send(bad) == []
    assert stk.stats().bad_segs == 5 and stk.stats().conns == 0
    stk.free()


def test_malformed_options_are_survived():
    stk = Stack()
    stk.listen()
    cases = [
        b"\x02\x00\x05\xb4",                      # length 0: parsing stops
        b"\x02\x01\x05\xb4",                      # length 1
        b"\x02\x08\x05\xb4",                      # runs past the header
        b"\x08\x0a\x00\x00",                      # truncated timestamps
        b"\x02\x05\x05\xb4\x00\x00\x00\x00",      # MSS with a wrong length: ignored
        b"\x05\x06\x00\x00\x00\x00",              # SACK with a wrong length
        b"\x03\x03\xff\x00",                      # window scale 255: capped at 14
        b"\x00\x02\x04\x05\xb4",                  # EOL first: the rest is ignored
    ]
    for port, opts in enumerate(cases, 1000):
        out = stk.send(Seg(seq=1, flags="S", sport=port, raw_options=opts))
        assert len(out) == 1 and out[0].flags == "SA", opts.hex()
    stk.free()


def test_options_only_count_on_syn():
    stk = Stack(quickack=0)
    c = passive_open(stk, mss=1460)
    c.send("PA", b"x", mss=100, ws=1, sack_perm=True)
    assert c.info.snd_mss == 1448 and c.info.snd_wscale == 7


def test_built_headers_are_well_formed():
    stk = Stack(quickack=0)
    c = passive_open(stk)
    base = c.snd
    for k in range(4):                             # four holes: at most 3 SACK blocks with TS
        c.send("A", b"x" * 10, seq=base + 100 * (k + 1))
    out = c.send("A", b"y", seq=base + 1000)
    seg = out[0]
    assert len(seg.sack) == 3 and seg.ts
    assert len(seg.opt_bytes) <= 40 and len(seg.opt_bytes) % 4 == 0
    sa = c.synack.opt_bytes
    # MSS, SACK_PERM + TS, NOP + WS: Linux's layout.
    assert sa[:4] == b"\x02\x04\x05\xb4" and sa[4:8] == b"\x04\x02\x08\x0a" and sa[16:18] == b"\x01\x03"


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.integers(0, 255))
def test_random_bytes_to_a_listener(data, flags):
    """Whatever arrives, the stack answers with at most one well-formed segment."""
    stk = Stack()
    stk.listen()
    hdr = struct.pack("!HHIIBBHHH", 40000, 80, 7, 9, ((20 + len(data)) // 4 % 16) << 4, flags, 100, 0, 0)
    out = stk.send(hdr + data)
    assert len(out) <= 1
    for s in out:
        assert s.flags in ("SA", "R", "RA")
    stk.free()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=20, max_size=120))
def test_random_segments_to_a_connection(data):
    stk = Stack()
    c = passive_open(stk)
    seg = bytearray(data)
    seg[0:4] = struct.pack("!HH", 40000, 80)
    stk.send(bytes(seg))                           # invariants are checked by send()
    c.write(b"still works")
    stk.recv()
    stk.free()
