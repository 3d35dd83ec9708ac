"""Per-namespace state: two namespaces, each with its own `eth0`, attached, running a stack each,
inspected and detached independently; state of an earlier namespace with the same inode, and state
of the layout before namespaces, recognised and removed (never read).

    ns A-dut eth0 (198.18.0.1) ---- A-peer        ns B-dut eth0 (198.18.0.1) ---- B-peer

Both pairs have the same addresses too: only the namespace tells them apart.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from tests.fixtures import testbed
from tests.fixtures.testbed import wait_until
from tests.fixtures.xdpstack_helpers import (
    assert_clean,
    assert_no_state,
    bpftool,
    in_ns,
    invoke,
    pin_dir,
    run_exe,
    state_dirs,
    xdp_prog_id,
)
from xdpstack import libbpf, loader, nsstate, paths, registry

pytestmark = pytest.mark.root
XDPSTACK = os.path.join(os.path.dirname(sys.executable), "xdpstack")

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok = 0
for i in range(int(sys.argv[3])):
    msg = b"x%d" % i
    s.sendto(msg, (sys.argv[1], int(sys.argv[2])))
    try:
        ok += s.recv(2048) == msg
    except TimeoutError:
        pass
print(ok)
"""


@pytest.fixture(scope="module")
def twins():
    """Two testbeds whose dut interfaces are both called eth0."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with testbed.Testbed(dut_ifname="eth0") as a, testbed.Testbed(dut_ifname="eth0") as b:
        yield a, b


def inode(tb: testbed.Testbed) -> int:
    return os.stat(f"/run/netns/{tb.dut.ns}").st_ino


def echoes(tb: testbed.Testbed, port: int, n: int = 5) -> int:
    return int(tb.peer.run(["python3", "-c", UDP_CLIENT, tb.dut.addr4, str(port), str(n)]).stdout)


def launch(tb: testbed.Testbed, name: str) -> subprocess.Popen:
    argv = [XDPSTACK, "--netns", tb.dut.ns, "run", "eth0", "--udp", "7000", "--name", name,
            "--user", "nobody", "--", "userstack-echo"]
    return tb.track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))


def stack_names(tb: testbed.Testbed) -> list[str]:
    with in_ns(tb):
        return [s.name for s in registry.list_stacks("eth0")]


def test_the_key_is_the_namespace_of_this_thread_now(twins):
    a, b = twins
    host = paths.netns_key()
    assert host.inode == os.stat("/proc/self/ns/net").st_ino
    with in_ns(a):
        ka = paths.netns_key()
        seen = {}
        t = threading.Thread(target=lambda: seen.update(key=paths.netns_key()))
        t.start()                      # a thread started here is in the namespace too
        t.join()
    with in_ns(b):
        kb = paths.netns_key()
    assert (ka.inode, kb.inode) == (inode(a), inode(b)) and seen["key"] == ka
    assert len({host, ka, kb}) == 3 and len({host.cookie, ka.cookie, kb.cookie}) == 3
    assert paths.netns_key() == host   # and back
    with in_ns(a):
        assert paths.pin_dir("eth0") == paths.bpffs_root() / f"netns-{inode(a)}" / "eth0"
        assert paths.lock_path() == paths.RUN_DIR / f"netns-{inode(a)}" / "lock"


def test_two_namespaces_each_with_an_eth0(twins):
    a, b = twins
    ra = run_exe("--netns", a.dut.ns, "attach", "eth0")
    assert ra.code == 0, ra
    # B attaches while A's lock is held: the namespaces never wait for each other
    hold = threading.Event()
    release = threading.Event()

    def holder():
        with in_ns(a), registry.locked():
            hold.set()
            release.wait(120)
    t = threading.Thread(target=holder)
    t.start()
    try:
        assert hold.wait(10)
        rb = run_exe("--netns", b.dut.ns, "attach", "eth0", timeout=60)
    finally:
        release.set()
        t.join()
    assert rb.code == 0, rb
    da, db = pin_dir(a), pin_dir(b)
    assert da != db and da.parent.name == f"netns-{inode(a)}" and db.parent.name == f"netns-{inode(b)}"
    assert str(da) in ra.out and str(db) in rb.out
    pa, pb = xdp_prog_id(a), xdp_prog_id(b)
    assert pa and pb and pa != pb
    # the identity map holds the namespace's cookie
    with in_ns(a):
        cookie_a = paths.netns_key().cookie
    (ident,) = json.loads(bpftool("-j", "map", "dump", "pinned", str(da.parent / "identity")).stdout)
    assert ident["formatted"] == {"key": 0, "value": {"cookie": cookie_a}}

    pa_run, pb_run = launch(a, "echo-a"), launch(b, "echo-b")
    try:
        for tb, p, name in ((a, pa_run, "echo-a"), (b, pb_run, "echo-b")):
            assert wait_until(lambda tb=tb, p=p: stack_names(tb) or p.poll() is not None, 10)
            assert p.poll() is None, p.communicate()
            assert stack_names(tb) == [name]
        for tb in (a, b):
            assert wait_until(lambda tb=tb: echoes(tb, 7000, 1) == 1, 5)
        assert echoes(a, 7000) == 5 and echoes(b, 7000) == 5
        for tb, mine, prog, d in ((a, "echo-a", pa, da), (b, "echo-b", pb, db)):
            r = run_exe("--netns", tb.dut.ns, "status", "--json")
            assert r.code == 0, r
            (st,) = r.json()                       # only its own eth0
            assert (st["ifname"], st["prog"]["id"], st["pin_dir"]) == ("eth0", prog, str(d))
            assert st["netns"]["inode"] == inode(tb) and tb.dut.ns in st["netns"]["names"]
            assert [s["name"] for s in st["stacks"]] == [mine]
            text = run_exe("--netns", tb.dut.ns, "status", "eth0").out
            assert f"inode {inode(tb)} (ip netns {tb.dut.ns})" in text and f"{d}/prog" in text, text
            r = run_exe("--netns", tb.dut.ns, "stacks", "--json")
            assert r.code == 0 and [s["name"] for s in r.json()] == [mine], r
            assert all(s["counters"]["rx_packets"] >= 5 for s in r.json())
        # A's detach waits for A's stack only (refused while it runs), and leaves B untouched
        r = run_exe("--netns", a.dut.ns, "detach", "eth0")
        assert r.code == 1 and "'echo-a'" in r.err and "echo-b" not in r.err, r
        pa_run.send_signal(signal.SIGTERM)
        assert pa_run.wait(5) == 128 + signal.SIGTERM
        r = run_exe("--netns", a.dut.ns, "detach", "eth0")
        assert r.code == 0 and f"program {pa} removed" in r.out, r
        assert_clean(a, "eth0")
        assert_no_state(a)
        assert xdp_prog_id(b) == pb and db.is_dir() and echoes(b, 7000) == 5
        assert stack_names(b) == ["echo-b"]
        pb_run.send_signal(signal.SIGTERM)
        assert pb_run.wait(5) == 128 + signal.SIGTERM
        r = run_exe("--netns", b.dut.ns, "detach", "eth0")
        assert r.code == 0 and f"program {pb} removed" in r.out, r
    finally:
        for p in (pa_run, pb_run):
            if p.poll() is None:
                p.kill()
                p.wait(5)
        for tb in (a, b):
            with in_ns(tb):
                if paths.pin_dir("eth0").exists():
                    loader.detach("eth0", force=True)
    for tb in (a, b):
        assert_clean(tb, "eth0")
        assert_no_state(tb)


def test_a_stack_closed_from_another_namespace_goes_home(twins):
    """Stack 0 of A's eth0 and stack 0 of B's eth0: closing A's from B's namespace (or from the
    host's) removes A's record, never B's."""
    a, b = twins
    for tb in (a, b):
        with in_ns(tb):
            loader.attach("eth0")
    try:
        with in_ns(a):
            st_a = registry.Stack.create("eth0", "stack-a", uid=0, gid=0)
            st_a.claim("udp", None, 7100)
        with in_ns(b):
            st_b = registry.Stack.create("eth0", "stack-b", uid=0, gid=0)
            assert st_a.id == st_b.id == 0
            st_a.close()
            assert [s.name for s in registry.list_stacks("eth0")] == ["stack-b"]
        with in_ns(a):
            assert registry.list_stacks("eth0") == [] and registry.list_claims("eth0") == []
        st_a.close()                                   # idempotent
        st_b.close()                                   # from the host's namespace
        with in_ns(b):
            assert registry.list_stacks("eth0") == []
    finally:
        for tb in (a, b):
            with in_ns(tb):
                loader.detach("eth0", force=True)
    for tb in (a, b):
        assert_clean(tb, "eth0")
        assert_no_state(tb)


def _fake_stale_state(tb: testbed.Testbed, identity: bool) -> tuple[int, int]:
    """What a dead namespace with this namespace's inode would have left: pins of an eth0 with
    another cookie in the identity map (or none), and a launcher record whose pid is alive (pids are
    reused too)."""
    with in_ns(tb):
        key = paths.netns_key()
        dead = paths.NetnsKey(key.inode, key.cookie + 1000)
        with registry.locked():                    # this namespace's lock: nothing else changes now
            d = nsstate.make_netns_dir(dead) if identity else paths.netns_dir(key)
            (d / "eth0").mkdir(parents=True)
            (paths.run_dir(key) / "cookie").write_text(f"{dead.cookie}\n")
            paths.stacks_dir(key).mkdir(parents=True, exist_ok=True)
            (paths.stacks_dir(key) / f"{key.inode}-eth0-0.json").write_text(json.dumps(
                {"ifname": "eth0", "stack": 0, "name": "ghost", "launcher_pid": os.getpid(), "pid": 1}))
        return key.cookie, dead.cookie


@pytest.mark.parametrize("identity", [True, False], ids=["other-cookie", "no-identity"])
def test_state_of_a_dead_namespace_with_the_same_inode_is_removed_not_read(twins, identity):
    a, _ = twins
    cookie, dead = _fake_stale_state(a, identity)
    netns_dir, run_dir = state_dirs(a)
    assert (netns_dir / "eth0").is_dir() and (run_dir / "stacks").is_dir()
    r = run_exe("--netns", a.dut.ns, "stacks", "--json")        # a fresh process: checks once
    assert r.code == 0 and r.json() == [], r
    lines = r.err.strip().splitlines()
    assert len(lines) == 2, r
    why = f"cookie {dead}" if identity else "no identity pin"
    assert any(f"removed {netns_dir}" in ln and why in ln and f"cookie {cookie}" in ln for ln in lines), lines
    assert any(f"launcher records in {run_dir}" in ln for ln in lines), lines
    assert_no_state(a)
    r = run_exe("--netns", a.dut.ns, "status")
    assert r.code == 0 and r.err == "" and "no interface is attached in this network namespace" in r.out, r


def _legacy(tb: testbed.Testbed, ifname: str) -> tuple[int, object]:
    """Attach, then move the pins where an xdpstack from before namespaces kept them."""
    with in_ns(tb):
        a = loader.attach(ifname)
        d = paths.pin_dir(ifname)
        legacy = paths.bpffs_root() / ifname
        with registry.locked():                    # (taking it looks for legacy state: then none)
            os.rename(d, legacy)                   # bpffs renames directories
            nsstate.drop_netns_dir_if_unused(d.parent)
    return a.prog_id, legacy


def test_legacy_state_of_this_namespace_is_detached_and_removed(twins):
    a, _ = twins
    prog, legacy = _legacy(a, "eth0")
    assert xdp_prog_id(a) == prog and (legacy / "prog").is_file()
    gone = subprocess.Popen(["true"])
    gone.wait()
    paths.LEGACY_STACKS.mkdir(parents=True, exist_ok=True)     # an old launcher's record, its pid gone
    record = paths.LEGACY_STACKS / f"{inode(a)}-eth0-0.json"
    record.write_text(json.dumps({"ifname": "eth0", "stack": 0, "launcher_pid": gone.pid}))
    other = paths.bpffs_root() / "not-ours"                   # shaped alike, but its "prog" is a map
    other.mkdir()
    fd = libbpf.map_create(2, "not_ours", 4, 4, 1)
    for name in ("prog", "claims"):
        libbpf.obj_pin(fd, str(other / name))
    os.close(fd)
    r = run_exe("--netns", a.dut.ns, "status", "eth0")
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 2, r
    assert f"removed {legacy}, state of an older xdpstack" in lines[0] and f"detached its program {prog}" \
        in lines[0], lines
    assert lines[1].startswith("xdpstack: error: eth0 is not attached"), lines
    assert not legacy.exists() and xdp_prog_id(a) is None
    assert not record.exists() and not paths.LEGACY_LOCK.exists()
    assert sorted(p.name for p in other.iterdir()) == ["claims", "prog"]       # never touched
    shutil.rmtree(other)
    assert_no_state(a)


def test_legacy_state_of_another_namespace_is_removed_and_its_program_left_alone(twins):
    a, b = twins
    prog, legacy = _legacy(a, "eth0")
    try:
        r = invoke("--netns", b.dut.ns, "status")             # B's eth0 does not run it
        assert r.code == 0 and "no interface is attached" in r.out, r
        (line,) = r.err.strip().splitlines()
        assert f"removed {legacy}" in line and f"its program {prog} is not attached to eth0 in this " \
            "namespace" in line and "xdp off" in line, line
        assert not legacy.exists()
        assert xdp_prog_id(a) == prog                          # never touched: not B's
        r = invoke("--netns", a.dut.ns, "status", "eth0")     # in A it is now someone else's
        assert r.code == 1 and "did not attach" in r.err, r
    finally:
        a.dut.run("ip link set dev eth0 xdp off", check=False)
    assert_clean(a, "eth0")
    assert_no_state(a)
    assert_no_state(b)
