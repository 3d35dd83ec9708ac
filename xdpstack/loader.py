"""Compile, load, pin, attach and detach the XDP programs of bpf/xdpstack.bpf.c.

    attach("eth0", mode="auto")      # native XDP, or generic where the driver has none
    detach("eth0")

The pinned objects are the state; this process may exit right after attaching. They live in the
directory of the network namespace the caller is in (paths.py, nsstate.py), so namespaces with
interfaces of the same name never meet:

    $XDPSTACK_BPFFS/netns-INODE/IFACE/prog        xdp_demux, the program attached to IFACE
    $XDPSTACK_BPFFS/netns-INODE/IFACE/port_rx     xdp_port_rx (XDP) and tc_port_tx (TC, SCHED_CLS):
    $XDPSTACK_BPFFS/netns-INODE/IFACE/port_tx_tc  loaded, not attached (the launcher attaches them
                                                  to a stack's virtual port from these pins: XDP on
                                                  the inner end, clsact ingress on the outer)
    $XDPSTACK_BPFFS/netns-INODE/IFACE/<map>       every map of bpf/maps.h

The root defaults to /sys/fs/bpf/xdpstack; bpffs is mounted at /sys/fs/bpf when missing.
"xdpstack's own program" means: the program attached to IFACE is the one pinned at .../IFACE/prog.
Anything else is someone else's, and is replaced only with force=True. attach() of an interface
xdpstack already serves is a no-op that says so (Attachment.already). A kernel attachment outlives
this process, so every failure after the attach detaches again and removes the pins: an interface
is either fully attached (program, every pin, iface and local_addrs filled) or untouched.

`python -m xdpstack.loader --check` compiles with -Wall -Werror and loads the three programs
through the verifier (exit 0/1), for `make lint`.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from xdpstack import libbpf, netlink, nsstate, paths, registry
from xdpstack.errors import (
    Busy,
    CompileError,
    ForeignProgram,
    NoSuchInterface,
    NotAttached,
    UsageError,
    XdpstackError,
)
from xdpstack.layout import BPF_DIR, ffi
from xdpstack.maps import MAP_NAMES, PinnedMap

SOURCE = BPF_DIR / "xdpstack.bpf.c"
# pin name -> (function, program type): "xdp" or "sched_cls" (TC)
PROGRAMS = {"prog": ("xdp_demux", "xdp"), "port_rx": ("xdp_port_rx", "xdp"),
            "port_tx_tc": ("tc_port_tx", "sched_cls")}
MODES = ("auto", "native", "generic")
MODE_FLAGS = {"native": libbpf.XDP_FLAGS_DRV_MODE, "generic": libbpf.XDP_FLAGS_SKB_MODE}


def source_path() -> Path:
    """The program source: bpf/xdpstack.bpf.c (XDPSTACK_BPF_SRC overrides, for development)."""
    return Path(os.environ.get("XDPSTACK_BPF_SRC") or SOURCE)


def cflags() -> list[str]:
    return ["-I" + str(BPF_DIR), "-Wall", "-Werror"]


# ---- compile and load ---------------------------------------------------------------------------

class Loaded:
    """The object compiled and loaded by bcc: program fds by pin name, map fds by map name."""

    def __init__(self, src: Path | None = None):
        src = Path(src) if src else source_path()
        if not src.exists():
            raise CompileError(f"no BPF program at {src}")
        from bcc import BPF  # bcc (and its 200 MB of clang) only where we compile

        sys.stderr.flush()                 # bcc prints the compiler's messages on fd 2 itself
        try:
            self.bpf = BPF(src_file=str(src).encode(), cflags=cflags())
        except Exception as e:
            raise CompileError(f"{src} does not compile ({e}); the compiler's messages are above") from None
        try:
            types = {"xdp": BPF.XDP, "sched_cls": BPF.SCHED_CLS}
            self.progs = {pin: self.bpf.load_func(fn, types[t]).fd for pin, (fn, t) in PROGRAMS.items()}
        except Exception as e:
            self.close()
            raise CompileError(f"{src}: the kernel refused a program ({e}); "
                               "the verifier's log is above") from None
        self.maps = {name: self.bpf.get_table(name).map_fd for name in MAP_NAMES}

    def close(self):
        bpf, self.bpf = getattr(self, "bpf", None), None
        if bpf is not None:
            with contextlib.suppress(Exception):
                bpf.cleanup()             # closes our fds; pinned objects stay


def check(src: str | None = None) -> None:
    """Compile with -Wall -Werror and load every program (CompileError if anything fails)."""
    Loaded(Path(src) if src else None).close()


# ---- bpffs --------------------------------------------------------------------------------------

def ensure_bpffs(root: Path | None = None) -> Path:
    """Make sure `root` lies on a bpffs and exists. Like bpftool and iproute2, mount one when
    missing: at /sys/fs/bpf for a root below it, else at the root itself."""
    root = Path(root or paths.bpffs_root())
    p = root
    while not p.exists():
        p = p.parent
    if not libbpf.is_bpffs(str(p)):
        sysbpf = Path("/sys/fs/bpf")
        target = sysbpf if sysbpf in root.parents or root == sysbpf else root
        try:
            target.mkdir(parents=True, exist_ok=True)
            libbpf.mount_bpffs(str(target))
        except OSError as e:
            raise XdpstackError(f"{p} is not on a bpf filesystem and mounting one at {target} failed "
                                f"({e.strerror}): `mount -t bpf bpf {target}`, "
                                "or set XDPSTACK_BPFFS") from None
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---- state --------------------------------------------------------------------------------------

@dataclass
class Attachment:
    ifname: str
    ifindex: int
    prog_id: int
    prog_tag: str
    prog_name: str
    mode: str                       # native | generic
    pin_dir: str
    pins: list[str] = field(default_factory=list)
    already: bool = False           # attach(): it was attached before this call
    replaced: int = 0               # attach(force=True): id of the foreign program replaced


def pinned_prog_id(ifname: str) -> int | None:
    """Id of the program pinned at IFACE/prog, None when there is no such pin."""
    try:
        fd = libbpf.obj_get(str(paths.pin_dir(ifname) / "prog"))
    except FileNotFoundError:
        return None
    try:
        return libbpf.prog_info(fd).id
    finally:
        os.close(fd)


def _prog_desc(prog_id: int) -> tuple[str, str]:
    """(tag, name) of a loaded program."""
    try:
        fd = libbpf.prog_fd_by_id(prog_id)
    except OSError:
        return "", ""
    try:
        info = libbpf.prog_info(fd)
        return bytes(info.tag).hex(), info.name.decode()
    finally:
        os.close(fd)


def _attachment(ifname: str, ifindex: int, state: netlink.XdpState, **kw) -> Attachment:
    tag, name = _prog_desc(state.prog_id)
    d = paths.pin_dir(ifname)
    pins = sorted(p.name for p in d.iterdir()) if d.is_dir() else []
    return Attachment(ifname, ifindex, state.prog_id, tag, name, state.mode, str(d), pins, **kw)


def _foreign(ifname: str, state: netlink.XdpState, what: str) -> ForeignProgram:
    _, name = _prog_desc(state.prog_id)
    desc = f"id {state.prog_id}" + (f", {name}" if name else "") + f", {state.mode} mode"
    return ForeignProgram(f"{ifname} has an XDP program xdpstack did not attach ({desc}): {what}")


def status(ifname: str) -> Attachment:
    """The attachment of `ifname`: NotAttached / ForeignProgram / NoSuchInterface otherwise."""
    nsstate.ensure()
    d = paths.pin_dir(ifname)
    try:
        ifindex = netlink.link_index(ifname)
    except NoSuchInterface:
        if d.is_dir():
            raise NoSuchInterface(ifname, f", but its pins at {d} remain: remove them with "
                                          f"`xdpstack detach --force {ifname}`") from None
        raise
    state = netlink.xdp_state(ifindex)
    ours = pinned_prog_id(ifname)
    if state and ours == state.prog_id:
        return _attachment(ifname, ifindex, state)
    if state:
        raise _foreign(ifname, state, "xdpstack is not serving it")
    if d.is_dir():
        raise NotAttached(f"{ifname} is not attached, but stale pins remain at {d}: "
                          f"`xdpstack detach {ifname}` removes them")
    raise NotAttached(f"{ifname} is not attached: run `xdpstack attach {ifname}`")


def require_pins(ifname: str) -> Path:
    """The pin directory of `ifname`; NoSuchInterface or NotAttached when there is none."""
    nsstate.ensure()
    d = paths.pin_dir(ifname)
    if d.is_dir():
        return d
    netlink.link_index(ifname)                       # NoSuchInterface
    raise NotAttached(f"{ifname} is not attached: run `xdpstack attach {ifname}`")


def attached_interfaces() -> list[str]:
    """Names with a pin directory in this network namespace's directory."""
    nsstate.ensure()
    d = paths.netns_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir())


# ---- attach -------------------------------------------------------------------------------------

def _fill_iface(maps: dict[str, int], ifindex: int, mode: str):
    with PinnedMap.from_fd(maps["iface"]) as m:
        m.update(0, {"ifindex": ifindex, "xdp_mode": MODE_FLAGS[mode]})


def _fill_local_addrs(m: PinnedMap, ifindex: int) -> int:
    want = {}
    for a in netlink.addresses(ifindex):
        k = ffi.new("struct xs_addr *")
        k.family = a.family
        raw = ipaddress.ip_address(a.addr).packed
        ffi.memmove(k.addr, raw, len(raw))
        want[bytes(ffi.buffer(k))] = a.prefixlen
    for k in list(m.keys_raw()):
        if k not in want:
            m.delete(k)
    for k, plen in want.items():
        m.update(k, plen)
    return len(want)


def refresh_local_addrs(ifname: str) -> int:
    """Rewrite local_addrs (key: address, value: prefix length) from the interface's addresses now."""
    ifindex = netlink.link_index(ifname)
    with registry.locked(), PinnedMap(paths.pin_dir(ifname) / "local_addrs") as m:
        return _fill_local_addrs(m, ifindex)


def _remove_pins(d: Path):
    """Under the lock: the pins of one interface, then its namespace's directory if it was the last."""
    if d.is_dir():
        for p in d.iterdir():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with contextlib.suppress(FileNotFoundError):
            d.rmdir()
    nsstate.drop_netns_dir_if_unused(d.parent)


