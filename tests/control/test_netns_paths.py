"""The namespace key, the paths derived from it, the removable lock file and what counts as legacy
state: no root needed (the live behaviour is in tests/e2e/test_netns_state.py)."""
from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from xdpstack import legacy, lockfile, paths
from xdpstack.errors import UsageError


def test_key_is_this_threads_namespace_and_everything_derives_from_it(monkeypatch, tmp_path):
    key = paths.netns_key()
    assert key.inode == os.stat("/proc/thread-self/ns/net").st_ino and key.cookie > 0
    assert paths.netns_key() == key                      # the same namespace, the same key
    monkeypatch.setenv("XDPSTACK_BPFFS", str(tmp_path))
    assert paths.netns_dir() == tmp_path / f"netns-{key.inode}"
    assert paths.pin_dir("eth0") == tmp_path / f"netns-{key.inode}" / "eth0"
    other = paths.NetnsKey(1234, 99)
    assert paths.pin_dir("eth0", other) == tmp_path / "netns-1234" / "eth0"
    assert paths.lock_path(other) == paths.RUN_DIR / "netns-1234" / "lock"
    assert paths.stacks_dir(other) == paths.RUN_DIR / "netns-1234" / "stacks"


@pytest.mark.parametrize("bad", ["", "a/b", ".", ".."])
def test_pin_dir_refuses_what_is_not_an_interface_name(bad):
    with pytest.raises(UsageError):
        paths.pin_dir(bad)


def test_legacy_candidates_are_shaped_like_an_interface_directory_under_the_root(monkeypatch, tmp_path):
    monkeypatch.setenv("XDPSTACK_BPFFS", str(tmp_path))
    for name in ("prog", "claims", "stacks"):
        (tmp_path / "eth0").mkdir(exist_ok=True)
        (tmp_path / "eth0" / name).write_bytes(b"")      # a pin is a regular file on bpffs
    (tmp_path / "netns-5" / "prog").mkdir(parents=True)  # an interface called "prog" in a namespace
    (tmp_path / "netns-5" / "identity").write_bytes(b"")
    (tmp_path / "other").mkdir()                         # someone else's: a prog, but no claims
    (tmp_path / "other" / "prog").write_bytes(b"")
    assert legacy.candidates() == [str(tmp_path / "eth0")]
    assert legacy.dirs() == []                           # and its "prog" is no pinned xdp_demux
    monkeypatch.setenv("XDPSTACK_BPFFS", str(tmp_path / "missing"))
    assert legacy.candidates() == []


def test_a_lock_file_removed_by_its_holder_is_not_held_by_two(tmp_path):
    path = tmp_path / "ns" / "lock"
    first = lockfile.acquire(path)
    got = {}

    def waiter():
        fd = lockfile.acquire(path)          # blocks on the file the first holder is about to remove
        got["same"] = os.fstat(fd).st_ino == os.stat(path).st_ino
        got["fd"] = fd

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    path.unlink()                            # the holder's clean-up: then it lets go
    path.parent.rmdir()
    os.close(first)
    t.join(5)
    assert got.get("same") is True           # the waiter holds the lock at the path, made anew
    third = os.open(path, os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(third)
    os.close(got["fd"])
