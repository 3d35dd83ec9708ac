"""An exclusive flock on a lock file that may be removed while others wait for it.

The holder removes a namespace's lock file once the namespace has no state left. A process that
opened the file before that would then hold a lock on a file nobody else can open: so after
flock() we check that the file we locked is still the one at the path, and otherwise start over.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from xdpstack.errors import NotRoot


def acquire(path: Path) -> int:
    """Block until we hold the lock at `path` (created with its directory when missing); the fd.
    Closing the fd releases the lock."""
    while True:
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue                     # its directory was removed between mkdir and open
        except PermissionError:
            raise NotRoot(f"cannot open {path}: xdpstack needs root") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st, now = os.fstat(fd), os.stat(path)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)                     # we locked a file that was removed meanwhile
