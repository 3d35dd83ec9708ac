"""bench demux's live-frames case: xdpstack's delivery into a spinning AF_XDP consumer against
libxdp's default redirect program delivering into the same kind of socket.

Both paths get the same 64-byte UDP frame from the same generator, BPF_PROG_TEST_RUN in live-frames
mode on the dut veth (rx.Generator, CPU 0), and the same consumer, tools/xsk-rx (libxdp, XDP_COPY,
spinning on CPU 1, every frame straight back to the fill ring):

    libxdp     nothing of xdpstack attached; xsk-rx binds queue 0 of the dut veth and lets libxdp
               load its default program (every frame of the queue into the socket). The generator
               runs that program (libxdp's dispatcher, as attached).
    xdpstack   the demux attached; a stack's port built as the launcher builds one (registered
               stack, one UDP claim, the port pair with its programs); xsk-rx binds the port's inner
               end and puts its socket in the stack's XSK slot. The generator runs the demux: a
               claimed frame goes demux -> port (veth) -> xdp_port_rx -> the socket, the path of
               every stack's packet of an isolated stack.
    direct     the demux attached; a stack registered as `run --direct` registers one (one UDP
               claim, the XSK target, no port); xsk-rx binds queue 0 of the dut veth itself and
               puts its socket in the stack's slot: demux -> the socket.

Delivered frames per second of generator time, median over `rounds` rounds per path; the ratios are
xdpstack's (isolated) and direct's over libxdp's, and isolated over direct (the port's cost, as
`isolation_rx_ratio` measures it with whole stacks). All deliveries run on the generator's core, so
a lower ratio is the extra work per frame on that path.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time

from xdpstack import libbpf, loader, netlink, paths, procs
from xdpstack.bench import Progress, say
from xdpstack.bench._bed import BenchError, direct_stack, json_line, raw_port, venv_bin
from xdpstack.bench.rx import GEN_CPU, SINK_CPU, Generator, udp4_frame
from xdpstack.testbed import Testbed

PORT_LIVE = 9100
PAYLOAD = 22                           # 14 + 20 + 8 + 22: a 64-byte frame
PATHS = ("libxdp", "xdpstack", "direct")


def _consumer(tb: Testbed, dev: str, seconds: float, *extra: str, pass_fds=()) -> subprocess.Popen:
    """xsk-rx on dev, once it says "ready". The last round's socket may still hold the queue for
    a moment (the kernel releases a socket's UMEM after close): EBUSY is retried for 5 s."""
    deadline = time.monotonic() + 5
    while True:
        p = tb.track(tb.dut.popen(["taskset", "-c", str(SINK_CPU), venv_bin("xsk-rx"), "--dev", dev,
                                   "--duration", f"{seconds:g}", *extra], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, pass_fds=pass_fds))
        try:
            if (procs.readline(p.stdout, 10) or "").strip() == "ready":
                return p
        except TimeoutError:
            pass
        procs.stop(p)
        err = procs.available(p.stderr)
        if "busy" not in err or time.monotonic() > deadline:
            raise BenchError(f"xsk-rx on {dev} did not start: {err.strip()}")
        time.sleep(0.2)


def _finish(p: subprocess.Popen, timeout: float) -> dict:
    out, err = p.communicate(timeout=timeout)
    if p.returncode:
        raise BenchError(f"xsk-rx failed (exit {p.returncode}): {err.strip()}")
    return json_line(out)


def _round(tb: Testbed, which: str, frame: bytes, seconds: float) -> dict:
    """One generator run of `seconds` into xsk-rx on path `which`."""
    life = seconds + 4                          # xsk-rx outlives the generator; counts only its frames
    with contextlib.ExitStack() as undo:
        if which == "libxdp":
            p = _consumer(tb, tb.dut.ifname, life)
            state = netlink.xdp_state(tb.dut.ifindex)
            if state is None:
                raise BenchError("libxdp loaded no program on the dut veth")
            gen = Generator(tb, frame, libbpf.prog_fd_by_id(state.prog_id))
        else:
            if which == "xdpstack":
                rec, dev = undo.enter_context(raw_port(tb, PORT_LIVE, "xsk-rx"))
            else:                                   # direct: the socket on the dut veth itself
                rec, dev = undo.enter_context(direct_stack(tb, PORT_LIVE, "xsk-rx")), tb.dut.ifname
            xsks = libbpf.obj_get(str(paths.pin_dir(tb.dut.ifname) / "xsks"))
            undo.callback(os.close, xsks)
            p = _consumer(tb, dev, life, "--xsks-fd", str(xsks), "--slot", str(rec.xsk_first_slot),
                          pass_fds=(xsks,))
            gen = Generator(tb, frame)
        undo.callback(procs.stop, p)
        try:
            sent, elapsed = gen.send(seconds)
        finally:
            gen.close()
        got = _finish(p, life + 10)
    return {"sent": sent, "generator_s": round(elapsed, 3), "delivered": got["frames"],
            "mpps": round(got["frames"] / elapsed / 1e6, 3), "offered_mpps": round(sent / elapsed / 1e6, 3),
            "rx_dropped": got["rx_dropped"], "rx_ring_full": got["rx_ring_full"]}


def run(seconds: float = 2.0, rounds: int = 3, progress: Progress | None = None) -> dict:
    runs: dict[str, list[dict]] = {p: [] for p in PATHS}
    with Testbed() as tb, netlink.netns(tb.dut.ns):
        frame = udp4_frame(tb.peer.mac, tb.dut.mac, tb.peer.addr4, tb.dut.addr4, 40000, PORT_LIVE,
                           b"x" * PAYLOAD)
        # xsk-rx runs under `ip netns exec`, whose fresh /sys hides the host's bpffs: whatever
        # libxdp pins there goes with that mount namespace
        for rnd in range(rounds):
            say(progress, f"demux live: libxdp's default program, round {rnd + 1}/{rounds}")
            runs["libxdp"].append(_round(tb, "libxdp", frame, seconds))
        loader.attach(tb.dut.ifname)
        try:
            for rnd in range(rounds):            # isolated and direct alternate: same drift
                say(progress, f"demux live: xdpstack's demux and port, round {rnd + 1}/{rounds}")
                runs["xdpstack"].append(_round(tb, "xdpstack", frame, seconds))
                say(progress, f"demux live: xdpstack's demux, direct, round {rnd + 1}/{rounds}")
                runs["direct"].append(_round(tb, "direct", frame, seconds))
        finally:
            loader.detach(tb.dut.ifname, force=True)
    med = {p: statistics.median(r["mpps"] for r in runs[p]) for p in PATHS}
    return {"frame_bytes": len(frame), "seconds": seconds, "rounds": rounds,
            "generator": f"live-frames BPF_PROG_TEST_RUN on the dut veth, CPU {GEN_CPU}",
            "consumer": f"tools/xsk-rx, XDP_COPY, spinning, CPU {SINK_CPU}",
            "mpps": med, "runs": runs,
            "ratio_vs_libxdp": round(med["xdpstack"] / med["libxdp"], 3) if med["libxdp"] else None,
            "direct_ratio_vs_libxdp": round(med["direct"] / med["libxdp"], 3) if med["libxdp"] else None,
            "isolated_ratio_vs_direct": round(med["xdpstack"] / med["direct"], 3) if med["direct"] else None}
