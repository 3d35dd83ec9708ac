"""The demo `make demo` runs: a user-level stack and the kernel side by side on one interface.

    ns dut: xdpstack attached to the veth (default offloads); userstack-echo on its own stack on
            udp/7000 (as nobody);
            a kernel UDP echo service on udp/7001
    ns peer: a kernel client sends to both ports and pings, counting the echoes

A live table shows where the demux sent each packet (AF_XDP or XDP_PASS, and why) and what came
back. Everything (namespaces, veth pair, XDP attachment, pins, processes) is removed at the end,
whichever way the demo ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from xdpstack import counters, netlink, procs, reach, registry
from xdpstack.errors import StackError
from xdpstack.testbed import Testbed

USER_PORT, KERNEL_PORT = 7000, 7001

KERNEL_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)
"""

# Sends to both ports at a steady rate, pings now and then, prints its counts as JSON lines.
CLIENT = r"""
import json, select, socket, sys, time, subprocess
dst, seconds, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ports = [int(p) for p in sys.argv[4].split(",")]
socks = {p: socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for p in ports}
for s in socks.values():
    s.setblocking(False)
sent = {p: 0 for p in ports}
echoed = {p: 0 for p in ports}
bad = {p: 0 for p in ports}
pings = 0
start = time.monotonic()
next_report = start
i = 0
while time.monotonic() - start < seconds:
    for p, s in socks.items():
        msg = b"demo %d %d" % (p, i)
        s.sendto(msg, (dst, p))
        sent[p] += 1
    i += 1
    deadline = start + i / rate
    while True:
        wait = deadline - time.monotonic()
        r, _, _ = select.select(list(socks.values()), [], [], max(0.0, wait))
        for p, s in socks.items():
            if s in r:
                data = s.recv(2048)
                if data.startswith(b"demo %d " % p):
                    echoed[p] += 1
                else:
                    bad[p] += 1
        if wait <= 0:
            break
    if time.monotonic() >= next_report:
        if subprocess.run(["ping", "-c1", "-W1", "-q", dst], capture_output=True).returncode == 0:
            pings += 1
        print(json.dumps({"sent": sent, "echoed": echoed, "bad": bad, "pings": pings}), flush=True)
        next_report += 0.5
time.sleep(0.3)
for p, s in socks.items():
    while select.select([s], [], [], 0)[0]:
        if s.recv(2048).startswith(b"demo %d " % p):
            echoed[p] += 1
print(json.dumps({"sent": sent, "echoed": echoed, "bad": bad, "pings": pings, "done": True}), flush=True)
"""


def _xdpstack() -> str:
    return os.path.join(os.path.dirname(sys.executable), "xdpstack")


def _table(tb: Testbed, client: dict, snap, stack_rows, elapsed: float, seconds: float) -> Group:
    t = Table(title=f"xdpstack demo on {tb.dut.ifname}  ({elapsed:4.1f} s of {seconds:.0f} s)",
              title_justify="left")
    t.add_column("traffic from the peer")
    t.add_column("went to")
    t.add_column("sent", justify="right")
    t.add_column("echoed", justify="right")
    sent, echoed = client.get("sent", {}), client.get("echoed", {})
    t.add_row(f"udp/{USER_PORT}", "user-level stack (AF_XDP): userstack-echo",
              str(sent.get(str(USER_PORT), 0)), str(echoed.get(str(USER_PORT), 0)))
    t.add_row(f"udp/{KERNEL_PORT}", "kernel (XDP_PASS): python echo service",
              str(sent.get(str(KERNEL_PORT), 0)), str(echoed.get(str(KERNEL_PORT), 0)))
    t.add_row("icmp echo (ping)", "kernel (XDP_PASS)", "", str(client.get("pings", 0)))

    c = snap.totals if snap else {}
    d = Table(title="the demux's counters (bpftool map dump pinned …/stats)", title_justify="left")
    d.add_column("verdict")
    d.add_column("packets", justify="right")
    d.add_row("redirected to a stack (AF_XDP)", str(c.get("redirected", 0)))
    d.add_row("passed: no claim (kernel's port)", str(c.get("pass_no_claim", 0)))
    d.add_row("passed: not TCP/UDP (ICMP, ...)", str(c.get("pass_not_l4", 0)))
    d.add_row("passed: not IP (ARP, ...)", str(c.get("pass_not_ip", 0)))
    d.add_row("passed: malformed / fragment / orphaned",
              f"{c.get('pass_malformed', 0)} / {c.get('pass_fragment', 0)} / {c.get('pass_orphaned', 0)}")
    parts = [t, d]
    for name, st in stack_rows:
        parts.append(Text(f"stack {name}: rx {st.get('rx_packets', 0)} pkts, "
                          f"tx {st.get('tx_packets', 0)} pkts (through its egress guard), "
                          f"tx denied {st.get('tx_denied', 0)}"))
    return Group(*parts)


