"""userstack stack over the in-memory device: UDP binding rules, receive and send paths, the
neighbour queue, the control channel, readiness (fileno), the environment contract, asyncio.
No root, no network."""
from __future__ import annotations

import asyncio
import errno
import os
import select
import socket

import pytest
from scapy.layers.inet import IP, UDP, Ether
from scapy.layers.inet6 import IPv6

from tests.fixtures.userstack_helpers import (
    ADDR4,
    ADDR6,
    MAC,
    PEER4,
    PEER6,
    PEER_MAC,
    capture,
    inject,
    make_desc,
    mem_stack,
    udp4,
    udp6,
)
from userstack import aio, ctl
from userstack._lib import ffi, lib


@pytest.fixture
def stack():
    s = mem_stack()
    yield s
    s.close()


def bound(stack, family=socket.AF_INET, addr=("0.0.0.0", 7000)):
    s = stack.socket(family, socket.SOCK_DGRAM)
    s.bind(addr)
    s.setblocking(False)
    return s


# ---- binding --------------------------------------------------------------------------------
def test_bind_only_claimed_tuples(stack):
    s = bound(stack)
    assert s.getsockname() == ("0.0.0.0", 7000)
    with pytest.raises(OSError) as e:
        stack.socket().bind(("0.0.0.0", 7002))           # not claimed
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        stack.socket().bind(("198.18.0.9", 7000))        # not a local address
    assert e.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as e:
        stack.socket().bind(("0.0.0.0", 7001))           # only 198.18.0.1:7001 is claimed
    assert e.value.errno == errno.EACCES
    stack.socket().bind((ADDR4, 7001))
    with pytest.raises(OSError) as e:
        stack.socket().bind((ADDR4, 7000))               # covered by the wildcard socket
    assert e.value.errno == errno.EADDRINUSE
    bound(stack, socket.AF_INET6, ("::", 7000))          # IPv6 is separate
    with pytest.raises(OSError) as e:
        stack.socket().bind(("0.0.0.0", 0))              # no launcher to claim an ephemeral port from
    assert e.value.errno == errno.EADDRNOTAVAIL


def test_close_frees_the_tuple(stack):
    s = bound(stack)
    s.close()
    bound(stack).close()
    with pytest.raises(OSError):
        s.recvfrom(10)


# ---- receive --------------------------------------------------------------------------------
def test_receive_v4_and_v6(stack):
    s4 = bound(stack)
    s6 = bound(stack, socket.AF_INET6, ("::", 7000))
    inject(stack, udp4(b"four", sport=4444))
    inject(stack, udp6(b"six", sport=6666))
    stack.poll()
    assert s4.recvfrom(100) == (b"four", (PEER4, 4444))
    assert s6.recvfrom(100) == (b"six", (PEER6, 6666, 0, 0))
    with pytest.raises(BlockingIOError):
        s4.recvfrom(100)
    assert stack.stats()["rx_udp"] == 2


def test_receive_every_size(stack):
    s = bound(stack)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    for n in range(0, 1473, 7):
        payload = os.urandom(n)
        inject(stack, udp4(payload, sport=1000 + n))
        stack.poll()
        assert s.recvfrom(2000) == (payload, (PEER4, 1000 + n))


def test_recv_truncates_like_the_kernel(stack):
    s = bound(stack)
    inject(stack, udp4(b"0123456789"))
    stack.poll()
    assert s.recv(4) == b"0123"
    with pytest.raises(BlockingIOError):
        s.recv(4)                                        # the rest of the datagram is gone


def test_drops_are_counted(stack):
    bound(stack)
    bad = bytearray(udp4(b"corrupt me"))
    bad[-1] ^= 0xFF
    inject(stack, bytes(bad))
    inject(stack, udp4(b"x", dport=7005))               # no socket
    inject(stack, udp4(b"x", dst="198.18.0.99"))         # not our address
    inject(stack, udp4(b"x" * 100, flags="MF"))          # fragment
    inject(stack, bytes(Ether(src=PEER_MAC, dst=MAC, type=0x0806) / (b"\0" * 28)))
    inject(stack, udp4(b"x")[:30])                       # truncated
    stack.poll()
    st = stack.stats()
    assert (st["rx_bad_csum"], st["rx_no_socket"], st["rx_not_local"], st["rx_fragment"],
            st["rx_other_proto"], st["rx_malformed"], st["rx_udp"]) == (1, 1, 1, 1, 1, 1, 0)


