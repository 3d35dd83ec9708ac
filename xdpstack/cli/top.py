"""xdpstack top: a live view of every stack and of the kernel path (rich), from the collector."""
from __future__ import annotations

import time

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from xdpstack import collector, loader, stackstats
from xdpstack.cli._app import command


def _si(v: float, unit: str) -> str:
    for div, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f} {p}{unit}"
    return f"{v:.0f} {unit}"


def _drops(r: dict) -> str:
    """`bad checksum 5/s, queue full 2/s` from a stack's rates, or `-`."""
    words = [f"{label} {r['stack'].get(k, 0):,.0f}/s" for k, label in stackstats.DROP_REASONS
             if r.get("stack", {}).get(k, 0) >= 0.5]
    words += [f"{label} {r['tcp'].get(k, 0):,.0f}/s" for k, label in stackstats.TCP_DROP_REASONS
              if r.get("tcp", {}).get(k, 0) >= 0.5]
    if r["demux"].get("tx_denied", 0) >= 0.5:
        words.append(f"tx denied {r['demux']['tx_denied']:,.0f}/s")
    return ", ".join(words) or "-"


def frame(cur: list[collector.Iface], prev: list[collector.Iface] | None) -> Group:
    """One screen: per interface a header (program, mode, the kernel path) and a row per stack."""
    before = {i.ifname: i for i in prev or []}
    parts = []
    for i in cur:
        r = i.rates(before.get(i.ifname))
        t = r["totals"]
        passed = (f"passed {_si(t.get('passed', 0), 'pkt/s')} {_si(8 * t.get('passed_bytes', 0), 'bit/s')}"
                  f" (no claim {t.get('pass_no_claim', 0):,.0f}/s)   ")
        head = Text.assemble((f"{i.ifname}", "bold"), f"  xdp prog {i.prog_id or '?'} ({i.mode or '?'})   ",
                             ("kernel path: ", "bold"), passed,
                             ("to stacks: ", "bold"), f"{_si(t.get('redirected', 0), 'pkt/s')}")
        tab = Table(expand=True, box=None, header_style="bold")
        for col in ("stack", "user", "pid", "rx pkt/s", "rx bit/s", "tx pkt/s", "tx bit/s", "drops",
                    "tcp conns", "retrans/s"):
            tab.add_column(col, justify="right" if "/s" in col or col in ("pid", "tcp conns") else "left")
        for s in i.stacks:
            sr = r["stacks"].get(s.name, {"demux": {}})
            own = sr.get("stack")
            rx = own["rx_frames"] if own else sr["demux"].get("rx_packets", 0)
            rxb = own["rx_bytes"] if own else sr["demux"].get("rx_bytes", 0)
            tx = own["tx_frames"] if own else sr["demux"].get("tx_packets", 0)
            txb = own["tx_bytes"] if own else sr["demux"].get("tx_bytes", 0)
            conns = str(s.own["tcp"]["conns"]) if s.own else "?"
            retr = f"{sr['tcp']['retransmits']:,.0f}" if "tcp" in sr else "?"
            name = s.name if s.mode == "isolated" else f"{s.name} ({s.mode})"
            tab.add_row(name, s.user, str(s.pid or s.launcher_pid), f"{rx:,.0f}", _si(8 * rxb, "b/s"),
                        f"{tx:,.0f}", _si(8 * txb, "b/s"), _drops(sr), conns, retr)
        if not i.stacks:
            tab.add_row("(no stacks)", "", "", "", "", "", "", "", "", "")
        tab.add_row(Text("kernel", style="italic"), "", "", f"{t.get('passed', 0):,.0f}",
                    _si(8 * t.get("passed_bytes", 0), "b/s"), "", "", "", "", "")
        parts += [head, tab, Text("")]
    return Group(*parts)


@click.command()
@click.argument("iface", required=False)
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between refreshes (rates are over this interval).")
@click.option("--once", is_flag=True, help="Print one frame (rates over one interval) and exit.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after N refreshes.")
@command()
def top(iface: str | None, interval: float, once: bool, count: int | None):
    """A live view of every stack on IFACE (default: every attached interface) and of the kernel
    path: packets and bits per second in and out, drops by reason per second, TCP connections and
    retransmits per second, the XDP program and its mode. Ctrl-C ends it."""
    if iface:
        loader.require_pins(iface)
    names = [iface] if iface else None
    console = Console()
    prev = collector.collect(names)
    if not prev:
        click.echo("no interface has the demux attached (see `xdpstack attach`)")
        return
    if once:
        time.sleep(interval)
        console.print(frame(collector.collect(names), prev))
        return
    n = 0
    try:
        with Live(frame(prev, None), console=console, auto_refresh=False, screen=False) as live:
            while count is None or n < count:
                time.sleep(interval)
                cur = collector.collect(names)
                live.update(frame(cur, prev), refresh=True)
                prev, n = cur, n + 1
    except KeyboardInterrupt:
        pass
