"""`xdpstack maps dump/list` print exactly what bpftool prints, for every map of a live attachment:
first with the maps as attach leaves them (hash maps empty), then with claims, stacks, a DEVMAP
entry, port_of, odd stack names and counters that moved."""
from __future__ import annotations

import contextlib
import json

import pytest

from tests.fixtures.xdpstack_helpers import bpftool, in_ns, invoke, pin_dir, ping, run_exe
from xdpstack import mapdump, maps, registry
from xdpstack.layout import CONST

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root
COUNTERS = {"stats", "stack_stats"}          # may move between two dumps: compared a few times


def compare(tb, mapname: str, as_json: bool, exe: bool = False) -> None:
    ifname = tb.dut.ifname
    path = f"{pin_dir(tb)}/{mapname}"
    args = ["--netns", tb.dut.ns, "maps", "dump", ifname, mapname] + (["--json"] if as_json else [])
    tries = 4 if mapname in COUNTERS else 1
    for attempt in range(tries):
        mine = run_exe(*args) if exe else invoke(*args)
        ref = bpftool(*(["-j"] if as_json else []), "map", "dump", "pinned", path)
        assert mine.code == ref.returncode == 0, (mine, ref.stderr)
        if mine.out == ref.stdout or attempt == tries - 1:
            break
    assert mine.out == ref.stdout, _first_difference(mine.out, ref.stdout)


def _first_difference(a: str, b: str) -> str:
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"differs at {i} (lengths {len(a)}/{len(b)}):\n  ours    {a[max(0, i - 120):i + 80]!r}\n" \
           f"  bpftool {b[max(0, i - 120):i + 80]!r}"


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
@pytest.mark.parametrize("mapname", maps.MAP_NAMES)
def test_dump_as_attached_equals_bpftool(attached_bed, mapname, as_json):
    tb, _ = attached_bed
    compare(tb, mapname, as_json)


@pytest.fixture(scope="module")
def populated(attached_bed):
    """Two stacks with claims of every kind, an entry in ports and port_of, odd names, traffic."""
    tb, _ = attached_bed
    ifname = tb.dut.ifname
    tb.dut.run(f"ip addr add 198.18.0.3/24 dev {ifname}")
    with contextlib.ExitStack() as stack:             # closes the stacks at the end of the module
        with in_ns(tb):
            a = stack.enter_context(registry.Stack.create(ifname, "echo", uid=65534, gid=65534, queues=2))
            b = stack.enter_context(registry.Stack.create(ifname, 'b"\\q', uid=0, gid=0,
                                                          target=registry.TARGET_PORT))
            c = stack.enter_context(registry.Stack.create(ifname, "x" * 31, uid=0, gid=0))
            a.claim("udp", None, 7000)
            a.claim("udp", "198.18.0.1", 9000)
            b.claim_all([("udp", "198.18.0.3", 9000), ("tcp", "198.18.0.1", 8080),
                         ("tcp", "2001:db8::1", 8443)])
            c.claim("tcp", "::", 4000)
            with maps.open_map(ifname, "ports") as m:        # a DEVMAP entry resolves in this namespace
                m.update(b.id, tb.dut.ifindex)
            with maps.open_map(ifname, "port_of") as m:
                m.update(tb.dut.ifindex, {"stack": b.id, "role": CONST["XS_PORT_OUTER"]})
        assert ping(tb.peer.ns, tb.dut.addr4, 3) == 3 and ping(tb.peer.ns, tb.dut.addr6, 2) == 2
        yield tb, (a, b, c)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
@pytest.mark.parametrize("mapname", maps.MAP_NAMES)
def test_dump_with_entries_equals_bpftool(populated, mapname, as_json):
    tb, _ = populated
    compare(tb, mapname, as_json)


@pytest.mark.parametrize("mapname", ["claims", "stacks", "stats", "xsks"])
def test_dump_through_the_executable(populated, mapname):
    tb, _ = populated
    compare(tb, mapname, as_json=True, exe=True)


def test_entries_are_really_there(populated):
    """Guard against comparing two empty outputs: the dumps above did see the entries."""
    tb, (a, b, c) = populated
    out = invoke("--netns", tb.dut.ns, "maps", "dump", tb.dut.ifname, "claims", "--json")
    rows = json.loads(out.out)
    assert len(rows) == 7
    assert {r["formatted"]["value"]["stack"] for r in rows} == {a.id, b.id, c.id}
    names = [r["formatted"]["value"]["name"] for r in json.loads(
        invoke("--netns", tb.dut.ns, "maps", "dump", tb.dut.ifname, "stacks", "--json").out)]
    assert "echo" in names and "x" * 31 in names


def test_list_equals_bpftool_map_show(populated):
    tb, _ = populated
    ifname = tb.dut.ifname
    with in_ns(tb):                                 # the pins of the dut namespace's interface
        pins = maps.map_pins(ifname)
    by_id = sorted(pins, key=lambda p: maps.PinnedMap(p).id)
    text = "".join(bpftool("-f", "map", "show", "pinned", str(p)).stdout for p in by_id)
    objs = [bpftool("-j", "-f", "map", "show", "pinned", str(p)).stdout.rstrip("\n") for p in by_id]
    mine = invoke("--netns", tb.dut.ns, "maps", "list", ifname)
    assert mine.code == 0 and mine.out == text
    mine = invoke("--netns", tb.dut.ns, "maps", "list", ifname, "--json")
    assert mine.code == 0 and mine.out == "[" + ",".join(objs) + "]\n"
    assert len(objs) == len(maps.MAP_NAMES)
    every = invoke("--netns", tb.dut.ns, "maps", "list")          # every attached interface
    assert every.code == 0 and all(line in every.out.splitlines() for line in text.splitlines())


def test_show_single_map_equals_bpftool(populated):
    tb, _ = populated
    with in_ns(tb):
        pins = maps.map_pins(tb.dut.ifname)
    assert len(pins) == len(maps.MAP_NAMES)
    for p in pins:
        assert mapdump.show_text(p) == bpftool("-f", "map", "show", "pinned", str(p)).stdout
        want = bpftool("-j", "map", "show", "pinned", str(p)).stdout
        assert mapdump.show_json(p, show_pinned=False) == want
