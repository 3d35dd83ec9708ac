"""`xdpstack bench isolation`: what isolation costs one stack, isolated (its own virtual port and
egress guard, the default) against direct (`run --direct`: sockets on the NIC's own queue, no
port, no guard), in one run on one testbed with the demux attached.

    rx   userstack-echo --sink launched each way (bench rx's sink and generator: live-frames
         BPF_PROG_TEST_RUN of the demux on the dut veth, CPU 0; the sink on CPU 1). Per round, each
         mode's full-speed delivered rate; then each at one paced rate both sustain (0.8x the lower
         full-speed rate), CPU of both cores per datagram.
    tx   a raw AF_XDP transmit loop (tools/xsk-tx, 1514-byte frames, CPU 1) on each mode's TX path:
         an isolated stack's port (inner end, the guard, bpf_redirect to the dut veth) against a
         socket on the dut veth itself; frames counted at the peer's veth, CPU per frame.
    http userstack-httpd (64-byte body, CPU 1) launched both ways at once (an isolated stack on :80,
         a direct one on :81), wrk -t1 -c50 from the peer (CPU 0) with HTTP/1.1 pipelining (bench
         http's load that lowers wrk's cost per request most); requests/s and CPU of both cores
         per request. wrk's core may still be the limit: then the ratio is marked client-bound and
         its target is not met (both servers run at wrk's rate; the CPU per request compares them).

`isolation_*_ratio` is isolated over direct, the median of per-round ratios (the modes alternate,
so a slow drift of the machine cancels); 1.0 means the isolation is free, the target is >= 0.8.
"""
from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from xdpstack import loader, netlink
from xdpstack.bench import Progress, http, met, plot, say, target
from xdpstack.bench._bed import Bed, BenchError, json_line, median_ratio, raw_port, venv_bin, wait_ready
from xdpstack.bench.cpu import Meter
from xdpstack.bench.rx import GEN_CPU, PORT, SINK_CPU, Generator, cpu_trial, start_sink, trial, udp4_frame
from xdpstack.bench.tcp import PORT_RAW, RAW_DST_MAC, peer_frames
from xdpstack.testbed import Testbed

MODES = ("isolated", "direct")
SINK = {"isolated": "user", "direct": "direct"}
PAYLOAD = 22                           # a 64-byte frame
TX_FRAME = 1514
TARGET = 0.8
HTTP_PORTS = {"isolated": 80, "direct": 81}
HTTP_CONNS = 50


def _rx_full(tb: Testbed, mode: str, frame: bytes, seconds: float) -> dict:
    gen = Generator(tb, frame)
    try:
        sink = start_sink(tb, SINK[mode], 0)
        try:
            trial(gen, sink, 0.3)                      # warm-up: caches, neighbour, rings
            t = trial(gen, sink, seconds)
        finally:
            sink.stop()
    finally:
        gen.close()
    return {"offered_mpps": round(t.offered / 1e6, 3), "delivered_mpps": round(t.delivered / 1e6, 3),
            "loss": round(t.loss, 4)}


def _tx(tb: Testbed, mode: str, seconds: float) -> dict:
    """xsk-tx on the mode's TX path; a queue the last round's socket still holds is retried."""
    dut, peer = tb.dut, tb.peer
    # direct: a socket on the dut veth itself, which needs no stack, claim or port
    port = raw_port(tb, PORT_RAW, "xsk-tx") if mode == "isolated" else contextlib.nullcontext((None, None))
    with netlink.netns(dut.ns), port as (_, inner):
        dev = inner or dut.ifname
        argv = ["taskset", "-c", str(SINK_CPU), venv_bin("xsk-tx"), "--dev", dev, "--src-mac", dut.mac,
                "--dst-mac", RAW_DST_MAC, "--src", f"{dut.addr4}:{PORT_RAW}", "--dst", f"{peer.addr4}:9",
                "--frame", str(TX_FRAME), "--duration", f"{seconds:g}"]
        deadline = time.monotonic() + 5
        while True:
            f0 = peer_frames(tb, "from_dut")
            meter = Meter(roles={"sender": SINK_CPU}).start()
            r = tb.dut.run(argv, check=False, timeout=seconds + 60)
            usage = meter.stop()
            if r.returncode == 0 or "busy" not in r.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        at_peer = peer_frames(tb, "from_dut") - f0
    if r.returncode != 0:
        raise BenchError(f"xsk-tx ({mode}) failed: {r.stderr.strip()[-300:]}")
    res = json_line(r.stdout)
    return {"frames_per_s": round(res["frames_per_s"]), "gbit_per_s": res["gbit_per_s"],
            "frames": res["frames"], "frames_at_peer": at_peer, **usage.fields(res["frames"], "frame")}


