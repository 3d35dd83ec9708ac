"""Shared glue for the Python API: the compiled module, address conversion, errors."""
from __future__ import annotations

import errno
import ipaddress
import os
import socket

try:
    from userstack._fastpath import ffi, lib
except ImportError as e:  # pragma: no cover - message for a missing build
    raise ImportError(
        "userstack._fastpath is not built: run `pip install -e .` (cffi_modules) or "
        "`python userstack/_build.py`") from e

AF_FROM_SOCKET = {socket.AF_INET: lib.US_AF4, socket.AF_INET6: lib.US_AF6}
SOCKET_FROM_AF = {v: k for k, v in AF_FROM_SOCKET.items()}
PROTOS = {"udp": 17, "tcp": 6}


def check(r: int) -> int:
    """Raise the OSError a kernel socket would for a negative errno result."""
    if r < 0:
        raise OSError(-r, os.strerror(-r))
    return r


def set_addr(dst, text: str | None, family: int | None = None) -> int:
    """Fill a struct us_addr from text ("" / None / "0.0.0.0" / "::" are the wildcard)."""
    if not text:
        if family is None:
            raise ValueError("a wildcard address needs a family")
        dst.family = family
        ffi.memmove(dst.a, b"\0" * 16, 16)
        return family
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    dst.family = lib.US_AF4 if ip.version == 4 else lib.US_AF6
    ffi.memmove(dst.a, ip.packed + b"\0" * (16 - len(ip.packed)), 16)
    return dst.family


def addr_text(a) -> str:
    raw = bytes(ffi.buffer(a.a, 16))
    if a.family == lib.US_AF4:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def endpoint(ep, family: int, address) -> None:
    """Fill a struct us_endpoint from a socket-module address tuple."""
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError(f"address must be a (host, port) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OverflowError("port must be 0-65535")
    if host in ("", None):
        set_addr(ep.addr, None, family)
    else:
        try:
            got = set_addr(ep.addr, host)
        except ValueError:
            raise OSError(errno.EINVAL, f"not a numeric address: {host!r}") from None
        if got != family:
            raise OSError(errno.EAFNOSUPPORT, "address family mismatch")
    ep.port = port


def address_tuple(ep):
    host = addr_text(ep.addr)
    if ep.addr.family == lib.US_AF6:
        return (host, ep.port, 0, 0)
    return (host, ep.port)


def struct_dict(obj) -> dict:
    t = ffi.typeof(obj[0]) if ffi.typeof(obj).kind == "pointer" else ffi.typeof(obj)
    o = obj[0] if ffi.typeof(obj).kind == "pointer" else obj
    return {name: getattr(o, name) for name, _ in t.fields if not name.startswith("pad")}
