"""userstack: the user side of xdpstack's packet path.

Each application gets its own user-level protocol stack, fed by AF_XDP sockets that the XDP demux
fills with the packets of the 3-tuples the stack owns. The fast path is C (userstack/csrc, built
with cffi); this package is its Python face:

    Stack.from_env()            the stack `xdpstack run` prepared for this process
    Stack.create(ifname, ...)   a stack in this (privileged) process: tests, benchmarks
    stack.socket(AF_INET, SOCK_DGRAM) -> UdpSocket (bind/sendto/recvfrom/settimeout/fileno)
    stack.socket(AF_INET, SOCK_STREAM) -> TcpSocket (listen/accept/connect/send/recv/shutdown ...)
    userstack.stack             Stack
    userstack.udp, .tcp         UdpSocket, TcpSocket
    userstack.sockbase          what they share: timeouts, blocking waits, fileno, `with`
    userstack.aio.create_datagram_endpoint(stack, factory, local_addr=...)
    userstack.aio.start_server(cb, host, port, stack=...), open_connection(host, port, stack=...)
    userstack.xsk.create(...)   AF_XDP sockets + UMEM for a launcher
    userstack.ctl               codec of the stack <-> launcher control channel
    userstack.agent             the agent answering it (launcher and Stack.create alike)
"""
from userstack.stack import Stack
from userstack.tcp import TcpSocket
from userstack.udp import UdpSocket

__all__ = ["Stack", "TcpSocket", "UdpSocket"]
