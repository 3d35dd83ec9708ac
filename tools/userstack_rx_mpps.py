"""Measure RX into userstack's C sink: packets per second from AF_XDP rings into UDP sockets.

    sudo .venv/bin/python tools/userstack_rx_mpps.py [--seconds 3] [--payload 18 1472]

A throwaway testbed; the sink (`userstack-echo --sink`, C, run as nobody from the XDPSTACK_*
environment) owns udp/9000 on the dut veth; a tiny XDP program redirects udp/9000 into its socket;
the generator is live-frames BPF_PROG_TEST_RUN of that program on the dut device (frames enter as
if received, are redirected for real). Generator pinned to CPU 0, sink to CPU 1. Reports offered
and delivered Mpps and losses (sink count vs generated, XDP_STATISTICS). Bounded in time.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from scapy.layers.inet import IP, UDP, Ether  # noqa: E402

from userstack import xsk  # noqa: E402
from userstack.agent import InProcessAgent  # noqa: E402
from userstack.redirect import UdpRedirect  # noqa: E402
from userstack.stack import _link_info  # noqa: E402
from xdpstack import testrun  # noqa: E402
from xdpstack.netlink import netns as in_netns  # noqa: E402
from xdpstack.testbed import Testbed  # noqa: E402

PORT = 9000
def measure(tb: Testbed, prog: UdpRedirect, payload: int, seconds: float, repeat: int) -> dict:
    with in_netns(tb.dut.ns):
        info = _link_info(tb.dut.ifname)
        xs = xsk.create(tb.dut.ifname, 1, frames=8192, ring_size=4096)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        agent = InProcessAgent(b, info["ifindex"])
        prog.set_sockets(xs.queue_ids, xs.fds)
        prog.attach(tb.dut.ifname)
    env = xs.env(name="sink", mac=info["mac"], mtu=info["mtu"], addrs=info["addrs"],
                 tuples=[("udp", "0.0.0.0", PORT)], ctl_fd=a.fileno(),
                 local_peer=info["kind"] == "veth")
    echo = os.path.join(os.path.dirname(sys.executable), "userstack-echo")
    argv = ["taskset", "-c", "1", echo, "--sink", "--quiet"]
    sink = subprocess.Popen(argv,
                            cwd=REPO, env={**os.environ, **env, "PYTHONPATH": REPO},
                            pass_fds=[*xs.pass_fds, a.fileno()], user="nobody",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    a.close()
    try:
        time.sleep(0.5)
        frame = bytes(Ether(src=tb.peer.mac, dst=info["mac"]) / IP(src=tb.peer.addr4, dst=tb.dut.addr4)
                      / UDP(sport=40000, dport=PORT) / (b"x" * payload))
        os.sched_setaffinity(0, {0})
        sent, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            testrun.run(prog.fn.fd, frame, repeat, ifindex=info["ifindex"], live=True,
                        netns=f"/var/run/netns/{tb.dut.ns}")
            sent += repeat
        gen_s = time.monotonic() - t0
        time.sleep(0.3)
        xstats = xs.stats()[0]
        sink.send_signal(signal.SIGTERM)
        out, err = sink.communicate(timeout=10)
        res = json.loads(out.strip().splitlines()[-1])
    finally:
        if sink.poll() is None:
            sink.kill()
        with in_netns(tb.dut.ns):
            prog.detach(tb.dut.ifname)
        agent.close()
        xs.close()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    span = (res["last_ns"] - res["first_ns"]) / 1e9 or 1e-9
    return {"payload": payload, "generated": sent, "offered_mpps": round(sent / gen_s / 1e6, 3),
            "delivered": res["datagrams"], "delivered_mpps": round(res["datagrams"] / span / 1e6, 3),
            "lost": sent - res["datagrams"], "xsk_rx_dropped": xstats["rx_dropped"],
            "xsk_fill_empty": xstats["rx_fill_ring_empty_descs"], "sink_queue_full": res["rx_queue_full"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--payload", type=int, nargs="+", default=[18, 1472])
    ap.add_argument("--repeat", type=int, default=100_000, help="frames per BPF_PROG_TEST_RUN call")
    args = ap.parse_args()
    prog = UdpRedirect(PORT, PORT)
    try:
        with Testbed() as tb:
            for p in args.payload:
                print(json.dumps(measure(tb, prog, p, min(args.seconds, 30), args.repeat)), flush=True)
    finally:
        prog.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
