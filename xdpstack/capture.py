"""Capture of user-level stacks' frames, both ways: what AF_XDP hands to a stack never reaches the
kernel's taps (tcpdump sees nothing), so each stack copies its own frames, filtered, into the
capture area of its counters page (userstack/csrc/base/capring.h; the stack's side is
userstack/csrc/stack/capture.c).

    targets(ifname, names)    the stacks to capture, from the launchers' records
    Area(target)              one stack's capture area, mapped; start(), records(), stop()
    PcapngOut / TextOut       where records go: pcapng (one interface block per stack,
                              direction in epb_flags, drops in statistics blocks) or text lines

Who may capture: root, or the stack's own user (through the application's own descriptor of the
page, /proc/PID/fd/N, which only that user and root may open). One capture per stack at a time:
the capturer holds an flock on the page.
"""
from __future__ import annotations

import fcntl
import ipaddress
import mmap
import os
import struct
import time
from dataclasses import dataclass

from xdpstack import launcher, registry
from xdpstack.errors import XdpstackError

REC = struct.Struct("<IIQB7x")          # struct us_cap_rec
DIR_IN, DIR_OUT, DIR_PAD = 1, 2, 0x80
DIRS = {"in": DIR_IN, "out": DIR_OUT, "both": DIR_IN | DIR_OUT}


class CaptureError(XdpstackError):
    pass


def _lib():
    from userstack._lib import ffi, lib  # the layout's one source: the C header, through cffi
    return ffi, lib


@dataclass(frozen=True)
class Target:
    ifname: str
    stack_id: int
    name: str
    uid: int
    user: str
    launcher_pid: int
    pid: int
    stats_fd: int

    @property
    def label(self) -> str:                 # the pcapng interface name
        return f"{self.ifname}:{self.name}"


def targets(ifname: str, names: tuple[str, ...] = ()) -> list[Target]:
    """The stacks running on ifname (the ones named, in that order; default every one)."""
    live = [Target(ifname, s["stack"], s["name"], s["uid"], s["user"], s["launcher_pid"], s["pid"],
                   s["stats_fd"]) for s in launcher.read_status(ifname) if "stats_fd" in s]
    if not names:
        if not live:
            raise CaptureError(f"no user-level stacks running on {ifname} (see `xdpstack stacks`)")
        return live
    out = []
    for n in names:
        hit = [t for t in live if t.name == n]
        if not hit:
            have = ", ".join(t.name for t in live) or "none"
            raise CaptureError(f"no stack named {n!r} on {ifname} (running there: {have})")
        out.extend(hit)
    return out


def _page_path(t: Target) -> str:
    """The page through a descriptor this process may open: the launcher's for root, the
    application's for the stack's own user."""
    if os.geteuid() == 0:
        return f"/proc/{t.launcher_pid}/fd/{t.stats_fd}"
    if os.geteuid() != t.uid:
        raise CaptureError(f"stack {t.name} on {t.ifname} runs as {t.user}: only root or {t.user} "
                           f"may capture it")
    return f"/proc/{t.pid}/fd/{t.stats_fd}"


