"""Helpers for userstack unit tests: a stack over the in-memory device, frames built by scapy,
and a parser call on a buffer that ends at a guard page (any over-read faults)."""
from __future__ import annotations

import ctypes
import mmap

from scapy.layers.inet import IP, UDP, Ether
from scapy.layers.inet6 import IPv6

from userstack import Stack
from userstack._lib import ffi, lib, set_addr

MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
ADDR4, PEER4 = "198.18.0.1", "198.18.0.2"
ADDR6, PEER6 = "2001:db8::1", "2001:db8::2"

_libc = ctypes.CDLL(None, use_errno=True)
PAGE = mmap.PAGESIZE


def make_desc(tuples=(("udp", "0.0.0.0", 7000), ("udp", "::", 7000), ("udp", ADDR4, 7001)),
              addrs=(ADDR4, ADDR6), mtu=1500, nqueues=1, ctl_fd=-1):
    d = ffi.new("struct us_desc *")
    d.name = b"unit"
    ffi.memmove(d.mac, bytes.fromhex(MAC.replace(":", "")), 6)
    d.mtu = mtu
    for i, a in enumerate(addrs):
        set_addr(d.addrs[i], a)
    d.naddrs = len(addrs)
    for i, (proto, a, port) in enumerate(tuples):
        t = d.tuples[i]
        t.proto = 17 if proto == "udp" else 6
        t.port = port
        wild = a in ("0.0.0.0", "::")
        set_addr(t.addr, None if wild else a, 6 if ":" in a else 4)
    d.ntuples = len(tuples)
    d.nqueues = nqueues
    d.frame_size = 2048
    d.ctl_fd = ctl_fd
    d.umem_fd = d.stats_fd = -1
    return d


def mem_stack(driver=False, nframes=256, **kw) -> Stack:
    d = make_desc(**kw)
    err = ffi.new("int *")
    h = lib.us_test_stack_open(d, nframes, err)
    assert h != ffi.NULL, err[0]
    return Stack(h, driver=driver)


def inject(stack: Stack, frame: bytes, q: int = 0) -> None:
    assert lib.us_test_inject(stack._st, q, frame, len(frame)) == 0


def capture(stack: Stack) -> bytes | None:
    buf = ffi.new("char[]", 16384)
    n = lib.us_test_capture(stack._st, buf, 16384)
    return None if n < 0 else ffi.buffer(buf, n)[:]


def udp4(payload: bytes, sport=5555, dport=7000, src=PEER4, dst=ADDR4, **ip) -> bytes:
    return bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src=src, dst=dst, **ip) / UDP(sport=sport, dport=dport)
                 / payload)


def udp6(payload: bytes, sport=5555, dport=7000, src=PEER6, dst=ADDR6, ext=None) -> bytes:
    ip = IPv6(src=src, dst=dst)
    if ext is not None:
        ip = ip / ext
    return bytes(Ether(src=PEER_MAC, dst=MAC) / ip / UDP(sport=sport, dport=dport) / payload)


class Guarded:
    """A buffer whose last byte is the last byte before a PROT_NONE page."""

    def __init__(self, pages: int = 5):
        self.len = pages * PAGE
        self.m = mmap.mmap(-1, self.len + PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.m))
        _libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert _libc.mprotect(self.base + self.len, PAGE, 0) == 0

    def parse(self, data: bytes, flags: int = 0):
        assert len(data) <= self.len
        off = self.len - len(data)
        self.m[off:self.len] = data
        p = ffi.new("struct us_parsed *")
        r = lib.us_frame_parse(ffi.cast("uint8_t *", self.base + off), len(data), flags, p)
        return r, p, self.base + off
