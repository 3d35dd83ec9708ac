"""Test harness for userstack's TCP: segment in, segments out, no network, no root.

`load()` compiles userstack/csrc/tcp/*.c, base/timer.c and the C harness (harness.c, netsim.c) into a
cffi module (API mode) under build/tcp_harness/<hash of the sources>/, so the first test run
builds it and later runs import it at once.

`Stack` wraps one tcp_stack whose emitted segments queue up in C; `Seg` builds and parses TCP
segments independently of the C code (the test's own view of the wire); `Conn` is one connection
plus the peer's sequence numbers, so that tests read like smoltcp's: send this segment, expect
those segments back.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import ipaddress
import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CSRC = ROOT / "userstack" / "csrc"
HERE = Path(__file__).resolve().parent
BUILD = ROOT / "build" / "tcp_harness"
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]

LOCAL4, REMOTE4 = "198.18.0.1", "198.18.0.2"
LOCAL6, REMOTE6 = "2001:db8::1", "2001:db8::2"
LPORT, RPORT = 80, 40000
M32 = 0xFFFFFFFF

# ---------------------------------------------------------------- building the module


def _sources():
    tcp = sorted((CSRC / "tcp").glob("*.c"))
    return [*tcp, CSRC / "base" / "timer.c", HERE / "harness.c", HERE / "netsim.c"]


def _header_cdef(text: str) -> str:
    """A C header as cffi cdef text: no comments, includes, pragmas or static inline bodies."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out, i = [], 0
    while (j := text.find("static inline", i)) >= 0:
        out.append(text[i:j])
        k, depth = text.index("{", j), 0
        while True:
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                break
            k += 1
        i = k + 1
    out.append(text[i:])
    lines = []
    for line in "".join(out).splitlines():
        s = line.strip()
        if s.startswith("#"):
            m = re.match(r"#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)u?\s*$", s)
            if m:
                lines.append(f"#define {m.group(1)} {int(m.group(2), 0)}")
            continue
        lines.append(line)
    return "\n".join(lines)


def _cdef() -> str:
    parts = [_header_cdef((CSRC / "base" / "addr.h").read_text()),
             _header_cdef((CSRC / "base" / "timer.h").read_text()),
             _header_cdef((CSRC / "tcp" / "tcp_stats.h").read_text()),
             _header_cdef((CSRC / "tcp" / "tcp.h").read_text()),
             _header_cdef((HERE / "harness.h").read_text())]
    text = "\n".join(parts)
    consts = dict(re.findall(r"#define (\w+) (\d+)", text))
    text = re.sub(r"\[(\w+)\]", lambda m: f"[{consts.get(m.group(1), m.group(1))}]", text)
    return text.replace("#define TW_NEVER UINT64_MAX", "")


_mod = None


