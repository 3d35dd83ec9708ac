"""Claims of local 3-tuples, their reservation sockets, and the stack records beside the XSKMAP.

A stack owns a (protocol, local address, local port) only while it holds a kernel socket bound to
it, created with the credentials of the user the stack runs for. The kernel's port namespace stays
the authority: privileged ports, ports the kernel already uses, and exact-versus-wildcard overlaps
all behave as bind() does, because they *are* bind(). Reservation sockets are bound, never
listening (TCP) and drop whatever reaches them (UDP, a "ret 0" socket filter): while a claim holds,
the demux redirects the tuple's packets before the kernel sees them; if the owner's socket vanishes
the demux passes them, and the kernel answers as for a closed port.

Order keeps the invariants on every path: a claim binds first and writes the maps second; a release
removes the map entries first and closes the socket second. All mutations of the maps from any
process serialize on the namespace's flock (/run/xdpstack/netns-<inode>/lock, nsstate.locked): the
maps of an interface are per namespace, and so is the lock. A failed claim leaves nothing behind.

    with Stack.create("eth0", "echo", uid=1000, gid=1000) as st:     # record in `stacks`
        with st.claim("udp", None, 7000):                             # 0.0.0.0:7000 and [::]:7000
            ...                                                       # serve

The launcher keeps its Stack/ClaimSet objects (and so the sockets) for the stack's lifetime.
Records whose supervising pid is gone (a launcher killed with SIGKILL) are collected by the next
mutation on that interface: their sockets died with them, their map entries go then.
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from xdpstack import libbpf, netlink, nsstate, ports
from xdpstack.errors import ClaimError, PermissionDenied, PortInUse, StackError, UsageError
from xdpstack.layout import CONST, PROTO_NAMES, PROTOS, ffi, tuple_from_key, tuple_key
from xdpstack.maps import PinnedMap, open_map
from xdpstack.reservation import bind_as, drop_everything, socket_holders, user_name

TARGET_XSK = CONST["XS_TARGET_XSK"]
TARGET_PORT = CONST["XS_TARGET_PORT"]
# What status, stacks and top call a stack by its target: a port's egress guard checks every frame
# an isolated stack sends; a direct stack's sockets are on the NIC, which no guard sees.
MODES = {TARGET_PORT: "isolated", TARGET_XSK: "direct, unguarded"}
MAX_STACKS = CONST["XS_MAX_STACKS"]
MAX_QUEUES = CONST["XS_MAX_QUEUES"]
NAME_LEN = CONST["XS_NAME_LEN"]


def claims_by_port_index(family: int, proto: str | int, port: int) -> int:
    """Index into claims_by_port: (family == 6) * 131072 + (proto == UDP) * 65536 + port."""
    p = PROTOS[proto] if isinstance(proto, str) else proto
    return (family == 6) * 131072 + (p == socket.IPPROTO_UDP) * 65536 + port


# ---- the lock -----------------------------------------------------------------------------------

locked = nsstate.locked                    # the namespace's lock: every mutation of its maps holds it


# ---- records ------------------------------------------------------------------------------------

@dataclass
class StackRecord:
    """A stack's record in `stacks` (change a field, then update_stack() to write it back)."""

    id: int
    name: str
    pid: int
    uid: int
    xsk_first_slot: int
    xsk_slots: int
    port_ifindex: int
    target: int

    @classmethod
    def from_cdata(cls, stack_id: int, v) -> StackRecord:
        return cls(stack_id, ffi.string(v.name).decode(errors="replace"), v.pid, v.uid, v.xsk_first_slot,
                   v.xsk_slots, v.port_ifindex, v.target)

    def to_cdata(self):
        v = ffi.new("struct xs_stack *")
        name = self.name.encode()[:NAME_LEN - 1]
        ffi.memmove(v.name, name, len(name))
        v.pid, v.uid, v.xsk_first_slot, v.xsk_slots = self.pid, self.uid, self.xsk_first_slot, self.xsk_slots
        v.port_ifindex, v.target = self.port_ifindex, self.target
        return v

    @property
    def user(self) -> str:
        return user_name(self.uid)


@dataclass(frozen=True)
class ClaimInfo:
    """One entry of the claims map."""
    proto: str
    family: int
    addr: str           # "0.0.0.0" / "::" for the wildcard
    port: int
    stack: int
    target: int

    @property
    def wildcard(self) -> bool:
        return ipaddress.ip_address(self.addr).packed == bytes(4 if self.family == 4 else 16)

    def __str__(self) -> str:
        return tuple_text(self.proto, self.family, self.addr, self.port)


