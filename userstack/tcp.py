"""TCP sockets on a user-level stack, shaped like socket.socket (SOCK_STREAM).

    srv = stack.socket(socket.AF_INET, socket.SOCK_STREAM)     # or stack.tcp_socket()
    srv.bind(("0.0.0.0", 8080))        # a claimed tuple (EACCES otherwise)
    srv.listen()
    conn, addr = srv.accept()
    conn.sendall(conn.recv(65536))

    c = stack.tcp_socket(socket.AF_INET6)
    c.settimeout(5)
    c.connect(("2001:db8::2", 80))     # local port: claimed from the kernel through the launcher

Blocking by default (socket.getdefaulttimeout()); settimeout/setblocking as on kernel sockets
(shared with UdpSocket: userstack.sockbase); fileno() is readable/writable
exactly when recv/accept or send would not block (for selectors and asyncio). Errors are the
kernel's: ConnectionRefusedError, ConnectionResetError, BrokenPipeError, TimeoutError,
BlockingIOError. Every call into C releases the GIL; a C thread drives the stack.
"""
from __future__ import annotations

import errno
import io
import os
import socket as _socket
import struct

from userstack._lib import (
    AF_FROM_SOCKET,
    address_tuple,
    check,
    endpoint,
    ffi,
    lib,
    struct_dict,
)
from userstack.sockbase import SockBase

_CC_NAMES = {lib.US_CC_CUBIC: b"cubic", lib.US_CC_NEWRENO: b"reno"}
_CC_IDS = {b"cubic": lib.US_CC_CUBIC, b"reno": lib.US_CC_NEWRENO, b"newreno": lib.US_CC_NEWRENO}
TCP_STATES = ["CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
              "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"]

# (level, optname) -> the C option; values are ints
_INT_OPTS = {
    (_socket.IPPROTO_TCP, _socket.TCP_NODELAY): lib.US_TCP_NODELAY,
    (_socket.SOL_SOCKET, _socket.SO_KEEPALIVE): lib.US_SO_KEEPALIVE,
    (_socket.IPPROTO_TCP, _socket.TCP_KEEPIDLE): lib.US_TCP_KEEPIDLE,
    (_socket.IPPROTO_TCP, _socket.TCP_KEEPINTVL): lib.US_TCP_KEEPINTVL,
    (_socket.IPPROTO_TCP, _socket.TCP_KEEPCNT): lib.US_TCP_KEEPCNT,
    (_socket.SOL_SOCKET, _socket.SO_SNDBUF): lib.US_SO_SNDBUF,
    (_socket.SOL_SOCKET, _socket.SO_RCVBUF): lib.US_SO_RCVBUF,
    (_socket.IPPROTO_TCP, _socket.TCP_MAXSEG): lib.US_TCP_MAXSEG,
    (_socket.SOL_SOCKET, _socket.SO_ERROR): lib.US_SO_ERROR,
}
_NOOP_OPTS = {(_socket.SOL_SOCKET, _socket.SO_REUSEADDR), (_socket.SOL_SOCKET, _socket.SO_REUSEPORT)}


