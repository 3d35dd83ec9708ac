"""BPF_PROG_TEST_RUN for XDP and TC programs, and the compiled xdpstack object for tests and
benchmarks.

`run(prog_fd, frame)` executes a loaded XDP or TC (SCHED_CLS) program on a crafted frame through
libbpf's `bpf_prog_test_run_opts` (ctypes on libbpf.so.1) and returns (retval, duration_ns,
data_out). A redirect is only decided there, not executed: retval is XDP_REDIRECT, or
TC_ACT_REDIRECT for TC. A TC program gets the frame as the data of an skb (from its Ethernet
header, as at clsact ingress), on device `ifindex`. With `live=True` (XDP only,
BPF_F_TEST_XDP_LIVE_FRAMES) the kernel executes the verdicts for real on the device `ifindex`,
which makes it a packet generator.

The ifindex is looked up in the calling thread's network namespace: `netns=` enters a namespace
(a path such as /run/netns/NAME) for the call only, on this thread.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from xdpstack import layout, libbpf
from xdpstack.layout import BPF_DIR

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
ACTIONS = {XDP_ABORTED: "XDP_ABORTED", XDP_DROP: "XDP_DROP", XDP_PASS: "XDP_PASS", XDP_TX: "XDP_TX",
           XDP_REDIRECT: "XDP_REDIRECT"}
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
BPF_F_TEST_XDP_LIVE_FRAMES = 2
BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP = 3, 6
CLONE_NEWNET = 0x40000000
PROGRAMS = {"xdp_demux": "xdp", "xdp_port_rx": "xdp", "tc_port_tx": "sched_cls"}   # name -> type
SOURCE = BPF_DIR / "xdpstack.bpf.c"


class _Opts(ctypes.Structure):
    """struct bpf_test_run_opts (libbpf 1.x)."""
    _fields_ = [("sz", ctypes.c_size_t),
                ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


class XdpMd(ctypes.Structure):
    """struct xdp_md, the XDP context: data offsets, ingress device and RX queue."""
    _fields_ = [("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32), ("data_meta", ctypes.c_uint32),
                ("ingress_ifindex", ctypes.c_uint32), ("rx_queue_index", ctypes.c_uint32),
                ("egress_ifindex", ctypes.c_uint32)]


class SkBuff(ctypes.Structure):
    """The start of struct __sk_buff, the TC context, up to gso_segs: a test-run takes mark,
    priority, ingress_ifindex, ifindex (the device, which must exist), cb, tstamp, wire_len and
    gso_segs from it; everything else must stay zero."""
    _u32, _u64 = ctypes.c_uint32, ctypes.c_uint64
    _fields_ = [("len", _u32), ("pkt_type", _u32), ("mark", _u32), ("queue_mapping", _u32),
                ("protocol", _u32), ("vlan_present", _u32), ("vlan_tci", _u32), ("vlan_proto", _u32),
                ("priority", _u32), ("ingress_ifindex", _u32), ("ifindex", _u32), ("tc_index", _u32),
                ("cb", _u32 * 5), ("hash", _u32), ("tc_classid", _u32), ("data", _u32), ("data_end", _u32),
                ("napi_id", _u32), ("family", _u32), ("remote_ip4", _u32), ("local_ip4", _u32),
                ("remote_ip6", _u32 * 4), ("local_ip6", _u32 * 4), ("remote_port", _u32),
                ("local_port", _u32), ("data_meta", _u32), ("flow_keys", _u64), ("tstamp", _u64),
                ("wire_len", _u32), ("gso_segs", _u32)]


class _LoadOpts(ctypes.Structure):
    """The start of struct bpf_prog_load_opts; libbpf accepts a shorter sz (the rest is zero)."""
    _fields_ = [("sz", ctypes.c_size_t), ("attempts", ctypes.c_int), ("expected_attach_type", ctypes.c_int),
                ("prog_btf_fd", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_ifindex", ctypes.c_uint32), ("kern_version", ctypes.c_uint32)]


_libbpf = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
_libbpf.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_Opts)]
_libbpf.bpf_prog_test_run_opts.restype = ctypes.c_int
_libbpf.bpf_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                  ctypes.c_size_t, ctypes.POINTER(_LoadOpts)]
_libbpf.bpf_prog_load.restype = ctypes.c_int
_libc = ctypes.CDLL(None, use_errno=True)


class Result(NamedTuple):
    retval: int            # the program's verdict (XDP_*)
    duration_ns: int       # kernel-measured average per repetition, whole ns
    data: bytes            # the frame after the program, its metadata in front (b"" in live mode)


@contextlib.contextmanager
def in_netns(path: str | os.PathLike | None):
    """Run the body with this thread in the network namespace at path (no-op for None)."""
    if path is None:
        yield
        return
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET) != 0:    # never leave a thread in the wrong namespace
                os._exit(70)
    finally:
        os.close(target)
        os.close(back)


def prog_type(prog_fd: int) -> int | None:
    """BPF_PROG_TYPE_* of a loaded program (None for an fd that is none: the test-run says why)."""
    try:
        return libbpf.prog_info(prog_fd).type
    except OSError:
        return None


def run(prog_fd: int, frame: bytes, repeat: int = 1, *, ifindex: int = 0, rx_queue: int = 0,
        live: bool = False, batch_size: int = 0, netns: str | os.PathLike | None = None,
        gso_segs: int = 0, meta: bytes = b"") -> Result:
    """Run an XDP or TC program on frame `repeat` times. ifindex/rx_queue fill the context (a
    queue needs its device; TC has no RX queue); live executes an XDP program's verdicts on that
    device (ifindex required). gso_segs (TC): the segments the skb stands for, as after GRO.
    meta (XDP): metadata in front of the frame (data_meta .. data), a multiple of 4 bytes. The
    result's data is the frame after the program with the metadata it then has in front."""
    if live and not ifindex:
        raise ValueError("live frames need the ifindex of the device they enter on")
    if prog_type(prog_fd) == BPF_PROG_TYPE_SCHED_CLS:
        if live or rx_queue or batch_size or meta:
            raise ValueError("a TC program's test-run takes no live frames, RX queue or metadata")
        return _run_skb(prog_fd, frame, repeat, ifindex, netns, gso_segs)
    if gso_segs:
        raise ValueError("gso_segs is for TC programs")
    if len(meta) % 4:
        raise ValueError("XDP metadata is a multiple of 4 bytes")
    data = bytes(meta) + bytes(frame)
    buf_in = ctypes.create_string_buffer(data, len(data))
    opts = _Opts(sz=ctypes.sizeof(_Opts), data_in=ctypes.addressof(buf_in), data_size_in=len(data),
                 repeat=repeat)
    buf_out = None
    if live:
        opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES
        opts.batch_size = batch_size
    else:
        buf_out = ctypes.create_string_buffer(len(data) + 4096)   # room for bpf_xdp_adjust_tail
        opts.data_out = ctypes.addressof(buf_out)
        opts.data_size_out = len(buf_out)
    if ifindex or rx_queue or live or meta:
        # data is where the frame starts after the metadata; data_meta must be 0
        ctx = XdpMd(data=len(meta), data_end=len(data), ingress_ifindex=ifindex, rx_queue_index=rx_queue)
        opts.ctx_in = ctypes.addressof(ctx)
        opts.ctx_size_in = ctypes.sizeof(ctx)
    _test_run(prog_fd, opts, netns)
    out = b"" if buf_out is None else buf_out.raw[:opts.data_size_out]
    return Result(opts.retval, opts.duration, out)


