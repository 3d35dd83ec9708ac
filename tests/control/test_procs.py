"""xdpstack.procs: children from /proc (no procps), pipe reads that never outwait their deadline."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from xdpstack import procs

# A parent with two children that keep its pipes open after it has gone.
FAMILY = r"""
import subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)]
print(" ".join(str(k.pid) for k in kids), flush=True)
print("second line", flush=True)
sys.stdout.write("no newline")
sys.stdout.flush()
time.sleep(float(sys.argv[1]))
"""


@pytest.fixture
def family():
    p = subprocess.Popen([sys.executable, "-c", FAMILY, "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    kids = [int(x) for x in procs.readline(p.stdout, 10).split()]
    yield p, kids
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    procs.stop(p, 1)


def test_children_are_found_in_proc(family):
    p, kids = family
    assert procs.children(p.pid) == sorted(kids)
    assert procs.children(kids[0]) == []
    assert procs.children(2 ** 22 + 1) == []          # no such process


def test_exec_children_are_those_running_another_program():
    """A fork of this Python is not counted; a child that exec'd another program is."""
    code = ("import os, subprocess, sys, time\n"
            "if os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)\n"
            "k = subprocess.Popen(['sleep', '30'])\nprint(k.pid, flush=True)\ntime.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        sleeper = int(procs.readline(p.stdout, 10))
        deadline = time.monotonic() + 5
        while len(procs.children(p.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(procs.children(p.pid)) == 2
        assert procs.exec_children(p.pid) == [sleeper]
    finally:
        for pid in procs.children(p.pid):
            os.kill(pid, signal.SIGKILL)
        procs.stop(p, 1)


def test_children_without_proc_children_files(family, monkeypatch):
    """A kernel without CONFIG_PROC_CHILDREN: the parent pids in /proc/*/stat say the same."""
    p, kids = family
    real = procs.os.path.exists
    monkeypatch.setattr(procs.os.path, "exists", lambda f: False if f.endswith("/children") else real(f))
    assert procs.children(p.pid) == sorted(kids)


def test_readline_returns_lines_and_times_out(family):
    p, _ = family
    assert procs.readline(p.stdout, 5) == "second line\n"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        procs.readline(p.stdout, 0.3)                  # "no newline" has no newline: not a line
    assert time.monotonic() - t0 < 2
    assert procs.available(p.stdout, 0.2) == "no newline"   # what was read stays available


def test_reads_end_although_children_hold_the_pipe(family):
    p, _ = family
    assert procs.stop(p, 1) is not None                # the parent is gone; its children are not
    t0 = time.monotonic()
    assert procs.available(p.stderr, 0.3) == ""        # no EOF ever comes: bounded anyway
    assert time.monotonic() - t0 < 2


def test_readline_at_eof():
    p = subprocess.Popen([sys.executable, "-c", "print('last', end='')"], stdout=subprocess.PIPE, text=True)
    assert procs.readline(p.stdout, 5) == "last"
    assert procs.readline(p.stdout, 5) == ""
    p.wait(5)
