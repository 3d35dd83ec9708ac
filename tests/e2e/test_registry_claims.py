"""Claims of 3-tuples on a live attachment: the kernel's bind() decides, the maps follow, and
nothing of a failed claim or a released one is left."""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests.fixtures.testbed import wait_until
from tests.fixtures.xdpstack_helpers import in_ns
from xdpstack import counters, maps, registry, reservation
from xdpstack.errors import ClaimError, PermissionDenied, PortInUse, StackError
from xdpstack.procs import readline
from xdpstack.registry import Stack, claims_by_port_index

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root
NOBODY = 65534


@pytest.fixture
def tb(attached_bed):
    """The module's attached testbed, with this thread inside the dut namespace for the test, and a
    check that the test left no stack, claim or index entry behind."""
    bed, _ = attached_bed
    with in_ns(bed):
        yield bed
        registry.collect_stale(bed.dut.ifname)
        assert registry.list_claims(bed.dut.ifname) == []
        assert registry.list_stacks(bed.dut.ifname) == []
        with maps.open_map(bed.dut.ifname, "claims_by_port") as m:
            for fam in (4, 6):
                for proto in ("tcp", "udp"):
                    for port in (80, 4000, 7000, 7001, 7002, 7100, 8080, 9000):
                        v = m.get(claims_by_port_index(fam, proto, port))
                        assert v.claims == 0, (fam, proto, port)


def kernel_can_bind(proto: str, family: int, addr: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6,
                      socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    if family == 6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        s.bind((addr, port))
        return True
    except OSError as e:
        assert e.errno == errno.EADDRINUSE
        return False
    finally:
        s.close()


def index(ifname: str, family: int, proto: str, port: int):
    with maps.open_map(ifname, "claims_by_port") as m:
        return m.get(claims_by_port_index(family, proto, port))


def test_claim_writes_maps_and_release_frees_everything(tb):
    ifname = tb.dut.ifname
    with Stack.create(ifname, "echo", uid=NOBODY, gid=NOBODY, queues=2) as st:
        assert st.record.xsk_first_slot == st.id * registry.MAX_QUEUES and st.record.xsk_slots == 2
        cs = st.claim("udp", None, 7000)
        assert [str(c) for c in cs] == ["udp 0.0.0.0:7000", "udp [::]:7000"]
        got = {(c.proto, c.family, c.addr, c.port, c.stack) for c in registry.list_claims(ifname)}
        assert got == {("udp", 4, "0.0.0.0", 7000, st.id), ("udp", 6, "::", 7000, st.id)}
        for fam in (4, 6):
            v = index(ifname, fam, "udp", 7000)
            assert (v.claims, v.only.stack, v.only.target, bytes(v.addr)) == (1, st.id, registry.TARGET_XSK,
                                                                            bytes(16))
        # the kernel sees the reservations, held with the user's credentials
        assert not kernel_can_bind("udp", 4, "0.0.0.0", 7000)
        assert not kernel_can_bind("udp", 6, "::", 7000)
        assert all(os.fstat(c.sock.fileno()).st_uid == NOBODY for c in cs)     # created as the user
        assert {c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) for c in cs} == {socket.SOCK_DGRAM}
        cs.release()
        cs.release()                                                         # idempotent
        assert registry.list_claims(ifname) == []
        assert index(ifname, 4, "udp", 7000).claims == 0
        assert kernel_can_bind("udp", 4, "0.0.0.0", 7000) and kernel_can_bind("udp", 6, "::", 7000)
    assert registry.list_stacks(ifname) == []


def test_reservation_socket_belongs_to_the_claiming_user(tb):
    with Stack.create(tb.dut.ifname, "u", uid=NOBODY, gid=NOBODY) as st:
        st.claim("tcp", "198.18.0.1", 7001)
        out = subprocess.run(["ss", "-tan", "-e", "state", "bound-inactive"], capture_output=True, text=True,
                             timeout=20)
        if out.returncode != 0:                 # older ss: sock_diag through pyroute2
            holders = reservation.socket_holders("tcp", 7001)
            assert holders and holders[0][2] == NOBODY
        else:
            line = next(ln for ln in out.stdout.splitlines() if ":7001" in ln)
            assert f"uid:{NOBODY}" in line


