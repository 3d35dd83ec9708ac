"""asyncio streams on user-level stacks (userstack.aio) between two stacks on an in-memory wire:
real StreamReader/StreamWriter, flow control both ways, half-close, errors, the Server object,
and the asyncio HTTP example's handler. No root, no network."""
from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tests.fixtures.userstack_pair import A4, A6, Pair
from userstack import aio


@pytest.fixture
def pair():
    with Pair(tcp=[7000, 7001]) as p:
        yield p


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def echo_handler(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()                   # half-close respected: answer everything, then FIN
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_streams_echo_big_both_families(pair):
    async def main():
        server = await aio.start_server(echo_handler, None, 7000, stack=pair.a)
        assert {s.getsockname()[0] for s in server.sockets} == {"0.0.0.0", "::"}
        for host in (A4, A6):
            reader, writer = await aio.open_connection(host, 7000, stack=pair.b)
            assert isinstance(reader, asyncio.StreamReader) and isinstance(writer, asyncio.StreamWriter)
            assert writer.get_extra_info("peername")[:2] == (host, 7000)
            data = os.urandom(6 << 20)

            async def send(writer, data):
                writer.write(data)
                await writer.drain()
                writer.write_eof()
            task = asyncio.create_task(send(writer, data))
            got = await reader.read(-1)                        # until the server's FIN
            await task
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert not server.is_serving()
    run(main())


def test_flow_control_pauses_reading_and_writing(pair):
    """A reader that does not read: the transport stops reading (StreamReader limit), the TCP
    window closes, the writer's buffer passes its high-water mark and drain() waits."""
    async def main():
        release = asyncio.Event()
        seen = {}

        async def slow(reader, writer):
            await release.wait()
            seen["n"] = len(await reader.read(-1))
            writer.close()
        server = await aio.start_server(slow, A4, 7001, stack=pair.a, limit=1 << 16)
        reader, writer = await aio.open_connection(A4, 7001, stack=pair.b)
        transport = writer.transport
        transport.set_write_buffer_limits(high=1 << 20)
        total = 0
        drained = None
        while total < 64 << 20:
            writer.write(b"x" * (1 << 20))
            total += 1 << 20
            try:
                await asyncio.wait_for(writer.drain(), 0.3)
            except TimeoutError:
                drained = False
                break
        assert drained is False, "drain() never blocked: no flow control"
        assert transport.get_write_buffer_size() > transport.get_write_buffer_limits()[0]   # above low
        release.set()
        await writer.drain()
        writer.write_eof()
        await reader.read()
        assert seen["n"] == total
        writer.close()
        server.close()
        await server.wait_closed()
    run(main())


def test_refused_and_reset(pair):
    async def main():
        with pytest.raises(ConnectionRefusedError):
            await aio.open_connection(A4, 7001, stack=pair.b)

        async def rude(reader, writer):
            await reader.read(1)
            writer.transport.abort()                        # RST
        server = await aio.start_server(rude, A4, 7000, stack=pair.a)
        reader, writer = await aio.open_connection(A4, 7000, stack=pair.b)
        writer.write(b"hi")
        with pytest.raises(ConnectionResetError):
            await reader.read(10)
            await reader.read(10)
        writer.close()
        server.close()
        await server.wait_closed()
    run(main())


def test_serve_forever_and_close(pair):
    async def main():
        server = await aio.start_server(echo_handler, None, 7000, stack=pair.a, start_serving=False)
        assert not server.is_serving()
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        reader, writer = await aio.open_connection(A4, 7000, stack=pair.b)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        with pytest.raises(OSError):
            await aio.open_connection(A4, 7000, stack=pair.b)
    run(main())


def test_http_example_handler(pair):
    from userstack.examples.http_server import handle

    async def main():
        body = b"0123456789" * 7
        server = await aio.start_server(lambda r, w: handle(r, w, body), None, 7000, stack=pair.a)
        reader, writer = await aio.open_connection(A4, 7000, stack=pair.b)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await reader.read(-1)                         # two responses, then the close
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.count(body) == 2
        assert b"Connection: close" in data
        writer.close()
        server.close()
        await server.wait_closed()
    run(main())
