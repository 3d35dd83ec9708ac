"""xdpstack stats: counters and rates of an attached interface, as a table or JSON (the live view
is `xdpstack top`)."""
from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.table import Table

from xdpstack import collector, loader
from xdpstack.cli._app import command, emit_json
from xdpstack.errors import UsageError


def _table(prev: collector.Iface, cur: collector.Iface) -> Table:
    r = cur.rates(prev)
    t = Table(title=f"xdpstack {cur.ifname}", title_justify="left")
    t.add_column("counter")
    t.add_column("total", justify="right")
    t.add_column("per second", justify="right")
    for k, v in cur.totals.items():
        t.add_row(k, f"{v:,}", f"{r['totals'][k]:,.1f}")
    for s in cur.stacks:
        t.add_section()
        for k, v in s.demux.items():
            t.add_row(f"stack {s.id} {s.name} {k}", f"{v:,}", f"{r['stacks'][s.name]['demux'][k]:,.1f}")
    return t


def _json(prev: collector.Iface, cur: collector.Iface, interval: float) -> dict:
    r = cur.rates(prev)
    return {"ifname": cur.ifname, "interval": interval, "totals": cur.totals, "rates": r["totals"],
            "stacks": [{"id": s.id, "name": s.name, "totals": s.demux, "rates": r["stacks"][s.name]["demux"]}
                       for s in cur.stacks]}


@click.command()
@click.argument("iface")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between the samples the rates come from.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Print N samples, one per interval (JSON: one line each).")
@click.option("--json", "as_json", is_flag=True, help="JSON: one object per sample.")
@click.option("--watch", is_flag=True, hidden=True)
@command()
def stats(iface: str, interval: float, count: int | None, as_json: bool, watch: bool):
    """Counters of IFACE (global and per stack) and their rates over --interval seconds. For a
    live view of every stack, see `xdpstack top`."""
    if watch:
        raise UsageError(f"the live view is `xdpstack top {iface}` now (stats prints samples: --count N)")
    loader.require_pins(iface)
    prev = collector.collect_one(iface)
    for _ in range(count or 1):
        time.sleep(interval)
        cur = collector.collect_one(iface)
        if as_json and count:
            click.echo(json.dumps(_json(prev, cur, interval)))
        elif as_json:
            emit_json(_json(prev, cur, interval))
        else:
            Console().print(_table(prev, cur))
        prev = cur
