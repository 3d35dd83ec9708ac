"""xdpstack bench: benchmarks (the code lives in xdpstack.bench)."""
from __future__ import annotations

import os
import signal

import click

from xdpstack.bench.suite import BENCHES
from xdpstack.cli._app import abort, command, emit_json


@click.group()
def bench():
    """Benchmarks."""
    # A benchmark stopped by SIGTERM or SIGHUP unwinds like Ctrl-C: every testbed, server, XDP
    # attachment and pin it made is removed on the way out (Python's default just exits).
    main = os.getpid()

    def unwind(sig, _frame):
        if os.getpid() != main:        # a forked helper (pyroute2's netns child): die as by default
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            return
        raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, unwind)


@bench.command("demux")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--repeat", type=click.IntRange(min=1), default=10_000_000, show_default=True,
              help="BPF_PROG_TEST_RUN repetitions per measurement.")
@click.option("--live-rounds", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Rounds of the live-frames case (a testbed, an AF_XDP consumer); 0 leaves it out.")
@command()
def demux(as_json: bool, repeat: int, live_rounds: int):
    """The demux's ns/packet on crafted 64-byte frames (hit, miss, IPv4, IPv6, 1 and 10,000 claims)
    next to a trivial XDP_PASS program, through BPF_PROG_TEST_RUN; and live frames into an AF_XDP
    consumer, xdpstack's path against libxdp's default program."""
    try:
        from xdpstack.bench import demux as bench_demux
    except ImportError as e:
        abort(f"the demux benchmark is not available ({e}); it lives in xdpstack/bench/demux.py")
    result = bench_demux.run(repeat, live_rounds=live_rounds)
    emit_json(result) if as_json else click.echo(bench_demux.format_text(result))


@bench.command("rx")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--seconds", type=click.FloatRange(0.1, 30), default=1.0, show_default=True,
              help="Length of each trial.")
@click.option("--steps", type=click.IntRange(0, 12), default=7, show_default=True,
              help="Binary-search steps for the zero-loss rate.")
@click.option("--payload", "payloads", type=click.IntRange(0, 1472), multiple=True,
              help="UDP payload bytes (repeatable; default 64 and 1472).")
@command()
def rx(as_json: bool, seconds: float, steps: int, payloads: tuple[int, ...]):
    """UDP datagrams/s into a sink on a user-level stack vs the kernel's UDP receive path (recvmmsg),
    same generator (live-frames BPF_PROG_TEST_RUN through the attached demux), same testbed."""
    from xdpstack.bench import rx as bench_rx
    result = bench_rx.run(seconds=seconds, steps=steps, payloads=payloads or bench_rx.PAYLOADS)
    emit_json(result) if as_json else click.echo(bench_rx.format_text(result))


@bench.command("http")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--duration", type=click.IntRange(1, 120), default=3, show_default=True,
              help="Seconds per wrk run.")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Rounds per configuration (the median is reported).")
@click.option("--conns", "conns", type=click.IntRange(1, 10_000), multiple=True,
              help="wrk connections (repeatable; default 10, 50 and 100).")
@click.option("--mode", "modes", type=click.Choice(("keepalive", "close", "pipeline")), multiple=True,
              help="Loads to run (repeatable; default all three).")
@command()
def http(as_json: bool, duration: int, rounds: int, conns: tuple[int, ...], modes: tuple[str, ...]):
    """userstack-httpd on the user stack vs the same server on kernel sockets vs nginx (1 worker),
    wrk from the peer namespace: keep-alive, Connection: close and HTTP/1.1 pipelining (16 deep);
    requests/s, latency, CPU per request on both cores, and whether wrk's core was the limit."""
    from xdpstack.bench import http as bench_http
    result = bench_http.run(duration=duration, rounds=rounds, conns=conns or bench_http.CONNS,
                            modes=modes or bench_http.MODES)
    emit_json(result) if as_json else click.echo(bench_http.format_text(result))


@bench.command("tcp")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--duration", type=click.FloatRange(0.5, 120), default=4.0, show_default=True,
              help="Seconds per run (rounded up to whole seconds).")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Rounds per configuration (the median is reported).")
@click.option("--kernel-traffic/--no-kernel-traffic", default=True, show_default=True,
              help="Also measure what the attached demux costs kernel iperf3 (context).")
@command()
def tcp(as_json: bool, duration: float, rounds: int, kernel_traffic: bool):
    """One TCP connection, user stack vs kernel: bulk each way with every frame an MTU packet
    (the kernel sender's TSO/GSO off; default offloads as context), the stack's TX against a raw
    AF_XDP loop, round trips with both ends spinning and both sleeping; CPU on both cores."""
    from xdpstack.bench import tcp as bench_tcp
    result = bench_tcp.run(duration=duration, rounds=rounds, kernel_traffic=kernel_traffic)
    emit_json(result) if as_json else click.echo(bench_tcp.format_text(result))


@bench.command("isolation")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--seconds", type=click.FloatRange(0.2, 30), default=1.0, show_default=True,
              help="Seconds per RX trial.")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Rounds per mode, the modes alternating (the median is reported).")
@command()
def isolation(as_json: bool, seconds: float, rounds: int):
    """One stack isolated (its port and egress guard) against direct (`run --direct`, sockets on
    the NIC): RX datagrams/s and CPU per datagram, raw AF_XDP TX frames/s and CPU per frame."""
    from xdpstack.bench import isolation as bench_isolation
    result = bench_isolation.run(seconds=seconds, rounds=rounds)
    emit_json(result) if as_json else click.echo(bench_isolation.format_text(result))


@bench.command("all")
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option("--out", "outdir", type=click.Path(file_okay=False), default="bench", show_default=True,
              help="Where report.md, report.json and the PNG plots go.")
@click.option("--only", "only", type=click.Choice(BENCHES), multiple=True,
              help="Run only these benchmarks (repeatable; default: all).")
@command()
def all_(as_json: bool, outdir: str, only: tuple[str, ...]):
    """Every benchmark in one run, each on a fresh testbed: writes OUT/report.md with its plots and
    prints the results and the targets (what `make bench` runs). Progress goes to stderr."""
    import time
    from pathlib import Path

    from xdpstack.bench import report, suite
    t0 = time.monotonic()

    def progress(msg: str):
        m, s = divmod(int(time.monotonic() - t0), 60)
        click.echo(f"[{m:2d}:{s:02d}] {msg}", err=True)
    result = suite.run(only, progress=progress)
    path = report.write(result, Path(outdir))
    progress(f"wrote {path}")
    emit_json(result) if as_json else click.echo(suite.format_text(result))
    if result["errors"]:
        abort(f"{', '.join(result['errors'])} failed: see {path}")
