"""Can a user reach a program? The launcher asks before it claims anything; the tests and the demo,
run from a checkout under a 0700 directory (/root), make it reachable in a private view.

    blocked(path, user)        the first directory on the way that the user cannot traverse, or why
                               the file itself cannot be executed; None when it can (asked as the
                               user, in a forked child, so ACLs and groups count as the kernel counts)
    check_executable(cmd, u)   the same for a command and, for a script, its #! interpreter: one line
    traversable_view(paths, u) a private mount namespace for this process and its children in which
                               each such directory is traversable (o+x); nothing changes on the host
"""
from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass

from xdpstack.errors import UsageError

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000


@dataclass(frozen=True)
class Who:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def _why_not(path: str) -> str | None:
    """As the current credentials: None if path can be executed, else what stops it."""
    d = "/"
    for part in [p for p in os.path.dirname(path).split("/") if p]:
        d = os.path.join(d, part)
        if not os.access(d, os.X_OK):
            return f"dir:{d}"
    if not os.access(path, os.X_OK):
        return f"file:{path}"
    return None


def blocked(path: str, who: Who) -> str | None:
    """Ask _why_not(path) as `who`: a forked child drops to its credentials and answers on a pipe."""
    path = os.path.abspath(path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: no Python cleanup, only os calls
        try:
            os.close(r)
            os.setgroups(list(who.groups))
            os.setgid(who.gid)
            os.setuid(who.uid)
            os.write(w, (_why_not(path) or "").encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            answer = f.read().decode()              # the child writes once and exits: bounded
    finally:
        os.waitpid(pid, 0)
    return answer or None


def _describe(answer: str, who: Who) -> str:
    kind, where = answer.split(":", 1)
    st = os.stat(where)
    mode = stat.filemode(st.st_mode)
    if kind == "dir":
        return (f"{where} ({mode}) is not searchable by {who.name}: put the program where every user "
                f"can reach it, or `chmod o+x {where}`")
    return f"{where} ({mode}) is not executable by {who.name}"


def _interpreter(path: str) -> str | None:
    """The absolute #! interpreter of a script (None for a binary or `#!/usr/bin/env ...` lookups)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode(errors="replace") if words and words[0].startswith(b"/") else None


def check_executable(exe: str, who: Who) -> None:
    """One line (UsageError) if `who` cannot execute exe or its interpreter; nothing otherwise."""
    for p in (exe, _interpreter(exe)):
        if p is None:
            continue
        answer = blocked(p, who)
        if answer:
            what = "" if p == exe else f" (the interpreter of {exe})"
            raise UsageError(f"user {who.name} cannot execute {p}{what}: {_describe(answer, who)}")


# -- a private view in which a path is reachable ---------------------------------------------------
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
    args = [a.encode() if a is not None else None for a in (src, target, fstype)]
    if _libc().mount(*args, ctypes.c_ulong(flags), data.encode() if data else None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {src} on {target}: {os.strerror(e)}")


def _open_up(d: str) -> None:
    """Cover directory d with a tmpfs of its owner and mode plus o+x, holding a bind mount of each of
    its entries (symlinks copied): the same tree, traversable by every user, only in this namespace."""
    st = os.stat(d)
    keep = os.open(d, os.O_PATH | os.O_DIRECTORY)    # the covered directory stays reachable through it
    try:
        entries = os.listdir(d)
        mode = stat.S_IMODE(st.st_mode) | stat.S_IXOTH
        _mount("xdpstack-view", d, "tmpfs", 0, f"mode={mode:o},uid={st.st_uid},gid={st.st_gid}")
        for name in entries:
            src, dst = f"/proc/self/fd/{keep}/{name}", os.path.join(d, name)
            est = os.lstat(src)
            if stat.S_ISLNK(est.st_mode):
                os.symlink(os.readlink(src), dst)
                continue
            if stat.S_ISDIR(est.st_mode):
                os.mkdir(dst)
            else:
                os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o600))
            _mount(src, dst, None, MS_BIND | MS_REC)
    finally:
        os.close(keep)


def traversable_view(paths: list[str], who: Who) -> list[str]:
    """Enter a private mount namespace in which `who` can traverse every directory down to each of
    paths; returns the directories opened up (none: nothing was done, no namespace entered).
    The process must not have threads yet (unshare(CLONE_NEWNS) refuses them)."""
    targets = [os.path.join(os.path.realpath(p), ".") for p in paths]
    pending = [a for a in (blocked(t, who) for t in targets) if a]
    opened: list[str] = []
    if not pending:
        return opened
    if _libc().unshare(CLONE_NEWNS) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unshare(CLONE_NEWNS): {os.strerror(e)}")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)      # nothing we mount propagates to the host
    cwd = os.getcwd()
    for t in targets:
        answer = blocked(t, who)
        while answer and answer.startswith("dir:"):
            d = answer.split(":", 1)[1]
            if d in opened:
                break                                # a tmpfs did not help (an ACL?): the caller sees
            _open_up(d)
            opened.append(d)
            answer = blocked(t, who)
    os.chdir(cwd)                                    # the cwd again, through the new mounts
    return opened
