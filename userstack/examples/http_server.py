"""A small HTTP/1.1 server on asyncio streams over a user-level stack: the Python path.

    xdpstack run IFACE --tcp 8080 -- python -m userstack.examples.http_server [--body-size N]

Answers every GET (and HEAD) with a fixed body, keep-alive by default (HTTP/1.1 rules,
"Connection: close" honoured), on every TCP tuple the launcher claimed for it. Anything else gets
405. It uses only userstack.Stack.from_env() and userstack.aio.start_server: real
asyncio.StreamReader/StreamWriter, the packets handled by the stack's C thread.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from userstack import Stack, aio

MAX_HEADER = 16 * 1024


def response(status: str, body: bytes, keep_alive: bool, head: bool = False) -> bytes:
    hdr = (f"HTTP/1.1 {status}\r\nServer: userstack-asyncio\r\nContent-Type: text/plain\r\n"
           f"Content-Length: {len(body)}\r\n" + ("" if keep_alive else "Connection: close\r\n") + "\r\n")
    return hdr.encode() + (b"" if head else body)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                break
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            if len(parts) != 3:
                writer.write(response("400 Bad Request", b"bad request\n", False))
                break
            method, _target, version = parts
            fields = (ln.partition(":") for ln in lines[1:] if ln)
            headers = {k.strip().lower(): v.strip() for k, _, v in fields}
            conn = headers.get("connection", "").lower()
            keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)           # a body we do not use
            if method in ("GET", "HEAD"):
                writer.write(response("200 OK", body, keep, method == "HEAD"))
            else:
                writer.write(response("405 Method Not Allowed", b"GET or HEAD\n", keep))
            await writer.drain()
            if not keep:
                break
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def serve(stack: Stack, port: int | None, body: bytes) -> None:
    ports = sorted({p for proto, _a, p in stack.tuples if proto == "tcp" and (port is None or p == port)})
    if not ports:
        sys.exit("http_server: the stack owns no TCP port: run it with `xdpstack run IFACE --tcp PORT`")
    servers = [await aio.start_server(lambda r, w: handle(r, w, body), None, p, stack=stack, limit=MAX_HEADER)
               for p in ports]
    print(f"http_server: serving on tcp {', '.join(map(str, ports))}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, help="serve only this claimed port (default: every claimed TCP port)")
    ap.add_argument("--body-size", type=int, default=64, help="bytes of the response body (64)")
    args = ap.parse_args(argv)
    body = (b"userstack says hello\n" * (args.body_size // 21 + 1))[:args.body_size]
    with Stack.from_env() as stack:
        asyncio.run(serve(stack, args.port, body))


if __name__ == "__main__":
    main()