def test_receive_queue_is_bounded():
    stack = mem_stack(nframes=4096)
    try:
        s = bound(stack)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(10):
            inject(stack, udp4(b"y" * 1000))
        stack.poll()
        got = 0
        while True:
            try:
                s.recv(2000)
                got += 1
            except BlockingIOError:
                break
        assert got == 4 and stack.stats()["rx_queue_full"] == 6
        assert lib.us_test_free_frames(stack._st) == 4096        # RX buffers all returned
    finally:
        stack.close()


# ---- send -----------------------------------------------------------------------------------
def test_send_builds_correct_frames(stack):
    stack.neigh_set(PEER4, PEER_MAC)
    stack.neigh_set(PEER6, PEER_MAC)
    s4 = bound(stack)
    s6 = bound(stack, socket.AF_INET6, ("::", 7000))
    for n in (0, 1, 100, 1472):
        payload = os.urandom(n)
        assert s4.sendto(payload, (PEER4, 9999)) == n
        f = Ether(capture(stack))
        assert f.src == MAC and f.dst == PEER_MAC
        assert f[IP].src == ADDR4 and f[IP].dst == PEER4 and f[IP].flags == "DF" and f[IP].ttl == 64
        assert f[UDP].sport == 7000 and f[UDP].dport == 9999 and bytes(f[UDP].payload) == payload
        raw = bytes(f)
        f[IP].chksum = None
        f[UDP].chksum = None
        assert bytes(Ether(bytes(f))) == raw                # scapy's checksums equal ours
    for n in (0, 1452):
        payload = os.urandom(n)
        s6.sendto(payload, (PEER6, 9999))
        f = Ether(capture(stack))
        assert f[IPv6].src == ADDR6 and f[IPv6].hlim == 64 and bytes(f[UDP].payload) == payload
        raw = bytes(f)
        f[UDP].chksum = None
        assert bytes(Ether(bytes(f))) == raw


def test_send_larger_than_mtu_is_emsgsize(stack):
    stack.neigh_set(PEER4, PEER_MAC)
    s4 = bound(stack)
    s6 = bound(stack, socket.AF_INET6, ("::", 7000))
    with pytest.raises(OSError) as e:
        s4.sendto(b"x" * 1473, (PEER4, 1))
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as e:
        s6.sendto(b"x" * 1453, (PEER6, 1))
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as e:
        s4.sendto(b"x", (PEER6, 1))
    assert e.value.errno == errno.EAFNOSUPPORT


def test_source_is_the_bound_address(stack):
    stack.neigh_set(PEER4, PEER_MAC)
    s = bound(stack, addr=(ADDR4, 7001))
    s.sendto(b"a", (PEER4, 5))
    assert Ether(capture(stack))[UDP].sport == 7001


def test_unresolved_destination_waits_then_sends(stack):
    s = bound(stack)
    qlen = 64                                             # US_NEIGH_QLEN
    for i in range(qlen + 2):
        s.sendto(bytes([i]), (PEER4, 9))
    assert capture(stack) is None
    st = stack.stats()
    assert st["neigh_queued"] == qlen + 2 and st["neigh_drop"] == 2   # the oldest two dropped
    stack.neigh_set(PEER4, PEER_MAC)
    got = [bytes(Ether(capture(stack))[UDP].payload) for _ in range(qlen)]
    assert got == [bytes([i]) for i in range(2, qlen + 2)] and capture(stack) is None


def test_failed_resolution_drops(stack):
    s = bound(stack)
    s.sendto(b"a", (PEER4, 9))
    stack.neigh_set(PEER4, None)
    s.sendto(b"b", (PEER4, 9))                           # dropped at once while failed
    assert capture(stack) is None
    assert stack.stats()["neigh_drop"] == 2
    assert lib.us_test_free_frames(stack._st) == 256


# ---- control channel ------------------------------------------------------------------------
def test_control_channel_resolve_and_neigh():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stack = mem_stack(ctl_fd=a.fileno())
    try:
        s = bound(stack)
        s.sendto(b"hi", (PEER4, 9))
        m = ctl.decode(b.recv(100))
        assert isinstance(m, ctl.Resolve) and m.dst == PEER4
        b.send(ctl.encode(ctl.Neigh(dst=PEER4, mac=PEER_MAC, nexthop=PEER4, seq=m.seq)))
        stack.poll(0.5)
        f = Ether(capture(stack))
        assert f.dst == PEER_MAC and bytes(f[UDP].payload) == b"hi"
        b.send(b"\0" * 10)                                # malformed: counted, ignored
        b.send(ctl.encode(ctl.Neigh(dst=PEER6, mac=None)))
        stack.poll(0.2)
        assert stack.stats()["ctl_bad"] == 1
    finally:
        stack.close()
        a.close()
        b.close()