def tuple_text(proto: str, family: int, addr: str | None, port: int) -> str:
    a = addr or ("0.0.0.0" if family == 4 else "::")
    return f"{proto} {a}:{port}" if family == 4 else f"{proto} [{a}]:{port}"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Maps:
    """The pinned maps of one interface, opened on first use, closed together."""

    def __init__(self, ifname: str):
        self.ifname, self._open = ifname, {}

    def __getattr__(self, name: str) -> PinnedMap:
        if name.startswith("_"):
            raise AttributeError(name)
        m = self._open.get(name)
        if m is None:
            m = self._open[name] = open_map(self.ifname, name)
        return m

    def close(self):
        for m in self._open.values():
            m.close()
        self._open.clear()

    def __enter__(self) -> _Maps:
        return self

    def __exit__(self, *exc):
        self.close()


def _stacks(m: _Maps) -> dict[int, StackRecord]:
    return {k: StackRecord.from_cdata(k, v) for k, v in m.stacks.items()}


def _claims(m: _Maps) -> list[tuple[bytes, ClaimInfo]]:
    out = []
    for k in list(m.claims.keys_raw()):
        raw = m.claims.lookup_raw(k)
        if raw is None:
            continue
        key = ffi.new("struct xs_tuple *")
        ffi.memmove(key, k, len(k))
        val = ffi.new("struct xs_claim *")
        ffi.memmove(val, raw, len(raw))
        proto, addr, port = tuple_from_key(key)
        out.append((k, ClaimInfo(proto, key.family, addr, port, val.stack, val.target)))
    return out


def _index_change(m: _Maps, c: ClaimInfo, delta: int):
    """Keep claims_by_port in step with a claims entry just added (+1) or removed (-1): the number of
    claims on (family, proto, port) and, when it is exactly one, that claim itself, so the demux
    decides without a hash lookup."""
    i = claims_by_port_index(c.family, c.proto, c.port)
    cur = m.claims_by_port.get(i)
    new = ffi.new("struct xs_port_claims *")
    new.claims = max(0, (cur.claims if cur is not None else 0) + delta)
    if new.claims == 1:
        if delta > 0:
            only = c
        else:                                # the one left: find it (rare: a 2 -> 1 release)
            same = (c.family, c.proto, c.port)
            only = next((o for _, o in _claims(m) if (o.family, o.proto, o.port) == same), None)
        if only is not None:
            new.only.stack, new.only.target = only.stack, only.target
            raw = ipaddress.ip_address(only.addr).packed
            ffi.memmove(new.addr, raw, len(raw))
        else:                                # the count was off: trust the claims map
            new.claims = 0
    m.claims_by_port.update(i, new)


def _drop_stack_entries(m: _Maps, rec_id: int, rec: StackRecord | None):
    """Remove every map entry of stack rec_id (claims, XSK slots, port, record). Sockets are not ours
    to close here: they belong to the process holding them (or died with it)."""
    for k, c in _claims(m):
        if c.stack == rec_id and m.claims.delete(k):
            _index_change(m, c, -1)
    if rec is not None:
        for slot in range(rec.xsk_first_slot, rec.xsk_first_slot + rec.xsk_slots):
            with contextlib.suppress(OSError):
                m.xsks.delete(slot)
    with contextlib.suppress(OSError):
        m.ports.delete(rec_id)
    for k, v in list(m.port_of.items()):
        if v.stack == rec_id:
            m.port_of.delete(k)
    m.stacks.delete(rec_id)


def _collect(m: _Maps) -> list[StackRecord]:
    """Drop records (and their entries) whose supervising process is gone, and claims of no record."""
    gone = []
    recs = _stacks(m)
    for sid, rec in recs.items():
        if not pid_alive(rec.pid):
            _drop_stack_entries(m, sid, rec)
            if rec.port_ifindex:
                ports.delete_stale(rec.port_ifindex)
            gone.append(rec)
    for k, c in _claims(m):
        if c.stack not in recs and m.claims.delete(k):
            _index_change(m, c, -1)
    return gone


# ---- queries ------------------------------------------------------------------------------------

def list_stacks(ifname: str) -> list[StackRecord]:
    with _Maps(ifname) as m:
        return sorted(_stacks(m).values(), key=lambda r: r.id)


