"""`xdpstack run`: an application on its own stack, supervised, and nothing left behind however it ends.

Every test runs the real launcher (the `xdpstack` executable) in the dut namespace of a testbed with
the demux attached, and checks what the kernel and the maps say afterwards.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.fixtures.testbed import wait_until
from tests.fixtures.xdpstack_helpers import in_ns
from xdpstack import procs, registry

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

XDPSTACK = os.path.join(os.path.dirname(sys.executable), "xdpstack")

UDP_CLIENT = r"""
import socket, sys
fam, dst, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok = 0
for i in range(n):
    msg = b"x%d" % i
    s.sendto(msg, (dst, port))
    try:
        if s.recv(2048) == msg:
            ok += 1
    except TimeoutError:
        pass
print(ok)
"""


def launch(tb, *args: str, cmd=("userstack-echo",), user: str | None = "nobody") -> subprocess.Popen:
    argv = [XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, *args]
    if user:
        argv += ["--user", user]
    return tb.track(subprocess.Popen([*argv, "--", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True))


def stacks(tb) -> list:
    with in_ns(tb):
        return registry.list_stacks(tb.dut.ifname)


def claims(tb) -> list:
    with in_ns(tb):
        return registry.list_claims(tb.dut.ifname)


def wait_running(tb, p: subprocess.Popen, n: int = 1):
    """Until n stacks are registered and their applications have started."""
    assert wait_until(lambda: len(stacks(tb)) >= n or p.poll() is not None, 10), "no stack registered"
    assert p.poll() is None, p.communicate(timeout=10)
    assert wait_until(lambda: app_pid(p), 5)


def app_pid(p: subprocess.Popen) -> int | None:
    """The launcher's child that runs the command, once it has exec'd it (the launcher's other
    children run its own Python: its reachability check, the app between fork and exec)."""
    kids = procs.exec_children(p.pid)
    return kids[0] if kids else None


def echoes(tb, port: int, family: int = 4, n: int = 5) -> int:
    dst = tb.dut.addr4 if family == 4 else tb.dut.addr6
    return int(tb.peer.run(["python3", "-c", UDP_CLIENT, str(family), dst, str(port), str(n)]).stdout)


def kernel_can_bind(tb, proto: str, port: int) -> bool:
    kind = "SOCK_DGRAM" if proto == "udp" else "SOCK_STREAM"
    r = tb.dut.run(["python3", "-c", f"import socket; s = socket.socket(socket.AF_INET, socket.{kind}); "
                    f"s.bind(('0.0.0.0', {port}))"], check=False)
    return r.returncode == 0


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for PID 1 to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def assert_nothing_left(tb, *apps: int | None):
    """No record, claim, virtual port or application process (apps: their pids) remains."""
    assert stacks(tb) == [] and claims(tb) == []
    links = tb.dut.run("ip -o link show").stdout
    assert not re.search(r"\bxs\d+\.\d+[io]\b", links), links     # no virtual port left
    for pid in apps:
        assert pid and not running(pid), f"application {pid} still runs"


def test_echo_v4_v6_as_unprivileged_user_then_sigterm(attached_bed):
    tb, _ = attached_bed
    p = launch(tb, "--udp", "7000")
    wait_running(tb, p)
    assert echoes(tb, 7000, 4) == 5
    assert echoes(tb, 7000, 6) == 5
    pid = app_pid(p)
    assert os.stat(f"/proc/{pid}").st_uid == 65534  # nobody
    p.send_signal(signal.SIGTERM)
    assert p.wait(5) == 128 + signal.SIGTERM
    assert_nothing_left(tb, pid)


def test_stacks_lists_the_running_stack(attached_bed):
    tb, _ = attached_bed
    p = launch(tb, "--udp", "7010", "--name", "echo-a")
    wait_running(tb, p)
    echoes(tb, 7010, 4, n=3)
    out = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "stacks", "--json"], capture_output=True, text=True)
    (s,) = json.loads(out.stdout)
    assert (s["name"], s["user"], s["pid"], s["launcher_pid"]) == ("echo-a", "nobody", app_pid(p), p.pid)
    assert sorted(s["tuples"]) == ["udp 0.0.0.0:7010", "udp [::]:7010"]
    assert s["counters"]["rx_packets"] >= 3 and s["counters"]["tx_packets"] >= 3
    assert s["xdp_statistics"] and "rx_dropped" in s["xdp_statistics"][0]
    text = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "stacks"], capture_output=True, text=True).stdout
    assert "echo-a" in text and "udp 0.0.0.0:7010" in text
    pid = app_pid(p)
    p.send_signal(signal.SIGINT)
    assert p.wait(5) == 128 + signal.SIGINT
    assert_nothing_left(tb, pid)


@pytest.mark.parametrize("code", [0, 3])
def test_exit_status_is_passed_on(attached_bed, code):
    tb, _ = attached_bed
    p = launch(tb, "--udp", "7020", cmd=("sh", "-c", f"sleep 0.3; exit {code}"))
    assert p.wait(10) == code
    assert_nothing_left(tb)


def test_sigkill_of_the_app_frees_the_tuple_within_a_second(attached_bed):
    tb, _ = attached_bed
    p = launch(tb, "--udp", "7030", "--tcp", "7030")
    wait_running(tb, p)
    assert not kernel_can_bind(tb, "udp", 7030)      # the reservation holds it
    t0, pid = time.monotonic(), app_pid(p)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not claims(tb) and kernel_can_bind(tb, "udp", 7030)
                      and kernel_can_bind(tb, "tcp", 7030), 1.0, 0.01)
    assert time.monotonic() - t0 < 1.0
    assert p.wait(5) == 128 + signal.SIGKILL
    assert_nothing_left(tb, pid)


def test_sigkill_of_the_launcher_takes_the_app_and_state_is_collected(attached_bed):
    tb, _ = attached_bed
    p = launch(tb, "--udp", "7040")
    wait_running(tb, p)
    app = app_pid(p)
    p.kill()
    p.wait(5)
    assert wait_until(lambda: not running(app), 1.0), "the app outlived its launcher"
    # The dead launcher's record is collected by the next registry operation on the interface.
    with in_ns(tb):
        gone = registry.collect_stale(tb.dut.ifname)
    assert [r.name for r in gone] == ["userstack-echo"]
    assert_nothing_left(tb, app)
    assert kernel_can_bind(tb, "udp", 7040)


def test_a_conflicting_claim_fails_before_the_command_starts(attached_bed, tmp_path):
    tb, _ = attached_bed
    first = launch(tb, "--udp", "7050")
    wait_running(tb, first)
    marker = tmp_path / "started"
    second = launch(tb, "--udp", "7050", cmd=("touch", str(marker)), user=None)
    out, err = second.communicate(timeout=10)
    assert second.returncode != 0
    assert len(err.strip().splitlines()) == 1 and "7050" in err and "userstack-echo" in err, err
    assert not marker.exists()
    assert len(stacks(tb)) == 1 and echoes(tb, 7050) == 5       # the first is untouched
    pid = app_pid(first)
    first.send_signal(signal.SIGTERM)
    first.wait(5)
    assert_nothing_left(tb, pid)


def test_an_unprivileged_user_cannot_claim_a_privileged_port(attached_bed, tmp_path):
    tb, _ = attached_bed
    marker = tmp_path / "started"
    p = launch(tb, "--tcp", "80", cmd=("touch", str(marker)), user="nobody")
    _, err = p.communicate(timeout=10)
    assert p.returncode != 0 and "ip_unprivileged_port_start" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()
    assert_nothing_left(tb)


def test_a_port_the_kernel_holds_is_refused_naming_the_holder(attached_bed):
    tb, _ = attached_bed
    holder = tb.track(tb.dut.popen(["python3", "-c", "import socket, time; s = socket.socket(socket.AF_INET, "
                                    "socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7060)); print('ok', flush=True); "
                                    "time.sleep(30)"], stdout=subprocess.PIPE, text=True))
    assert procs.readline(holder.stdout, 10).strip() == "ok"
    p = launch(tb, "--udp", "7060")
    _, err = p.communicate(timeout=10)
    holder.kill()
    assert p.returncode != 0 and "python3" in err and len(err.strip().splitlines()) == 1, err
    assert_nothing_left(tb)


@pytest.mark.parametrize("args,expect", [
    (("--udp", "7070", "--user", "no-such-user-xyz"), "no such user"),
    (("--udp", "7070", "--queues", "0"), "--queues"),
    ((), "claim at least one port"),
    (("--udp", "7070", "--addr", "not-an-address"), "not an IPv4 or IPv6 address"),
])
def test_bad_arguments_are_one_clear_line(attached_bed, args, expect):
    tb, _ = attached_bed
    p = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, *args, "--", "true"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and expect in p.stderr, p.stderr
    assert_nothing_left(tb)


def test_command_not_found_and_interface_not_attached(attached_bed):
    tb, _ = attached_bed
    p = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, "--udp", "7080", "--",
                        "no-such-command-xyz"], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "command not found" in p.stderr
    p = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "run", "lo", "--udp", "7080", "--", "true"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "not attached" in p.stderr and "xdpstack attach lo" in p.stderr
    assert_nothing_left(tb)


def test_a_command_the_user_cannot_reach_is_refused_before_any_claim(attached_bed):
    """A program under a 0700 directory (a clone in /root), directly or as a script's interpreter."""
    tb, _ = attached_bed
    with tempfile.TemporaryDirectory() as private, tempfile.TemporaryDirectory() as public:
        os.chmod(public, 0o755)
        prog = shutil.copy("/usr/bin/true", os.path.join(private, "app"))
        script = os.path.join(public, "app.sh")
        with open(script, "w") as f:
            f.write(f"#!{prog}\n")
        os.chmod(script, 0o755)
        for cmd, interp in ((prog, ""), (script, f" (the interpreter of {script})")):
            p = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, "--udp", "7085",
                                "--user", "nobody", "--", cmd], capture_output=True, text=True, timeout=20)
            assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
            assert (f"user nobody cannot execute {prog}{interp}: {private} (drwx------) is not searchable "
                    f"by nobody") in p.stderr, p.stderr
            assert_nothing_left(tb)
        p = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, "--udp", "7085", "--",
                            prog], capture_output=True, text=True, timeout=20)    # root reaches it
        assert p.returncode == 0, p.stderr
    assert_nothing_left(tb)


