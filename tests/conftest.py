"""Fixtures shared by every test: a private bpffs root and namespace testbeds that always clean up."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.fixtures.testbed import Testbed, leftover_namespaces, remove_leftovers

BPFFS_TEST_ROOT = f"/sys/fs/bpf/xdpstack-test-{os.getpid()}"


def pytest_configure(config):
    # Pins made by tests go under a private root; the CLI and the library read XDPSTACK_BPFFS.
    os.environ["XDPSTACK_BPFFS"] = BPFFS_TEST_ROOT


def pytest_sessionstart(session):
    """Many tests launch apps as nobody: say so once if this checkout is out of nobody's reach
    (a clone under a 0700 directory such as /root) rather than in dozens of failures."""
    if os.geteuid() != 0:
        return
    venv_python = os.path.join(sys.prefix, "bin", "python3")
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", venv_python,
                        "-c", "import userstack"], capture_output=True, cwd="/")
    if r.returncode != 0:
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
