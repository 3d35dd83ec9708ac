"""100 MB each way between a kernel peer and the C echo on a user-level stack, with the stack's
fault injection (XDPSTACK_FAULTS, both directions) dropping 1%, 5% and 10% of the frames and
duplicating, reordering and corrupting some more: byte-exact (SHA-256) and within a time bound,
so a stall fails the test. Every loss recovery runs for real: ours for what the stack sends, the
kernel's for what it receives from the kernel.

The 10% case runs in the default suite with both ends' minimum RTO at 5 ms (a LAN setting:
`ip route ... rto_min` on the peer, XDPSTACK_TCP rto_min_ms on the stack); with the default 200 ms
it is a soak test."""
from __future__ import annotations

import os
import time

import pytest

from tests.e2e import userstack_tcp_helpers as H

pytestmark = pytest.mark.root
MB = 1_000_000


@pytest.fixture(scope="module")
def prog():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    p = H.redirect_program()
    yield p
    p.close()


def transfer(tb, prog, family: str, loss: float, nbytes: int, limit_s: float, seed: int, fast_rto: bool):
    if fast_rto:
        dev = tb.peer.ifname
        tb.peer.run(f"ip route change 198.18.0.0/24 dev {dev} rto_min 5ms && "
                    f"ip -6 route replace 2001:db8::/64 dev {dev} metric 256 rto_min 5ms")
    faults = f"seed={seed} drop={loss} duplicate=0.01 reorder=0.02 corrupt=0.002 dir=both"
    env = {"XDPSTACK_FAULTS": faults}
    if fast_rto:
        env["XDPSTACK_TCP"] = "rto_min_ms=5"
    app = H.App(tb, prog, [H.ECHO], tcp=(7000,), env=env)
    app.wait_ready("echo on tcp/7000 (IPv6)")
    dst = tb.dut.addr6 if family == "6" else tb.dut.addr4
    t0 = time.monotonic()
    try:
        r = H.peer_python(tb, H.BULK_ECHO_CLIENT, dst, 7000, nbytes, timeout=limit_s + 60)
    finally:
        stats = app.stop()
    took = time.monotonic() - t0
    assert r["received"] == r["sent"] == nbytes
    assert r["sha_received"] == r["sha_sent"]
    assert took < limit_s, f"{nbytes / MB:.0f} MB at {loss:.0%} loss took {took:.1f} s (bound {limit_s} s)"
    assert stats["tcp_bytes"] == nbytes and stats["tcp_resets"] == 0
    assert stats["tcp_retransmits"] > 0                    # the faults did bite
    return took


@pytest.mark.parametrize("family", ["4", "6"])
@pytest.mark.parametrize("loss,limit_s", [(0.01, 40), (0.05, 60)])
def test_100mb_under_loss(testbed, prog, family, loss, limit_s):
    transfer(testbed, prog, family, loss, 100 * MB, limit_s, seed=11, fast_rto=False)


def test_100mb_at_10_percent_loss_fast_rto(testbed, prog):
    transfer(testbed, prog, "4", 0.10, 100 * MB, 90, seed=12, fast_rto=True)


@pytest.mark.soak
@pytest.mark.parametrize("family", ["4", "6"])
def test_100mb_at_10_percent_loss_default_rto(testbed, prog, family):
    transfer(testbed, prog, family, 0.10, 100 * MB, 300, seed=13, fast_rto=False)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(20, 30))
def test_many_seeds_at_5_percent(testbed, prog, seed):
    transfer(testbed, prog, "4", 0.05, 20 * MB, 60, seed=seed, fast_rto=False)
