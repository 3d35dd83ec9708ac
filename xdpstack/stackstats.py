"""A stack's own counters, kept in a page the launcher shares: struct us_shared_stats
(userstack/csrc/api.h), the stack's struct us_stats then its TCP's struct us_tcp_stats (tcp/tcp_stats.h).

The launcher creates the page (a memfd, `create`; after the counters comes the capture area of
xdpstack.capture) and hands it to the application (XDPSTACK_STATS);
the stack maps it and counts there, its TCP included. Anyone who may open the launcher's fds (root)
reads it live, without asking the application: `read(launcher_pid, fd)` opens
/proc/<launcher_pid>/fd/<fd> read-only. The layout has one source, the C header, decoded through
userstack's cffi module: `decode` gives {"stack": {...us_stats}, "tcp": {...us_tcp_stats}}.
"""
from __future__ import annotations

import mmap
import os

MEMFD_NAME = "xdpstack-stats"
PAGE_STRUCT = "struct us_shared_stats"

# Counters of received frames the stack dropped, by reason, with the words `xdpstack stacks` prints.
DROP_REASONS = (
    ("rx_bad_csum", "bad checksum"),
    ("rx_no_socket", "no socket"),
    ("rx_not_local", "not addressed to it"),
    ("rx_queue_full", "queue full"),
    ("rx_malformed", "malformed"),
    ("rx_fragment", "fragment"),
    ("rx_other_proto", "other protocol"),
    ("neigh_drop", "neighbour unresolved"),
)

# The TCP's reasons for not answering (struct us_tcp_stats), always shown on its line.
TCP_DROP_REASONS = (
    ("no_socket", "no listener"),          # no connection and no listener: answered with a RST
    ("bad_segs", "bad segment"),
    ("listen_drops", "backlog full"),
    ("paws_drops", "PAWS"),
)


def _ffi():
    from userstack._lib import ffi  # the stack half: imported only when counters are wanted
    return ffi


def page_size() -> int:
    """struct us_shared_stats, then the capture area `xdpstack capture` uses
    (userstack/csrc/base/capring.h), in whole pages. Pages are allocated when first written: a
    stack that is never captured uses the counters' page alone."""
    from userstack._lib import lib
    n = _ffi().sizeof(PAGE_STRUCT)
    assert n <= lib.US_CAP_OFFSET, "the counters overlap the capture area"
    return -(-lib.US_CAP_AREA_BYTES // mmap.PAGESIZE) * mmap.PAGESIZE


def create() -> tuple[int, int]:
    """A zeroed page for one stack's counters: (memfd, size). The fd is close-on-exec; pass it on
    with Popen(pass_fds=...)."""
    size = page_size()
    fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd, size


def _fields(ffi, cdata) -> dict:
    """A struct as a dict, nested structs as nested dicts."""
    out = {}
    for name, f in ffi.typeof(cdata).fields:
        v = getattr(cdata, name)
        out[name] = _fields(ffi, v) if f.type.kind == "struct" else v
    return out


def decode(data: bytes) -> dict[str, dict[str, int]]:
    """The page's bytes as {"stack": {every us_stats field}, "tcp": {every us_tcp_stats field}}
    (the members of struct us_shared_stats)."""
    ffi = _ffi()
    s = ffi.new(PAGE_STRUCT + " *")
    n = ffi.sizeof(s[0])
    if len(data) < n:
        raise ValueError(f"a counters page holds {n} bytes, got {len(data)}")
    ffi.memmove(s, data[:n], n)
    return _fields(ffi, s[0])


def read(launcher_pid: int, fd: int) -> dict[str, dict[str, int]] | None:
    """The counters now, from the launcher's fd; None when that is not (or no longer) the page."""
    path = f"/proc/{launcher_pid}/fd/{fd}"
    try:
        if not os.readlink(path).startswith(f"/memfd:{MEMFD_NAME}"):
            return None
        f = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return decode(os.pread(f, _ffi().sizeof(PAGE_STRUCT), 0))
    except (OSError, ValueError):
        return None
    finally:
        os.close(f)


def drops(counters: dict[str, int]) -> dict[str, int]:
    """The drop counters by reason (every reason, zeros included) of the stack's counters (the
    page's "stack" part)."""
    return {k: counters.get(k, 0) for k, _ in DROP_REASONS}


def drops_line(counters: dict[str, int] | None) -> str:
    """`drops: bad checksum 5, no socket 3; partial checksums accepted 120`, or `drops: none; ...`,
    from the stack's counters (the page's "stack" part)."""
    if counters is None:
        return "drops: unknown (the stack's counters page cannot be read)"
    words = [f"{label} {counters[k]}" for k, label in DROP_REASONS if counters.get(k)]
    return (f"drops: {', '.join(words) or 'none'}; "
            f"partial checksums accepted {counters.get('rx_csum_partial', 0)}")



def tcp_drops(tcp: dict[str, int]) -> dict[str, int]:
    """The TCP's counters of segments it did not answer, by reason (zeros included)."""
    return {k: tcp.get(k, 0) for k, _ in TCP_DROP_REASONS}


def tcp_active(tcp: dict[str, int] | None) -> bool:
    """The stack's TCP has seen or sent a segment, or listens (worth a line)."""
    return bool(tcp) and any(tcp.get(k) for k in ("segs_in", "segs_out", "listeners", "conns"))


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def tcp_line(tcp: dict[str, int]) -> str:
    """`tcp: 3 conns, 1 listener; in 1200 segs, out 1100; drops: no listener 5, bad segment 1,
    backlog full 0, PAWS 0; resets out 5, retransmits 2` from the page's "tcp" part (conns
    include TIME_WAIT, shown in parentheses when there are some)."""
    tw = f" ({tcp['time_wait']} time-wait)" if tcp.get("time_wait") else ""
    drops = ", ".join(f"{label} {tcp.get(k, 0)}" for k, label in TCP_DROP_REASONS)
    return (f"tcp: {_n(tcp.get('conns', 0), 'conn')}{tw}, {_n(tcp.get('listeners', 0), 'listener')}; "
            f"in {tcp.get('segs_in', 0)} segs, out {tcp.get('segs_out', 0)}; drops: {drops}; "
            f"resets out {tcp.get('rst_out', 0)}, retransmits {tcp.get('retransmits', 0)}")