def _http(rounds: int, duration: int, progress: Progress | None) -> dict[str, list[dict]]:
    """Both servers up at once; wrk against each in turn, alternating."""
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with Bed() as bed, tempfile.TemporaryDirectory() as tmp:
        script = http.wrk_scripts(Path(tmp))["pipeline"]
        pin = f"taskset -c {SINK_CPU}"
        url = {m: f"http://{bed.tb.dut.addr4}:{HTTP_PORTS[m]}/" for m in MODES}
        for m in MODES:
            httpd = venv_bin("userstack-httpd")
            cmd = f"exec {pin} {httpd} --body-size {http.BODY_BYTES} --quiet >/dev/null"
            bed.launch(["sh", "-c", cmd], tcp=[HTTP_PORTS[m]], direct=m == "direct")
            curl = ["curl", "-s", "-m", "2", url[m]]
            wait_ready(lambda c=curl: bed.run("peer", c, timeout=10).returncode == 0,
                       what=f"userstack-httpd ({m})")
        for rnd in range(rounds):
            for m in MODES if rnd % 2 == 0 else reversed(MODES):
                say(progress, f"isolation http {m}, round {rnd + 1}/{rounds}")
                meter = Meter(roles={"server": SINK_CPU, "client": GEN_CPU}).start()
                w = http.wrk(bed, url[m], HTTP_CONNS, duration, "pipeline", GEN_CPU, script)
                usage = meter.stop()
                if w["errors"] or not w["requests"]:
                    raise BenchError(f"wrk against the {m} server: {w['errors']} errors, "
                                     f"{w['requests']} requests")
                runs[m].append({"rps": round(w["rps"]), **usage.fields(w["requests"], "request")})
    return runs


def run(seconds: float = 1.0, rounds: int = 3, tx_seconds: float = 2.0, http_seconds: int = 3,
        progress: Progress | None = None) -> dict:
    rx: dict[str, list[dict]] = {m: [] for m in MODES}
    tx: dict[str, list[dict]] = {m: [] for m in MODES}
    cpu: dict[str, dict] = {}
    with Testbed() as tb, netlink.netns(tb.dut.ns):
        frame = udp4_frame(tb.peer.mac, tb.dut.mac, tb.peer.addr4, tb.dut.addr4, 40000, PORT, b"x" * PAYLOAD)
        loader.attach(tb.dut.ifname)
        try:
            for rnd in range(rounds):
                for mode in MODES if rnd % 2 == 0 else reversed(MODES):
                    say(progress, f"isolation rx {mode}, round {rnd + 1}/{rounds}")
                    rx[mode].append(_rx_full(tb, mode, frame, seconds))
            rate = 0.8 * min(statistics.median(r["delivered_mpps"] for r in rx[m]) for m in MODES) * 1e6
            for mode in MODES:
                say(progress, f"isolation rx {mode}: CPU at {rate / 1e6:.2f} Mpps")
                cpu[mode] = cpu_trial(tb, SINK[mode], frame, max(seconds, 2.0), rate or 100_000, 0)
            for rnd in range(rounds):
                for mode in MODES if rnd % 2 == 0 else reversed(MODES):
                    say(progress, f"isolation tx {mode}, round {rnd + 1}/{rounds}")
                    tx[mode].append(_tx(tb, mode, tx_seconds))
        finally:
            loader.detach(tb.dut.ifname, force=True)
    web = _http(rounds, http_seconds, progress)
    out: dict = {"seconds": seconds, "rounds": rounds, "tx_seconds": tx_seconds, "frame_bytes": len(frame),
                 "tx_frame_bytes": TX_FRAME, "generator_cpu": GEN_CPU, "stack_cpu": SINK_CPU,
                 "rx": {m: {"delivered_mpps": statistics.median(r["delivered_mpps"] for r in rx[m]),
                            "runs": rx[m], "cpu": cpu[m]} for m in MODES},
                 "tx": {m: {"frames_per_s": statistics.median(r["frames_per_s"] for r in tx[m]),
                            "cpu_ns_per_frame": statistics.median(r["cpu_ns_per_frame"] or 0 for r in tx[m]),
                            "runs": tx[m]} for m in MODES},
                 "http": {m: {"rps": statistics.median(r["rps"] for r in web[m]),
                              "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] or 0
                                                                      for r in web[m]),
                              "client_bound": any(r["client_bound"] for r in web[m]), "runs": web[m]}
                          for m in MODES}}
    rx_ratio = median_ratio(*([r["delivered_mpps"] for r in rx[m]] for m in MODES))
    tx_ratio = median_ratio(*([r["frames_per_s"] for r in tx[m]] for m in MODES))
    http_ratio = median_ratio(*([r["rps"] for r in web[m]] for m in MODES))
    client_bound = any(out["http"][m]["client_bound"] for m in MODES)
    bound = " (client-bound: wrk's core >= 95 % busy, so not a server figure)" if client_bound else ""
    ci, cd = cpu["isolated"]["cpu_ns_per_datagram"], cpu["direct"]["cpu_ns_per_datagram"]
    out["rx"]["cpu_ratio"] = round(cd / ci, 3) if ci and cd else None       # direct / isolated
    why = f">= {TARGET:g}x direct mode (isolated / direct)"
    out["targets"] = {
        "isolation_rx_ratio": target(rx_ratio, f"{why}, RX 64 B datagrams delivered per second",
                                     rx_ratio >= TARGET),
        "isolation_tx_ratio": target(tx_ratio, f"{why}, raw AF_XDP TX frames per second", tx_ratio >= TARGET),
        "isolation_http_ratio": target(http_ratio, f"{why}, HTTP requests/s, pipelined, {HTTP_CONNS} "
                                                   f"connections{bound}",
                                       http_ratio >= TARGET and not client_bound),
    }
    return out


