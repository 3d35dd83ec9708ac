"""UDP sockets on a user-level stack, shaped like socket.socket (SOCK_DGRAM).

    s = stack.socket(socket.AF_INET, socket.SOCK_DGRAM)       # a UdpSocket
    s.bind(("0.0.0.0", 7000))          # a claimed tuple
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)

Blocking by default; settimeout/setblocking as on kernel sockets (userstack.sockbase); fileno() is
readable while a datagram (or an error) is waiting. connect() only sets send()'s destination.
Also importable as userstack.UdpSocket and userstack.stack.UdpSocket.
"""
from __future__ import annotations

import errno
import socket as _socket
import time
from typing import TYPE_CHECKING

from userstack._lib import AF_FROM_SOCKET, address_tuple, check, endpoint, ffi, lib
from userstack.sockbase import SockBase, _slice_ms

if TYPE_CHECKING:
    from userstack.stack import Stack


class UdpSocket(SockBase):
    """A UDP socket on a user-level stack, shaped like socket.socket."""

    def __init__(self, stack: Stack, family=_socket.AF_INET):
        if family not in AF_FROM_SOCKET:
            raise OSError(errno.EAFNOSUPPORT, "address family not supported")
        stack._check_open()
        err = ffi.new("int *")
        h = lib.us_udp_socket(stack._st, AF_FROM_SOCKET[family], err)
        if h == ffi.NULL:
            check(err[0])
        self._s = h
        self._stack = stack
        self.family = family
        self.type = _socket.SOCK_DGRAM
        self.proto = _socket.IPPROTO_UDP
        self._af = AF_FROM_SOCKET[family]
        self._timeout: float | None = None
        self._peer = None
        stack._socks.add(self)

    # -- addressing ---------------------------------------------------------------------------
    def bind(self, address) -> None:
        ep = ffi.new("struct us_endpoint *")
        endpoint(ep, self._af, address)
        check(lib.us_udp_bind(self._handle(), ep))

    def connect(self, address) -> None:
        """Set the default destination for send() (no filtering of received datagrams)."""
        ep = ffi.new("struct us_endpoint *")
        endpoint(ep, self._af, address)
        self._peer = ep

    def getpeername(self):
        if self._peer is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return address_tuple(self._peer)

    # -- data ---------------------------------------------------------------------------------
    def sendto(self, data, address) -> int:
        ep = ffi.new("struct us_endpoint *")
        endpoint(ep, self._af, address)
        buf = ffi.from_buffer(data)
        return check(lib.us_udp_sendto(self._handle(), buf, len(buf), ep, 0))

    def send(self, data) -> int:
        if self._peer is None:
            raise OSError(errno.EDESTADDRREQ, "Destination address required")
        buf = ffi.from_buffer(data)
        return check(lib.us_udp_sendto(self._handle(), buf, len(buf), self._peer, 0))

    def recvfrom(self, bufsize: int, flags: int = 0):
        buf = ffi.new("char[]", max(bufsize, 1))
        ep = ffi.new("struct us_endpoint *")
        n = self._recv(buf, bufsize, ep, flags)
        return ffi.buffer(buf, n)[:], address_tuple(ep)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self.recvfrom(bufsize, flags)[0]

    def recvfrom_into(self, buffer, nbytes: int = 0, flags: int = 0):
        view = ffi.from_buffer(buffer, require_writable=True)
        n = nbytes or len(view)
        ep = ffi.new("struct us_endpoint *")
        got = self._recv(view, n, ep, flags)
        return got, address_tuple(ep)

    def _recv(self, buf, n, ep, flags) -> int:
        h = self._handle()
        dontwait = flags & _socket.MSG_DONTWAIT or self._timeout == 0.0
        if dontwait:
            r = lib.us_udp_recvfrom(h, buf, n, ep, lib.US_MSG_DONTWAIT, 0)
            return check(r)
        deadline = self._deadline()
        while True:
            r = lib.us_udp_recvfrom(self._handle(), buf, n, ep, 0, _slice_ms(deadline))
            if r != -errno.EAGAIN:
                return check(r)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")

    def setsockopt(self, level, optname, value) -> None:
        if level == _socket.SOL_SOCKET and optname == _socket.SO_RCVBUF:
            check(lib.us_sock_set_rcvbuf(self._handle(), int(value)))
            return
        raise OSError(errno.ENOPROTOOPT, "option not supported on a user-level socket")

    # -- life cycle ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._s is not None:
            s, self._s = self._s, None
            self._stack._socks.discard(self)
            if self._stack._st is not None:
                lib.us_sock_close(s)

    def __repr__(self):
        state = "closed" if self._s is None else repr(self.getsockname())
        return f"<userstack.UdpSocket family={self.family!r} {state}>"
