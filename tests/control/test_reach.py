"""xdpstack.reach: who can run what, and the private view that opens 0700 directories for one run."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from xdpstack import reach

pytestmark = pytest.mark.root
NOBODY = reach.Who("nobody", 65534, 65534)

VIEW = r"""
import os, subprocess, sys
from xdpstack import reach
opened = reach.traversable_view([sys.argv[1]], reach.Who("nobody", 65534, 65534))
def as_nobody(*cmd):
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd],
                          capture_output=True, text=True).returncode
with open(os.path.join(sys.argv[1], "written"), "w") as f:    # writes reach the real directory
    f.write("w")
print(opened, as_nobody("cat", os.path.join(sys.argv[1], "f")),
      as_nobody("ls", os.path.join(os.path.dirname(sys.argv[1]), "secret")), os.getcwd() == sys.argv[1])
"""


@pytest.fixture
def tree():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with tempfile.TemporaryDirectory() as top:            # 0700, like /root
        sub, secret = os.path.join(top, "sub"), os.path.join(top, "secret")
        os.mkdir(sub, 0o755)
        os.mkdir(secret, 0o700)
        with open(os.path.join(sub, "f"), "w") as f:
            f.write("x")
        os.chmod(os.path.join(sub, "f"), 0o644)
        os.symlink("sub", os.path.join(top, "link"))
        yield top, sub


def test_blocked_names_the_directory_that_stops_the_user(tree):
    top, sub = tree
    assert reach.blocked(os.path.join(sub, "f"), NOBODY) == f"dir:{top}"
    assert reach.blocked("/usr/bin/true", NOBODY) is None
    assert reach.blocked(os.path.join(sub, "."), reach.Who("root", 0, 0)) is None          # root reaches it
    assert reach.blocked("/etc/passwd", NOBODY) == "file:/etc/passwd"          # not executable


def test_the_view_opens_only_the_way_down_and_leaves_the_host_unchanged(tree):
    top, sub = tree
    mounts = Path("/proc/self/mounts").read_text()
    r = subprocess.run([sys.executable, "-c", VIEW, sub], capture_output=True, text=True, timeout=30, cwd=sub)
    assert r.returncode == 0, r.stderr
    # opened: [top]; nobody reads sub/f (0); the 0700 sibling stays closed (ls fails); cwd kept
    assert r.stdout.split() == [f"['{top}']", "0", "2", "True"], r.stdout
    assert oct(os.stat(top).st_mode & 0o777) == "0o700"
    assert Path(sub, "written").read_text() == "w"
    assert Path("/proc/self/mounts").read_text() == mounts
    assert reach.blocked(os.path.join(sub, "f"), NOBODY) == f"dir:{top}"


def test_nothing_to_open_enters_no_namespace():
    r = subprocess.run([sys.executable, "-c", "import os; from xdpstack import reach; "
                        "print(reach.traversable_view(['/usr/bin'], reach.Who('nobody', 65534, 65534)), "
                        "os.readlink('/proc/self/ns/mnt') == os.readlink(f'/proc/{os.getppid()}/ns/mnt'))"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.split() == ["[]", "True"], r.stderr
