"""The launcher: one application on its own user-level stack, supervised from start to end.

This is the one place where the control path (xdpstack) and the stacks (userstack) meet:

    1. register a stack on the interface          registry.register_stack
    2. claim its 3-tuples, bound as the user       registry.claim_all (the kernel's bind() decides)
    3. give it a virtual port                      ports.create (veth pair, port programs, devmap)
    4. create its UMEM and AF_XDP sockets          userstack.xsk.create, registry.set_xsk
       (on the port's inner end; in direct mode on the NIC's own queues, and step 3 is skipped)
    5. start CMD as the user, fds inherited        subprocess + XDPSTACK_* environment
    6. answer its control channel                  userstack.agent.StackAgent (neighbours), with
                                                   the launcher's ephemeral claims injected
    7. wait; on CMD's end or SIGINT/SIGTERM/SIGHUP, undo 6..1 within a second, pass the status on

If the launcher itself is killed with SIGKILL, the application dies with it (PR_SET_PDEATHSIG) and
the next registry operation on the interface collects what the dead launcher left (its pid is gone).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from xdpstack import loader, netlink, paths, ports, reach, registry, stackstats
from xdpstack.errors import NotRoot, StackError, UsageError
from xdpstack.layout import CONST

PR_SET_PDEATHSIG = 1
TARGET_PORT = CONST["XS_TARGET_PORT"]
TARGET_XSK = CONST["XS_TARGET_XSK"]
STATUS_INTERVAL = 1.0


@dataclass
class RunSpec:
    ifname: str
    cmd: list[str]
    udp: list[int] = field(default_factory=list)
    tcp: list[int] = field(default_factory=list)
    addr: str | None = None             # None: every local address (0.0.0.0 and ::)
    user: str | None = None             # None: the invoking user
    queues: int = 1
    name: str | None = None
    grace: float = 0.5                  # SIGTERM to CMD, then SIGKILL after this long
    env: dict[str, str] = field(default_factory=dict)   # extra XDPSTACK_* options for the stack
    direct: bool = False                # sockets on the NIC's own queues: no port, no egress guard
    zerocopy: str = "auto"              # direct mode: auto | on | off


@dataclass
class User:
    name: str
    uid: int
    gid: int
    groups: list[int]
    home: str


def resolve_user(spec: str | None) -> User:
    try:
        pw = pwd.getpwuid(os.getuid()) if spec is None else (
            pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec))
    except KeyError:
        raise UsageError(f"no such user {spec!r}: give a user name or uid from /etc/passwd") from None
    groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir)


def resolve_command(cmd: list[str]) -> list[str]:
    """CMD on PATH, the venv's bin (userstack-echo, userstack-httpd) searched too."""
    if not cmd:
        raise UsageError("nothing to run: give the command after --, e.g. `-- userstack-echo`")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which(cmd[0], path=path)
    if exe is None:
        raise UsageError(f"{cmd[0]!r}: command not found")
    return [exe, *cmd[1:]]


def _pdeathsig():
    """In the child, after the uid change (which would clear it): die with the launcher."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:               # the launcher died before we got here
        os._exit(1)


def status_dir() -> Path:
    """This network namespace's launcher records (paths.stacks_dir: /run/xdpstack/netns-INODE/stacks)."""
    return paths.stacks_dir()


