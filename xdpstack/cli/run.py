"""xdpstack run: an application on its own user-level stack; xdpstack stacks: the stacks running."""
from __future__ import annotations

import click

from xdpstack import collector, launcher, loader, stackstats
from xdpstack.cli._app import command, emit_json

FAULT_HELP = ("Inject faults between the NIC and the stack, e.g. 'seed=1 drop=0.05 duplicate=0.01 "
              "reorder=0.02 corrupt=0.01 dir=both' (see README: Fault injection).")


@click.command()
@click.argument("ifname", metavar="IFACE")
@click.option("--udp", "udp", type=click.IntRange(1, 65535), multiple=True, metavar="PORT",
              help="Claim this UDP port for the stack (repeatable).")
@click.option("--tcp", "tcp", type=click.IntRange(1, 65535), multiple=True, metavar="PORT",
              help="Claim this TCP port for the stack (repeatable).")
@click.option("--addr", metavar="ADDR", help="Claim the ports on this local address only "
              "(default: every local address, IPv4 and IPv6).")
@click.option("--user", metavar="USER", help="Run CMD as this user (name or uid); its claims are bound "
              "with its credentials. Default: the invoking user.")
@click.option("--queues", type=click.IntRange(1, 64), default=1, show_default=True,
              help="AF_XDP sockets (RX queues) of the stack's port.")
@click.option("--name", metavar="NAME", help="Stack name shown by `xdpstack stacks` (default: CMD).")
@click.option("--cc", type=click.Choice(["cubic", "newreno"]), help="TCP congestion control of the stack.")
@click.option("--faults", metavar="SPEC", help=FAULT_HELP)
@click.option("--direct", is_flag=True, help="Bind the stack's AF_XDP sockets on IFACE's own queues "
              "(zero-copy where the driver has it): no virtual port, so NO egress guard checks what it "
              "sends. For one trusted application; it takes every queue of IFACE.")
@click.option("--zerocopy", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="With --direct: zero-copy if the driver has it (auto), always (on), never (off).")
@click.option("--grace", type=click.FloatRange(0, 10), default=0.5, show_default=True,
              help="Seconds CMD gets after SIGTERM before SIGKILL, when the launcher is stopped.")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@command()
def run(ifname, udp, tcp, addr, user, queues, name, cc, faults, direct, zerocopy, grace, cmd):
    """Run CMD on its own user-level stack on IFACE, claiming the given ports.

    \b
    xdpstack run eth1 --udp 7000 -- userstack-echo
    xdpstack run eth1 --tcp 80 --user www-data -- userstack-httpd --body-size 64
    xdpstack run eth1 --direct --udp 7000 -- userstack-echo   (trusted: unguarded)

    The launcher stays as CMD's supervisor: when CMD exits, is killed, or the launcher gets
    SIGINT/SIGTERM, the claims, map entries, port and sockets are released, and CMD's exit status
    is passed on (128+N when it died of signal N).
    """
    env = {}
    if cc:
        env["XDPSTACK_CC"] = cc
    if faults:
        env["XDPSTACK_FAULTS"] = faults
    spec = launcher.RunSpec(ifname=ifname, cmd=list(cmd), udp=list(udp), tcp=list(tcp), addr=addr,
                            user=user, queues=queues, name=name, grace=grace, env=env, direct=direct,
                            zerocopy=zerocopy)
    raise SystemExit(launcher.run(spec))


@click.command()
@click.argument("ifname", metavar="[IFACE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@command()
def stacks(ifname, as_json):
    """The stacks running on IFACE (default: every attached interface): name, pid, user, tuples,
    counters, each stack's own drops of received frames by reason, and its TCP's connections and
    unanswered segments by reason when it has TCP activity (--json: all its counters)."""
    names = [ifname] if ifname else loader.attached_interfaces()
    rows = [s.row() for n in names for s in collector.stacks_of(n)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no stacks running" + (f" on {ifname}" if ifname else ""))
        return
    for s in rows:
        c = s["counters"]
        drops = sum(q.get("rx_dropped", 0) + q.get("rx_ring_full", 0) for q in s["xdp_statistics"])
        click.echo(f"{s['ifname']} stack {s['id']} {s['name']}: pid {s['pid']} "
                   f"(launcher {s['launcher_pid']}), user {s['user']}, {s['queues']} queue(s), "
                   f"{s['mode']}" + (f" ({s['xsk_bind']})" if s["xsk_bind"] else ""))
        click.echo(f"  tuples  {', '.join(s['tuples']) or '-'}")
        click.echo(f"  rx {c.get('rx_packets', 0)} pkts {c.get('rx_bytes', 0)} B   "
                   f"tx {c.get('tx_packets', 0)} pkts {c.get('tx_bytes', 0)} B   "
                   f"tx denied {c.get('tx_denied', 0)}   socket drops {drops}")
        own = s["stack_counters"]
        click.echo(f"  {stackstats.drops_line(own and own['stack'])}")
        if own and stackstats.tcp_active(own["tcp"]):
            click.echo(f"  {stackstats.tcp_line(own['tcp'])}")
