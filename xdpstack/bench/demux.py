"""`xdpstack bench demux`: the NIC program's cost per packet under BPF_PROG_TEST_RUN.

Crafted 64-byte frames run through xdp_demux `repeat` times per measurement:

    hit_ipv4, hit_ipv6     UDP to a claimed exact tuple, redirected to an AF_XDP socket (a
                           placeholder socket fills the slot, so the redirect is decided in full;
                           a test-run decides a redirect but does not carry it out)
    miss_ipv4, miss_ipv6   UDP to an unclaimed port: XDP_PASS
    hit_ipv{4,6}_shared_port  two claims share the port, so the claims hash decides
    miss_ipv4_cold         misses to 4,096 distinct ports with 10,000 claims in the maps (below)
    tuples                 the hit and the shared-port hit with 1 to 10,000 claimed tuples

Every demux run is paired with a run of a trivial `return XDP_PASS;` program on the same frame
just before it. The figure that says what the demux costs is `extra_ns`, the median of the
per-pair differences: the trivial program's own time (8-25 ns here, depending on the day: the
test harness, not XDP) moves both runs of a pair alike, so a ratio to it moved with the harness
while the difference does not. Time per packet is this thread's CPU time over the test-run call
divided by repeat, the median over `rounds` rounds.

The cold miss: a test-run repeats one frame, so its lookups always hit the same cache lines. Kernel
traffic to ephemeral ports is spread over many keys; to measure that, each of 4,096 ports gets one
test-run of repeat 1 (the kernel's own duration_ns of that single run), demux and trivial on the
same frame, with 10,000 claims in the maps so the keys' buckets are spread. One run's duration
includes the harness's timer overhead, the same for both programs, so the difference of the pair is
the demux's cost on a cold key; the median over the ports is reported (an interrupt inflates a
few single runs, which a mean would carry).

The compiled-frame cases touch only a private, unpinned object; nothing is attached. The live-frames
case (bench/live.py) runs on its own testbed.
"""
from __future__ import annotations

import ipaddress
import os
import statistics
import time
from pathlib import Path

from xdpstack import layout, testrun
from xdpstack.bench import Progress, met, plot, say, target

FRAME_BYTES = 64
LINE_RATE_10G_MPPS = 14.88
STACK = 0
ADDR4, ADDR6 = "198.18.0.1", "2001:db8::1"
PEER4, PEER6 = "198.18.0.2", "2001:db8::2"
PORT_HIT, PORT_MISS = 7, 9


def udp_frame(src: str, dst: str, dport: int, size: int = FRAME_BYTES) -> bytes:
    """An Ethernet/IP/UDP frame of exactly `size` bytes (zero payload), valid checksums aside."""
    v6 = ipaddress.ip_address(dst).version == 6
    ip_hdr = 40 if v6 else 20
    udp_len = size - 14 - ip_hdr
    eth = bytes.fromhex("020000000001" "020000000002") + (b"\x86\xdd" if v6 else b"\x08\x00")
    udp = (40000).to_bytes(2, "big") + dport.to_bytes(2, "big") + udp_len.to_bytes(2, "big") + b"\0\0"
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if v6:
        ip = b"\x60\0\0\0" + udp_len.to_bytes(2, "big") + b"\x11\x40" + s + d
    else:
        ip = (b"\x45\0" + (ip_hdr + udp_len).to_bytes(2, "big") + b"\0\0\0\0\x40\x11\0\0" + s + d)
    frame = eth + ip + udp
    return frame + bytes(size - len(frame))


def _measure(fd: int, frame: bytes, repeat: int) -> tuple[float, int, int]:
    """(ns per packet from this thread's CPU time, the kernel's whole-ns figure, verdict)."""
    t0 = time.thread_time_ns()
    r = testrun.run(fd, frame, repeat)
    cpu = time.thread_time_ns() - t0
    return cpu / repeat, r.duration_ns, r.retval


