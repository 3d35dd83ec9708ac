"""asyncio on a user-level stack: TCP streams and datagram endpoints, driven by the sockets'
file descriptors in the event loop (the stack's own C thread does the packet work).

    async def handle(reader, writer):              # real asyncio.StreamReader / StreamWriter
        writer.write(await reader.read(100)); await writer.drain(); writer.close()
    server = await userstack.aio.start_server(handle, None, 8080, stack=stack)
    async with server:
        await server.serve_forever()

    reader, writer = await userstack.aio.open_connection("198.18.0.2", 80, stack=stack)

    transport, protocol = await userstack.aio.create_datagram_endpoint(
        stack, EchoProtocol, local_addr=("0.0.0.0", 7000))

TCP: UserstackTransport is an asyncio.Transport over a TcpSocket (flow control both ways:
pause_reading/resume_reading, write buffer limits with pause_writing/resume_writing, so drain()
works); create_connection/create_server take any protocol factory. UDP: the shape of
loop.create_datagram_endpoint. Addresses are numeric (no DNS).
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket as _socket

from userstack.stack import Stack
from userstack.tcp import TcpSocket
from userstack.udp import UdpSocket

_MAX_PER_WAKEUP = 256          # datagrams handed to the protocol per loop iteration
_RECV_SIZE = 65535


class UserstackDatagramTransport(asyncio.DatagramTransport):
    def __init__(self, loop: asyncio.AbstractEventLoop, sock: UdpSocket, protocol, address=None):
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._address = address
        self._closing = False
        self._fd = sock.fileno()
        sock.setblocking(False)
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(loop.add_reader, self._fd, self._read_ready)

    def _read_ready(self):
        for _ in range(_MAX_PER_WAKEUP):
            if self._closing:
                return
            try:
                data, addr = self._sock.recvfrom(_RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            self._protocol.datagram_received(data, addr)

    def sendto(self, data, addr=None):
        if self._closing:
            return
        try:
            if addr is None:
                if self._address is None:
                    raise OSError(errno.EDESTADDRREQ, "Destination address required")
                addr = self._address
            self._sock.sendto(data, addr)
        except OSError as exc:
            self._protocol.error_received(exc)

    def get_write_buffer_size(self):
        return 0

    def get_extra_info(self, name, default=None):
        if name == "sockname":
            return self._sock.getsockname()
        if name == "peername":
            return self._address
        if name == "socket":
            return self._sock
        return default

    def is_closing(self):
        return self._closing

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        self._loop.call_soon(self._finish)

    def abort(self):
        self.close()

    def _finish(self):
        try:
            self._protocol.connection_lost(None)
        finally:
            self._sock.close()


async def create_datagram_endpoint(stack: Stack, protocol_factory, local_addr=None, remote_addr=None,
                                   family: int = 0):
    """Like loop.create_datagram_endpoint, on `stack`. Addresses are numeric (no DNS)."""
    loop = asyncio.get_running_loop()
    addr = local_addr or remote_addr
    if not family:
        family = _socket.AF_INET6 if addr and ":" in str(addr[0]) else _socket.AF_INET
    sock = stack.socket(family, _socket.SOCK_DGRAM)
    try:
        if local_addr is not None:
            sock.bind(local_addr)
        protocol = protocol_factory()
        transport = UserstackDatagramTransport(loop, sock, protocol, remote_addr)
    except BaseException:
        sock.close()
        raise
    return transport, protocol


# ---------------------------------------------------------------------------------------------
# TCP

_READ_SIZE = 256 * 1024


class UserstackTransport(asyncio.Transport):
    """asyncio.Transport over a user-level TcpSocket: reads when its fd is readable, writes what
    fits and buffers the rest until the fd says writable."""

    def __init__(self, loop, sock: TcpSocket, protocol, waiter=None, server=None):
        super().__init__({"socket": sock})
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._server = server
        self._fd = sock.fileno()
        sock.setblocking(False)
        self._extra["sockname"] = sock.getsockname()
        try:
            self._extra["peername"] = sock.getpeername()
        except OSError:
            self._extra["peername"] = None
        self._buffer = bytearray()
        self._recv = bytearray(_READ_SIZE)
        self._closing = False
        self._conn_lost = False
        self._eof_pending = False      # write_eof() once the buffer is sent
        self._reading = True
        self._writing_paused = False
        self._high, self._low = 64 * 1024, 16 * 1024
        if server is not None:
            server._attach()
        loop.call_soon(self._start, waiter)

    def _start(self, waiter):
        self._protocol.connection_made(self)
        if not self._closing:
            self._loop.add_reader(self._fd, self._read_ready)
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    # -- reading ----------------------------------------------------------------------------------
    def _read_ready(self):
        if self._conn_lost:
            return
        try:
            n = self._sock.recv_into(self._recv)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc)
            return
        if n:
            self._protocol.data_received(bytes(memoryview(self._recv)[:n]))
            return
        self._loop.remove_reader(self._fd)     # end of stream
        self._reading = False
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    def pause_reading(self):
        if self._reading and not self._closing:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self):
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)

    def is_reading(self):
        return self._reading and not self._closing

    # -- writing ----------------------------------------------------------------------------------
    def write(self, data):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_pending:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._conn_lost:
            return
        if not self._buffer:
            try:
                n = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fatal_error(exc)
                return
            data = memoryview(data)[n:]
            if not data:
                return
            self._loop.add_writer(self._fd, self._write_ready)
        self._buffer.extend(data)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data):
        self.write(b"".join(list_of_data))

    def _write_ready(self):
        if self._conn_lost:
            return
        try:
            n = self._sock.send(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._loop.remove_writer(self._fd)
            self._buffer.clear()
            self._fatal_error(exc)
            return
        del self._buffer[:n]
        self._maybe_resume_protocol()
        if self._buffer:
            return
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._call_connection_lost(None)
        elif self._eof_pending:
            self._shutdown_write()

    def _shutdown_write(self):
        try:
            self._sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def can_write_eof(self):
        return True

    def write_eof(self):
        if self._closing or self._eof_pending:
            return
        self._eof_pending = True
        if not self._buffer:
            self._shutdown_write()

    def get_write_buffer_size(self):
        return len(self._buffer)

    def get_write_buffer_limits(self):
        return self._low, self._high

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self):
        if not self._writing_paused and len(self._buffer) > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _maybe_resume_protocol(self):
        if self._writing_paused and len(self._buffer) <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()

    # -- closing ----------------------------------------------------------------------------------
    def is_closing(self):
        return self._closing

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._buffer:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self):
        self._force_close(None)

    def _fatal_error(self, exc):
        self._force_close(exc)

    def _force_close(self, exc):
        if self._conn_lost:
            return
        self._sock._linger_abort = True        # reset, like a kernel transport's abort()
        if self._buffer:
            self._buffer.clear()
            self._loop.remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc):
        if self._conn_lost:
            return
        self._conn_lost = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._sock.close()
            if self._server is not None:
                self._server._detach()
                self._server = None

    def __repr__(self):
        return f"<UserstackTransport fd={self._fd} peer={self._extra.get('peername')!r}>"


class Server:
    """What start_server/create_server return: the shape of asyncio.Server (close, wait_closed,
    serve_forever, sockets, async with)."""

    def __init__(self, loop, socks: list[TcpSocket], protocol_factory):
        self._loop = loop
        self._socks = socks
        self._factory = protocol_factory
        self._serving = False
        self._active = 0
        self._waiters: list[asyncio.Future] = []
        self._serving_forever = None

    def get_loop(self):
        return self._loop

    @property
    def sockets(self):
        return tuple(self._socks or ())

    def is_serving(self):
        return self._serving

    def _start(self):
        if self._serving or self._socks is None:
            return
        self._serving = True
        for s in self._socks:
            self._loop.add_reader(s.fileno(), self._accept_ready, s)

    async def start_serving(self):
        self._start()
        await asyncio.sleep(0)

    def _accept_ready(self, lsock: TcpSocket):
        for _ in range(128):
            try:
                conn, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                protocol = self._factory()
                UserstackTransport(self._loop, conn, protocol, server=self)
            except BaseException:
                conn.close()
                raise

    def _attach(self):
        self._active += 1

    def _detach(self):
        self._active -= 1
        if self._active == 0 and self._socks is None:
            self._wake()

    def _wake(self):
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._waiters = []

    def close(self):
        if self._socks is None:
            return
        for s in self._socks:
            if self._serving:
                self._loop.remove_reader(s.fileno())
            s.close()
        self._socks = None
        self._serving = False
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
            self._serving_forever = None
        if self._active == 0:
            self._wake()

    async def wait_closed(self):
        if self._socks is None and self._active == 0:
            return
        w = self._loop.create_future()
        self._waiters.append(w)
        await w

    async def serve_forever(self):
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._socks is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        await self.wait_closed()


def _family_of(host) -> int:
    return _socket.AF_INET6 if host and ":" in str(host) else _socket.AF_INET


async def create_server(protocol_factory, host=None, port=None, *, stack: Stack, family: int = 0,
                        backlog: int = 100, start_serving: bool = True) -> Server:
    """Like loop.create_server on `stack`: host None/"" listens on every tuple the stack claimed
    for port (one socket per family), else on (host, port)."""
    loop = asyncio.get_running_loop()
    if port is None:
        raise ValueError("port is required")
    if host in (None, ""):
        addrs = [a for (proto, a, p) in stack.tuples if proto == "tcp" and p == port]
        if family:
            addrs = [a for a in addrs if _family_of(a) == family]
        if not addrs:
            raise OSError(errno.EACCES, f"the stack has no claimed TCP tuple on port {port}")
    else:
        addrs = [host] if isinstance(host, str) else list(host)
    socks = []
    try:
        for a in dict.fromkeys(addrs):
            s = stack.tcp_socket(_family_of(a))
            socks.append(s)
            s.setblocking(False)
            s.bind((a, port))
            s.listen(backlog)
    except BaseException:
        for s in socks:
            s.close()
        raise
    server = Server(loop, socks, protocol_factory)
    if start_serving:
        server._start()
        await asyncio.sleep(0)
    return server


async def create_connection(protocol_factory, host, port, *, stack: Stack, family: int = 0,
                            local_addr=None):
    """Like loop.create_connection on `stack`: (transport, protocol) once connected."""
    loop = asyncio.get_running_loop()
    sock = stack.tcp_socket(family or _family_of(host))
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        err = sock.connect_ex((host, port))
        if err == errno.EINPROGRESS:
            fut = loop.create_future()
            fd = sock.fileno()
            loop.add_writer(fd, lambda: fut.done() or fut.set_result(None))
            try:
                await fut
            finally:
                loop.remove_writer(fd)
            err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        if err:
            raise OSError(err, f"Connect call failed {(host, port)}: {os.strerror(err)}")
        protocol = protocol_factory()
        waiter = loop.create_future()
        transport = UserstackTransport(loop, sock, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
    except BaseException:
        sock.close()
        raise
    return transport, protocol


async def start_server(client_connected_cb, host=None, port=None, *, stack: Stack, limit: int = 2 ** 16,
                       **kwds) -> Server:
    """asyncio.start_server on `stack`: client_connected_cb(reader, writer) per connection."""
    loop = asyncio.get_running_loop()

    def factory():
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)
    return await create_server(factory, host, port, stack=stack, **kwds)


async def open_connection(host, port, *, stack: Stack, limit: int = 2 ** 16, **kwds):
    """asyncio.open_connection on `stack`: (StreamReader, StreamWriter)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(lambda: protocol, host, port, stack=stack, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer
