"""Whose state is this: each namespace's directories, their identity, and the namespace's lock.

paths.py says where the current network namespace keeps its state (netns-<inode>). Inode numbers
are reused once a namespace is gone, so both directories carry the namespace's netns cookie, which
is not:

    <bpffs root>/netns-<inode>/identity    a pinned, frozen BPF array "xs_netns": 0 -> {cookie (u64)}
    /run/xdpstack/netns-<inode>/cookie     the same cookie, as text

Before anything reads or changes the state, ensure() checks both: a directory with another cookie
(or none) was left by a dead namespace that had the same inode, and is removed under the lock,
never read. The state of the layout before namespaces (legacy.py) goes the same way. Each removal
is said in one line on stderr. The check is made once per process and namespace (a cookie, once
checked, cannot meet stale state again: its inode is taken while it lives).

locked() serializes every change within one namespace. Namespaces share nothing, so they never wait
for each other. The run directory lives as long as the namespace has pins or running launchers:
the release of the lock that finds neither removes it (lockfile.py makes that safe).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from xdpstack import legacy, libbpf, lockfile, netlink, paths
from xdpstack.paths import NetnsKey

IDENTITY = "identity"
_ARRAY = 2                                   # BPF_MAP_TYPE_ARRAY
_KEY0 = bytes(4)

_checked: set[tuple[str, int]] = set()       # (bpffs root, cookie) found free of stale state here


def say(message: str) -> None:
    print(f"xdpstack: {message}", file=sys.stderr, flush=True)


# ---- identity -----------------------------------------------------------------------------------

def identity(d: Path) -> int | None:
    """The cookie pinned in netns directory `d`, None when there is none (or it is not our map)."""
    try:
        fd = libbpf.obj_get(str(d / IDENTITY))
    except OSError:
        return None
    try:
        raw = libbpf.map_lookup(fd, _KEY0, 8)
    except OSError:
        return None
    finally:
        os.close(fd)
    return struct.unpack("=Q", raw)[0] if raw and len(raw) == 8 else None


def _run_cookie(key: NetnsKey) -> int | None:
    try:
        return int((paths.run_dir(key) / "cookie").read_text())
    except (OSError, ValueError):
        return None


def _ours(key: NetnsKey) -> bool:
    """Nothing stale in sight (a look without the lock)."""
    d = paths.netns_dir(key)
    if d.exists() and identity(d) != key.cookie:
        return False
    return _run_cookie(key) in (None, key.cookie)


def ensure() -> None:
    """Make sure the state this namespace sees is its own (see the module doc)."""
    key = paths.netns_key()
    memo = (str(paths.bpffs_root()), key.cookie)
    if memo not in _checked and _ours(key):
        _checked.add(memo)
    # Legacy state is looked for every time (a listing of the root): an older xdpstack may still run.
    if memo in _checked and not legacy.found():
        return
    with locked():                           # tidies, now serialized with every other change
        pass


def _tidy(key: NetnsKey) -> None:
    """Under the lock, once per process and namespace: remove what an earlier namespace with the
    same inode left."""
    run = paths.run_dir(key)
    old = _run_cookie(key)
    if old not in (None, key.cookie):
        shutil.rmtree(paths.stacks_dir(key), ignore_errors=True)
        say(f"removed the launcher records in {run}: they were left by an earlier network namespace "
            f"with inode {key.inode} (cookie {old}; this one is {key.cookie})")
    d = paths.netns_dir(key)
    if d.exists():
        mine = identity(d)
        if mine != key.cookie:
            shutil.rmtree(d, ignore_errors=True)
            why = f"cookie {mine}" if mine is not None else "no identity pin"
            say(f"removed {d}: left by an earlier network namespace with inode {key.inode} ({why}; this "
                f"one is cookie {key.cookie}), so none of it is this namespace's")


# ---- the netns directory ------------------------------------------------------------------------

def _btf() -> bytes:
    """Type information of the identity map, so that `bpftool map dump` shows
    {"key": 0, "value": {"cookie": N}}: type 1 __u32 (the key), 2 __u64, 3 struct xs_netns."""
    strings = b"\0__u32\0__u64\0xs_netns\0cookie\0"
    at = {n: strings.index(b"\0" + n + b"\0") + 1 for n in (b"__u32", b"__u64", b"xs_netns", b"cookie")}
    kind_int, kind_struct = 1 << 24, 4 << 24
    types = (struct.pack("=IIII", at[b"__u32"], kind_int, 4, 32)            # btf_type + int bits
             + struct.pack("=IIII", at[b"__u64"], kind_int, 8, 64)
             + struct.pack("=III", at[b"xs_netns"], kind_struct | 1, 8)     # one member:
             + struct.pack("=III", at[b"cookie"], 2, 0))                    # cookie: type 2 at bit 0
    header = struct.pack("=HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


_IDENTITY_BTF = _btf()


def make_netns_dir(key: NetnsKey) -> Path:
    """Under the lock, before the first interface's pins: the netns directory with its identity.
    Created before the identity is pinned: one without it (a crash in between) counts as stale."""
    d = paths.netns_dir(key)
    if d.is_dir():
        return d                             # checked by _tidy when the lock was taken
    for attempt in range(3):                 # the root too: another namespace's last detach may
        try:                                 # remove it between our mkdir of it and of d
            d.mkdir(parents=True)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    try:
        btf = libbpf.btf_load(_IDENTITY_BTF)
        try:
            fd = libbpf.map_create(_ARRAY, "xs_netns", 4, 8, 1, btf=(btf, 1, 3))
        finally:
            os.close(btf)                    # the map keeps its own reference
        try:
            libbpf.map_update(fd, _KEY0, struct.pack("=Q", key.cookie))
            libbpf.map_freeze(fd)
            libbpf.obj_pin(fd, str(d / IDENTITY))
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return d


def drop_netns_dir_if_unused(d: Path) -> None:
    """Under the lock: remove netns directory `d` once no interface is left in it (and the root
    after its last namespace, when nothing else is there)."""
    try:
        if any(p.name != IDENTITY for p in d.iterdir()):
            return
    except FileNotFoundError:
        return
    (d / IDENTITY).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        d.rmdir()
        d.parent.rmdir()


def _drop_run_dir_if_unused(key: NetnsKey) -> None:
    if paths.netns_dir(key).exists():
        return
    stacks = paths.stacks_dir(key)
    with contextlib.suppress(OSError):
        stacks.rmdir()                       # only if empty: a running launcher keeps its record
    if stacks.exists():
        return
    run = paths.run_dir(key)
    for name in ("cookie", "lock"):
        (run / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run.rmdir()
        run.parent.rmdir()


# ---- the lock -----------------------------------------------------------------------------------

class _NsLock:
    """This process's hold on one namespace's lock: a thread lock around the flock, and a depth."""

    def __init__(self):
        self.rlock = threading.RLock()
        self.fd = -1
        self.depth = 0


_mutex = threading.Lock()
_locks: dict[NetnsKey, _NsLock] = {}


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Hold the lock of the namespace the calling thread is in (re-entrant within this process;
    threads in other namespaces do not wait). Taking it first tidies (above). Nothing nests the
    locks of two namespaces; whoever does must always nest them in the same order."""
    key = paths.netns_key()
    with _mutex:
        ns = _locks.setdefault(key, _NsLock())
    with ns.rlock:
        if ns.depth == 0:
            ns.fd = lockfile.acquire(paths.lock_path(key))
            try:
                memo = (str(paths.bpffs_root()), key.cookie)
                if memo not in _checked:
                    _tidy(key)
                    _checked.add(memo)
                cookie = paths.run_dir(key) / "cookie"      # the run dir may have been made anew
                if _run_cookie(key) != key.cookie:
                    cookie.write_text(f"{key.cookie}\n")
                legacy.clean(say)
            except BaseException:
                _release(key, ns)
                raise
        ns.depth += 1
        try:
            yield
        finally:
            ns.depth -= 1
            if ns.depth == 0:
                _release(key, ns)