def _case(runs: list[tuple[float, int, int]], base: list[float] | None = None) -> dict:
    ns = [r[0] for r in runs]
    out = {"ns_per_packet": round(statistics.median(ns), 2),
           "mpps": round(1000 / statistics.median(ns), 2),
           "kernel_ns": statistics.median(r[1] for r in runs),
           "verdict": testrun.ACTIONS.get(runs[0][2], str(runs[0][2])),
           "runs_ns": [round(x, 2) for x in ns]}
    if base is not None:
        out["extra_ns"] = round(statistics.median(a - b for a, b in zip(ns, base, strict=True)), 2)
        out["ratio_vs_xdp_pass"] = round(statistics.median(a / b for a, b in zip(ns, base, strict=True)), 3)
    return out


def _many_claims(n: int) -> dict[tuple, tuple[int, int]]:
    """n distinct exact tuples on other ports (10000 and up), both protocols and families."""
    out = {}
    for i in range(n):
        proto, port = ("udp", "tcp")[i % 2], 10000 + i // 2
        base = ipaddress.ip_address(ADDR6) + 0x100 if i % 3 == 2 else ipaddress.ip_address("198.18.1.0")
        out[(proto, str(base + i % 50000), port)] = (1 + i % 200, layout.CONST["XS_TARGET_XSK"])
    return out


COLD_PORTS = 4096
TUPLES = (1, 10, 100, 1000, 10_000)
SHARED_TUPLES = (2, 10, 100, 1000, 10_000)        # the shared port's two claims among them
TARGET_EXTRA_NS = 10.0


def _cold_miss(obj, trivial: int, ports: int) -> dict:
    """Per-port single runs (see the module doc): median ns of each program and of the differences."""
    d_ns, t_ns, extra = [], [], []
    for port in range(30000, 30000 + ports):
        frame = udp_frame(PEER4, ADDR4, port)
        t = testrun.run(trivial, frame, 1).duration_ns
        d = testrun.run(obj.progs["xdp_demux"], frame, 1)
        if d.retval != testrun.XDP_PASS:
            raise RuntimeError(f"the cold miss to port {port} was not passed: {d.retval}")
        t_ns.append(t)
        d_ns.append(d.duration_ns)
        extra.append(d.duration_ns - t)
    return {"ports": ports, "claims": 10_000, "ns_single_run": statistics.median(d_ns),
            "xdp_pass_ns_single_run": statistics.median(t_ns), "extra_ns": statistics.median(extra),
            "verdict": "XDP_PASS"}


