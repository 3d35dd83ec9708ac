"""xdpstack demo: what `make demo` runs."""
from __future__ import annotations

import click

from xdpstack.cli._app import command


@click.command()
@click.option("--seconds", type=click.FloatRange(1, 600), default=8, show_default=True,
              help="How long the peer sends.")
@click.option("--rate", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Datagrams per second to each port.")
@command()
def demo(seconds: float, rate: int):
    """A user-level stack and the kernel side by side on a throwaway testbed, with a live table of
    where each packet went; everything is removed at the end."""
    from xdpstack import demo as demo_mod
    raise SystemExit(demo_mod.run(seconds=seconds, rate=rate))
