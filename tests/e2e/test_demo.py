"""`make demo`'s job: both stacks answer, and the demo leaves nothing behind."""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root


def test_demo_shows_both_stacks_and_cleans_up():
    x = os.path.join(os.path.dirname(sys.executable), "xdpstack")
    p = subprocess.run([x, "demo", "--seconds", "2", "--rate", "100"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "both stacks answered" in p.stdout
    sent_echoed = re.findall(r"udp/700[01]\s+│.*?│\s+(\d+) │\s+(\d+) │", p.stdout)
    assert sent_echoed and all(int(e) > 0 for _, e in sent_echoed), p.stdout
    namespaces = set(re.findall(r"(xst[0-9a-f]+-(?:dut|peer))", p.stdout))
    assert namespaces
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=20).stdout.split()
    assert not namespaces & set(listed)
    ifname = re.search(r"attached xdpstack to (\S+):", p.stdout).group(1)
    root = os.environ.get("XDPSTACK_BPFFS", "/sys/fs/bpf/xdpstack")
    # pins live in the demo namespace's directory, <root>/netns-<inode>/<ifname>: none may be left
    assert not glob.glob(os.path.join(root, "netns-*", ifname))