def _let_nobody_in(say) -> None:
    """userstack-echo runs as nobody: a venv under a 0700 directory (a clone in /root) is opened up
    for this demo only, in a private mount namespace (xdpstack.reach); the host is unchanged."""
    nobody = pwd.getpwnam("nobody")
    who = reach.Who("nobody", nobody.pw_uid, nobody.pw_gid)
    try:
        opened = reach.traversable_view([sys.prefix], who)
    except OSError as e:
        raise StackError(f"userstack-echo runs as nobody, who cannot reach {sys.prefix}, and no private "
                         f"view could open it ({e}): clone where every user can traverse") from None
    if opened:
        say(f"[dim]{', '.join(opened)} is not traversable by nobody: opened (o+x) for this demo only, "
            f"in its own mount namespace[/]")


def _why(x: str, tb: Testbed) -> str:
    """What `xdpstack stacks` says of the stack: where its frames went."""
    r = subprocess.run([x, "--netns", tb.dut.ns, "stacks", tb.dut.ifname], capture_output=True,
                       text=True, timeout=20)
    return (r.stdout or r.stderr).strip()


def run(seconds: float = 8.0, rate: int = 200, console: Console | None = None) -> int:
    console = console or Console()
    say = console.print
    _let_nobody_in(say)
    with Testbed() as tb, contextlib.ExitStack() as undo:
        say(f"[bold]testbed[/]: namespaces {tb.dut.ns} ({tb.dut.addr4}) and {tb.peer.ns} "
            f"({tb.peer.addr4}), veth {tb.dut.ifname} <-> {tb.peer.ifname}")
        x = _xdpstack()
        say(f"$ xdpstack --netns {tb.dut.ns} attach {tb.dut.ifname}")
        r = subprocess.run([x, "--netns", tb.dut.ns, "attach", tb.dut.ifname], capture_output=True, text=True,
                           timeout=120)
        say(r.stdout.strip() or r.stderr.strip())
        if r.returncode:
            return r.returncode

        def detach():
            subprocess.run([x, "--netns", tb.dut.ns, "detach", "--force", tb.dut.ifname], capture_output=True,
                           timeout=60)
        undo.callback(detach)

        kecho = tb.track(tb.dut.popen(["python3", "-c", KERNEL_ECHO, str(KERNEL_PORT)],
                                      stdout=subprocess.PIPE, text=True))
        try:
            ready = procs.readline(kecho.stdout, 10).strip() == "ready"
        except TimeoutError:
            ready = False
        if not ready:
            say(f"[red]the kernel echo service did not start[/] (exit {kecho.poll()})")
            return 1
        say(f"kernel echo service on udp/{KERNEL_PORT} in {tb.dut.ns}")
        cmd = [x, "--netns", tb.dut.ns, "run", tb.dut.ifname, "--udp", str(USER_PORT), "--user", "nobody",
               "--", "userstack-echo"]
        say("$ " + " ".join(["xdpstack"] + cmd[1:]))
        launcher = tb.track(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

        def stop_launcher():
            procs.stop(launcher)            # SIGTERM: the launcher stops the app and undoes its stack
        undo.callback(stop_launcher)
        with netlink.netns(tb.dut.ns):
            deadline = time.monotonic() + 10
            while not registry.list_stacks(tb.dut.ifname):
                if launcher.poll() is not None or time.monotonic() > deadline:
                    why = procs.available(launcher.stderr) or "no stack registered within 10 s"
                    say(f"[red]the launcher failed[/]: {why}")
                    return 1
                time.sleep(0.05)
        time.sleep(0.3)

        client_p = tb.track(tb.peer.popen(["python3", "-c", CLIENT, tb.dut.addr4, str(seconds), str(rate),
                                           f"{USER_PORT},{KERNEL_PORT}"], stdout=subprocess.PIPE, text=True))
        client: dict = {}
        start = time.monotonic()
        with netlink.netns(tb.dut.ns), Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() - start < seconds + 30:     # the client ends itself after `seconds`
                try:
                    line = procs.readline(client_p.stdout, 0.25)
                    if not line:
                        break
                    client = json.loads(line)
                except TimeoutError:
                    pass
                if launcher.poll() is not None:
                    say(f"[red]the launcher ended early[/] (exit {launcher.returncode}): "
                        f"{procs.available(launcher.stderr)}")
                    return 1
                snap = counters.snapshot(tb.dut.ifname)
                rows = [(rec.name, snap.stacks.get(rec.id, {}))
                        for rec in registry.list_stacks(tb.dut.ifname)]
                live.update(_table(tb, client, snap, rows, time.monotonic() - start, seconds))
                if client.get("done"):
                    break
        client_p.wait(5)
        user_ok = client.get("echoed", {}).get(str(USER_PORT), 0) > 0
        if not user_ok:                     # say why before the stack is gone
            say(f"[red]udp/{USER_PORT}: no echo came back[/]; $ xdpstack --netns {tb.dut.ns} stacks "
                f"{tb.dut.ifname}\n{_why(x, tb)}")
        stop_launcher()
        say("\nstopped userstack-echo; removing the testbed (namespaces, veth, XDP, pins)")
    ok = user_ok and client.get("echoed", {}).get(str(KERNEL_PORT), 0) > 0
    console.print("[green]done[/]: both stacks answered" if ok else "[red]some echoes never came back[/]")
    return 0 if ok else 1

