"""`xdpstack attach/detach/status` on a namespace testbed, through the real executable and in-process:
pins where stated, modes, someone else's program, stale state, failures that leave nothing, and
every error as one line with a non-zero exit."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.fixtures.xdpstack_helpers import (
    assert_clean,
    assert_no_state,
    bpftool,
    in_ns,
    invoke,
    pin_dir,
    run_exe,
    xdp_prog_id,
)
from xdpstack import libbpf, loader, maps, registry
from xdpstack.layout import CONST

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root


def one_line_error(r, *needles: str, code: int = 1):
    assert r.code == code, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpstack: error: "), r
    for n in needles:
        assert n in lines[0], (n, lines[0])


def pinned_id(path) -> int:
    return json.loads(bpftool("-j", "prog", "show", "pinned", str(path)).stdout)["id"]


def test_attach_pins_where_stated_and_detach_cleans(module_bed, tmp_path):
    tb = module_bed
    ns, ifname = tb.dut.ns, tb.dut.ifname
    r = run_exe("--netns", ns, "attach", ifname)
    assert r.code == 0 and "in native mode" in r.out, r
    d = pin_dir(tb)
    inode = os.stat(f"/run/netns/{ns}").st_ino              # what `ls -l /proc/PID/ns/net` shows
    assert d == Path(os.environ["XDPSTACK_BPFFS"]) / f"netns-{inode}" / ifname
    assert sorted(os.listdir(d)) == sorted(["prog", "port_rx", "port_tx_tc", *maps.MAP_NAMES])
    # the pinned program is the attached one; the port programs are loaded, not attached
    prog = pinned_id(d / "prog")
    assert prog == xdp_prog_id(tb)
    for pin, kind, name in (("port_rx", "xdp", "xdp_port_rx"), ("port_tx_tc", "sched_cls", "tc_port_tx")):
        info = json.loads(bpftool("-j", "prog", "show", "pinned", str(d / pin)).stdout)
        assert (info["type"], info["name"]) == (kind, name)
    # iface[0] and local_addrs describe the interface
    with in_ns(tb):
        with maps.open_map(ifname, "iface") as m:
            v = m.get(0)
            assert (v.ifindex, v.xdp_mode) == (tb.dut.ifindex, libbpf.XDP_FLAGS_DRV_MODE)
        with maps.open_map(ifname, "local_addrs") as m:
            addrs = {bytes(k.addr)[:4 if k.family == 4 else 16]: v for k, v in m.items()}
    assert addrs[bytes([198, 18, 0, 1])] == 24 and addrs[bytes.fromhex("20010db8" + "0" * 23 + "1")] == 64
    # bpftool runs the pinned demux on a frame to an unclaimed port: XDP_PASS
    frame = bytes(Ether(dst=tb.dut.mac, src=tb.peer.mac) / IP(src=tb.peer.addr4, dst=tb.dut.addr4)
                  / UDP(sport=40000, dport=5999) / (b"x" * 32))
    (tmp_path / "frame.bin").write_bytes(frame)
    out = bpftool("-j", "prog", "run", "pinned", str(d / "prog"), "data_in", str(tmp_path / "frame.bin"))
    assert out.returncode == 0 and json.loads(out.stdout)["retval"] == 2, out     # XDP_PASS
    # attaching again: nothing to do, exit 0
    r = run_exe("--netns", ns, "attach", ifname)
    assert r.code == 0 and "already attached" in r.out and xdp_prog_id(tb) == prog, r
    one_line_error(run_exe("--netns", ns, "attach", ifname, "--mode", "generic"),
                   "already attached by xdpstack in native mode", "detach")
    r = run_exe("--netns", ns, "status", ifname, "--json")
    assert r.code == 0 and r.json()["prog"]["id"] == prog and r.json()["mode"] == "native"
    r = run_exe("--netns", ns, "detach", ifname)
    assert r.code == 0 and f"program {prog} removed" in r.out, r
    assert_clean(tb)
    assert_no_state(tb)                             # its last interface: the namespace's dirs go too
    one_line_error(run_exe("--netns", ns, "detach", ifname), "not attached")
    one_line_error(run_exe("--netns", ns, "status", ifname), "not attached", "xdpstack attach")


def test_generic_mode_and_auto_fallback(module_bed):
    tb = module_bed
    ns, br = tb.dut.ns, f"{tb.id}b"                 # a bridge: no native XDP in its driver
    tb.dut.run(f"ip link add {br} type bridge && ip link set {br} up")
    try:
        one_line_error(invoke("--netns", ns, "attach", br, "--mode", "native"),
                       "no native XDP", "--mode generic")
        assert_clean(tb, br)                        # it had pinned before attaching: all gone
        assert_no_state(tb)                         # the namespace's directories and lock too
        r = invoke("--netns", ns, "attach", br, "--json")
        assert r.code == 0 and r.json()["mode"] == "generic" and not r.json()["already_attached"], r
        r = invoke("--netns", ns, "attach", br)
        assert r.code == 0 and "already attached" in r.out and "generic" in r.out
        r = invoke("--netns", ns, "detach", br)
        assert r.code == 0
        assert_clean(tb, br)
        r = invoke("--netns", ns, "attach", tb.dut.ifname, "--mode", "generic")
        assert r.code == 0 and "in generic mode" in r.out and "auto" not in r.out, r
        with in_ns(tb), maps.open_map(tb.dut.ifname, "iface") as m:
            assert m.get(0).xdp_mode == libbpf.XDP_FLAGS_SKB_MODE
        assert invoke("--netns", ns, "detach", tb.dut.ifname).code == 0
        assert_clean(tb)
    finally:
        tb.dut.run(f"ip link del {br}", check=False)


@pytest.fixture
def foreign(module_bed):
    """Someone else's XDP program on the dut interface."""
    from bcc import BPF
    tb = module_bed
    b = BPF(text=b"int someone_else(struct xdp_md *ctx) { return XDP_PASS; }")
    fn = b.load_func(b"someone_else", BPF.XDP)
    with in_ns(tb):
        libbpf.xdp_attach(tb.dut.ifindex, fn.fd, libbpf.XDP_FLAGS_DRV_MODE)
    prog = libbpf.prog_info(fn.fd).id
    yield tb, prog
    tb.dut.run(f"ip link set dev {tb.dut.ifname} xdp off", check=False)
    b.cleanup()


