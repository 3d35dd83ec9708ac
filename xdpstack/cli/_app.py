"""What every command shares: the global options, one way to fail, and the root/namespace set-up.

A command is thin: it parses its arguments, calls the library (loader, registry, maps, counters)
and prints. Errors from the library carry their own one-line message (what is wrong, what to do);
`abort` prints it and exits non-zero, after the command's context has left the namespace again.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass

import click

from xdpstack import netlink
from xdpstack.errors import XdpstackError


@dataclass
class App:
    netns: str | None = None


def abort(message: str, code: int = 1):
    """Print one line to stderr and exit with `code` (non-zero)."""
    click.echo(f"xdpstack: error: {message}", err=True)
    raise SystemExit(code or 1)


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


def command(root: bool = True):
    """Decorate a command body: check for root, enter --netns for the command's duration, and turn
    library errors into abort()."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            ctx = click.get_current_context()
            app = ctx.find_object(App) or App()
            name = ctx.command_path.replace(ctx.find_root().info_name or "xdpstack", "xdpstack", 1)
            if root and os.geteuid() != 0:
                abort(f"`{name}` needs root (XDP, bpffs and network namespaces): run it with sudo")
            try:
                ctx.with_resource(netlink.netns(app.netns))
                return fn(*args, **kwargs)
            except XdpstackError as e:
                abort(str(e), e.code)
            except PermissionError as e:
                where = f": {e.filename}" if e.filename else ""
                abort(f"{e.strerror or e}{where}: `{name}` needs root")
            except OSError as e:
                where = f" ({e.filename})" if e.filename else ""
                abort(f"{e.strerror or e}{where}")
            except KeyboardInterrupt:
                sys.exit(130)
        return wrapper
    return deco