def kernel_udp_echo(tb, port: int) -> subprocess.Popen:
    """A UDP echo on a kernel socket in the dut, once it is bound."""
    prog = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.bind(('0.0.0.0', {port})); print('ok', flush=True)\n"
            "while True:\n  d, a = s.recvfrom(2048); s.sendto(d, a)")
    kecho = tb.track(tb.dut.popen(["python3", "-c", prog],
                                  stdout=subprocess.PIPE, text=True))
    assert procs.readline(kecho.stdout, 10).strip() == "ok"
    return kecho


def test_kernel_services_keep_working_beside_a_stack(attached_bed):
    tb, _ = attached_bed
    kecho = kernel_udp_echo(tb, 7091)
    p = launch(tb, "--udp", "7090")
    wait_running(tb, p)
    assert echoes(tb, 7090, n=20) == 20 and echoes(tb, 7091, n=20) == 20
    pid = app_pid(p)
    p.send_signal(signal.SIGTERM)
    p.wait(5)
    kecho.kill()
    assert_nothing_left(tb, pid)


MANY_FLOWS = r"""
import socket, sys
dst, port, flows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
for i in range(flows):                 # a new source port each time: a new flow, hashed to a queue
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    msg = b"flow %d" % i
    for _ in range(3):
        s.sendto(msg, (dst, port))
        try:
            if s.recv(2048) == msg:
                ok += 1
                break
        except TimeoutError:
            pass
    s.close()
print(ok)
"""


