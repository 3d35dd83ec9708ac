"""`xdpstack bench demux`: the NIC program's cost per packet under BPF_PROG_TEST_RUN.

Crafted 64-byte frames run through xdp_demux `repeat` times per measurement, next to a trivial
`return XDP_PASS;` program in the same rounds:

    hit_ipv4, hit_ipv6     UDP to a claimed exact tuple, redirected to an AF_XDP socket (a
                           placeholder socket occupies the slot, so the redirect is decided in full)
    miss_ipv4, miss_ipv6   UDP to an unclaimed port: XDP_PASS
    hit_ipv4_shared_port   the port is shared by two claims, so the claims hash decides
    scaling                hit_ipv4 with 1 claimed tuple, then with 10,000

Each figure is the median over `rounds` rounds (the machine is noisy); a ratio is the median of
the per-round ratios, the trivial program or the 1-tuple run measured in the same round. Time
per packet is this thread's CPU time over the test-run call divided by repeat (the kernel's own
figure, `kernel_ns`, is the same run truncated to whole ns). Only a private, unpinned object is
touched; nothing is attached.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import statistics
import time

from xdpstack import layout, testrun

FRAME_BYTES = 64
LINE_RATE_10G_MPPS = 14.88
TARGET_RATIO_VS_XDP_PASS = 2.0
TARGET_RATIO_10000_VS_1_TUPLE = 1.10
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


def _case(runs: list[tuple[float, int, int]], base: list[float] | None, base_name: str) -> dict:
    ns = [r[0] for r in runs]
    out = {"ns_per_packet": round(statistics.median(ns), 2),
           "mpps": round(1000 / statistics.median(ns), 2),
           "kernel_ns": statistics.median(r[1] for r in runs),
           "verdict": testrun.ACTIONS.get(runs[0][2], str(runs[0][2])),
           "runs_ns": [round(x, 2) for x in ns]}
    if base is not None:
        ratios = [a / b for a, b in zip(ns, base, strict=True)]
        out[f"ratio_vs_{base_name}"] = round(statistics.median(ratios), 3)
    return out


def _many_claims(n: int) -> dict[tuple, tuple[int, int]]:
    """n - 1 tuples besides the measured one, on other addresses and ports of both families."""
    out = {}
    i = 0
    while len(out) < n - 1:
        proto = ("udp", "tcp")[i % 2]
        port = 10000 + (i // 2) % 20000
        if i % 3 == 2:
            addr = str(ipaddress.ip_address(ADDR6) + 0x100 + i)
        else:
            addr = str(ipaddress.ip_address("198.18.1.0") + i % 60000)
        out[(proto, addr, port)] = (1 + i % 200, layout.CONST["XS_TARGET_XSK"])
        i += 1
    return out


def run(repeat: int = 10_000_000, rounds: int = 5, cpu: int | None = None) -> dict:
    """Measure; see the module doc. cpu pins this thread for the run (default: the highest one
    allowed; CPU 0 tends to take more interrupts)."""
    if repeat < 1 or rounds < 1:
        raise ValueError("repeat and rounds must be positive")
    xsk_target = layout.CONST["XS_TARGET_XSK"]
    obj = testrun.compile_object()
    trivial = testrun.load_trivial()
    old_affinity = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {max(old_affinity) if cpu is None else cpu})
        with testrun.StubXsk() as xsk:
            obj.set_slot(STACK * layout.CONST["XS_MAX_QUEUES"] + 0, xsk)   # test-run's RX queue is 0
            demux = obj.progs["xdp_demux"]
            frames = {"hit_ipv4": udp_frame(PEER4, ADDR4, PORT_HIT),
                      "hit_ipv6": udp_frame(PEER6, ADDR6, PORT_HIT),
                      "miss_ipv4": udp_frame(PEER4, ADDR4, PORT_MISS),
                      "miss_ipv6": udp_frame(PEER6, ADDR6, PORT_MISS)}
            claims = {("udp", ADDR4, PORT_HIT): (STACK, xsk_target),
                      ("udp", ADDR6, PORT_HIT): (STACK, xsk_target)}

            def rounds_of(cases: dict[str, bytes], with_base: bool = True):
                res = {n: [] for n in cases}
                base = []
                for _ in range(rounds):
                    if with_base:
                        base.append(_measure(trivial, frames["hit_ipv4"], repeat))
                    for n, f in cases.items():
                        res[n].append(_measure(demux, f, repeat))
                return base, res

            obj.set_claims(claims)
            base, main = rounds_of(frames)
            base_ns = [b[0] for b in base]
            shared = dict(claims)
            shared[("udp", "198.18.0.3", PORT_HIT)] = (STACK + 1, xsk_target)
            obj.set_claims(shared)
            sbase, sres = rounds_of({"hit_ipv4_shared_port": frames["hit_ipv4"]})
            # Scaling: 1 tuple, then 10,000, alternating in each round.
            one = {("udp", ADDR4, PORT_HIT): (STACK, xsk_target)}
            many = {**one, **_many_claims(10_000)}
            r1, r10k = [], []
            for _ in range(rounds):
                obj.set_claims(one)
                r1.append(_measure(demux, frames["hit_ipv4"], repeat))
                obj.set_claims(many)
                r10k.append(_measure(demux, frames["hit_ipv4"], repeat))
            obj.set_claims({})
    finally:
        os.sched_setaffinity(0, old_affinity)
        os.close(trivial)
        obj.close()

    out = {"repeat": repeat, "rounds": rounds, "frame_bytes": FRAME_BYTES,
           "xdp_pass": _case(base, None, ""), "cases": {}}
    for n, runs in main.items():
        out["cases"][n] = _case(runs, base_ns, "xdp_pass")
    out["cases"]["hit_ipv4_shared_port"] = _case(sres["hit_ipv4_shared_port"], [b[0] for b in sbase],
                                                  "xdp_pass")
    one_ns = [r[0] for r in r1]
    out["scaling"] = {"hit_ipv4_1_tuple": _case(r1, None, ""),
                      "hit_ipv4_10000_tuples": _case(r10k, one_ns, "1_tuple")}
    worst = max(c["ratio_vs_xdp_pass"] for n, c in out["cases"].items() if n != "hit_ipv4_shared_port")
    out["targets"] = {
        "max_ratio_vs_xdp_pass": TARGET_RATIO_VS_XDP_PASS,
        "min_mpps": LINE_RATE_10G_MPPS,
        "max_ratio_10000_tuples_vs_1_tuple": TARGET_RATIO_10000_VS_1_TUPLE,
        "worst_ratio_vs_xdp_pass": worst,
        "ratio_vs_xdp_pass_met": worst <= TARGET_RATIO_VS_XDP_PASS,
        "mpps_met": min(c["mpps"] for c in out["cases"].values()) >= LINE_RATE_10G_MPPS,
        "ratio_10000_tuples_vs_1_tuple_met":
            out["scaling"]["hit_ipv4_10000_tuples"]["ratio_vs_1_tuple"] <= TARGET_RATIO_10000_VS_1_TUPLE,
    }
    return out


def format_text(result: dict) -> str:
    base = result["xdp_pass"]
    lines = [f"xdp_demux under BPF_PROG_TEST_RUN: {result['frame_bytes']}-byte frames, "
             f"repeat {result['repeat']:,}, median of {result['rounds']} rounds",
             f"{'case':<24}{'ns/packet':>10}{'vs XDP_PASS':>13}{'Mpps/core':>11}  verdict",
             f"{'trivial XDP_PASS':<24}{base['ns_per_packet']:>10.2f}{'1.00x':>13}{base['mpps']:>11.1f}  "
             f"{base['verdict']}"]
    for n, c in result["cases"].items():
        lines.append(f"{n:<24}{c['ns_per_packet']:>10.2f}{c['ratio_vs_xdp_pass']:>12.2f}x"
                     f"{c['mpps']:>11.1f}  {c['verdict']}")
    s1, s10k = result["scaling"]["hit_ipv4_1_tuple"], result["scaling"]["hit_ipv4_10000_tuples"]
    lines.append(f"hit_ipv4 with 1 claimed tuple {s1['ns_per_packet']:.2f} ns, with 10,000 "
                 f"{s10k['ns_per_packet']:.2f} ns: {s10k['ratio_vs_1_tuple']:.3f}x")
    t = result["targets"]
    lines.append(f"targets: <= {t['max_ratio_vs_xdp_pass']}x XDP_PASS "
                 f"(worst {t['worst_ratio_vs_xdp_pass']:.2f}x: "
                 f"{'met' if t['ratio_vs_xdp_pass_met'] else 'NOT met'}), >= {t['min_mpps']} Mpps "
                 f"({'met' if t['mpps_met'] else 'NOT met'}), 10,000 vs 1 tuple <= "
                 f"{t['max_ratio_10000_tuples_vs_1_tuple']}x "
                 f"({'met' if t['ratio_10000_tuples_vs_1_tuple_met'] else 'NOT met'})")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys
    res = run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
    with contextlib.suppress(BrokenPipeError):
        print(format_text(res))
        print(json.dumps(res, indent=1), file=sys.stderr)