def _test_run(prog_fd: int, opts, netns) -> None:
    """bpf_prog_test_run_opts in netns (None: this one); OSError with the errno on failure."""
    with in_netns(netns):
        rc = _libbpf.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if rc != 0:
        err = -rc if rc < 0 else ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")


def _run_skb(prog_fd: int, frame: bytes, repeat: int, ifindex: int, netns, gso_segs: int) -> Result:
    buf_in = ctypes.create_string_buffer(bytes(frame), len(frame))
    buf_out = ctypes.create_string_buffer(len(frame) + 4096)
    opts = _Opts(sz=ctypes.sizeof(_Opts), data_in=ctypes.addressof(buf_in), data_size_in=len(frame),
                 data_out=ctypes.addressof(buf_out), data_size_out=len(buf_out), repeat=repeat)
    # arrived on, and is at, ifindex (as at clsact ingress)
    ctx = SkBuff(ifindex=ifindex, ingress_ifindex=ifindex, gso_segs=gso_segs)
    if ifindex or gso_segs:
        opts.ctx_in = ctypes.addressof(ctx)
        opts.ctx_size_in = ctypes.sizeof(ctx)
    _test_run(prog_fd, opts, netns)
    return Result(opts.retval, opts.duration, buf_out.raw[:opts.data_size_out])