def test_flows_on_every_nic_queue_reach_a_multi_queue_stack(root):
    """A 4-queue NIC: flows from many source ports land on every RX queue, and all of them reach
    the stack (which has 2 AF_XDP sockets on its port)."""
    from tests.fixtures.testbed import Testbed
    from xdpstack import loader
    with Testbed(queues=4) as tb:
        with in_ns(tb):
            loader.attach(tb.dut.ifname)
        try:
            p = launch(tb, "--udp", "7100", "--queues", "2")
            wait_running(tb, p)
            flows = 64
            out = tb.peer.run(["python3", "-c", MANY_FLOWS, tb.dut.addr4, "7100", str(flows)]).stdout
            answered = int(out)
            stats = tb.dut.run(f"ethtool -S {tb.dut.ifname}").stdout
            per_queue = [int(v) for v in re.findall(r"rx_queue_\d+_xdp_redirect: (\d+)", stats)]
            assert answered == flows
            assert len(per_queue) == 4 and all(n > 0 for n in per_queue), stats
            pid = app_pid(p)
            p.send_signal(signal.SIGTERM)
            assert p.wait(5) == 128 + signal.SIGTERM
            assert_nothing_left(tb, pid)
        finally:
            with in_ns(tb):
                loader.detach(tb.dut.ifname, force=True)


