"""pcap-filter expressions (tcpdump's syntax) compiled by libpcap into classic BPF, for the
stacks' capture filter (xdpstack.capture). libpcap is reached with ctypes: pcap_open_dead gives a
handle for Ethernet without a device, pcap_compile compiles, pcap_geterr says what is wrong in
libpcap's own words (the ones tcpdump prints)."""
from __future__ import annotations

import ctypes
import ctypes.util

DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


class FilterError(ValueError):
    """The expression does not compile: libpcap's message."""


def _lib():
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    lib = ctypes.CDLL(name)
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def compile_filter(expression: str, snaplen: int = 262144) -> list[tuple[int, int, int, int]]:
    """The expression's program as (code, jt, jf, k) instructions; [] for an empty expression
    (every frame). Raises FilterError with libpcap's message."""
    if not expression.strip():
        return []
    lib = _lib()
    handle = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    if not handle:
        raise FilterError("libpcap could not open a handle to compile with")
    prog = _Program()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, PCAP_NETMASK_UNKNOWN) < 0:
            raise FilterError(lib.pcap_geterr(handle).decode(errors="replace"))
        try:
            return [(i.code, i.jt, i.jf, i.k) for i in prog.bf_insns[:prog.bf_len]]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)
