"""The `xdpstack` command: one module per command group, registered below.

    xdpstack [--netns NAME] attach IFACE [--mode auto|native|generic] [--force]
    xdpstack [--netns NAME] detach IFACE [--force]
    xdpstack [--netns NAME] status [IFACE] [--json]
    xdpstack [--netns NAME] maps list [IFACE] [--json]
    xdpstack [--netns NAME] maps dump IFACE MAP [--json]
    xdpstack [--netns NAME] stats IFACE [--interval S] [--count N] [--json]
    xdpstack [--netns NAME] top [IFACE] [--interval S] [--once] [--count N]
    xdpstack [--netns NAME] metrics [IFACE]... [--listen ADDR:PORT] [--once] [--textfile PATH]
    xdpstack [--netns NAME] run IFACE [--udp PORT]... [--tcp PORT]... [--addr ADDR] [--user USER]
                                     [--queues N] [--cc ALGO] [--faults SPEC] -- CMD [ARGS]...
    xdpstack [--netns NAME] stacks [IFACE] [--json]
    xdpstack [--netns NAME] capture IFACE [--stack NAME]... [-w FILE|-] [-c COUNT] [-s SNAPLEN]
                                         [--dir in|out|both] [EXPRESSION]
    xdpstack bench demux [--json] [--repeat N]
    xdpstack demo [--seconds S] [--rate N]
"""
from __future__ import annotations

import click

from xdpstack import __version__
from xdpstack.cli import attach, bench, capture, demo, maps, metrics, run, stats, status, top
from xdpstack.cli._app import App, abort

__all__ = ["cli", "main", "abort"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--netns", metavar="NAME", envvar="XDPSTACK_NETNS", show_envvar=True,
              help="Run the command inside network namespace NAME (as in `ip netns`); pins stay in the "
                   "host's bpffs.")
@click.version_option(__version__, prog_name="xdpstack")
@click.pass_context
def cli(ctx: click.Context, netns: str | None):
    """Per-application user-level network stacks beside the kernel's, demultiplexed by XDP."""
    ctx.obj = App(netns=netns or None)


cli.add_command(attach.attach)
cli.add_command(attach.detach)
cli.add_command(status.status)
cli.add_command(maps.maps)
cli.add_command(stats.stats)
cli.add_command(run.run)
cli.add_command(run.stacks)
cli.add_command(top.top)
cli.add_command(metrics.metrics)
cli.add_command(capture.capture)
cli.add_command(bench.bench)
cli.add_command(demo.demo)


def main() -> None:
    cli(prog_name="xdpstack")