UDP_EPHEMERAL_APP = r"""
import sys
from userstack import Stack
dst, port = sys.argv[1], int(sys.argv[2])
with Stack.from_env() as st:
    s = st.socket()
    s.bind(("0.0.0.0", 0))                 # port 0: the launcher claims one from the kernel
    s.settimeout(3)
    s.sendto(b"ping", (dst, port))
    data, addr = s.recvfrom(100)
    print(s.getsockname()[1], data.decode(), flush=True)
"""


def test_an_ephemeral_udp_port_is_claimed_from_the_kernel(attached_bed):
    tb, _ = attached_bed
    echo_once = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                 "s.bind(('0.0.0.0', 7111)); print('ok', flush=True)\nd, a = s.recvfrom(100); s.sendto(d, a)")
    kecho = tb.track(tb.peer.popen(["python3", "-c", echo_once], stdout=subprocess.PIPE, text=True))
    assert procs.readline(kecho.stdout, 10).strip() == "ok"
    p = launch(tb, "--udp", "7110", cmd=(sys.executable, "-c", UDP_EPHEMERAL_APP, tb.peer.addr4, "7111"))
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    port, word = out.split()
    assert word == "ping" and 1024 <= int(port) <= 65535 and int(port) != 7110
    assert_nothing_left(tb)



def test_the_agent_knows_the_user_before_the_application_runs(attached_bed, monkeypatch):
    """The application may claim an ephemeral port the moment it starts (a C client connecting at
    once): the agent that answers needs the user's credentials from its first message on."""
    from userstack import agent
    from xdpstack import launcher
    tb, _ = attached_bed
    seen = []
    real = agent.StackAgent

    def spy(sock, nic_index, claim, release):
        seen.append(getattr(claim.__self__, "user", None))
        return real(sock, nic_index, claim=claim, release=release)
    monkeypatch.setattr(agent, "StackAgent", spy)
    with in_ns(tb):
        run = launcher.Launch(launcher.RunSpec(ifname=tb.dut.ifname, cmd=["sleep", "5"], tcp=[7122])).start()
        run.close()
    assert len(seen) == 1 and seen[0] is not None and seen[0].uid == os.getuid()
    assert_nothing_left(tb)
