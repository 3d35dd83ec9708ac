"""xdpstack capture: the frames of user-level stacks, both ways, as pcapng or tcpdump-like lines."""
from __future__ import annotations

import os
import signal
import sys

import click

from xdpstack import capture as cap
from xdpstack.cli._app import command
from xdpstack.pcapfilter import FilterError, compile_filter


@click.command()
@click.argument("iface")
@click.argument("expression", nargs=-1)
@click.option("--stack", "stacks", multiple=True, metavar="NAME",
              help="Capture this stack (repeatable; default: every stack on IFACE).")
@click.option("-w", "write", metavar="FILE|-", help="Write pcapng to FILE, or stream it to stdout (-).")
@click.option("-c", "count", type=click.IntRange(min=1), help="Stop after COUNT frames.")
@click.option("-s", "snaplen", type=click.IntRange(min=0, max=262144), default=262144, show_default=True,
              help="Bytes kept of each frame (0: all).")
@click.option("--dir", "direction", type=click.Choice(sorted(cap.DIRS)), default="both", show_default=True,
              help="Frames the stacks received, sent, or both.")
@command(root=False)
def capture(iface, expression, stacks, write, count, snaplen, direction):
    """Capture user-level stacks' traffic on IFACE, which tcpdump cannot see (AF_XDP bypasses
    the kernel's taps): pcapng with one interface per stack (named IFACE:STACK) and each frame's
    direction, or one line per frame. EXPRESSION is a pcap-filter expression (tcpdump's syntax),
    run inside each stack before a frame is copied. Root, or a stack's own user, may capture it.
    Ends on Ctrl-C, SIGTERM or -c COUNT, and reports captured and dropped frames like tcpdump."""
    expr = " ".join(expression)
    snaplen = snaplen or 262144
    try:
        insns = compile_filter(expr, snaplen)                 # a bad filter fails before anything
    except FilterError as e:
        raise cap.CaptureError(f"{e}") from None
    areas = []
    try:
        for t in cap.targets(iface, stacks):
            areas.append(cap.Area(t))
        stream = None
        if write == "-":
            stream = sys.stdout.buffer
            out = cap.PcapngOut(stream, areas, snaplen)
        elif write:
            stream = open(write, "wb")               # noqa: SIM115 (closed below)
            out = cap.PcapngOut(stream, areas, snaplen)
        else:
            out = cap.TextOut(lambda line: click.echo(line), areas)
        names = ", ".join(a.target.name for a in areas)
        click.echo(f"xdpstack capture: {iface} stack(s) {names}, {direction}, snaplen {snaplen}"
                   + (f", filter {expr!r}" if expr else ""), err=True)
        stopping = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.append(1))
        try:
            counts = cap.run(areas, out, insns, snaplen, cap.DIRS[direction], count, lambda: bool(stopping))
        except BrokenPipeError:                       # the reader (tshark, head) went away
            counts = [a.counts() for a in areas]
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no error at exit
        if stream is not None and stream is not sys.stdout.buffer:
            stream.close()
    finally:
        for a in areas:
            a.close()
    captured = sum(c["captured"] for c in counts)
    matched = sum(c["matched"] for c in counts)
    dropped = sum(c["dropped"] for c in counts)
    click.echo(f"{captured} packets captured\n{matched} packets received by filter\n"
               f"{dropped} packets dropped by stack", err=True)
    if len(areas) > 1:
        for a, c in zip(areas, counts, strict=True):
            click.echo(f"  {a.target.name}: {c['captured']} captured, {c['matched']} received by filter, "
                       f"{c['dropped']} dropped", err=True)