def test_privileged_port_needs_the_privilege(tb):
    ifname = tb.dut.ifname
    with Stack.create(ifname, "nobody", uid=NOBODY, gid=NOBODY) as st:
        with pytest.raises(PermissionDenied, match=r"tcp 0\.0\.0\.0:80 for user nobody .*below 1024"):
            st.claim("tcp", None, 80)
        assert registry.list_claims(ifname) == []
        assert kernel_can_bind("tcp", 4, "0.0.0.0", 80)
    with Stack.create(ifname, "root", uid=0, gid=0) as st, st.claim("tcp", "0.0.0.0", 80):
        assert len(registry.list_claims(ifname)) == 1


def test_a_failed_claim_leaves_nothing(tb):
    """All or nothing: the 7100 reservations are undone when the privileged port fails."""
    ifname = tb.dut.ifname
    with Stack.create(ifname, "nobody", uid=NOBODY, gid=NOBODY) as st:
        with pytest.raises(PermissionDenied):
            st.claim_all([("udp", None, 7100), ("tcp", "198.18.0.1", 7100), ("tcp", None, 80)])
        assert registry.list_claims(ifname) == []
        assert index(ifname, 4, "udp", 7100).claims == 0
        assert kernel_can_bind("udp", 4, "0.0.0.0", 7100) and kernel_can_bind("tcp", 4, "198.18.0.1", 7100)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_port_held_by_the_kernel_names_the_holder(tb, proto):
    kind = "SOCK_STREAM" if proto == "tcp" else "SOCK_DGRAM"
    listen = "s.listen()" if proto == "tcp" else ""
    p = tb.track(tb.dut.popen([sys.executable, "-c", textwrap.dedent(f"""
        import socket, sys, time
        s = socket.socket(socket.AF_INET, socket.{kind}); s.bind(("198.18.0.1", 8080)); {listen}
        print("ready", flush=True); time.sleep(60)""")], stdout=subprocess.PIPE, text=True))
    assert readline(p.stdout, 10).strip() == "ready"
    pid = p.pid                                     # `ip netns exec` execs the command
    with Stack.create(tb.dut.ifname, "s", uid=0, gid=0) as st:
        holder = rf"in use by python\S* \(pid {pid}, user root, bound to 198\.18\.0\.1\)"
        with pytest.raises(PortInUse, match=holder):
            st.claim(proto, None, 8080)
        assert registry.list_claims(tb.dut.ifname) == []
    p.kill()
    p.wait()


def test_exact_and_wildcard_conflict_like_bind(tb):
    ifname = tb.dut.ifname
    tb.dut.run(f"ip addr replace 198.18.0.4/24 dev {ifname}")
    with Stack.create(ifname, "a", uid=0, gid=0) as a, Stack.create(ifname, "b", uid=0, gid=0) as b:
        # wildcard first, then an exact address on the same port: refused, naming the owner
        with a.claim("udp", "0.0.0.0", 9000):
            with pytest.raises(PortInUse, match=r"stack 'a' .* already claims udp 0\.0\.0\.0:9000"):
                b.claim("udp", "198.18.0.1", 9000)
            # the v6 wildcard is another tuple (IPV6_V6ONLY)
            with b.claim("udp", "::", 9000):
                assert index(ifname, 6, "udp", 9000).only.stack == b.id
            # TCP on the same port number is another tuple too
            with b.claim("tcp", "198.18.0.1", 9000):
                pass
        # exact first, then the wildcard: refused as well
        with a.claim("udp", "198.18.0.1", 9000):
            with pytest.raises(PortInUse, match="stack 'a'"):
                b.claim("udp", None, 9000)
            # two exact addresses on one port: both fine; the index counts two, then one again
            with b.claim("udp", "198.18.0.4", 9000):
                assert index(ifname, 4, "udp", 9000).claims == 2
            v = index(ifname, 4, "udp", 9000)
            assert (v.claims, v.only.stack, bytes(v.addr)[:4]) == (1, a.id, socket.inet_aton("198.18.0.1"))
        # the same exact tuple twice
        with a.claim("tcp", "2001:db8::1", 4000):
            with pytest.raises(PortInUse):
                b.claim("tcp", "2001:db8::1", 4000)
            with pytest.raises(PortInUse):
                a.claim("tcp", "2001:db8::1", 4000)


