"""xdpstack stats: counters and rates of an attached interface, once or as a live table."""
from __future__ import annotations

import json
import time

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from xdpstack import counters, loader
from xdpstack.cli._app import command, emit_json


def _table(prev: counters.Snapshot, cur: counters.Snapshot) -> Table:
    r = counters.rates(prev, cur)
    t = Table(title=f"xdpstack {cur.ifname}", title_justify="left")
    t.add_column("counter")
    t.add_column("total", justify="right")
    t.add_column("per second", justify="right")
    for k, v in cur.totals.items():
        t.add_row(k, f"{v:,}", f"{r[k]:,.1f}")
    srates = counters.stack_rates(prev, cur)
    for sid, vals in cur.stacks.items():
        rec = cur.records.get(sid)
        t.add_section()
        for k, v in vals.items():
            t.add_row(f"stack {sid} {rec.name if rec else ''} {k}", f"{v:,}", f"{srates[sid][k]:,.1f}")
    return t


def _json(prev: counters.Snapshot, cur: counters.Snapshot, interval: float) -> dict:
    srates = counters.stack_rates(prev, cur)
    return {"ifname": cur.ifname, "interval": interval,
            "totals": cur.totals, "rates": counters.rates(prev, cur),
            "stacks": [{"id": sid, "name": cur.records[sid].name if sid in cur.records else None,
                        "totals": vals, "rates": srates[sid]} for sid, vals in cur.stacks.items()]}


@click.command()
@click.argument("iface")
@click.option("--watch", is_flag=True, help="Redraw a live table every interval until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between the samples the rates come from.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after N redraws (implies --watch).")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: one object, or with --watch one line per sample.")
@command()
def stats(iface: str, watch: bool, interval: float, count: int | None, as_json: bool):
    """Counters of IFACE (global and per stack) and their rates over --interval seconds."""
    loader.require_pins(iface)
    watch = watch or count is not None
    prev = counters.snapshot(iface)
    if not watch:
        time.sleep(interval)
        cur = counters.snapshot(iface)
        if as_json:
            emit_json(_json(prev, cur, interval))
        else:
            Console().print(_table(prev, cur))
        return
    n = 0
    if as_json:
        while count is None or n < count:
            time.sleep(interval)
            cur = counters.snapshot(iface)
            click.echo(json.dumps(_json(prev, cur, interval)))
            prev, n = cur, n + 1
        return
    try:
        with Live(_table(prev, prev), console=Console(), auto_refresh=False) as live:
            while count is None or n < count:
                time.sleep(interval)
                cur = counters.snapshot(iface)
                live.update(_table(prev, cur), refresh=True)
                prev, n = cur, n + 1
    except KeyboardInterrupt:
        pass