class Area:
    """One stack's capture area, mapped read-write and locked for this capture."""

    def __init__(self, target: Target):
        ffi, lib = _lib()
        self.target, self.ffi, self.lib = target, ffi, lib
        path = _page_path(target)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            raise CaptureError(f"cannot open stack {target.name}'s page ({path}): "
                               f"permission denied") from None
        except OSError as e:
            raise CaptureError(f"stack {target.name} on {target.ifname} is gone ({e.strerror})") from None
        try:
            if os.fstat(fd).st_size < lib.US_CAP_AREA_BYTES:
                raise CaptureError(f"stack {target.name} was started without a capture area "
                                   f"(a launcher older than capture): restart it to capture it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CaptureError(f"stack {target.name} on {target.ifname} is being captured by "
                                   f"another xdpstack capture") from None
            self.mm = mmap.mmap(fd, lib.US_CAP_AREA_BYTES)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.view = memoryview(self.mm)
        self.ctl = ffi.from_buffer("struct us_cap_ctl *", self.view[lib.US_CAP_OFFSET:lib.US_CAP_RING_OFFSET])
        self.ring = self.view[lib.US_CAP_RING_OFFSET:lib.US_CAP_AREA_BYTES]
        self.size = lib.US_CAP_RING_BYTES
        self.gen = 0
        self.started = False
        if self.ctl.magic != lib.US_CAP_MAGIC:
            self.close()
            raise CaptureError(f"stack {target.name}'s capture area has an unknown layout "
                               f"(magic {self.ctl.magic:#x}): is it a stack of this xdpstack?")

    def start(self, insns: list[tuple[int, int, int, int]], snaplen: int, dirs: int) -> None:
        c = self.ctl
        if len(insns) > self.lib.US_CAP_MAX_INSNS:
            raise CaptureError(f"the filter compiles to {len(insns)} instructions; a stack takes "
                               f"{self.lib.US_CAP_MAX_INSNS} at most")
        for i, (code, jt, jf, k) in enumerate(insns):
            c.insns[i].code, c.insns[i].jt, c.insns[i].jf, c.insns[i].k = code, jt, jf, k
        c.ninsns, c.snaplen, c.dirs, c.pid = len(insns), snaplen, dirs, os.getpid()
        self.gen = (c.gen + 1) & 0xFFFFFFFF
        c.gen = self.gen                # last: the stack acts on what is above once it sees it

    def acked(self) -> bool:
        """The stack took this capture's settings (it does at its next poll)."""
        if not self.started and self.ctl.seen_gen == self.gen:
            if self.ctl.error:
                raise CaptureError(f"stack {self.target.name} refused the filter (error "
                                   f"{self.ctl.error})")
            self.started = True
        return self.started

    def records(self, limit: int = 4096):
        """Waiting frames as (ts_ns, direction, wirelen, bytes), oldest first, up to limit."""
        if not self.acked():
            return
        c, ring, size, hdr = self.ctl, self.ring, self.size, REC.size
        tail, head = c.tail, c.head
        n = 0
        while tail < head and n < limit:
            pos = tail % size
            if size - pos < hdr:                      # too little room for a record: skipped
                tail += size - pos
                continue
            caplen, wirelen, ts, d = REC.unpack_from(ring, pos)
            if d == DIR_PAD:
                tail += size - pos
                continue
            data = bytes(ring[pos + hdr:pos + hdr + caplen])
            tail += hdr + ((caplen + 7) & ~7)
            c.tail = tail
            n += 1
            yield ts, d, wirelen, data
        c.tail = tail

    def stop(self, wait: float = 1.0) -> None:
        """End the capture (the stack stops at its next poll); what it copied until then stays
        readable in the ring."""
        c = self.ctl
        c.pid = 0
        self.gen = (c.gen + 1) & 0xFFFFFFFF
        c.gen = self.gen
        end = time.monotonic() + wait
        while c.seen_gen != self.gen and time.monotonic() < end:
            time.sleep(0.01)

    def counts(self) -> dict[str, int]:
        c = self.ctl
        return {"matched": c.matched, "captured": c.captured, "dropped": c.dropped} if self.started \
            else {"matched": 0, "captured": 0, "dropped": 0}

    def close(self) -> None:
        self.ctl = None
        self.ring.release()
        self.view.release()
        self.mm.close()
        os.close(self.fd)               # and with it the flock


# ---- output ----
class PcapngOut:
    """pcapng through python-pcapng: one interface block per stack (named IFACE:STACK), each frame
    an enhanced packet block with its direction (epb_flags), statistics blocks at the end."""

    def __init__(self, stream, areas: list[Area], snaplen: int):
        from pcapng import FileWriter, blocks
        self.blocks, self.stream = blocks, stream
        self.shb = blocks.SectionHeader(options={"shb_userappl": "xdpstack capture"})
        for a in areas:
            t = a.target
            self.shb.new_member(blocks.InterfaceDescription, link_type=1, snaplen=snaplen, options={
                "if_name": t.label, "if_tsresol": b"\x09",
                "if_description": f"xdpstack stack {t.stack_id} {t.name} on {t.ifname} (user {t.user})"})
        self.writer = FileWriter(stream, self.shb)
        self.start_ns = time.time_ns()

    def packet(self, index: int, ts: int, d: int, wirelen: int, data: bytes) -> None:
        self.writer.write_block(self.shb.new_member(
            self.blocks.EnhancedPacket, interface_id=index, timestamp_high=ts >> 32,
            timestamp_low=ts & 0xFFFFFFFF, packet_data=data, packet_len=wirelen,
            options={"epb_flags": 1 if d == DIR_IN else 2}))

    def flush(self) -> None:
        self.stream.flush()

    def finish(self, counts: list[dict[str, int]]) -> None:
        now = time.time_ns()
        for i, c in enumerate(counts):
            self.writer.write_block(self.shb.new_member(
                self.blocks.InterfaceStatistics, interface_id=i, timestamp_high=now >> 32,
                timestamp_low=now & 0xFFFFFFFF, options={
                    "isb_starttime": self.start_ns, "isb_endtime": now,
                    "isb_ifdrop": c["dropped"], "isb_filteraccept": c["matched"]}))
        self.flush()