def list_claims(ifname: str) -> list[ClaimInfo]:
    with _Maps(ifname) as m:
        return sorted((c for _, c in _claims(m)), key=lambda c: (c.stack, c.proto, c.family, c.port, c.addr))


def collect_stale(ifname: str) -> list[StackRecord]:
    """Remove the records and entries of stacks whose supervising process has exited."""
    with locked(), _Maps(ifname) as m:
        return _collect(m)


# ---- stacks -------------------------------------------------------------------------------------

def register_stack(ifname: str, name: str, *, uid: int, pid: int | None = None, queues: int = 1,
                   port_ifindex: int = 0, target: int = TARGET_XSK) -> StackRecord:
    """Allocate the lowest free stack id on `ifname` and write its record; its per-stack counters
    start at zero. XSK slots stack*XS_MAX_QUEUES .. + queues-1 are the stack's."""
    bname = name.encode()
    if not name or len(bname) >= NAME_LEN or b"\0" in bname:
        raise UsageError(f"stack name {name!r} must be 1..{NAME_LEN - 1} bytes")
    if not 1 <= queues <= MAX_QUEUES:
        raise UsageError(f"a stack has 1..{MAX_QUEUES} queues, not {queues}")
    if target not in (TARGET_XSK, TARGET_PORT):
        raise UsageError(f"target must be TARGET_XSK or TARGET_PORT, not {target}")
    with locked(), _Maps(ifname) as m:
        _collect(m)
        used = set(_stacks(m))
        free = next((i for i in range(MAX_STACKS) if i not in used), None)
        if free is None:
            raise StackError(f"{ifname} already has {MAX_STACKS} stacks: stop one first")
        rec = StackRecord(free, name, os.getpid() if pid is None else pid, uid, free * MAX_QUEUES, queues,
                          port_ifindex, target)
        m.stack_stats.update(free, bytes(ffi.sizeof("struct xs_stack_stats")))
        m.stacks.update(free, rec.to_cdata(), libbpf.BPF_NOEXIST)
        return rec


def update_stack(ifname: str, rec: StackRecord) -> None:
    """Rewrite an existing record (e.g. its port_ifindex once the virtual port exists)."""
    with locked(), _Maps(ifname) as m:
        m.stacks.update(rec.id, rec.to_cdata(), libbpf.BPF_EXIST)


def unregister_stack(ifname: str, stack_id: int) -> None:
    """Remove the record and every map entry of the stack. Release its ClaimSets first (this drops
    any claim entries left, but only a ClaimSet can close its reservation sockets)."""
    with locked(), _Maps(ifname) as m:
        recs = _stacks(m)
        _drop_stack_entries(m, stack_id, recs.get(stack_id))


def set_xsk(ifname: str, stack: int | StackRecord, queue: int, sock_fd: int) -> None:
    """Put the stack's AF_XDP socket for RX queue `queue` into its XSK slot. Only the process that
    owns the socket can do this; closing the socket removes it from the map again."""
    rec = stack if isinstance(stack, StackRecord) else _record(ifname, stack)
    if not 0 <= queue < rec.xsk_slots:
        raise UsageError(f"stack {rec.name!r} has queues 0..{rec.xsk_slots - 1}, not {queue}")
    with open_map(ifname, "xsks") as xsks:
        xsks.update(rec.xsk_first_slot + queue, sock_fd)


def _record(ifname: str, stack_id: int) -> StackRecord:
    with _Maps(ifname) as m:
        v = m.stacks.get(stack_id)
    if v is None:
        raise StackError(f"stack {stack_id} is not registered on {ifname}: register_stack() first")
    return StackRecord.from_cdata(stack_id, v)


def _explain_in_use(m: _Maps, proto: str, family: int, addr: str | None, port: int) -> str:
    what = tuple_text(proto, family, addr, port)
    recs = _stacks(m)
    for _, c in _claims(m):
        if c.proto == proto and c.port == port and c.family == family:
            r = recs.get(c.stack)
            owner = f"stack {r.name!r} (id {r.id}, pid {r.pid})" if r else f"stack {c.stack}"
            return (f"cannot claim {what}: {owner} already claims {c}; "
                    "stop that stack or choose another port")
    holders = socket_holders(proto, port)
    pids = {r.pid: r for r in recs.values()}
    for pid, *_ in holders:
        if pid in pids:
            return (f"cannot claim {what}: the port is held by stack {pids[pid].name!r} (pid {pid}); "
                    "stop that stack or choose another port")
    if holders:
        desc = ", ".join(f"{comm or '?'} (pid {pid}, user {user_name(uid)}, bound to {src})" if pid
                         else f"a socket of user {user_name(uid)} bound to {src}"
                         for pid, comm, uid, src in holders)
        return f"cannot claim {what}: the port is in use by {desc}; stop it or choose another port"
    return f"cannot claim {what}: the port is in use (its holder could not be found); choose another port"