def test_ephemeral_bind_through_the_launcher():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stack = mem_stack(ctl_fd=a.fileno(), driver=True)
    try:
        import threading

        def launcher():
            m = ctl.decode(b.recv(64))
            assert isinstance(m, ctl.ClaimEphemeral) and m.proto == 17 and m.family == 4
            b.send(ctl.encode(ctl.Claimed(proto=17, family=4, port=40000, seq=m.seq)))
            rel = ctl.decode(b.recv(64))
            assert isinstance(rel, ctl.Release) and rel.port == 40000
        t = threading.Thread(target=launcher)
        t.start()
        s = stack.socket()
        s.bind(("0.0.0.0", 0))
        assert s.getsockname() == ("0.0.0.0", 40000)
        s.close()
        t.join(5)
        assert not t.is_alive()
    finally:
        stack.close()
        a.close()
        b.close()


def test_ctl_codec_matches_c_layout():
    assert ffi.sizeof("union us_ctl_msg") == ctl.MSG_SIZE
    assert ffi.offsetof("struct us_ctl_neigh", "mac") == 28
    assert ffi.offsetof("struct us_ctl_neigh", "status") == 34
    assert ffi.offsetof("struct us_ctl_neigh", "nexthop") == 36
    assert ffi.offsetof("struct us_ctl_claim_ephemeral", "remote") == 12
    assert ffi.offsetof("struct us_ctl_claimed", "status") == 12
    assert ffi.offsetof("struct us_ctl_claimed", "local") == 16
    assert ffi.offsetof("struct us_ctl_release", "local") == 12
    for m in (ctl.Resolve(dst="2001:db8::5", seq=3),
              ctl.Neigh(dst="198.18.0.9", mac="02:00:00:00:00:09", nexthop="198.18.0.1", seq=4),
              ctl.Neigh(dst="198.18.0.9", mac=None, status=ctl.NEIGH_FAILED, seq=5),
              ctl.ClaimEphemeral(proto=6, family=6, remote="2001:db8::2", remote_port=80, seq=6),
              ctl.Claimed(proto=6, family=4, port=33000, status=0, local="198.18.0.1", seq=7),
              ctl.Claimed(proto=17, family=4, port=0, status=-errno.EADDRINUSE, seq=8),
              ctl.Release(proto=17, family=6, port=33001, local=None, seq=9)):
        assert ctl.decode(ctl.encode(m)) == m
    # what C writes, Python reads
    c = ffi.new("union us_ctl_msg *")
    c.claimed.hdr.type = lib.US_CTL_CLAIMED
    c.claimed.hdr.version = 1
    c.claimed.hdr.seq = 77
    c.claimed.proto, c.claimed.family, c.claimed.port, c.claimed.status = 17, 4, 4242, -5
    assert ctl.decode(bytes(ffi.buffer(c))) == ctl.Claimed(proto=17, family=4, port=4242, status=-5, seq=77)


# ---- readiness, environment, asyncio --------------------------------------------------------
def test_fileno_is_readable_while_datagrams_wait(stack):
    s = bound(stack)
    fd = s.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    inject(stack, udp4(b"1"))
    inject(stack, udp4(b"2"))
    stack.poll()
    assert select.select([fd], [], [], 0)[0] == [fd]
    s.recv(10)
    assert select.select([fd], [], [], 0)[0] == [fd]
    s.recv(10)
    assert select.select([fd], [], [], 0)[0] == []


def test_blocking_recv_with_driver_thread_and_timeout():
    stack = mem_stack(driver=True)
    try:
        s = stack.socket()
        s.bind(("0.0.0.0", 7000))
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.recvfrom(10)
        inject(stack, udp4(b"late"))
        s.settimeout(5)
        assert s.recvfrom(10)[0] == b"late"
    finally:
        stack.close()