class TcpSocket(SockBase):
    """A TCP socket on a user-level stack."""

    def __init__(self, stack, family=_socket.AF_INET, *, _handle=None):
        if family not in AF_FROM_SOCKET:
            raise OSError(errno.EAFNOSUPPORT, "address family not supported")
        stack._check_open()
        if _handle is None:
            err = ffi.new("int *")
            _handle = lib.us_tcp_socket(stack._st, AF_FROM_SOCKET[family], err)
            if _handle == ffi.NULL:
                check(err[0])
        self._s = _handle
        self._stack = stack
        self.family = family
        self.type = _socket.SOCK_STREAM
        self.proto = _socket.IPPROTO_TCP
        self._af = AF_FROM_SOCKET[family]
        self._timeout: float | None = _socket.getdefaulttimeout()
        self._linger_abort = False
        self._io_refs = 0              # makefile() streams still open
        self._close_pending = False
        stack._tcp.add(self)

    # -- addressing -------------------------------------------------------------------------------
    def bind(self, address) -> None:
        ep = ffi.new("struct us_endpoint *")
        endpoint(ep, self._af, address)
        check(lib.us_tcp_bind(self._handle(), ep))

    def listen(self, backlog: int = 0) -> None:
        check(lib.us_tcp_listen(self._handle(), backlog))

    def getpeername(self):
        ep = ffi.new("struct us_endpoint *")
        check(lib.us_sock_peer(self._handle(), ep))
        return address_tuple(ep)

    # -- connections ------------------------------------------------------------------------------
    def accept(self):
        err = ffi.new("int *")
        ep = ffi.new("struct us_endpoint *")
        deadline = self._deadline()
        while True:
            h = lib.us_tcp_accept(self._handle(), ep, err)
            if h != ffi.NULL:
                break
            if err[0] != -errno.EAGAIN or self._timeout == 0.0:
                check(err[0])
            self._wait(lib.US_EV_IN, deadline)
        return TcpSocket(self._stack, self.family, _handle=h), address_tuple(ep)

    def connect(self, address) -> None:
        err = self._connect(address)
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address) -> int:
        try:
            return self._connect(address)
        except TimeoutError:
            return errno.ETIMEDOUT

    def _connect(self, address) -> int:
        ep = ffi.new("struct us_endpoint *")
        endpoint(ep, self._af, address)
        r = lib.us_tcp_connect(self._handle(), ep)
        if r != -errno.EINPROGRESS or self._timeout == 0.0:
            return -r
        self._wait(lib.US_EV_OUT, self._deadline())       # TimeoutError when it passes
        return self.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)

    # -- data -------------------------------------------------------------------------------------
    def send(self, data, flags: int = 0) -> int:
        buf = ffi.from_buffer(data)
        deadline = self._deadline()
        dontwait = flags & _socket.MSG_DONTWAIT or self._timeout == 0.0
        more = lib.US_MSG_MORE if flags & _socket.MSG_MORE else 0
        while True:
            r = lib.us_tcp_write(self._handle(), buf, len(buf), more)
            if r != -errno.EAGAIN or dontwait:
                return check(r)
            self._wait(lib.US_EV_OUT, deadline)

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        buf = ffi.from_buffer(view)
        n, off = len(buf), 0
        deadline = self._deadline()
        more = lib.US_MSG_MORE if flags & _socket.MSG_MORE else 0
        while off < n:
            r = lib.us_tcp_write(self._handle(), buf + off, n - off, more)
            if r == -errno.EAGAIN:
                if self._timeout == 0.0:
                    check(r)
                self._wait(lib.US_EV_OUT, deadline)
                continue
            off += check(r)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        buf = ffi.new("char[]", max(bufsize, 1))
        n = self._recv(buf, bufsize, flags)
        return ffi.buffer(buf, n)[:]

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        view = ffi.from_buffer(buffer, require_writable=True)
        n = nbytes or len(view)
        if n > len(view):
            raise ValueError("buffer too small for requested bytes")
        return self._recv(view, n, flags)

    def _recv(self, buf, n: int, flags: int) -> int:
        deadline = self._deadline()
        dontwait = flags & _socket.MSG_DONTWAIT or self._timeout == 0.0
        while True:
            if flags & _socket.MSG_PEEK:
                r = self._peek(buf, n)
            else:
                r = lib.us_tcp_read(self._handle(), buf, n)
            if r != -errno.EAGAIN or dontwait:
                return check(r)
            self._wait(lib.US_EV_IN, deadline)

    def _peek(self, buf, n: int) -> int:
        iov = ffi.new("struct us_iov[2]")
        h = self._handle()
        if lib.us_tcp_peek(h, iov) == 0:
            # nothing buffered: EOF, an error or EAGAIN, unless data arrived in between (the
            # driver thread runs between the two calls): a 0-byte read says 0 then too
            r = lib.us_tcp_read(h, ffi.NULL, 0)
            if r != 0 or lib.us_tcp_peek(h, iov) == 0:
                return r
        got = 0
        for i in range(2):
            k = min(iov[i].len, n - got)
            if k:
                ffi.memmove(buf + got, ffi.cast("char *", iov[i].base), k)
                got += k
        return got

    def shutdown(self, how: int) -> None:
        check(lib.us_tcp_shutdown(self._handle(), how))

    # -- options ----------------------------------------------------------------------------------
    def setsockopt(self, level, optname, value, optlen=None) -> None:
        key = (level, optname)
        h = self._handle()
        if key in _INT_OPTS and key != (_socket.SOL_SOCKET, _socket.SO_ERROR):
            check(lib.us_tcp_setsockopt(h, _INT_OPTS[key], int.from_bytes(value, "little")
                                        if isinstance(value, bytes) else int(value)))
        elif key == (_socket.IPPROTO_TCP, _socket.TCP_CONGESTION):
            name = value.encode() if isinstance(value, str) else bytes(value).rstrip(b"\0")
            if name not in _CC_IDS:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            check(lib.us_tcp_setsockopt(h, lib.US_TCP_CONGESTION, _CC_IDS[name]))
        elif key == (_socket.SOL_SOCKET, _socket.SO_LINGER):
            onoff, linger = struct.unpack("ii", value)
            self._linger_abort = bool(onoff) and linger == 0   # close() resets, like the kernel
        elif key == (_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY) and self._af == lib.US_AF6:
            if not int(value):
                raise OSError(errno.EOPNOTSUPP, "user-level sockets are IPv6-only: bind one per family")
        elif key not in _NOOP_OPTS:
            raise OSError(errno.ENOPROTOOPT, "option not supported on a user-level socket")

    def getsockopt(self, level, optname, buflen=None):
        key = (level, optname)
        if key in _INT_OPTS:
            v = ffi.new("int *")
            check(lib.us_tcp_getsockopt(self._handle(), _INT_OPTS[key], v))
            return v[0]
        if key == (_socket.IPPROTO_TCP, _socket.TCP_CONGESTION):
            v = ffi.new("int *")
            check(lib.us_tcp_getsockopt(self._handle(), lib.US_TCP_CONGESTION, v))
            name = _CC_NAMES[v[0]]
            return name.ljust(buflen or len(name), b"\0")
        if key == (_socket.SOL_SOCKET, _socket.SO_TYPE):
            return _socket.SOCK_STREAM
        if key == (_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY):
            return 1
        raise OSError(errno.ENOPROTOOPT, "option not supported on a user-level socket")

    def tcp_info(self) -> dict:
        """Like Linux's TCP_INFO: state, cwnd, srtt_us, retransmits ... (see api.h us_tcp_info)."""
        i = ffi.new("struct us_tcp_info *")
        check(lib.us_tcp_info(self._handle(), i))
        d = struct_dict(i)
        d["state_name"] = TCP_STATES[d["state"]] if d["state"] < len(TCP_STATES) else "?"
        return d

    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        """A file object over the socket, as socket.socket.makefile (modes r, w, b)."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        raw = _socket.SocketIO(self, ("r" if reading else "") + ("w" if writing else ""))
        self._io_refs += 1
        buffering = io.DEFAULT_BUFFER_SIZE if buffering is None or buffering < 0 else buffering
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buf = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buf = io.BufferedReader(raw, buffering)
        else:
            buf = io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buf
        text = io.TextIOWrapper(buf, io.text_encoding(encoding), errors, newline)
        text.mode = mode
        return text

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._close_pending:
            self.close()

    # -- life cycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Graceful close (FIN after the queued data; RST if received data is left unread),
        finished by the stack in the background; a reset with SO_LINGER (1, 0). With makefile()
        streams still open, the socket closes with the last of them (as a kernel socket does)."""
        if self._io_refs > 0:
            self._close_pending = True
            return
        if self._s is not None:
            s, self._s = self._s, None
            self._stack._tcp.discard(self)
            if self._stack._st is not None:
                if self._linger_abort:
                    lib.us_tcp_abort(s)
                else:
                    lib.us_sock_close(s)

    def abort(self) -> None:
        """Reset the connection (RST) and close the socket at once."""
        self._linger_abort = True
        self.close()

    def detach(self):
        raise OSError(errno.EOPNOTSUPP, "user-level sockets have no kernel descriptor to detach")

    def __del__(self):
        try:
            if self._s is not None and self._stack._st is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self):
        if self._s is None:
            return "<userstack.TcpSocket [closed]>"
        try:
            peer = f" raddr={self.getpeername()!r}"
        except OSError:
            peer = ""
        return f"<userstack.TcpSocket family={self.family!r} laddr={self.getsockname()!r}{peer}>"
