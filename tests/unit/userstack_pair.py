"""Two user-level stacks joined back to back by an in-memory wire (csrc/stack/testing.c us_test_link),
each with a small fake launcher on its control channel (neighbours, ephemeral port claims): whole
TCP conversations between two stacks with no root and no network.

    with Pair(tcp=[7000]) as p:       # p.a 198.18.0.1 / 2001:db8::1, p.b 198.18.0.2 / 2001:db8::2
        srv = p.a.socket(AF_INET, SOCK_STREAM); srv.bind(("0.0.0.0", 7000)); srv.listen()
        c = p.b.socket(AF_INET, SOCK_STREAM); c.connect((p.A4, 7000))
"""
from __future__ import annotations

import errno
import socket
import threading

from userstack import Stack, ctl
from userstack._lib import ffi, lib, set_addr

A4, B4 = "198.18.0.1", "198.18.0.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


class FakeLauncher:
    """Answers a stack's control channel: RESOLVE from a table, CLAIM_EPHEMERAL from a counter."""

    def __init__(self, sock: socket.socket, addrs: dict[int, str], macs: dict[str, str], first_port=40000,
                 refuse=False):
        self.sock, self.addrs, self.macs = sock, addrs, macs
        self.next_port, self.refuse = first_port, refuse
        self.claims: list[tuple[int, str, int, str]] = []      # (proto, local, port, remote)
        self.released: list[tuple[int, str, int]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True, name="fake-launcher")
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(ctl.MSG_SIZE)
            except OSError:
                return
            if not data:
                return
            m = ctl.decode(data)
            reply = None
            if isinstance(m, ctl.Resolve):
                mac = self.macs.get(m.dst)
                reply = ctl.Neigh(dst=m.dst, mac=mac, status=ctl.NEIGH_OK if mac else ctl.NEIGH_FAILED,
                                  seq=m.seq)
            elif isinstance(m, ctl.ClaimEphemeral):
                with self.lock:
                    if self.refuse:
                        reply = ctl.Claimed(proto=m.proto, family=m.family, port=0,
                                            status=-errno.EADDRINUSE, seq=m.seq)
                    else:
                        port, self.next_port = self.next_port, self.next_port + 1
                        local = self.addrs[m.family]
                        self.claims.append((m.proto, local, port, m.remote))
                        reply = ctl.Claimed(proto=m.proto, family=m.family, port=port, local=local, seq=m.seq)
            elif isinstance(m, ctl.Release):
                with self.lock:
                    self.released.append((m.proto, m.local, m.port))
            if reply is not None:
                try:
                    self.sock.send(ctl.encode(reply))
                except OSError:
                    return

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(2)
        self.sock.close()


def _desc(addrs, mac, tuples, ctl_fd, busy_poll=False):
    d = ffi.new("struct us_desc *")
    d.name = b"pair"
    ffi.memmove(d.mac, bytes.fromhex(mac.replace(":", "")), 6)
    d.mtu = 1500
    for i, a in enumerate(addrs):
        set_addr(d.addrs[i], a)
    d.naddrs = len(addrs)
    for i, (proto, a, port) in enumerate(tuples):
        t = d.tuples[i]
        t.proto = 6 if proto == "tcp" else 17
        t.port = port
        set_addr(t.addr, None if a in ("0.0.0.0", "::") else a, 6 if ":" in a else 4)
    d.ntuples = len(tuples)
    d.nqueues = 1
    d.frame_size = 2048
    d.ctl_fd = ctl_fd
    d.umem_fd = -1
    d.busy_poll = int(busy_poll)
    return d


class Pair:
    A4, B4, A6, B6 = A4, B4, A6, B6

    def __init__(self, tcp=(7000,), udp=(), frames=8192, wire_depth=4096, driver=True,
                 tcp_opts="linger_ms=300", refuse_claims=False, busy_poll=(False, False)):
        tuples = [(p, w, port) for p, ports in (("tcp", tcp), ("udp", udp)) for port in ports
                  for w in ("0.0.0.0", "::")]
        self.launchers = []
        stacks = []
        for addrs, mac, peer, busy in (((A4, A6), MAC_A, {B4: MAC_B, B6: MAC_B}, busy_poll[0]),
                                       ((B4, B6), MAC_B, {A4: MAC_A, A6: MAC_A}, busy_poll[1])):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.launchers.append(FakeLauncher(ours, {4: addrs[0], 6: addrs[1]}, peer, refuse=refuse_claims))
            err = ffi.new("int *")
            h = lib.us_test_stack_open(_desc(addrs, mac, tuples, theirs.fileno(), busy), frames, err)
            assert h != ffi.NULL, err[0]
            self._keep = getattr(self, "_keep", []) + [theirs]     # the stack uses the fd
            if tcp_opts:
                assert lib.us_stack_tcp_configure(h, tcp_opts.encode()) == 0
            stacks.append(h)
        assert lib.us_test_link(stacks[0], stacks[1], wire_depth) == 0
        self.a = Stack(stacks[0], driver=driver)
        self.b = Stack(stacks[1], driver=driver)

    def link_stats(self, st: Stack) -> tuple[int, int]:
        f, d = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        assert lib.us_test_link_stats(st._st, f, d) == 0
        return f[0], d[0]

    def close(self):
        for st in (self.a, self.b):                   # both stacks still run while these close
            for s in list(st._tcp):
                s.close()
        for st in (self.a, self.b):
            st.close()
        for fl in self.launchers:
            fl.close()
        for s in self._keep:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
