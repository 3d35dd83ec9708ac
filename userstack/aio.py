"""asyncio on a user-level stack: datagram endpoints driven by the sockets' eventfds.

    transport, protocol = await userstack.aio.create_datagram_endpoint(
        stack, EchoProtocol, local_addr=("0.0.0.0", 7000))

The shape is loop.create_datagram_endpoint's: protocol_factory() -> asyncio.DatagramProtocol,
the transport has sendto/close/abort/get_extra_info. The stack's driver thread receives; the
socket's eventfd (readable while datagrams wait) wakes the event loop, which drains the socket.
"""
from __future__ import annotations

import asyncio
import errno
import socket as _socket

from userstack.stack import Stack, UdpSocket

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