class Launch:
    """A running stack and its application; close() undoes everything, in reverse order."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.undo = contextlib.ExitStack()
        self.child: subprocess.Popen | None = None
        self.rec = None
        self.xsks = None
        self.claims = None
        self.target = TARGET_PORT
        self.status_path: Path | None = None
        self.stats_fd = -1                  # the stack's counters page (stackstats), read live

    # -- set-up ----------------------------------------------------------------------------------
    def start(self) -> Launch:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self):
        s = self.spec
        if os.geteuid() != 0:
            raise NotRoot("xdpstack run needs root (it attaches XDP programs and binds AF_XDP sockets): "
                          "run it with sudo; --user chooses who the application runs as")
        if not s.udp and not s.tcp:
            raise UsageError("claim at least one port: --udp PORT or --tcp PORT")
        if not 1 <= s.queues <= CONST["XS_MAX_QUEUES"]:
            raise UsageError(f"--queues must be 1..{CONST['XS_MAX_QUEUES']}")
        if s.zerocopy not in ("auto", "on", "off"):
            raise UsageError(f"--zerocopy must be auto, on or off, not {s.zerocopy!r}")
        if s.zerocopy != "auto" and not s.direct:
            raise UsageError("--zerocopy is for --direct stacks (an isolated stack's port is a veth: "
                             "copy mode)")
        user = resolve_user(s.user)
        cmd = resolve_command(s.cmd)
        if user.uid != os.getuid():                      # before anything is claimed: one line
            reach.check_executable(cmd[0], reach.Who(user.name, user.uid, user.gid, tuple(user.groups)))
        name = s.name or os.path.basename(cmd[0])
        loader.status(s.ifname)                          # attached by xdpstack, or a clear error
        nic_index = netlink.link_index(s.ifname)
        link = netlink.link_info(nic_index)
        addrs = [a.address for a in netlink.addresses(nic_index)]
        tuples = [("udp", s.addr, p) for p in s.udp] + [("tcp", s.addr, p) for p in s.tcp]
        # Direct: a frame is received on whichever queue the NIC picks, so the stack takes them all
        # (veth and NICs without ntuple steering cannot send its flows to chosen queues).
        nqueues = link.rx_queues if s.direct else s.queues
        if nqueues > CONST["XS_MAX_QUEUES"]:
            raise UsageError(f"{s.ifname} has {nqueues} RX queues; a direct stack can hold "
                             f"{CONST['XS_MAX_QUEUES']} at most")
        self.target = TARGET_XSK if s.direct else TARGET_PORT

        self.rec = registry.register_stack(s.ifname, name[:CONST["XS_NAME_LEN"] - 1], uid=user.uid,
                                           queues=nqueues, target=self.target)
        self.undo.callback(registry.unregister_stack, s.ifname, self.rec.id)
        # Claims first: a conflict fails here, before anything else is built or CMD starts.
        self.claims = registry.claim_all(s.ifname, tuples, self.rec, user.uid, user.gid, target=self.target)
        self.undo.callback(self.claims.release)

        from userstack import agent, xsk  # the stack half, imported only here
        if s.direct:
            self.xsks = _direct_sockets(xsk, s.ifname, nqueues, s.zerocopy)
        else:
            port = ports.create(s.ifname, nic_index, self.rec.id, s.queues, link.mtu)
            self.undo.callback(ports.remove, s.ifname, self.rec.id, port)
            self.rec.port_ifindex = port.outer_index
            registry.update_stack(s.ifname, self.rec)
            self.xsks = xsk.create(port.inner, queues=s.queues)
        self.undo.callback(self.xsks.close)            # closing the sockets empties their XSK slots
        if s.direct and {**os.environ, **s.env}.get("XDPSTACK_BUSY_POLL") == "1":
            self.xsks.busy_poll()                      # the stack's spinning drives the NIC's NAPI
        for qid, fd in zip(self.xsks.queue_ids, self.xsks.fds, strict=True):
            registry.set_xsk(s.ifname, self.rec, qid, fd)
        self.stats_fd, stats_size = stackstats.create()
        self.undo.callback(os.close, self.stats_fd)

        stack_end, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.undo.callback(ours.close)
        stack_tuples = [(p, a or w, port_) for (p, a, port_) in tuples
                        for w in ((None,) if a else ("0.0.0.0", "::"))]
        env = self.xsks.env(name=name[:31].replace(" ", "_"), stack_id=self.rec.id, mac=link.mac,
                            mtu=link.mtu, addrs=addrs, tuples=stack_tuples, ctl_fd=stack_end.fileno(),
                            # a veth's peer is a kernel here: its frames may carry partial checksums
                            local_peer=link.kind == "veth", stats_fd=self.stats_fd, stats_size=stats_size)
        child_env = {**os.environ, **env, **s.env,
                     "HOME": user.home, "USER": user.name, "LOGNAME": user.name,
                     "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        as_other = user.uid != os.getuid()
        self.user = user                    # before the agent: CMD may claim a port at once
        try:
            self.child = subprocess.Popen(
                cmd, env=child_env, pass_fds=[*self.xsks.pass_fds, stack_end.fileno(), self.stats_fd],
                user=user.uid if as_other else None, group=user.gid if as_other else None,
                extra_groups=user.groups if as_other else None, preexec_fn=_pdeathsig)
        except OSError as e:
            raise StackError(f"cannot start {cmd[0]}: {e.strerror}") from None
        finally:
            stack_end.close()
        self.undo.callback(self._stop_child)
        # The agent starts after the fork (no threads while preexec_fn runs); it inherits our netns.
        # It is the stacks' own (userstack.agent); what only the launcher can do, claims in the
        # registry and the demux maps bound as the user, it gets from us.
        self.agent = agent.StackAgent(ours, nic_index, claim=self._claim_ephemeral, release=self._release)
        self.undo.callback(self.agent.close)
        self._write_status(first=True)

    # -- ephemeral ports for active opens (TCP connect) ---------------------------------------------
    def _claim_ephemeral(self, m) -> tuple[str, int]:
        proto = {6: "tcp", 17: "udp"}.get(m.proto)
        if proto is None:
            raise OSError(errno.EPROTONOSUPPORT, "tcp or udp only")
        c = registry.claim_ephemeral(self.spec.ifname, proto, m.family, m.remote, self.rec,
                                     self.user.uid, self.user.gid, target=self.target)
        self.claims.add(c)
        first = c.claims[0]
        return first.addr, first.port

    def _release(self, m) -> None:
        proto = {6: "tcp", 17: "udp"}.get(m.proto)
        for c in list(self.claims):
            if (c.proto, c.family, c.port, c.addr) == (proto, m.family, m.port, m.local) and not c.released:
                c.release()
                self.claims.claims.remove(c)

    # -- supervision -----------------------------------------------------------------------------
    def wait(self) -> int:
        """Until CMD ends (its status) or a signal arrives (CMD is stopped; 128 + signal)."""
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_fd = signal.set_wakeup_fd(wfd)
        got: list[int] = []
        handlers = {sig: signal.signal(sig, lambda n, _f: got.append(n))
                    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        pidfd = os.pidfd_open(self.child.pid)
        try:
            next_status = time.monotonic() + STATUS_INTERVAL
            while True:
                ready, _, _ = select.select([pidfd, rfd], [], [], max(0.0, next_status - time.monotonic()))
                if pidfd in ready:
                    return _exit_code(self.child.wait())
                if got:
                    self._stop_child()
                    return 128 + got[0]
                if time.monotonic() >= next_status:
                    self._write_status()
                    next_status = time.monotonic() + STATUS_INTERVAL
                with contextlib.suppress(OSError):
                    os.read(rfd, 64)
        finally:
            os.close(pidfd)
            signal.set_wakeup_fd(old_fd)
            for sig, h in handlers.items():
                signal.signal(sig, h)
            os.close(rfd)
            os.close(wfd)

    def _stop_child(self):
        c = self.child
        if c is None or c.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            c.send_signal(signal.SIGTERM)
        try:
            c.wait(timeout=self.spec.grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                c.kill()
            c.wait()

    def _write_status(self, first: bool = False):
        """A readable record of the running stack beside the pins' state: `xdpstack stacks` reads it."""
        if self.rec is None or self.child is None:
            return
        d = status_dir()
        if first:
            d.mkdir(parents=True, exist_ok=True)
            self.status_path = d / f"{_netns_id()}-{self.spec.ifname}-{self.rec.id}.json"
            self.undo.callback(lambda: self.status_path.unlink(missing_ok=True))
        info = {"ifname": self.spec.ifname, "stack": self.rec.id, "name": self.rec.name,
                "launcher_pid": os.getpid(), "pid": self.child.pid, "user": self.user.name,
                "uid": self.user.uid, "cmd": self.spec.cmd, "queues": len(self.xsks.fds),
                "mode": registry.MODES[self.target],
                "xsk_bind": "zero-copy" if self.xsks.zerocopy else "copy",
                "tuples": [str(c) for c in self.claims], "xdp_statistics": self.xsks.stats(),
                "stats_fd": self.stats_fd, "updated": time.time()}
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.status_path)

    def close(self):
        self.undo.close()


