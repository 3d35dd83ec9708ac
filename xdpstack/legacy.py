"""State left by an xdpstack from before state was per namespace, recognised and removed.

That layout kept pins at <root>/<IFACE>/prog, ... keyed by interface name only, one lock at
/run/xdpstack/lock and status records in /run/xdpstack/stacks/. Its pins cannot say which namespace
they were made in, so they are never read: the first xdpstack command (in any namespace) that meets
them says so in one line and removes them. If the pinned demux is the program attached to the
interface of that name in the namespace the command runs in, it is xdpstack's own and is detached
too; a program anywhere else is left alone (and the line says how to remove it).

A legacy directory is one directly under the root holding a `prog` pin of a program called
xdp_demux and a `claims` pin: a namespace directory holds `identity` and directories only (even an
interface called "prog" is a directory there), and a root shared with other tools (XDPSTACK_BPFFS=
/sys/fs/bpf) may hold their pins, which are not ours to touch.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from xdpstack import libbpf, lockfile, netlink, paths
from xdpstack.errors import NoSuchInterface

_MODE_FLAGS = {"native": libbpf.XDP_FLAGS_DRV_MODE, "generic": libbpf.XDP_FLAGS_SKB_MODE}


def candidates() -> list[str]:
    """Directories under the bpffs root shaped like a legacy one (a `prog` and a `claims` file)."""
    root = str(paths.bpffs_root())
    try:
        with os.scandir(root) as it:         # os, not pathlib: this runs before every map is opened
            children = sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
    except OSError:                          # no root (yet), or not a directory
        return []
    return [c for c in children if all(os.path.isfile(os.path.join(c, n)) for n in ("prog", "claims"))]


def dirs() -> list[Path]:
    """Legacy interface directories: candidates whose `prog` pin is xdpstack's demux."""
    return [Path(c) for c in candidates() if _pinned(Path(c) / "prog")[1] == "xdp_demux"]


def found() -> bool:
    return bool(dirs()) or os.path.exists(paths.LEGACY_LOCK) or os.path.exists(paths.LEGACY_STACKS)


def clean(say: Callable[[str], None]) -> None:
    """Remove every piece of legacy state, serialized with any other cleaner (and with an older
    xdpstack still running) by the legacy lock."""
    if not found():
        return
    fd = lockfile.acquire(paths.LEGACY_LOCK)
    try:
        for d in dirs():
            say(_remove(d))
        _remove_dead_records()
        if not dirs() and not paths.LEGACY_STACKS.exists():
            paths.LEGACY_LOCK.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _remove(d: Path) -> str:
    ifname = d.name
    prog_id = _pinned(d / "prog")[0]
    taken = prog_id is not None and _detach_here(ifname, d / "prog", prog_id)
    for p in d.iterdir():
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            p.unlink()
    with contextlib.suppress(OSError):
        d.rmdir()
    what = f"removed {d}, state of an older xdpstack (pins keyed by interface name only)"
    if taken:
        return f"{what}; detached its program {prog_id} from {ifname} here"
    if prog_id is not None:
        return (f"{what}; its program {prog_id} is not attached to {ifname} in this namespace (if another "
                f"namespace's {ifname} runs it: `ip link set dev {ifname} xdp off` there)")
    return what


def _pinned(pin: Path) -> tuple[int | None, str]:
    """(id, name) of the program pinned at `pin`; (None, "") when it is not a pinned program."""
    try:
        fd = libbpf.obj_get(str(pin))
    except OSError:
        return None, ""
    try:
        info = libbpf.prog_info(fd)
        return info.id, info.name.decode(errors="replace")
    except OSError:
        return None, ""                  # a map pinned as "prog"? not a program we know
    finally:
        os.close(fd)


def _detach_here(ifname: str, pin: Path, prog_id: int) -> bool:
    """Detach prog_id from `ifname` in the current namespace if it is the attached program."""
    try:
        ifindex = netlink.link_index(ifname)
    except NoSuchInterface:
        return False
    state = netlink.xdp_state(ifindex)
    if not state or state.prog_id != prog_id or state.mode not in _MODE_FLAGS:
        return False
    fd = libbpf.obj_get(str(pin))
    try:                                 # only if it is still that program (XDP_FLAGS_REPLACE)
        libbpf.xdp_attach(ifindex, -1, _MODE_FLAGS[state.mode], old_prog_fd=fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _remove_dead_records() -> None:
    """Status records of launchers that are gone; a running older launcher removes its own."""
    from xdpstack.registry import pid_alive  # registry imports nsstate, which imports this module
    d = paths.LEGACY_STACKS
    if not d.is_dir():
        return
    for p in d.glob("*.json"):
        try:
            pid = int(json.loads(p.read_text()).get("launcher_pid", 0))
        except (OSError, ValueError, AttributeError):
            pid = 0
        if not pid_alive(pid):
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        d.rmdir()