# ---- claims -------------------------------------------------------------------------------------

@dataclass(eq=False)
class Claim:
    """One claimed 3-tuple and the reservation socket that holds it."""
    ifname: str
    proto: str
    family: int
    addr: str | None              # None: the wildcard of `family`
    port: int
    stack: int
    target: int
    sock: socket.socket | None = field(default=None, repr=False)
    map_id: int = 0               # id of the claims map the entry went into

    def key(self) -> bytes:
        return bytes(ffi.buffer(tuple_key(self.proto, self.addr, self.port, self.family)))

    def info(self) -> ClaimInfo:
        addr = self.addr or ("0.0.0.0" if self.family == 4 else "::")
        return ClaimInfo(self.proto, self.family, addr, self.port, self.stack, self.target)

    @property
    def released(self) -> bool:
        return self.sock is None

    def release(self) -> None:
        release([self])

    def __str__(self) -> str:
        return tuple_text(self.proto, self.family, self.addr, self.port)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc):
        self.release()


class ClaimSet:
    """Claims made together and released together (release is idempotent)."""

    def __init__(self, claims: Iterable[Claim] = ()):
        self.claims: list[Claim] = list(claims)

    def release(self) -> None:
        release(self.claims)

    def add(self, other: Claim | ClaimSet | Iterable[Claim]) -> None:
        """Take over claims made elsewhere (they are then released with this set)."""
        self.claims += [other] if isinstance(other, Claim) else list(other)

    @property
    def released(self) -> bool:
        return all(c.released for c in self.claims)

    def __iter__(self) -> Iterator[Claim]:
        return iter(self.claims)

    def __len__(self) -> int:
        return len(self.claims)

    def __str__(self) -> str:
        return ", ".join(map(str, self.claims))

    def __enter__(self) -> ClaimSet:
        return self

    def __exit__(self, *exc):
        self.release()


TupleSpec = tuple[str, "str | None", int]


def _expand(proto: str, addr: str | None, port: int) -> list[tuple[str, int, str | None, int]]:
    """(proto, family, addr or None, port) tuples; addr None is both wildcards, "0.0.0.0"/"::" one."""
    proto = proto.lower() if isinstance(proto, str) else PROTO_NAMES.get(proto, "")
    if proto not in PROTOS:
        raise UsageError(f"protocol must be tcp or udp, not {proto!r}")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"port must be 1..65535, not {port!r}")
    if addr is None:
        return [(proto, 4, None, port), (proto, 6, None, port)]
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise UsageError(f"{addr!r} is not an IPv4 or IPv6 address") from None
    if ip.is_unspecified:
        return [(proto, ip.version, None, port)]
    if ip.version == 6 and ip.ipv4_mapped:
        raise UsageError(f"{addr}: claim the IPv4 address {ip.ipv4_mapped} instead of its mapped form")
    return [(proto, ip.version, str(ip), port)]


def claim(ifname: str, proto: str, addr: str | None, port: int, stack: int | StackRecord, uid: int, gid: int,
          target: int | None = None) -> ClaimSet:
    """Claim one tuple for a registered stack: addr None claims 0.0.0.0 and [::] (two tuples),
    "0.0.0.0" or "::" one wildcard, anything else that exact address. uid/gid: whose bind() decides."""
    return claim_all(ifname, [(proto, addr, port)], stack, uid, gid, target)


def claim_all(ifname: str, tuples: Iterable[TupleSpec], stack: int | StackRecord, uid: int, gid: int,
              target: int | None = None) -> ClaimSet:
    """Claim several tuples at once: all of them, or (raising ClaimError) none."""
    want = [t for spec in tuples for t in _expand(*spec)]
    if not want:
        raise UsageError("nothing to claim")
    return _claim(ifname, want, stack, uid, gid, target)