def _release(key: NetnsKey, ns: _NsLock) -> None:
    fd, ns.fd = ns.fd, -1
    try:
        _drop_run_dir_if_unused(key)
    finally:
        os.close(fd)                         # closing drops the flock


# ---- for people ---------------------------------------------------------------------------------

def names(inode: int) -> list[str]:
    """Names `ip netns` has bound to the namespace with this inode."""
    dev = os.stat("/proc/thread-self/ns/net").st_dev
    out = []
    for d in netlink.NETNS_DIRS:
        with contextlib.suppress(OSError):
            for p in sorted(Path(d).iterdir()):
                with contextlib.suppress(OSError):
                    st = p.stat()
                    if (st.st_dev, st.st_ino) == (dev, inode) and p.name not in out:
                        out.append(p.name)
    return out


def describe(key: NetnsKey | None = None) -> dict:
    """The namespace as status shows it."""
    key = key or paths.netns_key()
    return {"inode": key.inode, "cookie": key.cookie, "names": names(key.inode),
            "dir": str(paths.netns_dir(key)), "run_dir": str(paths.run_dir(key))}


def text(ns: dict) -> str:
    """"inode 4026532281 (ip netns blue), cookie 4099"."""
    named = f" (ip netns {', '.join(ns['names'])})" if ns["names"] else ""
    return f"inode {ns['inode']}{named}, cookie {ns['cookie']}"
