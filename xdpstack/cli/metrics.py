"""xdpstack metrics: the counters for Prometheus (xdpstack.metrics), once, served, or as a
node_exporter textfile."""
from __future__ import annotations

import signal
import threading

import click
from prometheus_client import generate_latest, start_http_server, write_to_textfile

from xdpstack import loader
from xdpstack import metrics as xmetrics
from xdpstack.cli._app import command
from xdpstack.errors import UsageError


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen takes ADDR:PORT (e.g. 127.0.0.1:9477 or [::]:9477), not {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@click.command()
@click.argument("ifaces", nargs=-1, metavar="[IFACE]...")
@click.option("--listen", metavar="ADDR:PORT", help="Serve /metrics over HTTP here until SIGTERM or Ctrl-C.")
@click.option("--once", is_flag=True, help="Print the metrics once and exit (the default without --listen "
              "or --textfile).")
@click.option("--textfile", type=click.Path(dir_okay=False), metavar="PATH",
              help="Write them to PATH (atomically) for node_exporter's textfile collector; every "
                   "--interval seconds unless --once.")
@click.option("--interval", type=click.FloatRange(min=0.5), default=15.0, show_default=True,
              help="Seconds between --textfile writes.")
@command()
def metrics(ifaces, listen, once, textfile, interval):
    """The counters of IFACE (default: every attached interface) and of its stacks in Prometheus'
    exposition format, read at each scrape: the demux's verdicts, each stack's frames, drops by
    reason, TCP counters and AF_XDP ring statistics."""
    names = list(ifaces) or None
    for n in names or []:
        loader.require_pins(n)
    reg = xmetrics.registry(names)
    addr = _listen(listen) if listen else None
    if textfile:
        write_to_textfile(textfile, reg)
    if not addr and (once or not textfile):
        if not textfile:
            click.echo(generate_latest(reg).decode(), nl=False)
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    if addr:
        try:
            server, _ = start_http_server(addr[1], addr=addr[0], registry=reg)
        except OSError as e:
            raise UsageError(f"cannot listen on {listen}: {e.strerror}") from None
        click.echo(f"xdpstack metrics: serving http://{listen}/metrics", err=True)
    try:
        while not stop.wait(interval if textfile and not once else 3600):
            if textfile and not once:
                write_to_textfile(textfile, reg)
    finally:
        if server:
            server.shutdown()