def claim_ephemeral(ifname: str, proto: str, family: int, remote: str | None, stack: int | StackRecord,
                    uid: int, gid: int, target: int | None = None) -> ClaimSet:
    """Claim a port the kernel picks (bind to port 0: net.ipv4.ip_local_port_range) on the local
    address the kernel would use toward `remote`: the local end of an active open; with no remote
    (a UDP bind to port 0), on the wildcard address of `family`. The ClaimSet holds one Claim; its
    addr and port say what was chosen."""
    if proto not in PROTOS:
        raise UsageError(f"protocol must be tcp or udp, not {proto!r}")
    if family not in (4, 6):
        raise UsageError(f"family must be 4 or 6, not {family!r}")
    if remote is None:
        return _claim(ifname, [(proto, family, None, 0)], stack, uid, gid, target)
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        try:
            s.connect((remote, 9))                 # a UDP connect only asks the routing table
        except OSError as e:
            raise ClaimError(f"cannot claim a local {proto} port toward {remote}: {e.strerror}") from None
        src = s.getsockname()[0]
    return _claim(ifname, [(proto, family, src, 0)], stack, uid, gid, target)


def _claim(ifname: str, want: list[tuple[str, int, str | None, int]], stack: int | StackRecord, uid: int,
           gid: int, target: int | None) -> ClaimSet:
    """Bind every tuple (port 0: the kernel picks one), then write the maps; undo all on failure."""
    stack_id = stack.id if isinstance(stack, StackRecord) else stack
    made: list[Claim] = []
    with locked(), _Maps(ifname) as m:
        _collect(m)
        v = m.stacks.get(stack_id)
        if v is None:
            raise StackError(f"stack {stack_id} is not registered on {ifname}: register_stack() first")
        rec = StackRecord.from_cdata(stack_id, v)
        tgt = rec.target if target is None else target
        map_id = m.claims.id
        try:
            for proto, family, addr, port in want:          # kernel first: bind() decides
                c = Claim(ifname, proto, family, addr, port, stack_id, tgt, map_id=map_id)
                try:
                    c.sock = bind_as(proto, family, addr, port, uid, gid)
                except OSError as e:
                    raise _claim_error(m, e, c, uid) from None
                made.append(c)
                if port == 0:
                    c.port = c.sock.getsockname()[1]
                if proto == "udp":
                    drop_everything(c.sock)
            value = ffi.new("struct xs_claim *", {"stack": stack_id, "target": tgt})
            inserted = []
            try:
                for c in made:                               # then the maps
                    try:
                        m.claims.update(c.key(), value, libbpf.BPF_NOEXIST)
                    except OSError as e:
                        if e.errno == errno.EEXIST:
                            raise ClaimError(f"cannot claim {c}: the claims map already has it (a stale "
                                             "entry): run `xdpstack status` to see its owner") from None
                        if e.errno == errno.E2BIG:
                            raise ClaimError(f"cannot claim {c}: {ifname}'s claims map is full") from None
                        raise
                    inserted.append(c)
                    _index_change(m, c.info(), +1)
            except BaseException:
                for c in inserted:
                    if m.claims.delete(c.key()):
                        _index_change(m, c.info(), -1)
                raise
        except BaseException:
            for c in made:
                c.sock.close()
                c.sock = None
            raise
    return ClaimSet(made)


def _claim_error(m: _Maps, e: OSError, c: Claim, uid: int) -> ClaimError:
    what = str(c)
    user = f"user {user_name(uid)} (uid {uid})"
    if e.errno == errno.EACCES:
        start = _unprivileged_port_start()
        return PermissionDenied(
            f"cannot claim {what} for {user}: ports below {start} (net.ipv4.ip_unprivileged_port_start) "
            "need CAP_NET_BIND_SERVICE; choose a higher port or run as a user allowed to bind it")
    if e.errno == errno.EADDRINUSE:
        return PortInUse(_explain_in_use(m, c.proto, c.family, c.addr, c.port))
    if e.errno == errno.EADDRNOTAVAIL:
        return ClaimError(f"cannot claim {what}: {c.addr} is not an address of this host "
                          "(in this network namespace); check `ip addr`")
    if e.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        return ClaimError(f"cannot claim {what}: IPv{c.family} is not available here")
    return ClaimError(f"cannot claim {what} for {user}: bind failed: {e.strerror}")


def _unprivileged_port_start() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
    except (OSError, ValueError):
        return 1024