def load_trivial(action: int = XDP_PASS, name: str = "xdp_trivial") -> int:
    """Load `return action;` as an XDP program (no compiler involved); returns its fd."""
    insns = bytes([0xb7, 0, 0, 0]) + action.to_bytes(4, "little") + bytes([0x95] + [0] * 7)
    buf = ctypes.create_string_buffer(insns, len(insns))
    opts = _LoadOpts(sz=ctypes.sizeof(_LoadOpts))
    fd = _libbpf.bpf_prog_load(BPF_PROG_TYPE_XDP, name.encode(), b"GPL", ctypes.addressof(buf), 2,
                               ctypes.byref(opts))
    if fd < 0:
        raise OSError(-fd, f"loading {name}: {os.strerror(-fd)}")
    return fd


@dataclass
class Compiled:
    """One compiled xdpstack object: its bcc module (maps: table("claims"), ...) and program fds,
    with helpers that write claims the way the control plane must (claims plus the
    claims_by_port index) and read the per-CPU counters back, summed over CPUs."""
    bpf: object
    progs: dict[str, int] = field(default_factory=dict)
    _claims: dict = field(default_factory=dict)        # xs_tuple bytes -> (stack, target)

    def table(self, name: str):
        """The bcc table of a map (claims, xsks, stats, ...)."""
        return self.bpf[name.encode()]

    # -- claims ---------------------------------------------------------------------------------
    def set_claims(self, claims: dict[tuple, tuple[int, int]]) -> None:
        """Replace the claim set. Keys: (proto, addr or None, port[, family]) as in
        layout.tuple_key; values: (stack, target)."""
        new = {}
        for k, (stack, target) in claims.items():
            proto, addr, port, *fam = k
            new[_key_bytes(layout.tuple_key(proto, addr, port, *fam))] = (stack, target)
        t = self.table("claims")
        for kb in self._claims.keys() - new.keys():
            del t[t.Key.from_buffer_copy(kb)]
        for kb, (stack, target) in new.items():
            if self._claims.get(kb) != (stack, target):
                v = layout.ffi.new("struct xs_claim *", {"stack": stack, "target": target})
                t[t.Key.from_buffer_copy(kb)] = t.Leaf.from_buffer_copy(_key_bytes(v))
        touched = {port_index(kb) for kb in self._claims.keys() ^ new.keys()}
        touched |= {port_index(kb) for kb in new.keys() & self._claims.keys() if new[kb] != self._claims[kb]}
        self._claims = new
        by_port: dict[int, list] = {}
        for kb, v in new.items():
            by_port.setdefault(port_index(kb), []).append((kb, v))
        idx = self.table("claims_by_port")
        for i in touched:
            idx[idx.Key(i)] = idx.Leaf.from_buffer_copy(_key_bytes(port_entry(by_port.get(i, []))))

    def set_slot(self, slot: int, sock) -> None:
        """Put a socket (anything with fileno(), e.g. StubXsk) into xsks[slot]; None empties it."""
        t = self.table("xsks")
        if sock is None:
            with contextlib.suppress(KeyError):
                del t[t.Key(slot)]
        else:
            t[t.Key(slot)] = t.Leaf(sock.fileno())

    def set_port(self, stack: int, ifindex: int | None) -> None:
        """ports[stack] = ifindex (a device in the caller's namespace); None empties the slot."""
        t = self.table("ports")
        if ifindex is None:
            with contextlib.suppress(KeyError):
                del t[t.Key(stack)]
        else:
            t[t.Key(stack)] = t.Leaf(ifindex)

    # -- counters -------------------------------------------------------------------------------
    def counters(self, map_name: str = "stats", key: int = 0) -> dict[str, int]:
        """A per-CPU map entry (stats, stack_stats), each field summed over all CPUs."""
        t = self.table(map_name)
        ctype = {"stats": "struct xs_stats", "stack_stats": "struct xs_stack_stats"}[map_name]
        names = [f for f, _ in layout.ffi.typeof(ctype).fields]
        out = dict.fromkeys(names, 0)
        for v in t[t.Key(key)]:
            c = layout.ffi.from_buffer(ctype + " *", bytearray(bytes(v)))
            for n in names:
                out[n] += getattr(c, n)
        return out

    def close(self):
        self.bpf.cleanup()