def _direct_sockets(xsk, ifname: str, nqueues: int, zerocopy: str):
    """The direct stack's sockets on every queue of the NIC: zero-copy if asked (on) or if the
    driver has it (auto), else copy mode."""
    queues = list(range(nqueues))
    try:
        if zerocopy != "off":
            try:
                return xsk.create(ifname, queues=queues, zerocopy=True)
            except OSError as e:
                if zerocopy == "on" or e.errno == errno.EBUSY:
                    raise
        return xsk.create(ifname, queues=queues, copy=True)
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise StackError(f"{ifname}: a queue already has an AF_XDP socket (another direct stack?); "
                             "one direct stack owns a NIC's queues") from None
        if zerocopy == "on":
            raise StackError(f"{ifname}: no zero-copy AF_XDP here ({e.strerror}): use --zerocopy auto "
                             "or off") from None
        raise StackError(f"{ifname}: cannot bind AF_XDP sockets: {e.strerror}") from None


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc       # killed by signal N: 128 + N, as a shell reports it


def _netns_id() -> int:
    return paths.netns_key().inode          # redundant in the per-namespace directory, kept in the name


def run(spec: RunSpec) -> int:
    """Launch, supervise, clean up; returns the exit status to pass on."""
    launch = Launch(spec).start()
    try:
        return launch.wait()
    finally:
        launch.close()


def read_status(ifname: str | None = None) -> list[dict]:
    """Status records of the stacks running in this network namespace (optionally on one interface)."""
    out = []
    d = status_dir()
    if not d.is_dir():
        return out
    prefix = f"{_netns_id()}-"
    for p in sorted(d.glob(f"{prefix}*.json")):
        try:
            info = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if ifname and info.get("ifname") != ifname:
            continue
        if not registry.pid_alive(info.get("launcher_pid", 0)):
            p.unlink(missing_ok=True)           # its launcher was killed: the record is stale
            continue
        out.append(info)
    return out

