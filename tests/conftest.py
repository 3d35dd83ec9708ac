"""Fixtures shared by every test: a private bpffs root and namespace testbeds that always clean up."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from tests.fixtures.testbed import Testbed, leftover_namespaces, remove_leftovers

BPFFS_TEST_ROOT = f"/sys/fs/bpf/xdpstack-test-{os.getpid()}"


def pytest_configure(config):
    # Pins made by tests go under a private root; the CLI and the library read XDPSTACK_BPFFS.
    os.environ["XDPSTACK_BPFFS"] = BPFFS_TEST_ROOT


def _nobody_can_run(venv_python: str) -> bool:
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", venv_python,
                        "-c", "import userstack"], capture_output=True, cwd="/")
    return r.returncode == 0


def _open_temp_ancestors(path: str) -> list[str]:
    """o+x (traverse, not list) on the directories between the temp root and path that lack it:
    `mktemp -d` makes them 0700. Directories outside the temp root (/root, a home) are left alone."""
    tmp = os.path.realpath(tempfile.gettempdir())
    opened = []
    d = os.path.realpath(path)
    while d.startswith(tmp + os.sep):
        st = os.stat(d)
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            opened.append(d)
        d = os.path.dirname(d)
    return opened


def pytest_sessionstart(session):
    """Many tests launch apps as nobody: a checkout in a fresh `mktemp -d` directory gets o+x on
    it; one out of reach otherwise (under /root) is said once, not in dozens of failures."""
    if os.geteuid() != 0:
        return
    venv_python = os.path.join(sys.prefix, "bin", "python3")
    if _nobody_can_run(venv_python):
        return
    opened = _open_temp_ancestors(sys.prefix)
    if opened:
        print(f"\ngave other users traverse permission (o+x) on {', '.join(opened)}: the tests run "
              f"applications as nobody")
    if not _nobody_can_run(venv_python):
        pytest.exit(f"user nobody cannot run {venv_python} with this checkout's packages (is a parent "
                    f"directory of {sys.prefix} mode 0700?): the tests run applications as nobody; "
                    f"clone into a directory every user can traverse", returncode=4)


def pytest_sessionfinish(session, exitstatus):
    """The suite leaves nothing on the host: a leftover namespace fails the run."""
    left = leftover_namespaces()
    if left:
        remove_leftovers()
        print(f"\nERROR: tests left network namespaces behind: {left}")
        session.exitstatus = 1
    if os.path.isdir(BPFFS_TEST_ROOT):
        shutil.rmtree(BPFFS_TEST_ROOT, ignore_errors=True)


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def testbed(root):
    with Testbed() as tb:
        yield tb


@pytest.fixture
def testbed4q(root):
    with Testbed(queues=4) as tb:
        yield tb


@pytest.fixture
def bpffs_root():
    return BPFFS_TEST_ROOT


def host_has_xdp_on(ifname: str) -> bool:
    out = subprocess.run(["ip", "-o", "link", "show", "dev", ifname], capture_output=True, text=True).stdout
    return " xdp" in out