def _live_stacks(ifname: str) -> list[registry.StackRecord]:
    try:
        registry.collect_stale(ifname)
        return registry.list_stacks(ifname)
    except XdpstackError:
        return []


def _busy(ifname: str, stacks: list[registry.StackRecord], claims: int, what: str) -> Busy:
    names = ", ".join(f"{s.name!r} (pid {s.pid})" for s in stacks[:5]) + (" ..." if len(stacks) > 5 else "")
    return Busy(f"{ifname} still has {len(stacks)} stack(s) with {claims} claim(s): {names}; "
                f"stop them first, or {what} with --force")


def attach(ifname: str, mode: str = "auto", force: bool = False, src: str | None = None) -> Attachment:
    """Attach xdp_demux to `ifname` and pin everything (see the module doc)."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    ifindex = netlink.link_index(ifname)
    ensure_bpffs()
    nsstate.ensure()
    done = _check_before_attach(ifname, ifindex, mode, force)
    if done:
        return done
    loaded = Loaded(src)          # compile (~2 s) outside the lock: claims elsewhere go on meanwhile
    try:
        with registry.locked():
            done = _check_before_attach(ifname, ifindex, mode, force)     # again, now serialized
            return done or _attach_locked(ifname, ifindex, mode, loaded)
    finally:
        loaded.close()


def _check_before_attach(ifname: str, ifindex: int, mode: str, force: bool) -> Attachment | None:
    """The Attachment when there is nothing to do; raises when attaching is not allowed."""
    state = netlink.xdp_state(ifindex)
    ours = pinned_prog_id(ifname)
    if state and ours == state.prog_id:
        if mode != "auto" and mode != state.mode:
            raise XdpstackError(f"{ifname} is already attached by xdpstack in {state.mode} mode: "
                                f"`xdpstack detach {ifname}` first to attach it in {mode} mode")
        return _attachment(ifname, ifindex, state, already=True)
    if state and not force:
        raise _foreign(ifname, state, "remove it, or use --force to replace it")
    d = paths.pin_dir(ifname)
    if d.exists():                         # pins, but not of the attached program: stale
        live = _live_stacks(ifname)
        if live and not force:
            raise _busy(ifname, live, len(registry.list_claims(ifname)),
                        f"the pins at {d} are stale; replace them")
    return None


def _attach_locked(ifname: str, ifindex: int, mode: str, loaded: Loaded) -> Attachment:
    state = netlink.xdp_state(ifindex)     # someone else's (force was given), or None
    d = paths.pin_dir(ifname)
    _remove_pins(d)                        # stale ones, if any (checked above)
    pinned, attached = False, False
    try:
        _fill_iface(loaded.maps, ifindex, "generic" if mode == "generic" else "native")
        with PinnedMap.from_fd(loaded.maps["local_addrs"]) as m:
            _fill_local_addrs(m, ifindex)
        pinned = True                      # from here on, a failure removes what was made
        nsstate.make_netns_dir(paths.netns_key())
        d.mkdir()
        for name, fd in {**loaded.progs, **loaded.maps}.items():
            libbpf.obj_pin(fd, str(d / name))
        prog_fd = loaded.progs["prog"]
        if state:                          # force: take the foreign program off first
            _detach_prog(ifname, ifindex, state, expect_id=state.prog_id)
        got = _attach_prog(ifname, ifindex, prog_fd, mode)
        attached = True
        _fill_iface(loaded.maps, ifindex, got)
        now = netlink.xdp_state(ifindex)
        mine = libbpf.prog_info(prog_fd).id
        if not now or now.prog_id != mine:
            raise XdpstackError(f"attaching to {ifname} did not stick (attached now: "
                                f"{now.prog_id if now else 'nothing'}); try again")
        return _attachment(ifname, ifindex, now, replaced=state.prog_id if state else 0)
    except BaseException:
        if attached:
            with contextlib.suppress(Exception):
                libbpf.xdp_attach(ifindex, -1, MODE_FLAGS[got], old_prog_fd=loaded.progs["prog"])
        if pinned:
            _remove_pins(d)
        raise


def _attach_prog(ifname: str, ifindex: int, prog_fd: int, mode: str) -> str:
    """Attach in `mode` (auto: native, else generic); the mode we got."""
    tries = ["native", "generic"] if mode == "auto" else [mode]
    for m in tries:
        try:
            libbpf.xdp_attach(ifindex, prog_fd, MODE_FLAGS[m] | libbpf.XDP_FLAGS_UPDATE_IF_NOEXIST)
            return m
        except OSError as e:
            if m == "native" and e.errno == errno.EOPNOTSUPP:
                if mode == "auto":
                    continue
                raise XdpstackError(f"{ifname}'s driver has no native XDP: use --mode generic "
                                    "(or --mode auto)") from None
            if e.errno in (errno.EBUSY, errno.EEXIST):
                state = netlink.xdp_state(ifindex)
                if state:
                    raise _foreign(ifname, state,
                                   "it appeared while attaching; remove it, or use --force") from None
            raise XdpstackError(f"attaching to {ifname} in {m} mode failed: {e.strerror}") from None
    raise AssertionError("unreachable")


def _detach_prog(ifname: str, ifindex: int, state: netlink.XdpState, expect_id: int):
    """Take program expect_id off ifindex, only if it is still the attached one."""
    try:
        fd = libbpf.prog_fd_by_id(expect_id)
    except OSError:
        fd = None
    try:
        modes = ["native", "generic"] if state.mode == "multi" else [state.mode]
        for m in modes:
            if m not in MODE_FLAGS:
                raise XdpstackError(f"{ifname}'s XDP program is attached in {m} mode, which xdpstack "
                                    f"does not handle: `ip link set dev {ifname} xdp off` first")
            libbpf.xdp_attach(ifindex, -1, MODE_FLAGS[m], old_prog_fd=fd)
    except OSError as e:
        raise XdpstackError(f"detaching program {expect_id} from {ifname} failed: {e.strerror}") from None
    finally:
        if fd is not None:
            os.close(fd)


# ---- detach -------------------------------------------------------------------------------------

@dataclass
class Detachment:
    ifname: str
    prog_id: int                     # the program taken off, 0 if none was
    pin_dir: str
    note: str = ""


def detach(ifname: str, force: bool = False) -> Detachment:
    """Take xdpstack's program off `ifname` and remove every pin. Refuses while stacks hold claims
    (force: detach anyway; their sockets stay with them, the maps go). A program xdpstack did not
    attach is never removed here."""
    d = paths.pin_dir(ifname)
    with registry.locked():
        try:
            ifindex = netlink.link_index(ifname)
        except NoSuchInterface:
            if not d.is_dir():
                raise
            if not force:
                raise NoSuchInterface(ifname, f", but its pins at {d} remain: `xdpstack detach --force "
                                              f"{ifname}` removes them") from None
            _remove_pins(d)
            return Detachment(ifname, 0, str(d), "interface gone: removed its stale pins")
        state = netlink.xdp_state(ifindex)
        ours = pinned_prog_id(ifname)
        if not d.is_dir():
            if state:
                raise _foreign(ifname, state,
                               f"xdpstack will not remove it (`ip link set dev {ifname} xdp off` does)")
            raise NotAttached(f"{ifname} is not attached: nothing to detach")
        live = _live_stacks(ifname)
        if live and not force:
            raise _busy(ifname, live, len(registry.list_claims(ifname)), "detach")
        taken, note = 0, ""
        if state and ours == state.prog_id:
            _detach_prog(ifname, ifindex, state, expect_id=state.prog_id)
            taken = state.prog_id
        elif state:
            note = f"left program {state.prog_id} attached: xdpstack did not attach it; removed stale pins"
        else:
            note = "nothing was attached: removed stale pins"
        _remove_pins(d)
        return Detachment(ifname, taken, str(d), note)


# ---- python -m xdpstack.loader --check ----------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xdpstack.loader",
                                 description="Compile and verify the xdpstack BPF programs.")
    ap.add_argument("--check", action="store_true",
                    help="compile with -Wall -Werror and load through the verifier")
    ap.add_argument("--src", help=f"program source (default {SOURCE})")
    a = ap.parse_args(argv)
    if not a.check:
        ap.print_usage(sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("xdpstack: --check loads programs into the kernel: run it as root", file=sys.stderr)
        return 1
    try:
        check(a.src)
    except XdpstackError as e:
        print(f"xdpstack: {e}", file=sys.stderr)
        return 1
    print(f"{a.src or source_path()}: compiles with {' '.join(cflags()[1:])} and loads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
