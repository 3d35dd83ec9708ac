"""`xdpstack capture`: two launched UDP echo stacks on one NIC, kernel peers sending to both, one
stack captured: tshark reads every request In and every echo Out, of that stack only, on an
interface named for it; a pcap-filter keeps only what it matches; `-w -` is live (tshark shows a
packet before the capture ends); a capture that falls behind reports as dropped exactly the
frames that are missing; the wrong user, a bad filter and an unknown stack get one line and a
non-zero exit."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.fixtures.testbed import wait_until
from tests.fixtures.userstack_tcp_helpers import REPO
from tests.fixtures.xdpstack_helpers import XDPSTACK

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

PORT_A, PORT_B = 7060, 7061

SENDER = r"""
import json, socket, sys, time
dst, (port, n, size), gap = sys.argv[1], map(int, sys.argv[2:5]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
s.settimeout(0.5)
echoed = 0
for i in range(n):
    s.sendto(i.to_bytes(4, "big") * (size // 4), (dst, port))
    if gap:
        time.sleep(gap)
deadline = time.monotonic() + 3
while echoed < n and time.monotonic() < deadline:
    try:
        s.recv(65536)
        echoed += 1
    except TimeoutError:
        break
print(json.dumps({"sport": s.getsockname()[1], "echoed": echoed}))
"""


def launch(tb, port: int, name: str) -> subprocess.Popen:
    argv = [XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, "--udp", str(port), "--name", name,
            "--user", "nobody", "--", "userstack-echo", "--quiet"]
    return tb.track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO))


def send(tb, port: int, n: int, size: int = 64, gap: float = 0.0) -> dict:
    r = tb.peer.run(["python3", "-c", SENDER, tb.dut.addr4, str(port), str(n), str(size), str(gap)],
                    timeout=120)
    return json.loads(r.stdout)


def capture(tb, *args, **kw) -> subprocess.Popen:
    return tb.track(subprocess.Popen([XDPSTACK, "--netns", tb.dut.ns, "capture", tb.dut.ifname, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw))


def started(p: subprocess.Popen) -> None:
    """The capture said what it captures (its areas are mapped and the filter is written)."""
    line = p.stderr.readline().decode()
    assert line.startswith("xdpstack capture:"), line


def end(p: subprocess.Popen) -> tuple[bytes, str]:
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return out, err.decode()


def tshark(path: str, *fields: str) -> list[list[str]]:
    r = subprocess.run(["tshark", "-r", path, "-T", "fields", *[a for f in fields for a in ("-e", f)]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def frames_of(tb, name: str) -> int:
    """Frames the stack received and sent, from its own counters (`xdpstack stacks --json`)."""
    r = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "stacks", "--json"], capture_output=True, text=True,
                       timeout=30)
    (s,) = [s for s in json.loads(r.stdout) if s["name"] == name]
    return s["stack_counters"]["stack"]["rx_frames"] + s["stack_counters"]["stack"]["tx_frames"]


def summary(err: str) -> dict[str, int]:
    out = {}
    for line in err.splitlines():
        for key in ("packets captured", "packets received by filter", "packets dropped by stack"):
            if line.endswith(key):
                out[key.split()[-1]] = int(line.split()[0])
    return out


@pytest.fixture(scope="module")
def two_stacks(attached_bed):
    tb, _ = attached_bed
    a, b = launch(tb, PORT_A, "echo-a"), launch(tb, PORT_B, "echo-b")
    try:
        for port in (PORT_A, PORT_B):       # both answer before the tests start
            wait_until(lambda p=port: send(tb, p, 1)["echoed"] == 1, timeout=20, interval=0.3)
        yield tb
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=15)


def test_one_of_two_stacks_both_directions_in_tshark(two_stacks, tmp_path):
    tb = two_stacks
    path = str(tmp_path / "a.pcapng")
    p = capture(tb, "--stack", "echo-a", "-w", path)
    started(p)
    time.sleep(0.3)
    ra = send(tb, PORT_A, 20, gap=0.002)
    send(tb, PORT_B, 20, gap=0.002)
    assert ra["echoed"] == 20
    time.sleep(0.3)
    _, err = end(p)
    rows = tshark(path, "frame.interface_name", "frame.packet_flags_direction", "udp.srcport", "udp.dstport")
    names = {r[0] for r in rows}
    assert names == {f"{tb.dut.ifname}:echo-a"}, names
    ins = [r for r in rows if int(r[1], 16) == 1]
    outs = [r for r in rows if int(r[1], 16) == 2]
    assert len(ins) == 20 and all(r[3] == str(PORT_A) and r[2] == str(ra["sport"]) for r in ins), rows
    assert len(outs) == 20 and all(r[2] == str(PORT_A) and r[3] == str(ra["sport"]) for r in outs), rows
    s = summary(err)
    assert s == {"captured": 40, "filter": 40, "stack": 0}, err


def test_filter_keeps_only_what_it_matches(two_stacks, tmp_path):
    tb = two_stacks
    path = str(tmp_path / "f.pcapng")
    p = capture(tb, "-w", path, "--dir", "in", "udp", "and", "dst", "port", str(PORT_B))
    started(p)
    time.sleep(0.3)
    send(tb, PORT_A, 10, gap=0.002)
    send(tb, PORT_B, 15, gap=0.002)
    time.sleep(0.3)
    _, err = end(p)
    rows = tshark(path, "frame.interface_name", "frame.packet_flags_direction", "udp.dstport")
    assert len(rows) == 15, rows
    assert all(r == [f"{tb.dut.ifname}:echo-b", "0x00000001", str(PORT_B)] for r in rows), rows
    assert summary(err)["captured"] == 15


def test_stream_is_live_in_tshark(two_stacks):
    """`-w -` into tshark: a packet is printed while the capture still runs."""
    tb = two_stacks
    p = capture(tb, "--stack", "echo-a", "-w", "-")
    reader = tb.track(subprocess.Popen(["tshark", "-l", "-r", "-", "-T", "fields", "-e", "udp.dstport"],
                                       stdin=p.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       text=True))
    p.stdout.close()
    try:
        started(p)
        time.sleep(0.3)
        send(tb, PORT_A, 3, gap=0.01)
        line = reader.stdout.readline()     # tshark printed a packet ...
        assert line.strip() == str(PORT_A), line
        assert p.poll() is None             # ... while the capture runs
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        reader.wait(timeout=30)


def test_a_capture_that_falls_behind_counts_exactly_what_is_missing(two_stacks, tmp_path):
    """The capture stopped (SIGSTOP) while a burst far bigger than its 4 MB ring arrives: what
    the file lacks, of every frame the stack received and sent, is what it reports dropped."""
    tb = two_stacks
    path = str(tmp_path / "d.pcapng")
    p = capture(tb, "--stack", "echo-a", "-w", path)
    started(p)
    time.sleep(0.3)
    before = frames_of(tb, "echo-a")
    p.send_signal(signal.SIGSTOP)
    try:
        send(tb, PORT_A, 6000, size=1400)
    finally:
        p.send_signal(signal.SIGCONT)
    time.sleep(0.3)
    _, err = end(p)
    after = frames_of(tb, "echo-a")
    s = summary(err)
    frames = len(tshark(path, "frame.number"))
    assert frames == s["captured"] and s["stack"] > 0, err
    # every frame the stack received and sent meanwhile (its own counters) passed the empty
    # filter: in the file, or counted as dropped
    assert s["filter"] == after - before, (err, before, after)
    assert s["captured"] + s["stack"] == s["filter"], err
    cap = subprocess.run(["capinfos", "-M", path], capture_output=True, text=True, timeout=30).stdout
    assert "stat entries = 1" in cap, cap


def test_refusals_are_one_line(two_stacks):
    tb = two_stacks
    for args, words in ((["--stack", "nosuch"], "no stack named 'nosuch'"),
                        (["udp", "and", "port"], "can't parse filter expression"),):
        r = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "capture", tb.dut.ifname, *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and words in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    # a user who is neither root nor the stack's (it runs as nobody); then the stack's own user
    as_user = ["ip", "netns", "exec", tb.dut.ns, "setpriv", "--regid=nogroup", "--clear-groups"]
    r = subprocess.run([*as_user, "--reuid=daemon", XDPSTACK, "capture", tb.dut.ifname, "--stack", "echo-a"],
                       capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode != 0 and "only root or nobody may capture it" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    p = subprocess.Popen([*as_user, "--reuid=nobody", XDPSTACK, "capture", tb.dut.ifname, "--stack", "echo-a",
                          "-c", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    tb.track(p)
    time.sleep(1.0)
    send(tb, PORT_A, 1)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and " echo-a In  IP " in lines[0] and " echo-a Out IP " in lines[1], out
    assert f"> {tb.dut.addr4}.{PORT_A}: UDP, length 64" in lines[0], out