def test_index_keeps_the_remaining_claim_when_one_of_two_goes(tb):
    ifname = tb.dut.ifname
    tb.dut.run(f"ip addr replace 198.18.0.4/24 dev {ifname}")
    with Stack.create(ifname, "a", uid=0, gid=0) as a, Stack.create(ifname, "b", uid=0, gid=0) as b:
        ca = a.claim("tcp", "198.18.0.1", 7002)
        cb = b.claim("tcp", "198.18.0.4", 7002)
        assert index(ifname, 4, "tcp", 7002).claims == 2
        ca.release()
        v = index(ifname, 4, "tcp", 7002)
        assert (v.claims, v.only.stack, bytes(v.addr)[:4]) == (1, b.id, socket.inet_aton("198.18.0.4"))
        cb.release()
        assert index(ifname, 4, "tcp", 7002).claims == 0


def test_claim_needs_a_registered_stack(tb):
    with pytest.raises(StackError, match="not registered"):
        registry.claim(tb.dut.ifname, "udp", None, 7000, 200, 0, 0)
    with Stack.create(tb.dut.ifname, "x", uid=0, gid=0) as st, \
            pytest.raises(ClaimError, match="not an address of this host"):
        st.claim("udp", "198.51.100.7", 7000)


def test_udp_reservation_queues_nothing(tb):
    """Datagrams that reach the kernel for a claimed port (no AF_XDP socket yet: passed as
    orphaned) are dropped by the reservation socket's filter, not queued."""
    with Stack.create(tb.dut.ifname, "u", uid=0, gid=0) as st, st.claim("udp", "198.18.0.1", 7000) as cs:
        before = counters.snapshot(tb.dut.ifname).totals["pass_orphaned"]
        send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                f"[s.sendto(b'x', ('{tb.dut.addr4}', 7000)) for _ in range(3)]")
        tb.peer.run([sys.executable, "-c", send])
        time.sleep(0.2)
        sock = cs.claims[0].sock
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(10)
        assert counters.snapshot(tb.dut.ifname).totals["pass_orphaned"] - before == 3   # they did arrive


HOLDER = textwrap.dedent("""
    import os, sys, time
    from xdpstack import netlink, registry
    with netlink.netns(sys.argv[1]):
        st = registry.Stack.create(sys.argv[2], "other", uid=0, gid=0)
        st.claim("udp", None, 7000)
        print(st.id, flush=True)
        time.sleep(60)
""")


def test_two_processes_and_a_killed_owner(tb):
    """A claim held by another process blocks ours; when that process dies by SIGKILL (no clean-up
    of its own), its sockets die with it and the next mutation collects its map entries."""
    ifname = tb.dut.ifname
    p = subprocess.Popen([sys.executable, "-c", HOLDER, tb.dut.ns, ifname], stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        other = int(readline(p.stdout, 30))
        assert [s.pid for s in registry.list_stacks(ifname)] == [p.pid]
        with Stack.create(ifname, "mine", uid=0, gid=0) as st:
            assert st.id != other
            with pytest.raises(PortInUse, match=rf"stack 'other' \(id {other}, pid {p.pid}\)"):
                st.claim("udp", None, 7000)
            p.send_signal(signal.SIGKILL)
            p.wait()
            assert wait_until(lambda: kernel_can_bind("udp", 4, "0.0.0.0", 7000), 2)
            with st.claim("udp", None, 7000):
                assert {c.stack for c in registry.list_claims(ifname)} == {st.id}
                assert [s.name for s in registry.list_stacks(ifname)] == ["mine"]
    finally:
        p.kill()
        p.wait()


CLAIMER = textwrap.dedent("""
    import sys
    from xdpstack import netlink, registry
    with netlink.netns(sys.argv[1]):
        st = registry.Stack.create(sys.argv[2], "c" + sys.argv[3], uid=0, gid=0)
        base = int(sys.argv[3])
        sets = [st.claim("tcp", "198.18.0.1", base + i) for i in range(15)]
        for cs in sets[::2]:
            cs.release()
        print(len(registry.list_claims(sys.argv[2])), flush=True)
        sys.stdin.readline()
        st.close()
""")


def test_concurrent_claimers_serialize(tb):
    """Two processes claiming and releasing at once: the maps and the index end consistent."""
    ifname = tb.dut.ifname
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, tb.dut.ns, ifname, str(base)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for base in (20000, 21000)]
    try:
        for p in procs:
            readline(p.stdout, 30)
        claims = registry.list_claims(ifname)
        kept = sorted(b + i for b in (20000, 21000) for i in range(1, 15, 2))     # every other one released
        assert sorted(c.port for c in claims) == kept
        for c in claims:
            v = index(ifname, 4, "tcp", c.port)
            assert (v.claims, v.only.stack) == (1, c.stack)
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
            assert p.wait(timeout=20) == 0
        assert registry.list_claims(ifname) == [] and registry.list_stacks(ifname) == []
        assert all(index(ifname, 4, "tcp", b + i).claims == 0 for b in (20000, 21000) for i in range(15))
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_ephemeral_claim_for_an_active_open(tb):
    ifname = tb.dut.ifname
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = map(int, f.read().split())
    with Stack.create(ifname, "client", uid=NOBODY, gid=NOBODY) as st:
        for proto, fam, remote, local in (("tcp", 4, tb.peer.addr4, tb.dut.addr4),
                                          ("udp", 6, tb.peer.addr6, tb.dut.addr6)):
            cs = registry.claim_ephemeral(ifname, proto, fam, remote, st.record, NOBODY, NOBODY)
            (c,) = cs.claims
            assert (c.proto, c.family, c.addr) == (proto, fam, local) and lo <= c.port <= hi
            assert not kernel_can_bind(proto, fam, local, c.port)
            assert any((x.proto, x.port) == (proto, c.port) for x in registry.list_claims(ifname))
            v = index(ifname, fam, proto, c.port)
            assert (v.claims, v.only.stack) == (1, st.id)
            cs.release()
            assert kernel_can_bind(proto, fam, local, c.port)
        with pytest.raises(ClaimError, match="toward 203.0.113.9"):
            registry.claim_ephemeral(ifname, "tcp", 4, "203.0.113.9", st.record, 0, 0)   # no route