def release(claims: Claim | ClaimSet | Iterable[Claim]) -> None:
    """Remove the claims' map entries, then close their sockets. Idempotent; tolerates an interface
    that was detached meanwhile (then only the sockets are closed). Called from another network
    namespace it only closes the sockets: the maps there have another id (Stack.close goes home)."""
    if isinstance(claims, Claim):
        claims = [claims]
    todo = [c for c in claims if not c.released]
    if not todo:
        return
    try:
        by_if: dict[str, list[Claim]] = {}
        for c in todo:
            by_if.setdefault(c.ifname, []).append(c)
        with locked():
            for ifname, cs in by_if.items():
                try:
                    m = _Maps(ifname)
                    claims_map = m.claims
                except Exception:            # detached: the maps are gone, nothing to remove
                    continue
                with m:
                    if claims_map.id != cs[0].map_id:
                        continue             # re-attached since: these entries are not ours
                    for c in cs:
                        k = c.key()
                        v = claims_map.get(k)
                        if v is not None and v.stack == c.stack and claims_map.delete(k):
                            _index_change(m, c.info(), -1)
    finally:
        for c in todo:                       # the socket goes last: the tuple is free only now
            if c.sock is not None:
                c.sock.close()
                c.sock = None


# ---- a stack and its claims ---------------------------------------------------------------------

class Stack:
    """A registered stack with the claims made through it: close() releases them all and removes
    the record. The launcher keeps one per application for the application's lifetime.

    The stack belongs to the network namespace it was created in (its maps are that namespace's):
    it keeps that namespace open and goes back into it for claims and close(), from whatever
    namespace the calling thread is in then. A bare unregister_stack() there would reach the maps
    of that namespace's interface of the same name, which are not this stack's."""

    def __init__(self, ifname: str, record: StackRecord, uid: int, gid: int):
        self.ifname, self.record, self.uid, self.gid = ifname, record, uid, gid
        self.claimsets: list[ClaimSet] = []
        self.closed = False
        self._netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def _home(self) -> Iterator[None]:
        """Run the block in the stack's namespace (setns only when the thread is elsewhere)."""
        if os.fstat(self._netns).st_ino == os.stat("/proc/thread-self/ns/net").st_ino:
            yield
        else:
            with netlink.netns(f"/proc/self/fd/{self._netns}"):
                yield

    @classmethod
    def create(cls, ifname: str, name: str, *, uid: int, gid: int, pid: int | None = None, queues: int = 1,
               port_ifindex: int = 0, target: int = TARGET_XSK) -> Stack:
        rec = register_stack(ifname, name, uid=uid, pid=pid, queues=queues, port_ifindex=port_ifindex,
                             target=target)
        return cls(ifname, rec, uid, gid)

    @property
    def id(self) -> int:
        return self.record.id

    def claim(self, proto: str, addr: str | None, port: int) -> ClaimSet:
        return self.claim_all([(proto, addr, port)])

    def claim_all(self, tuples: Iterable[TupleSpec]) -> ClaimSet:
        with self._home():
            cs = claim_all(self.ifname, tuples, self.record, self.uid, self.gid)
        self.claimsets.append(cs)
        return cs

    def set_xsk(self, queue: int, sock_fd: int) -> None:
        with self._home():
            set_xsk(self.ifname, self.record, queue, sock_fd)

    def close(self) -> None:
        if self.closed:
            return
        try:
            with self._home():
                try:
                    release([c for cs in self.claimsets for c in cs])
                finally:
                    self.closed = True
                    with contextlib.suppress(Exception):
                        unregister_stack(self.ifname, self.id)
        finally:
            self.closed = True
            os.close(self._netns)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc):
        self.close()


def parse_tuple(spec: str) -> TupleSpec:
    """"udp:7000", "tcp:198.18.0.1:80", "udp:[2001:db8::1]:53", "tcp:0.0.0.0:80" -> (proto, addr, port)."""
    proto, sep, rest = spec.partition(":")
    if not sep:
        raise UsageError(f"{spec!r}: expected PROTO:[ADDR:]PORT, e.g. udp:7000 or tcp:[::1]:80")
    addr = None
    if rest.startswith("["):
        a, _, p = rest[1:].partition("]:")
        addr, rest = a, p
    elif rest.count(":") == 1:
        addr, _, rest = rest.partition(":")
    try:
        port = int(rest)
    except ValueError:
        raise UsageError(f"{spec!r}: {rest!r} is not a port number") from None
    _expand(proto, addr, port)               # validates
    return proto.lower(), addr, port