def run(repeat: int = 10_000_000, rounds: int = 5, cpu: int | None = None,
        progress: Progress | None = None, live_rounds: int = 3, live_seconds: float = 2.0) -> dict:
    """Measure; see the module doc. cpu pins this thread for the run (default: the highest one
    allowed; CPU 0 tends to take more interrupts). live_rounds: rounds of the live-frames case
    (bench/live.py, on a testbed); 0 leaves it out."""
    if repeat < 1 or rounds < 1:
        raise ValueError("repeat and rounds must be positive")
    xsk = layout.CONST["XS_TARGET_XSK"]
    frames = {"hit_ipv4": udp_frame(PEER4, ADDR4, PORT_HIT), "hit_ipv6": udp_frame(PEER6, ADDR6, PORT_HIT),
              "miss_ipv4": udp_frame(PEER4, ADDR4, PORT_MISS),
              "miss_ipv6": udp_frame(PEER6, ADDR6, PORT_MISS)}
    one = {("udp", ADDR4, PORT_HIT): (STACK, xsk)}
    both = {**one, ("udp", ADDR6, PORT_HIT): (STACK, xsk)}
    shared4 = {**one, ("udp", "198.18.0.3", PORT_HIT): (STACK + 1, xsk)}     # two claims on the port
    shared6 = {("udp", ADDR6, PORT_HIT): (STACK, xsk), ("udp", "2001:db8::3", PORT_HIT): (STACK + 1, xsk)}
    many = _many_claims(max(TUPLES) - 1)

    def upto(claims: dict, n: int) -> dict:            # claims plus others, n claimed tuples in all
        return {**claims, **dict(list(many.items())[:n - len(claims)])}
    # (name, claim set, frame): every case paired with a trivial run on its frame just before it
    plan = [*((n, both, f) for n, f in frames.items()),
            ("hit_ipv4_shared_port", shared4, frames["hit_ipv4"]),
            ("hit_ipv6_shared_port", shared6, frames["hit_ipv6"]),
            *((f"hit_ipv4_{n}_tuples", upto(one, n), frames["hit_ipv4"]) for n in TUPLES),
            *((f"hit_ipv4_shared_port_{n}_tuples", upto(shared4, n), frames["hit_ipv4"])
              for n in SHARED_TUPLES)]
    res: dict[str, list] = {name: [] for name, *_ in plan}
    base: dict[str, list] = {name: [] for name, *_ in plan}
    obj = testrun.compile_object()
    trivial = testrun.load_trivial()
    old_affinity = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {max(old_affinity) if cpu is None else cpu})
        with testrun.StubXsk() as sock:
            obj.set_slot(STACK * layout.CONST["XS_MAX_QUEUES"] + 0, sock)   # test-run's RX queue is 0
            for rnd in range(rounds):
                say(progress, f"demux: round {rnd + 1}/{rounds}, {len(plan)} cases")
                for name, claims, frame in plan:
                    obj.set_claims(claims)
                    base[name].append(_measure(trivial, frame, repeat))
                    res[name].append(_measure(obj.progs["xdp_demux"], frame, repeat))
            say(progress, f"demux: cold misses over {COLD_PORTS} ports")
            obj.set_claims({**both, **many})
            cold = _cold_miss(obj, trivial, COLD_PORTS)
            obj.set_claims({})
    finally:
        os.sched_setaffinity(0, old_affinity)
        os.close(trivial)
        obj.close()

    cases = {n: _case(res[n], [b[0] for b in base[n]]) for n, *_ in plan}
    trivial_runs = [b for name in base for b in base[name]]
    out = {"repeat": repeat, "rounds": rounds, "frame_bytes": FRAME_BYTES, "xdp_pass": _case(trivial_runs),
           "cases": {n: cases[n] for n, *_ in plan[:6]}, "cold": {"miss_ipv4_cold": cold},
           "tuples": {kind: {str(n): cases[f"hit_ipv4_{infix}{n}_tuples"] for n in counts}
                      for kind, infix, counts in (("exact", "", TUPLES),
                                                  ("shared_port", "shared_port_", SHARED_TUPLES))}}
    hits = [c["extra_ns"] for n, c in out["cases"].items() if n.startswith("hit")]
    misses = [c["extra_ns"] for n, c in out["cases"].items() if n.startswith("miss")] + [cold["extra_ns"]]
    mpps = min(c["mpps"] for c in cases.values())
    out["targets"] = {
        "demux_hit_extra_ns": target(max(hits), f"<= {TARGET_EXTRA_NS:g} ns over the trivial program "
                                     "(worst hit: IPv4, IPv6, shared ports)", max(hits) <= TARGET_EXTRA_NS),
        "demux_miss_extra_ns": target(max(misses), f"<= {TARGET_EXTRA_NS:g} ns over the trivial program "
                                      "(worst miss: IPv4, IPv6, cold)", max(misses) <= TARGET_EXTRA_NS),
        "demux_min_mpps": target(mpps, f">= {LINE_RATE_10G_MPPS} Mpps per core in every case (10G line "
                                 "rate, 64 B)", mpps >= LINE_RATE_10G_MPPS),
    }
    if live_rounds:
        from xdpstack.bench import live
        out["live"] = live.run(seconds=live_seconds, rounds=live_rounds, progress=progress)
        lr = out["live"]["ratio_vs_libxdp"]
        out["targets"]["demux_live_ratio_vs_libxdp"] = target(
            lr, ">= 0.9x libxdp's default program, live 64 B frames into a spinning AF_XDP consumer",
            (lr or 0) >= 0.9)
    return out


