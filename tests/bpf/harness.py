"""Drive the compiled xdpstack programs through BPF_PROG_TEST_RUN and observe what they decided.

A test-run only decides a redirect, it does not execute it, so the target is observed through
the counters the programs keep anyway: the global stats entry says which reason (redirected or
one pass_*), stack_stats says which stack; the XSK slot follows from the stack and the RX queue,
and tests leave other slots empty, so a wrong slot or target shows up as orphaned. Every run also checks
the counting rules: exactly one reason moves by one, bytes move by the frame length, passed and
passed_bytes move with every pass_* reason.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tests.bpf import reference as ref
from xdpstack import layout, testrun

LO_IFINDEX = 1                       # the host's lo: a devmap value that exists, never used to send
XSK, PORT = layout.CONST["XS_TARGET_XSK"], layout.CONST["XS_TARGET_PORT"]
INNER, OUTER = layout.CONST["XS_PORT_INNER"], layout.CONST["XS_PORT_OUTER"]
PASS_REASONS = [f for f, _ in layout.ffi.typeof("struct xs_stats").fields if f.startswith("pass_")]


@dataclass(frozen=True)
class QueueDevice:
    """A device with many RX queues in a private namespace: a test-run context names an RX queue
    only together with a device that has it."""
    netns: str          # path of the namespace
    ifindex: int
    queues: int


def ref_tuple(proto: str | int, addr: str | None, port: int, family: int | None = None) -> ref.Tuple:
    p = layout.PROTOS[proto] if isinstance(proto, str) else proto
    if addr is None:
        return ref.Tuple(p, family, port, ref.WILDCARD)
    ip = ipaddress.ip_address(addr)
    return ref.Tuple(p, ip.version, port, ip.packed.ljust(16, b"\0"))


class Harness:
    """The shared compiled object plus the reference's view of its maps. reset() empties both."""

    def __init__(self, obj: testrun.Compiled, qdev: QueueDevice | None = None):
        self.obj, self.qdev = obj, qdev
        self.state = ref.State()
        self._xsk: testrun.StubXsk | None = None
        self._local_keys: set[bytes] = set()

    # -- map state ------------------------------------------------------------------------------
    def set_claims(self, claims: dict[tuple, tuple[int, int]]) -> None:
        """{(proto, addr or None, port[, family]): (stack, target)}, into the maps and the reference."""
        self.obj.set_claims(claims)
        self.state.claims = {ref_tuple(*k): v for k, v in claims.items()}

    def set_slots(self, slots) -> None:
        """Exactly these XSK slots hold a (placeholder) socket."""
        if self._xsk is None:
            self._xsk = testrun.StubXsk()
        for s in self.state.xsk_slots - set(slots):
            self.obj.set_slot(s, None)
        for s in set(slots) - self.state.xsk_slots:
            self.obj.set_slot(s, self._xsk)
        self.state.xsk_slots = set(slots)

    def set_ports(self, stacks) -> None:
        """Exactly these stacks have a virtual port in the ports devmap."""
        for s in self.state.ports - set(stacks):
            self.obj.set_port(s, None)
        for s in set(stacks) - self.state.ports:
            self.obj.set_port(s, LO_IFINDEX)
        self.state.ports = set(stacks)

    def set_port_of(self, port_of: dict[int, tuple[int, int]]) -> None:
        """{ifindex: (stack, role)}"""
        t = self.obj.table("port_of")
        for i in self.state.port_of.keys() - port_of.keys():
            del t[t.Key(i)]
        for i, (stack, role) in port_of.items():
            v = t.Leaf()
            v.stack, v.role = stack, role
            t[t.Key(i)] = v
        self.state.port_of = dict(port_of)

    def set_local_addrs(self, addrs) -> None:
        t = self.obj.table("local_addrs")
        for kb in self._local_keys:
            del t[t.Key.from_buffer_copy(kb)]
        self._local_keys = set()
        self.state.local_addrs = set()
        for a in addrs:
            ip = ipaddress.ip_address(a)
            k = layout.ffi.new("struct xs_addr *", {"family": ip.version})
            layout.ffi.memmove(k.addr, ip.packed, len(ip.packed))
            kb = bytes(layout.ffi.buffer(k))
            t[t.Key.from_buffer_copy(kb)] = t.Leaf(1)
            self._local_keys.add(kb)
            self.state.local_addrs.add((ip.version, ip.packed.ljust(16, b"\0")))

    def set_nic(self, ifindex: int) -> None:
        t = self.obj.table("iface")
        v = t.Leaf()
        v.ifindex, v.xdp_mode = ifindex, 0
        t[t.Key(0)] = v
        self.state.nic_ifindex = ifindex

    def reset(self) -> None:
        self.set_claims({})
        self.set_slots(())
        self.set_ports(())
        self.set_port_of({})
        self.set_local_addrs(())
        self.set_nic(0)
        if self._xsk is not None:
            self._xsk.close()
            self._xsk = None

    # -- running --------------------------------------------------------------------------------
    def _stacks(self) -> set[int]:
        s = {c[0] for c in self.state.claims.values()} | {p[0] for p in self.state.port_of.values()}
        return {x for x in s if x < ref.MAX_STACKS} | {0}

    def _run(self, prog: str, frame: bytes, ifindex: int | None, rx_queue: int, **kw):
        """Run prog once; returns (retval, stats delta, {stack: stack_stats delta})."""
        stacks = sorted(self._stacks())
        before = self.obj.counters()
        sbefore = {s: self.obj.counters("stack_stats", s) for s in stacks}
        if ifindex is None and rx_queue == 0:
            r = testrun.run(self.obj.progs[prog], frame, **kw)
        else:
            q = self.qdev
            r = testrun.run(self.obj.progs[prog], frame, ifindex=ifindex or q.ifindex, rx_queue=rx_queue,
                            netns=q.netns if ifindex in (None, q.ifindex) else None, **kw)
        assert r.data == frame, "the programs never change a frame"
        after = self.obj.counters()
        delta = {k: after[k] - before[k] for k in after}
        sdelta = {}
        for s in stacks:
            a = self.obj.counters("stack_stats", s)
            d = {k: a[k] - sbefore[s][k] for k in a}
            if any(d.values()):
                sdelta[s] = d
        return r.retval, delta, sdelta

    def demux(self, frame: bytes, rx_queue: int = 0) -> ref.Verdict:
        """Run xdp_demux (on the queue device when rx_queue is not 0); the verdict as observed."""
        retval, d, sd = self._run("xdp_demux", frame, None, rx_queue)
        n = len(frame)
        moved = [k for k in ["redirected", *PASS_REASONS] if d[k]]
        assert len(moved) == 1 and d[moved[0]] == 1, f"exactly one reason counts a frame: {d}"
        reason = moved[0]
        if reason == "redirected":
            assert (d["redirected_bytes"], d["passed"], d["passed_bytes"]) == (n, 0, 0), d
            assert retval == ref.XDP_REDIRECT
        else:
            assert (d["redirected_bytes"], d["passed"], d["passed_bytes"]) == (0, 1, n), d
            assert retval == ref.XDP_PASS
        assert len(sd) <= 1, f"one stack's counters at most: {sd}"
        stack = next(iter(sd), None)
        if stack is not None:
            s = sd[stack]
            if reason == "redirected":
                assert s == {**dict.fromkeys(s, 0), "rx_packets": 1, "rx_bytes": n}, s
            else:
                assert reason == "pass_orphaned" and s == {**dict.fromkeys(s, 0), "orphaned": 1}, s
        return ref.Verdict(retval, reason, stack)

    def port(self, prog: str, frame: bytes, ifindex: int | None = None, rx_queue: int = 0,
             gso_segs: int = 0) -> ref.Verdict:
        """Run xdp_port_rx (XDP) or tc_port_tx (TC) as arriving on ifindex (default: the queue
        device); the verdict as observed (XDP_* or TC_ACT_*). gso_segs (TC): the frames the skb
        stands for, as GRO would have merged them; the guard counts each."""
        kw = {"gso_segs": gso_segs} if gso_segs else {}
        retval, d, sd = self._run(prog, frame, ifindex or self.qdev.ifindex, rx_queue, **kw)
        segs = gso_segs or 1
        assert not any(d.values()), f"the port programs leave the NIC's stats alone: {d}"
        assert len(sd) <= 1, sd
        tc = prog == "tc_port_tx"
        drop, redirect = (ref.TC_ACT_SHOT, ref.TC_ACT_REDIRECT) if tc else (ref.XDP_DROP, ref.XDP_REDIRECT)
        assert retval in (drop, redirect), f"{prog} drops or redirects, nothing else: {retval}"
        if not sd:
            assert not (tc and retval == redirect), "a frame the guard lets out is counted"
            reason, stack = {drop: "unconfigured", redirect: "delivered"}[retval], None
            if retval == redirect:
                p = self.state.port_of.get(ifindex or self.qdev.ifindex)
                stack = p[0]
        else:
            (stack, s), = sd.items()
            moved = {k: v for k, v in s.items() if v}
            if tc and retval == redirect:
                assert moved == {"tx_packets": segs, "tx_bytes": len(frame)}, moved
                reason = "tx"
            else:
                assert len(moved) == 1 and next(iter(moved.values())) == segs, moved
                reason = next(iter(moved))
                assert retval == drop, (retval, reason)
        return ref.Verdict(retval, reason, stack)


def tc_runnable(frame: bytes) -> bool:
    """Whether the kernel test-runs a TC program on frame: it refuses (EINVAL) a frame whose
    EtherType says IPv4 or IPv6 but which is shorter than that header. The guard denies such a
    frame as malformed; tests/e2e/test_port_guard.py sends one through a real port."""
    et = int.from_bytes(frame[12:14], "big")
    return len(frame) >= 14 + {0x0800: 20, 0x86DD: 40}.get(et, 0)


def same(observed: ref.Verdict, expected: ref.Verdict) -> bool:
    """Verdict, counter reason and stack agree (the slot is implied by stack and queue)."""
    return key(observed) == key(expected)


def key(v: ref.Verdict) -> tuple:
    return v.action, v.reason, v.stack
