"""What the UDP (userstack.udp) and TCP (userstack.tcp) sockets of a user-level stack share.

SockBase: the timeouts of socket.socket (settimeout/gettimeout/setblocking/getblocking: None
blocks, 0.0 never blocks, a number blocks that long and then raises TimeoutError), the deadline of
a blocking call and its waits (in slices, so that signals reach Python), fileno(), the handle
check (EBADF once closed) and the context manager. Each subclass sets self._s (the C socket),
self._stack, self._af and self._timeout, and closes itself.
"""
from __future__ import annotations

import errno
import time

from userstack._lib import address_tuple, check, ffi, lib

_WAIT_SLICE_MS = 200          # blocking calls wake this often so that signals reach Python


def _slice_ms(deadline) -> int:
    """The next wait, in ms: a slice, or what is left before the deadline if that is shorter."""
    return _WAIT_SLICE_MS if deadline is None else \
        min(_WAIT_SLICE_MS, max(0, int((deadline - time.monotonic()) * 1000)))


class SockBase:
    """The common part of UdpSocket and TcpSocket (not a socket by itself)."""

    # -- addressing ---------------------------------------------------------------------------
    def getsockname(self):
        ep = ffi.new("struct us_endpoint *")
        if lib.us_sock_local(self._handle(), ep) < 0:
            return ("0.0.0.0", 0) if self._af == lib.US_AF4 else ("::", 0, 0, 0)
        return address_tuple(ep)

    # -- timeouts -----------------------------------------------------------------------------
    def settimeout(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def _deadline(self):
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, events: int, deadline) -> None:
        """Wait until events (or an error) or the deadline: TimeoutError then."""
        while True:
            if check(lib.us_sock_wait(self._handle(), events, _slice_ms(deadline))):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")

    # -- life cycle ---------------------------------------------------------------------------
    def fileno(self) -> int:
        """An eventfd: readable while a receive (UDP: a datagram or an error; TCP: recv/accept)
        would not block; TCP: writable while send would not."""
        return check(lib.us_sock_fileno(self._handle()))

    @property
    def closed(self) -> bool:
        return self._s is None

    def close(self) -> None:
        raise NotImplementedError

    def _handle(self):
        if self._s is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return self._s

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
