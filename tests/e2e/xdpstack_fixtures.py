"""Fixtures for the control-plane tests: a testbed per module, and the same with the demux attached
(one compile per module), detached and checked clean at the end.

A test module uses them with `pytest_plugins = ["tests.e2e.xdpstack_fixtures"]`.
"""
from __future__ import annotations

import contextlib
import os

import pytest

from tests.e2e.xdpstack_helpers import assert_clean, in_ns
from tests.fixtures.testbed import Testbed
from xdpstack import loader


@pytest.fixture(scope="module")
def module_bed():
    """A testbed for the whole module (not attached)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Testbed() as tb:
        yield tb


@pytest.fixture(scope="module")
def attached_bed(module_bed):
    """The module's testbed with the demux attached (compiled once for the module); detached and
    checked clean at the end."""
    bed = module_bed
    with in_ns(bed):
        a = loader.attach(bed.dut.ifname)
    try:
        yield bed, a
    finally:
        with in_ns(bed), contextlib.suppress(Exception):
            loader.detach(bed.dut.ifname, force=True)
        assert_clean(bed)