def test_someone_elses_program_is_never_replaced_without_force(foreign):
    tb, prog = foreign
    ns, ifname = tb.dut.ns, tb.dut.ifname
    one_line_error(invoke("--netns", ns, "attach", ifname), "did not attach", f"id {prog}", "--force")
    assert xdp_prog_id(tb) == prog and not pin_dir(tb).exists()
    one_line_error(invoke("--netns", ns, "detach", ifname), "did not attach", "xdp off")
    one_line_error(invoke("--netns", ns, "detach", ifname, "--force"), "did not attach")
    one_line_error(invoke("--netns", ns, "status", ifname), "did not attach")
    assert xdp_prog_id(tb) == prog
    assert_no_state(tb)
    r = invoke("--netns", ns, "attach", ifname, "--force")
    assert r.code == 0 and f"replaced program {prog}" in r.out, r
    mine = pinned_id(pin_dir(tb) / "prog")
    assert xdp_prog_id(tb) == mine != prog
    assert invoke("--netns", ns, "detach", ifname).code == 0
    assert_clean(tb)


def test_detach_refuses_while_claims_are_held(module_bed):
    tb = module_bed
    ns, ifname = tb.dut.ns, tb.dut.ifname
    assert invoke("--netns", ns, "attach", ifname).code == 0
    with in_ns(tb):
        st = registry.Stack.create(ifname, "busy", uid=0, gid=0)
        cs = st.claim("udp", None, 7000)
    try:
        one_line_error(invoke("--netns", ns, "detach", ifname),
                       "still has 1 stack(s) with 2 claim(s)", "'busy'", "--force")
        assert xdp_prog_id(tb) is not None and pin_dir(tb).is_dir()
        r = invoke("--netns", ns, "detach", ifname, "--force")
        assert r.code == 0
        assert_clean(tb)
    finally:
        st.close()                                 # the maps are gone: only the sockets close
    assert cs.released


def test_stale_pins(module_bed):
    """Our program taken off behind our back: status says so, detach clears the pins, attach
    replaces them."""
    tb = module_bed
    ns, ifname = tb.dut.ns, tb.dut.ifname
    assert invoke("--netns", ns, "attach", ifname).code == 0
    tb.dut.run(f"ip link set dev {ifname} xdp off")
    one_line_error(invoke("--netns", ns, "status", ifname), "stale pins", "detach")
    r = invoke("--netns", ns, "detach", ifname)
    assert r.code == 0 and "stale pins" in r.out
    assert_clean(tb)
    assert invoke("--netns", ns, "attach", ifname).code == 0
    tb.dut.run(f"ip link set dev {ifname} xdp off")
    r = invoke("--netns", ns, "attach", ifname)                   # replaces the stale pins
    assert r.code == 0 and "attached xdpstack" in r.out
    assert pinned_id(pin_dir(tb) / "prog") == xdp_prog_id(tb)
    assert invoke("--netns", ns, "detach", ifname).code == 0
    assert_clean(tb)


def test_a_program_that_fails_to_load_leaves_nothing(module_bed, tmp_path):
    tb = module_bed
    bad = tmp_path / "bad.bpf.c"
    # compiles cleanly, but reads the packet without a bounds check: the verifier refuses it
    bad.write_text('#include "maps.h"\n'
                   "int xdp_demux(struct xdp_md *ctx) { return *(unsigned char *)(long)ctx->data; }\n"
                   "int xdp_port_rx(struct xdp_md *ctx) { return XDP_PASS; }\n"
                   "int tc_port_tx(struct __sk_buff *skb) { return 2; }\n")
    r = run_exe("--netns", tb.dut.ns, "attach", tb.dut.ifname, env={"XDPSTACK_BPF_SRC": str(bad)})
    assert r.code == 1 and "the kernel refused a program" in r.err.strip().splitlines()[-1], r
    assert_clean(tb)
    bad.write_text("int xdp_demux(struct xdp_md *ctx) { int unused; return XDP_PASS; }\n")   # -Werror
    r = run_exe("--netns", tb.dut.ns, "attach", tb.dut.ifname, env={"XDPSTACK_BPF_SRC": str(bad)})
    assert r.code == 1 and "does not compile" in r.err.strip().splitlines()[-1], r
    assert_clean(tb)
    assert_no_state(tb)


