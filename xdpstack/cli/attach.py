"""xdpstack attach / detach."""
from __future__ import annotations

import click

from xdpstack import loader, nsstate
from xdpstack.cli._app import command, emit_json


@click.command()
@click.argument("iface")
@click.option("--mode", type=click.Choice(loader.MODES), default="auto", show_default=True,
              help="native (driver) XDP, generic (skb) XDP, or auto: native where the driver has it.")
@click.option("--force", is_flag=True, help="Replace an XDP program that xdpstack did not attach.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@command()
def attach(iface: str, mode: str, force: bool, as_json: bool):
    """Attach the demux to IFACE and pin its program and maps.

    Attaching an interface xdpstack already serves changes nothing and says so (exit 0)."""
    a = loader.attach(iface, mode=mode, force=force)
    if as_json:
        emit_json({"ifname": a.ifname, "ifindex": a.ifindex, "prog_id": a.prog_id, "tag": a.prog_tag,
                   "mode": a.mode, "netns": nsstate.describe(), "pin_dir": a.pin_dir,
                   "already_attached": a.already, "replaced_prog_id": a.replaced or None})
        return
    fell_back = mode == "auto" and a.mode == "generic"
    how = f"in {a.mode} mode" + (" (auto: the driver has no native XDP)" if fell_back else "")
    if a.already:
        click.echo(f"{iface} is already attached by xdpstack: program {a.prog_id} {how}, "
                   f"pinned at {a.pin_dir}; nothing to do")
        return
    if a.replaced:
        click.echo(f"replaced program {a.replaced} on {iface} (--force)")
    click.echo(f"attached xdpstack to {iface}: program {a.prog_id} ({a.prog_name}, tag {a.prog_tag}) {how}, "
               f"pinned at {a.pin_dir}")


@click.command()
@click.argument("iface")
@click.option("--force", is_flag=True, help="Detach even while stacks hold claims on IFACE.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@command()
def detach(iface: str, force: bool, as_json: bool):
    """Detach the demux from IFACE and remove its pins."""
    d = loader.detach(iface, force=force)
    if as_json:
        emit_json({"ifname": d.ifname, "prog_id": d.prog_id or None, "pin_dir": d.pin_dir, "note": d.note})
        return
    if d.prog_id:
        click.echo(f"detached xdpstack from {iface}: program {d.prog_id} removed, "
                   f"pins under {d.pin_dir} removed")
    else:
        click.echo(f"{iface}: {d.note} ({d.pin_dir})")
