"""Fixtures shared by every test: a private bpffs root and namespace testbeds that always clean up."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys

import pytest

from tests.fixtures.testbed import Testbed, leftover_namespaces, remove_leftovers

BPFFS_TEST_ROOT = f"/sys/fs/bpf/xdpstack-test-{os.getpid()}"
NOBODY, NOGROUP = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid


def pytest_configure(config):
    # Pins made by tests go under a private root; the CLI and the library read XDPSTACK_BPFFS.
    os.environ["XDPSTACK_BPFFS"] = BPFFS_TEST_ROOT


def _nobody_can_run(venv_python: str) -> bool:
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", venv_python,
                        "-c", "import userstack"], capture_output=True, cwd="/")
    return r.returncode == 0


def pytest_sessionstart(session):
    """Many tests launch apps as nobody. A checkout under a 0700 directory (/root, a fresh `mktemp -d`)
    is made reachable for this run only: the suite enters a private mount namespace in which those
    directories are traversable (xdpstack.reach); nothing changes on the host."""
    if os.geteuid() != 0:
        return
    venv_python = os.path.join(sys.prefix, "bin", "python3")
    if _nobody_can_run(venv_python):
        return
    from xdpstack import reach
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        opened = reach.traversable_view([sys.prefix, checkout], reach.Who("nobody", NOBODY, NOGROUP))
    except OSError as e:
        pytest.exit(f"user nobody cannot reach {checkout}, and no private view could open it ({e}): the "
                    f"tests run applications as nobody", returncode=4)
    if opened:
        print(f"\nthe tests run applications as nobody: {', '.join(opened)} made traversable in this "
              f"run's own mount namespace (the host is unchanged)")
    if not _nobody_can_run(venv_python):
        pytest.exit(f"user nobody cannot run {venv_python} with this checkout's packages even in a "
                    f"private view of its directories: the tests run applications as nobody", returncode=4)


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