def test_loader_check(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    assert loader.main(["--check"]) == 0
    bad = tmp_path / "bad.c"
    bad.write_text("int xdp_demux(struct xdp_md *ctx) { int unused; return XDP_PASS; }\n")
    assert loader.main(["--check", "--src", str(bad)]) == 1


@pytest.mark.parametrize("args", [
    ["attach", "nosuch0"], ["detach", "nosuch0"], ["status", "nosuch0"], ["maps", "list", "nosuch0"],
    ["maps", "dump", "nosuch0", "claims"], ["stats", "nosuch0"],
])
def test_no_such_interface(module_bed, args):
    one_line_error(invoke("--netns", module_bed.dut.ns, *args), "no such interface 'nosuch0'")


@pytest.mark.parametrize("args", [["status", "IFACE"], ["maps", "list", "IFACE"],
                                  ["maps", "dump", "IFACE", "stats"], ["stats", "IFACE"]])
def test_not_attached(module_bed, args):
    args = [a.replace("IFACE", module_bed.dut.ifname) for a in args]
    one_line_error(invoke("--netns", module_bed.dut.ns, *args), "is not attached", "xdpstack attach")


def test_bad_namespace():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    one_line_error(run_exe("--netns", "xst-no-such-ns", "status"), "no network namespace 'xst-no-such-ns'")
    one_line_error(run_exe("status", env={"XDPSTACK_NETNS": "xst-no-such-ns"}), "no network namespace")
    one_line_error(run_exe("--netns", "../etc", "status"), "no network namespace")


@pytest.mark.parametrize("args", [["attach", "x0"], ["detach", "x0"], ["status"], ["maps", "list"],
                                  ["maps", "dump", "x0", "claims"], ["stats", "x0"], ["bench", "demux"],
                                  ["--netns", "whatever", "status"]])
def test_not_root(args):
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    r = run_exe(*args, user="nobody")
    one_line_error(r, "needs root", "sudo")


def test_bad_arguments_through_the_executable():
    r = run_exe("attach", "x0", "--mode", "turbo")
    assert r.code == 2 and "'turbo' is not one of" in r.err
    r = run_exe("maps", "dump", "x0", "nosuchmap")
    assert r.code == 2 and "nosuchmap" in r.err


def test_bpffs_is_mounted_where_missing(tmp_path):
    """A root that is not on bpffs gets one mounted there (as bpftool would)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path / "bpffs" / "xdpstack"
    assert not libbpf.is_bpffs(str(tmp_path))
    loader.ensure_bpffs(root)
    try:
        assert libbpf.is_bpffs(str(root)) and root.is_dir()
    finally:
        os.system(f"umount {root}")
    assert not libbpf.is_bpffs(str(root))


def test_layout_header_and_kernel_agree(module_bed):
    """The maps the kernel got have the sizes bpf/xdpstack.h gives Python (else maps.py refuses)."""
    tb = module_bed
    with in_ns(tb):
        loader.attach(tb.dut.ifname)
        try:
            for name in maps.MAP_NAMES:
                with maps.open_map(tb.dut.ifname, name) as m:
                    assert m.info.max_entries > 0
            with maps.open_map(tb.dut.ifname, "claims_by_port") as m:
                assert m.info.max_entries == CONST["XS_CLAIMS_BY_PORT_LEN"]
                assert m.info.value_size == struct.calcsize("I8s16s")
        finally:
            loader.detach(tb.dut.ifname)
    assert_clean(tb)


def test_pins_of_an_interface_that_is_gone(module_bed):
    """The interface disappears while attached (its namespace or driver went away): the pins stay
    until `detach --force` removes them; status reports them meanwhile."""
    tb = module_bed
    ns, br = tb.dut.ns, f"{tb.id}g"
    tb.dut.run(f"ip link add {br} type bridge && ip link set {br} up")
    try:
        assert invoke("--netns", ns, "attach", br).code == 0
        tb.dut.run(f"ip link del {br}")
        one_line_error(invoke("--netns", ns, "detach", br), "no such interface", "pins", "--force")
        one_line_error(invoke("--netns", ns, "status", br), "no such interface", "--force")
        r = invoke("--netns", ns, "status", "--json")
        assert r.code == 0 and any(d["ifname"] == br and not d["attached"] for d in r.json())
        r = invoke("--netns", ns, "detach", br, "--force")
        assert r.code == 0 and "stale pins" in r.out
        assert not pin_dir(tb, br).exists()
    finally:
        tb.dut.run(f"ip link del {br}", check=False)
