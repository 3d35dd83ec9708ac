"""Map layouts read from bpf/xdpstack.h, the one header the XDP programs are compiled with.

cffi parses the header (it is kept to plain #defines, enums and structs), so Python never restates
a field offset or a size: `ffi.new("struct xs_tuple *")`, `ffi.sizeof("struct xs_stats")`,
`CONST["XS_MAX_STACKS"]`.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path

import cffi

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
HEADER = BPF_DIR / "xdpstack.h"

_TYPES = "typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32; typedef uint64_t __u64;\n"


def _cdef_text(text: str) -> str:
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") and not re.match(r"#define\s+\w+\s+\d+", s):
            continue                      # #pragma, #include: clang's business only
        out.append(re.sub(r"/\*.*?\*/", "", line) if s.startswith("#define") else line)
    return "\n".join(out)


ffi = cffi.FFI()
ffi.cdef(_TYPES + _cdef_text(HEADER.read_text()))
lib = ffi.dlopen(None)      # only for constants and enums
CONST = {n: getattr(lib, n) for n in dir(lib) if n.startswith("XS_")}

PROTOS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTO_NAMES = {v: k for k, v in PROTOS.items()}


def tuple_key(proto: str | int, addr: str | None, port: int, family: int | None = None):
    """Build a struct xs_tuple. addr None (or "0.0.0.0"/"::") is the wildcard of `family`."""
    key = ffi.new("struct xs_tuple *")
    key.proto = PROTOS[proto] if isinstance(proto, str) else proto
    key.port = port
    if addr is None:
        if family not in (4, 6):
            raise ValueError("a wildcard tuple needs family 4 or 6")
        key.family = family
        return key
    ip = ipaddress.ip_address(addr)
    key.family = ip.version
    ffi.memmove(key.addr, ip.packed, len(ip.packed))
    return key


def tuple_from_key(key) -> tuple[str, str, int]:
    """(proto name, address text, port) from a struct xs_tuple."""
    raw = bytes(ffi.buffer(key.addr))
    ip = ipaddress.ip_address(raw[:4] if key.family == 4 else raw)
    return PROTO_NAMES.get(key.proto, str(key.proto)), str(ip), key.port