class TextOut:
    """A line per frame, tcpdump's way: time, stack, direction, then the headers."""

    def __init__(self, echo, areas: list[Area]):
        self.echo, self.names = echo, [a.target.name for a in areas]

    def packet(self, index: int, ts: int, d: int, wirelen: int, data: bytes) -> None:
        t = time.strftime("%H:%M:%S", time.localtime(ts // 1_000_000_000))
        us = ts // 1000 % 1_000_000
        way = "In " if d == DIR_IN else "Out"
        self.echo(f"{t}.{us:06d} {self.names[index]} {way} {describe(data, wirelen)}")

    def flush(self) -> None:
        pass

    def finish(self, counts) -> None:
        pass


def describe(f: bytes, wirelen: int) -> str:
    """`IP 198.18.0.2.40000 > 198.18.0.1.7000: UDP, length 5`, as tcpdump's one-line form."""
    if len(f) < 14:
        return f"truncated frame, length {wirelen}"
    etype, off = struct.unpack_from("!H", f, 12)[0], 14
    while etype in (0x8100, 0x88A8) and len(f) >= off + 4:
        etype, off = struct.unpack_from("!H", f, off + 2)[0], off + 4
    if etype == 0x0800 and len(f) >= off + 20:
        ihl = (f[off] & 15) * 4
        proto, src, dst = f[off + 9], ipaddress.IPv4Address(f[off + 12:off + 16]), \
            ipaddress.IPv4Address(f[off + 16:off + 20])
        l4, fam, l4len = off + ihl, "IP", struct.unpack_from("!H", f, off + 2)[0] - ihl
    elif etype == 0x86DD and len(f) >= off + 40:
        proto, src, dst = f[off + 6], ipaddress.IPv6Address(f[off + 8:off + 24]), \
            ipaddress.IPv6Address(f[off + 24:off + 40])
        l4, fam, l4len = off + 40, "IP6", struct.unpack_from("!H", f, off + 4)[0]
    else:
        return f"ethertype {etype:#06x}, length {wirelen}"
    if proto == 17 and len(f) >= l4 + 8:
        sp, dp = struct.unpack_from("!HH", f, l4)
        return f"{fam} {src}.{sp} > {dst}.{dp}: UDP, length {l4len - 8}"
    if proto == 6 and len(f) >= l4 + 20:
        sp, dp, seq, ack = struct.unpack_from("!HHII", f, l4)
        hl, fl = (f[l4 + 12] >> 4) * 4, f[l4 + 13]
        flags = "".join(ch for bit, ch in ((2, "S"), (1, "F"), (4, "R"), (8, "P")) if fl & bit) + \
            ("." if fl & 16 else "")
        return (f"{fam} {src}.{sp} > {dst}.{dp}: Flags [{flags or 'none'}], seq {seq}, ack {ack}, "
                f"length {l4len - hl}")
    return f"{fam} {src} > {dst}: ip-proto-{proto}, length {l4len}"


def run(areas: list[Area], out, insns: list[tuple[int, int, int, int]], snaplen: int, dirs: int,
        count: int | None, should_stop, idle: float = 0.002) -> list[dict[str, int]]:
    """Capture from every area into out until count frames were written or should_stop().
    insns: the filter (pcapfilter.compile_filter). Returns per area: captured (written to out),
    matched (passed its filter in the stack) and dropped (passed it, but the ring was full: the
    capture fell behind)."""
    for a in areas:
        a.start(insns, snaplen, dirs)
    written = [0] * len(areas)

    def drain(limit: int) -> int:
        got = 0
        for i, a in enumerate(areas):
            for ts, d, wirelen, data in a.records(limit=limit - got):
                out.packet(i, ts, d, wirelen, data)
                written[i] += 1
                got += 1
            if got >= limit:
                break
        return got

    check_at = time.monotonic() + 1.0
    try:
        while not should_stop():
            left = 4096 if count is None else min(4096, count - sum(written))
            if left <= 0:
                break
            if drain(left):
                out.flush()
            else:
                time.sleep(idle)
            if time.monotonic() >= check_at:     # once a second: are the stacks still there?
                check_at = time.monotonic() + 1.0
                if not any(registry.pid_alive(a.target.launcher_pid) for a in areas):
                    break                        # every stack ended: so does the capture
    finally:
        for a in areas:
            a.stop()
    if count is None:           # what the stacks copied before they saw the stop
        drain(1 << 30)
    counts = [dict(a.counts(), captured=w) for a, w in zip(areas, written, strict=True)]
    out.finish(counts)
    return counts
