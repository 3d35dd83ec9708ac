"""Fixtures for the BPF tests: one compiled object per session (a bcc compile takes about 2 s and
210 MB), a device with many RX queues in a private namespace, and a harness that empties every
map the test touched. Nothing is attached or pinned."""
from __future__ import annotations

import contextlib
import os
import secrets

import pytest
from pyroute2 import IPRoute, netns

from tests.fixtures.bpf_harness import Harness, QueueDevice
from tests.fixtures.testbed import PREFIX
from xdpstack import testrun


@pytest.fixture(scope="session")
def xdpobj():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    obj = testrun.compile_object(["-Werror"])      # also proves the source compiles warning-free
    yield obj
    obj.close()


@pytest.fixture(scope="session")
def qdev():
    """A veth device with 80 RX queues (more than XS_MAX_QUEUES) in namespace xst<id>-bpf."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"{PREFIX}{secrets.token_hex(3)}-bpf"
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("add", ifname="xstq", kind="veth", num_rx_queues=80, num_tx_queues=80,
                     peer={"ifname": "xstqp", "num_rx_queues": 80, "num_tx_queues": 80})
            idx = ipr.link_lookup(ifname="xstq")[0]
        yield QueueDevice(f"/var/run/netns/{name}", idx, 80)
    finally:
        with contextlib.suppress(Exception):
            netns.remove(name)


@pytest.fixture
def bpf(xdpobj, qdev):
    h = Harness(xdpobj, qdev)
    yield h
    h.reset()