def test_env_round_trip(monkeypatch):
    d = make_desc()
    d.umem_fd, d.umem_size, d.frame_size, d.umem_flags = 5, 1 << 24, 2048, 1
    d.nqueues = 2
    for i in range(2):
        q = d.queues[i]
        q.queue_id, q.fd, q.rx_size, q.tx_size, q.fill_size, q.comp_size = i, 10 + i, 2048, 2048, 2048, 2048
        q.frame_first, q.frame_count = 4096 * i, 4096
    d.ifname = b"xst0d"
    d.ifindex = 7
    d.ctl_fd = 9
    d.local_peer, d.stats_fd, d.stats_size = 1, 12, 4096
    n = lib.us_desc_format_env(d, ffi.NULL, 0)
    buf = ffi.new("char[]", n + 1)
    assert lib.us_desc_format_env(d, buf, n + 1) == n
    env = dict(line.split("=", 1) for line in ffi.string(buf).decode().splitlines())
    assert env["XDPSTACK_TUPLE0"] == "udp 4 0.0.0.0 7000"
    assert env["XDPSTACK_Q1"] == "1 11 2048 2048 2048 2048 4096 4096"
    assert env["XDPSTACK_MAC"] == MAC and env["XDPSTACK_ADDR1"] == f"6 {ADDR6}"
    assert env["XDPSTACK_LOCAL_PEER"] == "1" and env["XDPSTACK_STATS"] == "12 4096"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    back = ffi.new("struct us_desc *")
    assert lib.us_desc_from_env(back) == 0
    assert back.owns_fds == 1
    back.owns_fds = 0
    assert bytes(ffi.buffer(back)) == bytes(ffi.buffer(d))
    monkeypatch.setenv("XDPSTACK_TUPLE0", "sctp 4 0.0.0.0 7000")
    assert lib.us_desc_from_env(back) == -errno.EINVAL
    monkeypatch.delenv("XDPSTACK_VERSION")
    assert lib.us_desc_from_env(back) == -errno.ENOENT


def test_asyncio_datagram_endpoint():
    stack = mem_stack(driver=True)
    stack.neigh_set(PEER4, PEER_MAC)

    class Echo(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data[::-1], addr)
            if not self.got.done():
                self.got.set_result((data, addr))

    async def main():
        tr, proto = await aio.create_datagram_endpoint(stack, Echo, local_addr=("0.0.0.0", 7000))
        inject(stack, udp4(b"abc", sport=3333))
        data, addr = await asyncio.wait_for(proto.got, 5)
        tr.close()
        await asyncio.sleep(0)
        return data, addr

    try:
        assert asyncio.run(main()) == (b"abc", (PEER4, 3333))
        assert bytes(Ether(capture(stack))[UDP].payload) == b"cba"
    finally:
        stack.close()


# ---- fault injection middleware ---------------------------------------------------------------
def _drain(s):
    out = []
    while True:
        try:
            out.append(s.recv(100))
        except BlockingIOError:
            return out


def test_faults_rx_drop_duplicate_corrupt(stack):
    s = bound(stack)
    stack.set_faults(seed=1, drop=1.0, tx=False)
    inject(stack, udp4(b"a"))
    stack.poll()
    assert _drain(s) == [] and stack.fault_stats()["dropped"] == 1
    stack.set_faults(seed=1, duplicate=1.0, tx=False)
    inject(stack, udp4(b"b"))
    stack.poll()
    assert _drain(s) == [b"b", b"b"]
    stack.set_faults(seed=1, corrupt=1.0, tx=False)
    for _ in range(20):
        inject(stack, udp4(b"c" * 40))
    stack.poll()
    # A flipped bit in IP/UDP is caught (checksum, length, address or port no longer ours); one
    # in the MAC addresses is harmless. No corrupted payload ever reaches the socket.
    delivered = _drain(s)
    assert all(d == b"c" * 40 for d in delivered)
    st = stack.stats()
    rejected = st["rx_bad_csum"] + st["rx_malformed"] + st["rx_not_local"] + st["rx_other_proto"] \
        + st["rx_no_socket"] + st["rx_fragment"]
    assert len(delivered) + rejected == 20 and rejected >= 10
    stack.set_faults(seed=1, tx=False)
    stack.poll()
    assert lib.us_test_free_frames(stack._st) == 256


def test_faults_reorder_is_seeded_and_loses_nothing():
    orders = []
    for _ in range(2):
        stack = mem_stack(nframes=1024)
        try:
            s = bound(stack)
            stack.set_faults(seed=42, reorder=0.3, tx=False)
            for i in range(300):
                inject(stack, udp4(b"%03d" % i))
                if i % 7 == 0:
                    stack.poll()
            for _ in range(5):
                stack.poll()
            got = [int(x) for x in _drain(s)]
            assert sorted(got) == list(range(300)) and got != list(range(300))
            assert stack.fault_stats()["reordered"] > 30
            orders.append(got)
        finally:
            stack.close()
    assert orders[0] == orders[1]


def test_faults_tx(stack):
    stack.neigh_set(PEER4, PEER_MAC)
    s = bound(stack)
    stack.set_faults(seed=3, drop=1.0, rx=False)
    s.sendto(b"x", (PEER4, 9))
    assert capture(stack) is None
    stack.set_faults(seed=3, duplicate=1.0, rx=False)
    s.sendto(b"y", (PEER4, 9))
    assert capture(stack) == capture(stack) is not None and capture(stack) is None
    assert lib.us_test_free_frames(stack._st) == 256
