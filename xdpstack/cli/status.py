"""xdpstack status: what is attached where, who claims what, and the counters."""
from __future__ import annotations

import click

from xdpstack import collector, loader, nsstate, registry
from xdpstack.cli._app import command, emit_json
from xdpstack.errors import XdpstackError


def describe(ifname: str) -> dict:
    """Everything status shows about one interface (raises when it is not attached by xdpstack)."""
    a = loader.status(ifname)
    ns = nsstate.describe()
    snap = collector.collect_one(ifname)
    stacks = registry.list_stacks(ifname)
    by_id = {s.id: s for s in stacks}
    claims = registry.list_claims(ifname)
    demux = {s.id: s.demux for s in snap.stacks}
    return {
        "ifname": a.ifname, "ifindex": a.ifindex, "attached": True, "mode": a.mode,
        "prog": {"id": a.prog_id, "tag": a.prog_tag, "name": a.prog_name},
        "netns": ns, "pin_dir": a.pin_dir, "pin_path": f"{a.pin_dir}/prog", "pins": a.pins,
        "stacks": [{"id": s.id, "name": s.name, "pid": s.pid, "uid": s.uid, "user": s.user,
                    "xsk_first_slot": s.xsk_first_slot, "xsk_slots": s.xsk_slots,
                    "port_ifindex": s.port_ifindex, "target": s.target,
                    "mode": registry.MODES.get(s.target, "?"),
                    "counters": demux.get(s.id, {})} for s in stacks],
        "claims": [{"proto": c.proto, "family": c.family, "addr": c.addr, "port": c.port,
                    "wildcard": c.wildcard, "stack": c.stack, "owner": _owner(by_id.get(c.stack)),
                    "target": c.target} for c in claims],
        "counters": snap.totals,
    }


def _owner(s: registry.StackRecord | None) -> dict | None:
    return {"name": s.name, "pid": s.pid, "uid": s.uid, "user": s.user} if s else None


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _text(d: dict) -> str:
    lines = [f"{d['ifname']}: attached in {d['mode']} mode",
             f"  netns     {nsstate.text(d['netns'])}: state under {d['netns']['dir']}",
             f"  program   id {d['prog']['id']}  {d['prog']['name']}  tag {d['prog']['tag']}",
             f"  pinned    {d['pin_path']}  ({len(d['pins'])} pins under {d['pin_dir']})"]
    if d["stacks"]:
        for i, s in enumerate(d["stacks"]):
            last = s["xsk_first_slot"] + s["xsk_slots"] - 1
            lines.append(f"  {'stacks' if i == 0 else '':9} {s['id']:>3} {s['name']}  pid {s['pid']}"
                         f"  user {s['user']}  {s['mode']}  xsk slots {s['xsk_first_slot']}..{last}")
    else:
        lines.append("  stacks    none")
    if d["claims"]:
        width = max(len(_claim_text(c)) for c in d["claims"])
        for i, c in enumerate(d["claims"]):
            o = c["owner"]
            who = f"stack {c['stack']}" + (f" {o['name']} (pid {o['pid']}, user {o['user']})" if o else "")
            lines.append(f"  {'claims' if i == 0 else '':9} {_claim_text(c):{width}}  -> {who}")
    else:
        lines.append("  claims    none")
    t = d["counters"]
    red = f"{t.get('redirected', 0)} ({_fmt_bytes(t.get('redirected_bytes', 0))})"
    pas = f"{t.get('passed', 0)} ({_fmt_bytes(t.get('passed_bytes', 0))})"
    lines.append(f"  counters  redirected {red}  passed {pas}")
    reasons = [f"{k[5:]} {v}" for k, v in t.items() if k.startswith("pass_") and v]
    if reasons:
        lines.append(f"  {'':9} passed because: {', '.join(reasons)}")
    return "\n".join(lines)


def _claim_text(c: dict) -> str:
    return registry.tuple_text(c["proto"], c["family"], c["addr"], c["port"])


@click.command()
@click.argument("iface", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@command()
def status(iface: str | None, as_json: bool):
    """Show the attached program (id, tag, mode, pin path), claims with their owners, and counters.

    Without IFACE: every interface of this network namespace with pins (under the bpffs root's
    netns-INODE directory; INODE as `ls -l /proc/PID/ns/net` or `lsns -t net` show it)."""
    if iface:
        d = describe(iface)
        emit_json(d) if as_json else click.echo(_text(d))
        return
    out = []
    for name in loader.attached_interfaces():
        try:
            out.append(describe(name))
        except XdpstackError as e:
            out.append({"ifname": name, "attached": False, "error": str(e)})
    if as_json:
        emit_json(out)
    elif not out:
        ns = nsstate.describe()
        click.echo(f"no interface is attached in this network namespace ({nsstate.text(ns)}; "
                   f"no pins under {ns['dir']})")
    else:
        click.echo("\n".join(_text(d) if d.get("attached") else f"{d['ifname']}: {d['error']}" for d in out))
