"""Reservation sockets: the kernel sockets through which a claim holds its tuple, and who holds a port.

A claim is a real bind() made as the user the stack runs for, so the kernel's own rules (privileged
ports, ports in use, exact-versus-wildcard overlaps) decide; registry.py keeps the maps beside it.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pwd
import socket
import struct

from xdpstack.layout import PROTOS

# cBPF "ret #0": a UDP reservation socket queues nothing
_DROP_ALL = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("HBBI", 0x06, 0, 0, 0))
SO_ATTACH_FILTER = 26


def drop_everything(sock: socket.socket):
    prog = struct.pack("HL", 1, ctypes.addressof(_DROP_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def _groups_of(uid: int, gid: int) -> list[int]:
    try:
        return os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:
        return [gid]


def bind_as(proto: str, family: int, addr: str | None, port: int, uid: int, gid: int) -> socket.socket:
    """A socket bound to (addr, port), created by a child process running as uid/gid with the
    user's groups (so the kernel applies that user's privileges), passed back over SCM_RIGHTS.
    Raises OSError with the bind's errno."""
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    typ = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    host = addr or ("0.0.0.0" if family == 4 else "::")
    groups = _groups_of(uid, gid)
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:                                    # child: no Python-level cleanup, just _exit
        rc = 0
        try:
            parent.close()
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            s = socket.socket(fam, typ)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            socket.send_fds(child, [b"ok"], [s.fileno()])
        except OSError as e:
            with contextlib.suppress(OSError):
                child.sendall(b"E%d" % (e.errno or errno.EIO))
        except BaseException:
            rc = 1
        finally:
            os._exit(rc)
    child.close()
    try:
        msg, fds, _, _ = socket.recv_fds(parent, 64, 1)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    if fds:
        for extra in fds[1:]:
            os.close(extra)
        return socket.socket(fileno=fds[0])
    if msg.startswith(b"E"):
        e = int(msg[1:])
        raise OSError(e, os.strerror(e))
    raise OSError(errno.EIO, "the reservation helper process failed")


def socket_holders(proto: str, port: int) -> list[tuple[int, str, int, str]]:
    """(pid, comm, uid, local address) of the sockets bound to proto/port in this namespace, via
    sock_diag (TCP bound-but-inactive sockets included) and /proc/*/fd."""
    from pyroute2 import DiagSocket

    ipproto = PROTOS[proto]
    # every TCP state, plus TCP_BOUND_INACTIVE (13): bound, not listening
    states = 0xFFFFFFFF if ipproto == socket.IPPROTO_UDP else (0xFFF | 1 << 13)
    found: dict[int, tuple[int, str]] = {}
    with contextlib.suppress(Exception), DiagSocket() as ds:
        ds.bind()
        for fam in (socket.AF_INET, socket.AF_INET6):
            for msg in ds.get_sock_stats(family=fam, protocol=ipproto, states=states):
                if msg.get("idiag_sport") == port and msg.get("idiag_inode"):
                    found[msg["idiag_inode"]] = (msg.get("idiag_uid", -1), msg.get("idiag_src", "?"))
    out = []
    if not found:
        return out
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fddir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fddir)
        except OSError:
            continue
        for fd in names:
            try:
                link = os.readlink(f"{fddir}/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino in found:
                    try:
                        with open(f"/proc/{pid}/comm") as f:
                            comm = f.read().strip()
                    except OSError:
                        comm = "?"
                    uid, src = found.pop(ino)
                    out.append((int(pid), comm, uid, src))
    out += [(0, "", uid, src) for uid, src in found.values()]
    return out


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