def load():
    """The compiled harness module (ffi, lib), built on first use and cached by source hash."""
    global _mod
    if _mod is not None:
        return _mod
    import cffi

    cdef = _cdef()
    h = hashlib.sha256(cdef.encode() + " ".join(CFLAGS).encode())
    for p in [*_sources(), *sorted((CSRC / "tcp").glob("*.h")), CSRC / "base" / "timer.h",
              CSRC / "base" / "addr.h", HERE / "harness.h"]:
        h.update(p.name.encode() + p.read_bytes())
    digest = h.hexdigest()[:16]
    name = f"_tcp_th_{digest}"
    outdir = BUILD / digest
    found = glob.glob(str(outdir / f"{name}*.so"))
    if not found:
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        ffi.set_source(
            name,
            '#pragma GCC diagnostic ignored "-Wunused-parameter"\n'
            '#pragma GCC diagnostic ignored "-Wmissing-field-initializers"\n'
            '#include "harness.h"\n',
            sources=[str(p) for p in _sources()],
            include_dirs=[str(CSRC), str(HERE)],
            extra_compile_args=CFLAGS,
        )
        tmp = BUILD / f"tmp-{digest}-{os.getpid()}"
        so = ffi.compile(tmpdir=str(tmp))
        outdir.mkdir(parents=True, exist_ok=True)
        dest = outdir / Path(so).name
        shutil.move(so, str(dest) + ".part")
        os.replace(str(dest) + ".part", dest)
        shutil.rmtree(tmp, ignore_errors=True)
        found = [str(dest)]
    spec = importlib.util.spec_from_file_location(name, found[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _mod = mod
    return mod


# ---------------------------------------------------------------- segments on the wire

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def flag_str(bits: int) -> str:
    return "".join(f for f, b in FLAG_BITS.items() if bits & b)


@dataclass
class Seg:
    """A TCP segment as the test sees it. flags: letters of FSRPAUEC, any order."""

    seq: int = 0
    ack: int = 0
    flags: str = "A"
    wnd: int = 65535
    payload: bytes = b""
    sport: int = RPORT
    dport: int = LPORT
    mss: int | None = None
    ws: int | None = None
    sack_perm: bool = False
    ts: tuple[int, int] | None = None
    sack: tuple = ()
    urp: int = 0
    raw_options: bytes | None = None
    doff: int | None = None           # override the data offset (malformed headers)
    opt_bytes: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        o = "".join(f" {k}={getattr(self, k)}" for k in ("mss", "ws", "ts", "sack") if getattr(self, k))
        o += " sack_perm" if self.sack_perm else ""
        return (f"<{self.flags} seq={self.seq} ack={self.ack} wnd={self.wnd} len={len(self.payload)}"
                f"{o} {self.sport}->{self.dport}>")

    @property
    def bits(self) -> int:
        b = 0
        for c in self.flags:
            b |= FLAG_BITS[c]
        return b

    def has(self, flags: str) -> bool:
        return all(c in self.flags for c in flags)

    @property
    def seg_len(self) -> int:
        return len(self.payload) + self.has("S") + self.has("F")

    @property
    def end(self) -> int:
        return (self.seq + self.seg_len) & M32

    def options(self) -> bytes:
        if self.raw_options is not None:
            opts = self.raw_options
        else:
            opts = b""
            if self.mss is not None:
                opts += struct.pack("!BBH", 2, 4, self.mss)
            if self.sack_perm:
                opts += b"\x01\x01\x04\x02"
            if self.ts is not None:
                opts += b"\x01\x01\x08\x0a" + struct.pack("!II", self.ts[0] & M32, self.ts[1] & M32)
            if self.ws is not None:
                opts += b"\x01\x03\x03" + bytes([self.ws])
            if self.sack:
                opts += b"\x01\x01\x05" + bytes([2 + 8 * len(self.sack)])
                opts += b"".join(struct.pack("!II", a & M32, b & M32) for a, b in self.sack)
        return opts + b"\x00" * (-len(opts) % 4)

    def build(self) -> bytes:
        opts = self.options()
        doff = self.doff if self.doff is not None else (20 + len(opts)) // 4
        hdr = struct.pack("!HHIIBBHHH", self.sport, self.dport, self.seq & M32, self.ack & M32,
                          (doff & 15) << 4, self.bits, self.wnd, 0, self.urp)
        return hdr + opts + self.payload

    @classmethod
    def parse(cls, b: bytes) -> Seg:
        sport, dport, seq, ack, off, bits, wnd, csum, urp = struct.unpack("!HHIIBBHHH", b[:20])
        assert csum == 0, "TCP leaves the checksum to the stack"
        doff = (off >> 4) * 4
        assert 20 <= doff <= len(b)
        s = cls(seq=seq, ack=ack, flags=flag_str(bits), wnd=wnd, payload=bytes(b[doff:]),
                sport=sport, dport=dport, urp=urp, opt_bytes=bytes(b[20:doff]))
        o, i = b[20:doff], 0
        while i < len(o):
            kind = o[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            ln = o[i + 1]
            assert ln >= 2 and i + ln <= len(o), f"bad option {o.hex()}"
            v = o[i + 2:i + ln]
            if kind == 2:
                s.mss = struct.unpack("!H", v)[0]
            elif kind == 3:
                s.ws = v[0]
            elif kind == 4:
                s.sack_perm = True
            elif kind == 8:
                s.ts = struct.unpack("!II", v)
            elif kind == 5:
                s.sack = tuple(struct.unpack("!II", v[j:j + 8]) for j in range(0, len(v), 8))
            i += ln
        return s


# ---------------------------------------------------------------- the stack under test


class Info:
    """tcp_sock_info as attributes."""

    def __init__(self, ffi, c):
        for name, _ in ffi.typeof(c[0]).fields:
            setattr(self, name, getattr(c[0], name))


class Stack:
    def __init__(self, now: int = 1_000_000, secret: bytes = bytes(range(16)), **cfg):
        m = load()
        self.ffi, self.lib = m.ffi, m.lib
        c = self.ffi.new("struct tcp_config *")
        self.lib.tcp_config_default(c)
        c.secret = list(secret)
        for k, v in cfg.items():
            setattr(c, k, v)
        self.cfg = c
        self.h = self.lib.th_new(c)
        self.ts = self.lib.th_stack(self.h)
        self.now = now
        self._buf = self.ffi.new("uint8_t[]", 70000)
        self._src = self.ffi.new("struct us_addr *")
        self._dst = self.ffi.new("struct us_addr *")
        self.last_src = self.last_dst = None

    def free(self):
        if self.h is not None:
            self.lib.th_free(self.h)
            self.h = None

    # -- addresses
    def addr(self, text: str):
        a = self.ffi.new("struct us_addr *")
        ip = ipaddress.ip_address(text)
        a.family = 4 if ip.version == 4 else 6
        raw = ip.packed
        for i, byte in enumerate(raw):
            a.a[i] = byte
        return a

    def ep(self, text: str, port: int):
        e = self.ffi.new("struct us_endpoint *")
        e.addr = self.addr(text)[0]
        e.port = port
        return e

    def addr_text(self, a) -> str:
        raw = bytes(self.ffi.buffer(a.a, 16))
        return str(ipaddress.ip_address(raw[:4] if a.family == 4 else raw))

    # -- driving
    def input(self, seg: Seg | bytes, src: str = REMOTE4, dst: str = LOCAL4):
        data = seg.build() if isinstance(seg, Seg) else seg
        self.lib.tcp_input(self.ts, self.addr(src), self.addr(dst), data, len(data), self.now)

    def flush(self):
        self.lib.tcp_flush(self.ts, self.now)

    def recv_hold(self) -> list[Seg]:
        """tcp_flush_hold_acks (the stack is about to run the application), then what was sent."""
        self.lib.tcp_flush_hold_acks(self.ts, self.now)
        self.check()
        return self.output()

    def output(self) -> list[Seg]:
        out = []
        while True:
            n = self.lib.th_pop(self.h, self._buf, 70000, self._src, self._dst)
            if n < 0:
                return out
            s = Seg.parse(bytes(self.ffi.buffer(self._buf, n)))
            s.src = self.addr_text(self._src)
            s.dst = self.addr_text(self._dst)
            out.append(s)

    def recv(self) -> list[Seg]:
        """Flush, then everything emitted since the last call."""
        self.flush()
        return self.output()

    def send(self, seg: Seg | bytes, src: str = REMOTE4, dst: str = LOCAL4) -> list[Seg]:
        self.input(seg, src, dst)
        self.check()
        return self.recv()

    def advance(self, us: int) -> list[Seg]:
        """Let time pass (running due timers) and return what was sent."""
        self.now += us
        self.lib.tcp_timers(self.ts, self.now)
        self.check()
        return self.output()

    def run_until(self, t: int) -> list[Seg]:
        out = []
        while True:
            d = self.next_deadline()
            if d > t:
                break
            self.now = max(self.now, d)
            self.lib.tcp_timers(self.ts, self.now)
            out += self.output()
        self.now = t
        self.lib.tcp_timers(self.ts, self.now)
        return out + self.output()

    def next_deadline(self) -> int:
        return self.lib.tcp_next_deadline(self.ts)

    def check(self):
        r = self.lib.th_check(self.h)
        assert r == 0, f"invariant broken at tcp_check.c:{r}"

    def stats(self):
        st = self.ffi.new("struct us_tcp_stats *")
        self.lib.tcp_stack_stats(self.ts, st)
        return Info(self.ffi, st)

    def events(self):
        socks = self.ffi.new("struct tcp_sock *[]", 4096)
        evs = self.ffi.new("unsigned[]", 4096)
        n = self.lib.th_events(self.h, socks, evs, 4096)
        return [(socks[i], evs[i]) for i in range(n)]

    def fail_emits(self, n: int):
        self.lib.th_set_emit_fail(self.h, n)

    # -- sockets
    def socket(self):
        return self.lib.tcp_socket(self.ts)

    def listen(self, port: int = LPORT, addr: str = LOCAL4, backlog: int = 0, family: int | None = None):
        s = self.socket()
        e = self.ep(addr, port)
        if family is not None:
            e.addr.family = family
        assert self.lib.tcp_listen(s, e, backlog) == 0
        return s

    def accept(self, lst):
        err = self.ffi.new("int *")
        s = self.lib.tcp_accept(lst, err)
        return None if s == self.ffi.NULL else s

    def connect(self, sock, addr: str = REMOTE4, port: int = RPORT, local: tuple | None = None) -> int:
        loc = self.ep(*local) if local else self.ffi.NULL
        return self.lib.tcp_connect(sock, self.ep(addr, port), loc, self.now)

    def set_ephemeral(self, addr: str = LOCAL4, port: int = 50000, err: int = 0):
        self.lib.th_set_ephemeral(self.h, self.ep(addr, port), err)

    def write(self, sock, data: bytes) -> int:
        return self.lib.tcp_send(sock, data, len(data))

    def read(self, sock, n: int = 1 << 20):
        buf = self.ffi.new("uint8_t[]", n)
        r = self.lib.tcp_recv(sock, buf, n)
        return r if r < 0 else bytes(self.ffi.buffer(buf, r))

    def info(self, sock) -> Info:
        i = self.ffi.new("struct tcp_sock_info *")
        self.lib.tcp_sock_info(sock, i)
        return Info(self.ffi, i)

    def state(self, sock) -> str:
        return self.ffi.string(self.lib.tcp_state_name(self.lib.tcp_sock_state(sock))).decode()

    def setopt(self, sock, opt: str, val: int) -> int:
        return self.lib.tcp_setopt(sock, getattr(self.lib, f"TCP_OPT_{opt}"), val)

    def getopt(self, sock, opt: str) -> int:
        v = self.ffi.new("int *")
        assert self.lib.tcp_getopt(sock, getattr(self.lib, f"TCP_OPT_{opt}"), v) == 0
        return v[0]


# ---------------------------------------------------------------- one connection and its peer


class Conn:
    """A connection of the stack under test and the peer's bookkeeping. `rcv` is what the peer
    expects next from the stack (its ACK), `snd` what the peer sends next."""

    def __init__(self, stk: Stack, sock, snd: int, rcv: int, ts: bool, peer: str = REMOTE4,
                 local: str = LOCAL4, rport: int = RPORT, lport: int = LPORT):
        self.stk, self.sock = stk, sock
        self.snd, self.rcv = snd & M32, rcv & M32
        self.use_ts = ts
        self.tsval = 5000
        self.ts_echo = 0
        self.peer, self.local, self.rport, self.lport = peer, local, rport, lport
        self.wnd = 65535

    def seg(self, flags: str = "A", payload: bytes = b"", **kw) -> Seg:
        kw.setdefault("seq", self.snd)
        kw.setdefault("ack", self.rcv)
        kw.setdefault("wnd", self.wnd)
        if self.use_ts and "ts" not in kw:
            kw["ts"] = (self.tsval, self.ts_echo)
        return Seg(flags=flags, payload=payload, sport=self.rport, dport=self.lport, **kw)

    def send(self, flags: str = "A", payload: bytes = b"", **kw) -> list[Seg]:
        """The peer sends a segment (sequence advanced unless seq= was given); returns replies."""
        s = self.seg(flags, payload, **kw)
        if "seq" not in kw:
            self.snd = (self.snd + s.seg_len) & M32
        self.tsval += 1
        out = self.stk.send(s, src=self.peer, dst=self.local)
        self.note(out)
        return out

    def note(self, segs: list[Seg]):
        for s in segs:
            if s.ts:
                self.ts_echo = s.ts[0]

    def recv(self) -> list[Seg]:
        out = self.stk.recv()
        self.note(out)
        return out

    def deliver(self, flags: str = "PA", payload: bytes = b"", **kw) -> list[Seg]:
        """Like send, but the flush after the input is the one before the application runs
        (tcp_flush_hold_acks)."""
        s = self.seg(flags, payload, **kw)
        if "seq" not in kw:
            self.snd = (self.snd + s.seg_len) & M32
        self.tsval += 1
        self.stk.input(s, src=self.peer, dst=self.local)
        self.stk.check()
        out = self.stk.recv_hold()
        self.note(out)
        return out

    def advance(self, us: int) -> list[Seg]:
        out = self.stk.advance(us)
        self.note(out)
        return out

    def ack_all(self, segs: list[Seg]) -> list[Seg]:
        """The peer acknowledges everything in segs."""
        for s in segs:
            if s.seg_len and ((s.end - self.rcv) & M32) < 1 << 31:
                self.rcv = s.end
        return self.send("A")

    def write(self, data: bytes) -> int:
        return self.stk.write(self.sock, data)

    def read(self, n: int = 1 << 20):
        return self.stk.read(self.sock, n)

    @property
    def info(self) -> Info:
        return self.stk.info(self.sock)

    @property
    def state(self) -> str:
        return self.stk.state(self.sock)


SYN_OPTS = dict(mss=1460, ws=7, sack_perm=True)


def passive_open(stk: Stack, ts: bool = True, sack: bool = True, ws: int | None = 7, mss: int = 1460,
                 peer_iss: int = 1000, wnd: int = 65535, lst=None, v6: bool = False) -> Conn:
    """Listen, let the peer connect, accept: a Conn in ESTABLISHED (SYN-ACK checked)."""
    local, peer = (LOCAL6, REMOTE6) if v6 else (LOCAL4, REMOTE4)
    if lst is None:
        lst = stk.listen(addr=local)
    syn = Seg(seq=peer_iss, flags="S", wnd=wnd, mss=mss, ws=ws, sack_perm=sack,
              ts=(4000, 0) if ts else None)
    out = stk.send(syn, src=peer, dst=local)
    assert len(out) == 1 and out[0].flags == "SA", out
    sa = out[0]
    assert sa.ack == peer_iss + 1
    c = Conn(stk, None, peer_iss + 1, sa.seq + 1, ts, peer=peer, local=local)
    c.iss = sa.seq
    c.synack = sa
    c.note(out)
    c.wnd = wnd
    assert c.send("A") == []
    c.sock = stk.accept(lst)
    assert c.sock is not None
    c.lst = lst
    return c


def active_open(stk: Stack, ts: bool = True, sack: bool = True, ws: int | None = 7, mss: int = 1460,
                peer_iss: int = 9000, wnd: int = 65535, v6: bool = False) -> Conn:
    """connect() from an ephemeral port, the peer answers: a Conn in ESTABLISHED."""
    local, peer = (LOCAL6, REMOTE6) if v6 else (LOCAL4, REMOTE4)
    stk.set_ephemeral(local, 50000)
    s = stk.socket()
    assert stk.connect(s, peer, RPORT) == 0
    out = stk.recv()
    assert len(out) == 1 and out[0].flags == "S", out
    syn = out[0]
    c = Conn(stk, s, peer_iss, syn.seq, ts, peer=peer, local=local, lport=syn.sport)
    c.iss = syn.seq
    c.syn = syn
    c.note(out)
    c.wnd = wnd
    out = c.send("SA", mss=mss, ws=ws, sack_perm=sack, ack=syn.seq + 1, ts=(4000, syn.ts[0]) if ts else None)
    c.rcv = syn.seq + 1
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == peer_iss + 1, out
    return c


# ---------------------------------------------------------------- the simulated link


def netsim(**kw):
    """Run netsim_run (netsim.c) with the given netsim_params fields; returns the result."""
    m = load()
    p = m.ffi.new("struct netsim_params *")
    defaults = dict(delay_us=50, bw_bytes_per_s=1_250_000_000, queue_bytes=0, seed=1, bytes=1 << 20,
                    cc=1, sack=1, ts=1, ws=1, time_limit_us=60_000_000)
    for k, v in {**defaults, **kw}.items():
        setattr(p, k, v)
    r = m.ffi.new("struct netsim_result *")
    m.lib.netsim_run(p, r)
    return Info(m.ffi, r)