def _key_bytes(cdata) -> bytes:
    return bytes(layout.ffi.buffer(cdata))


def port_entry(on_port: list[tuple[bytes, tuple[int, int]]]):
    """The claims_by_port entry for the claims [(xs_tuple bytes, (stack, target))] of one
    (family, proto, port): their number, and the claim itself when it is the only one."""
    entry = layout.ffi.new("struct xs_port_claims *")
    entry.claims = len(on_port)
    if len(on_port) == 1:
        (kb, (stack, target)), = on_port
        entry.only.stack, entry.only.target = stack, target
        layout.ffi.memmove(entry.addr, kb[4:20], 16)
    return entry


def port_index(key) -> int:
    """claims_by_port index of a struct xs_tuple (cdata or its bytes)."""
    if not isinstance(key, bytes | bytearray):
        key = _key_bytes(key)
    proto, family, port = key[0], key[1], int.from_bytes(key[2:4], "little")
    return (family == layout.CONST["XS_FAMILY_V6"]) * 131072 + (proto == 17) * 65536 + port


def compile_object(cflags: tuple[str, ...] | list[str] = ()) -> Compiled:
    """Compile bpf/xdpstack.bpf.c with bcc (about 2 s and 210 MB) and load its three programs.
    Nothing is attached or pinned: the maps are private to the returned object."""
    from bcc import BPF
    b = BPF(src_file=str(SOURCE).encode(), cflags=[f"-I{BPF_DIR}", "-Wall", *cflags])
    types = {"xdp": BPF.XDP, "sched_cls": BPF.SCHED_CLS}
    return Compiled(b, {name: b.load_func(name.encode(), types[t]).fd for name, t in PROGRAMS.items()})


def source_files() -> list[Path]:
    """The files the object is built from."""
    return sorted(BPF_DIR.glob("*.[ch]"))


class StubXsk:
    """An AF_XDP socket with a UMEM and RX/fill/completion rings, bound to no device: enough to
    occupy an XSKMAP slot, so that under test-run a redirect to that slot returns XDP_REDIRECT
    (an empty slot returns the fallback action). It never receives anything."""

    SOL_XDP, XDP_RX_RING, XDP_UMEM_REG, XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING = 283, 2, 4, 5, 6
    AF_XDP = 44
    UMEM_SIZE, CHUNK = 1 << 16, 2048

    def __init__(self):
        import mmap
        import socket
        import struct
        self._umem = mmap.mmap(-1, self.UMEM_SIZE)
        self.sock = socket.socket(self.AF_XDP, socket.SOCK_RAW, 0)
        try:
            addr = ctypes.addressof(ctypes.c_char.from_buffer(self._umem))
            # struct xdp_umem_reg: addr, len, chunk_size, headroom, flags, tx_metadata_len
            self.sock.setsockopt(self.SOL_XDP, self.XDP_UMEM_REG,
                                 struct.pack("QQIIII", addr, self.UMEM_SIZE, self.CHUNK, 0, 0, 0))
            for opt in (self.XDP_UMEM_FILL_RING, self.XDP_UMEM_COMPLETION_RING, self.XDP_RX_RING):
                self.sock.setsockopt(self.SOL_XDP, opt, struct.pack("I", 64))
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self):
        self.sock.close()          # closing removes it from every XSKMAP

    def __enter__(self) -> StubXsk:
        return self

    def __exit__(self, *exc):
        self.close()
