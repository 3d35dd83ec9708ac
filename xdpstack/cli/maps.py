"""xdpstack maps list / dump: the pinned maps, printed exactly as bpftool prints them."""
from __future__ import annotations

import click

from xdpstack import loader, mapdump
from xdpstack import maps as xmaps
from xdpstack.cli._app import command
from xdpstack.errors import NotAttached


@click.group()
def maps():
    """The pinned maps, as bpftool shows them."""


@maps.command("list")
@click.argument("iface", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON, as `bpftool -j map show`.")
@command()
def list_(iface: str | None, as_json: bool):
    """List the maps of IFACE (default: of every attached interface) like `bpftool -f map show`."""
    if iface:
        loader.require_pins(iface)
    names = [iface] if iface else loader.attached_interfaces()
    click.echo(mapdump.list_maps(names, json_output=as_json), nl=False)


@maps.command("dump")
@click.argument("iface")
@click.argument("map_name", metavar="MAP", type=click.Choice(xmaps.MAP_NAMES))
@click.option("--json", "as_json", is_flag=True, help="JSON, exactly as `bpftool -j map dump pinned PATH`.")
@command()
def dump(iface: str, map_name: str, as_json: bool):
    """Dump MAP of IFACE: the same output as `bpftool [-j] map dump pinned PATH`."""
    path = loader.require_pins(iface) / map_name
    if not path.exists():
        raise NotAttached(f"no pin {path}: the pins of {iface} are incomplete; detach and attach again")
    click.echo(mapdump.dump_json(path) if as_json else mapdump.dump_text(path), nl=False)