def test_stack_records_and_link_info(tb):
    from xdpstack import netlink
    ifname = tb.dut.ifname
    link = netlink.link_info(tb.dut.ifindex)
    assert (link.ifname, link.mac, link.mtu, link.kind) == (ifname, tb.dut.mac, 1500, "veth")
    assert {a.address for a in netlink.addresses(tb.dut.ifindex)} >= {tb.dut.addr4, tb.dut.addr6}
    with Stack.create(ifname, "a", uid=1, gid=1) as a, Stack.create(ifname, "b", uid=2, gid=2, queues=4) as b:
        assert (a.id, b.id) == (0, 1) and b.record.xsk_first_slot == registry.MAX_QUEUES
        rec = b.record
        rec.port_ifindex = 4242
        registry.update_stack(ifname, rec)
        assert [r.port_ifindex for r in registry.list_stacks(ifname)] == [0, 4242]
        a.close()
        with Stack.create(ifname, "c", uid=3, gid=3) as c:              # the lowest free id again
            assert c.id == 0
    with Stack.create(ifname, "x", uid=0, gid=0, queues=2) as st, socket.socket() as not_xsk:
        with pytest.raises(registry.UsageError, match="queues 0..1"):
            st.set_xsk(2, not_xsk.fileno())
        with pytest.raises(OSError):                 # only an AF_XDP socket goes into an XSKMAP
            st.set_xsk(1, not_xsk.fileno())
    with pytest.raises(registry.UsageError):
        registry.register_stack(ifname, "", uid=0)
    with pytest.raises(registry.UsageError):
        registry.register_stack(ifname, "q", uid=0, queues=registry.MAX_QUEUES + 1)


def test_release_after_detach_only_closes_the_sockets(module_bed, attached_bed):
    """Detach --force while claims are held: releasing later closes the sockets without error.
    (Runs last in this module: it detaches; the module fixture's teardown tolerates that.)"""
    bed, _ = attached_bed
    from xdpstack import loader
    with in_ns(bed):
        st = Stack.create(bed.dut.ifname, "late", uid=0, gid=0)
        cs = st.claim("udp", "198.18.0.1", 7000)
        loader.detach(bed.dut.ifname, force=True)
        assert not kernel_can_bind("udp", 4, "198.18.0.1", 7000)
        st.close()
        assert cs.released and kernel_can_bind("udp", 4, "198.18.0.1", 7000)