def format_text(result: dict) -> str:
    base = result["xdp_pass"]
    lines = [f"xdp_demux under BPF_PROG_TEST_RUN: {result['frame_bytes']}-byte frames, "
             f"repeat {result['repeat']:,}, median of {result['rounds']} rounds",
             f"{'case':<26}{'ns/packet':>10}{'extra ns':>10}{'vs XDP_PASS':>13}{'Mpps/core':>11}  verdict",
             f"{'trivial XDP_PASS':<26}{base['ns_per_packet']:>10.2f}{'':>10}{'1.00x':>13}"
             f"{base['mpps']:>11.1f}  {base['verdict']}"]
    for n, c in result["cases"].items():
        lines.append(f"{n:<26}{c['ns_per_packet']:>10.2f}{c['extra_ns']:>10.2f}{c['ratio_vs_xdp_pass']:>12.2f}x"
                     f"{c['mpps']:>11.1f}  {c['verdict']}")
    c = result["cold"]["miss_ipv4_cold"]
    lines.append(f"miss_ipv4_cold: {c['ports']:,} ports, one run each, {c['claims']:,} claims: "
                 f"{c['extra_ns']:.0f} ns over the trivial program (single runs {c['ns_single_run']:.0f} vs "
                 f"{c['xdp_pass_ns_single_run']:.0f} ns)")
    for kind, label in (("exact", "hit_ipv4"), ("shared_port", "hit_ipv4, shared port")):
        row = ", ".join(f"{int(n):,}: {v['ns_per_packet']:.1f}" for n, v in result["tuples"][kind].items())
        lines.append(f"{label}, ns by claimed tuples: {row}")
    if "live" in result:
        lv = result["live"]
        lines.append(f"live frames into a spinning AF_XDP consumer ({lv['consumer']}), median of "
                     f"{lv['rounds']}: xdpstack (demux, port, xdp_port_rx) {lv['mpps']['xdpstack']:.2f} "
                     f"Mpps, libxdp's default program {lv['mpps']['libxdp']:.2f} Mpps: "
                     f"{_v(lv['ratio_vs_libxdp'])}x; direct (demux into a socket on the NIC) "
                     f"{lv['mpps']['direct']:.2f} Mpps, {_v(lv['direct_ratio_vs_libxdp'])}x; isolated "
                     f"over direct {_v(lv['isolated_ratio_vs_direct'])}x")
    lines.append("targets: " + "; ".join(f"{k} {_v(t['value'])} ({t['target']}: {met(t['met'])})"
                                         for k, t in result["targets"].items()))
    return "\n".join(lines)


def _v(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def plots(result: dict, outdir: Path) -> list[tuple[str, Path]]:
    cases = result["cases"]
    fig, ax = plot.figure("Demux ns per packet by case (BPF_PROG_TEST_RUN, 64 B)", width=8)
    plot.bars(ax, [n.replace("_shared_port", "\nshared port") for n in cases],
              {"trivial XDP_PASS (paired)": [c["ns_per_packet"] - c["extra_ns"] for c in cases.values()],
               "xdp_demux": [c["ns_per_packet"] for c in cases.values()]}, "ns per packet")
    out = [("Demux ns by case", plot.save(fig, outdir / "demux_cases.png"))]
    fig, ax = plot.figure("Demux ns per packet vs claimed tuples (hit, IPv4)")
    for kind, label in (("exact", "exact tuple"), ("shared_port", "shared port (claims hash)")):
        t = result["tuples"][kind]
        ax.plot([int(n) for n in t], [v["ns_per_packet"] for v in t.values()], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("claimed tuples")
    ax.set_ylabel("ns per packet")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    out.append(("Demux ns vs claimed tuples", plot.save(fig, outdir / "demux_tuples.png")))
    return out