def format_text(r: dict) -> str:
    rx, tx = r["rx"], r["tx"]
    lines = [f"isolated (port, guard) vs direct (socket on the NIC), median of {r['rounds']} rounds, "
             f"stack/sender on CPU {r['stack_cpu']}",
             f"{'':10}{'RX Mpps':>9}{'CPU ns/dgram':>14}{'TX frames/s':>13}{'CPU ns/frame':>14}"]
    for m in MODES:
        ns = rx[m]["cpu"]["cpu_ns_per_datagram"] or 0
        lines.append(f"{m:10}{rx[m]['delivered_mpps']:>9.3f}{ns:>14.0f}"
                     f"{tx[m]['frames_per_s']:>13,.0f}{tx[m]['cpu_ns_per_frame']:>14.0f}")
    lines.append(f"RX CPU per datagram, direct / isolated: {rx['cpu_ratio']}")
    h = r["http"]
    lines.append("HTTP, pipelined, wrk -c50: " + "; ".join(
        f"{m} {h[m]['rps']:,.0f} req/s, {h[m]['cpu_us_per_request']:.2f} us CPU/req"
        + (" (client-bound)" if h[m]["client_bound"] else "") for m in MODES))
    shown = (f"{k} {'-' if t['value'] is None else t['value']} ({t['target']}: {met(t['met'])})"
             for k, t in r["targets"].items())
    lines.append("targets: " + "; ".join(shown))
    return "\n".join(lines)


def plots(r: dict, outdir) -> list:
    fig, (a, b) = plot.figure("Isolated vs direct stack", width=8, ncols=2)
    plot.bars(a, ["RX Mpps (64 B)", "TX Mframes/s (1514 B)", "HTTP Mreq/s (pipelined)"],
              {m: [r["rx"][m]["delivered_mpps"], r["tx"][m]["frames_per_s"] / 1e6, r["http"][m]["rps"] / 1e6]
               for m in MODES}, "millions per second")
    plot.bars(b, ["RX ns/datagram", "TX ns/frame"],
              {m: [r["rx"][m]["cpu"]["cpu_ns_per_datagram"], r["tx"][m]["cpu_ns_per_frame"]] for m in MODES},
              "CPU ns, both cores")
    return [("Isolated vs direct stack", plot.save(fig, outdir / "isolation.png"))]
