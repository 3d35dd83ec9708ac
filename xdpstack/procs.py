"""Child processes without procps, and pipes of running processes read with a deadline.

A pipe of a process that is still running (or whose children still hold the pipe open after it
exited) never reaches EOF: `.read()`, `.communicate()` without a timeout and `.readline()` on such
a pipe can block forever. These helpers never wait longer than they are told.

`readline` and `available` read the pipe's file descriptor directly (with select), not through
the file object's buffer: use only them on a pipe, or only the file object.
"""
from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
import weakref

_pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # pipe -> bytes read past a line


def children(pid: int) -> list[int]:
    """The pids of pid's children, from /proc (`pgrep -P pid` without procps)."""
    if os.path.exists("/proc/thread-self/children"):        # CONFIG_PROC_CHILDREN: ask each thread
        kids: set[int] = set()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
        for tid in tasks:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.update(int(c) for c in f.read().split())
        return sorted(kids)
    found = []                                                  # else: every process's parent
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ')'
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def exec_children(pid: int) -> list[int]:
    """pid's children that run another program than pid: those that have exec'd their command,
    not pid's own forks (a Python launcher's helper children, an app between fork and exec)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return []
    kids = []
    for kid in children(pid):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{kid}/exe") != exe:
                kids.append(kid)
    return kids


def _decode(b: bytes) -> str:
    return b.decode(errors="replace")


def readline(pipe, timeout: float) -> str:
    """The next line of pipe (a Popen's stdout or stderr), waiting at most timeout seconds.
    '' at EOF (what is left without a newline comes first); TimeoutError when no full line came."""
    fd = pipe.fileno()
    buf = _pending.pop(pipe, b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            _pending[pipe] = buf
            raise TimeoutError(f"no line within {timeout:g} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            return _decode(buf)
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    if rest:
        _pending[pipe] = rest
    return _decode(line + b"\n")


def available(pipe, timeout: float = 1.0) -> str:
    """What pipe holds until EOF, or until nothing more came for timeout seconds: for error
    messages of a process that may still be running (or whose children keep the pipe open)."""
    if pipe is None:
        return ""
    fd, chunks = pipe.fileno(), [_pending.pop(pipe, b"")]
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return _decode(b"".join(chunks)).strip()


def stop(p: subprocess.Popen, grace: float = 5.0) -> int | None:
    """SIGTERM, wait up to grace seconds, then SIGKILL and wait again (bounded); the exit status,
    None if p could not be reaped. Pipes are left alone (read them with `available`)."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
    return p.returncode
