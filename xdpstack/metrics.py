"""The counters in Prometheus' exposition format: a prometheus-client collector that reads the
collector (xdpstack.collector) at scrape time. Labels: interface, stack (its name: ids are reused),
reason, queue; no per-connection labels. Names follow Prometheus' conventions (xdpstack_ prefix,
_total for counters, _bytes for bytes, base units); the TCP's are nstat's counters by another name
(segs_in is TcpInSegs, retransmits TcpRetransSegs, active_opens TcpActiveOpens, ...).

    xdpstack_demux_packets_total{interface,verdict}       redirected to stacks / passed to the kernel
    xdpstack_demux_passed_packets_total{interface,reason} passed, by why (no_claim, not_ip, ...)
    xdpstack_stack_info{interface,stack,user}             1 per running stack
    xdpstack_stack_port_*_total{interface,stack}          the demux's and guard's view of a stack
    xdpstack_stack_rx_dropped_frames_total{...,reason}    the stack's own drops of received frames
    xdpstack_stack_*_total{interface,stack}               the stack's other counters (struct us_stats)
    xdpstack_tcp_*_total / xdpstack_tcp_connections ...   its TCP's (struct us_tcp_stats)
    xdpstack_xsk_*_total{interface,stack,queue}           AF_XDP ring statistics (XDP_STATISTICS)
"""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from xdpstack import collector, stackstats

TCP_GAUGES = {"conns": ("connections", "TCP connections now, TIME_WAIT included"),
              "listeners": ("listeners", "TCP listening sockets now"),
              "time_wait": ("time_wait_connections", "TCP connections in TIME_WAIT now"),
              "ports_ready": ("ephemeral_ports_ready", "ephemeral ports claimed ahead, unused")}
DROP_KEYS = {k: k.removeprefix("rx_") for k, _ in stackstats.DROP_REASONS}


class Collector:
    """Read at every scrape: one collection of the interfaces (None: every attached one)."""

    def __init__(self, ifnames: list[str] | None = None):
        self.ifnames = ifnames

    def describe(self):
        return []                     # no fixed set: what a scrape sees depends on the stacks

    def collect(self):
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

        def fam(kind, name, doc, labels):
            if name not in fams:
                fams[name] = kind(name, doc, labels=labels)
            return fams[name]

        for i in collector.collect(self.ifnames):
            t = i.totals
            f = fam(CounterMetricFamily, "xdpstack_demux_packets", "Packets the demux handled, by verdict",
                    ["interface", "verdict"])
            f.add_metric([i.ifname, "redirected"], t.get("redirected", 0))
            f.add_metric([i.ifname, "passed"], t.get("passed", 0))
            f = fam(CounterMetricFamily, "xdpstack_demux_bytes", "Bytes the demux handled, by verdict",
                    ["interface", "verdict"])
            f.add_metric([i.ifname, "redirected"], t.get("redirected_bytes", 0))
            f.add_metric([i.ifname, "passed"], t.get("passed_bytes", 0))
            f = fam(CounterMetricFamily, "xdpstack_demux_passed_packets",
                    "Packets the demux passed to the kernel, by reason", ["interface", "reason"])
            for k, v in t.items():
                if k.startswith("pass_"):
                    f.add_metric([i.ifname, k.removeprefix("pass_")], v)
            for s in i.stacks:
                self._stack(fam, s)
        yield from fams.values()

    def _stack(self, fam, s: collector.Stack) -> None:
        lab, names = [s.ifname, s.name], ["interface", "stack"]
        fam(GaugeMetricFamily, "xdpstack_stack_info", "A running user-level stack (value 1)",
            ["interface", "stack", "user"]).add_metric([s.ifname, s.name, s.user], 1)
        for k, v in s.demux.items():
            doc = f"The demux's and port guard's {k} of the stack (struct xs_stack_stats)"
            fam(CounterMetricFamily, f"xdpstack_stack_port_{k}", doc, names).add_metric(lab, v)
        if s.own:
            drops = fam(CounterMetricFamily, "xdpstack_stack_rx_dropped_frames",
                        "Received frames the stack dropped, by reason", names + ["reason"])
            for k, v in s.own["stack"].items():
                if k in DROP_KEYS:
                    drops.add_metric(lab + [DROP_KEYS[k]], v)
                else:
                    fam(CounterMetricFamily, f"xdpstack_stack_{k}",
                        f"The stack's {k} (struct us_stats)", names).add_metric(lab, v)
            for k, v in s.own["tcp"].items():
                if k in TCP_GAUGES:
                    name, doc = TCP_GAUGES[k]
                    fam(GaugeMetricFamily, f"xdpstack_tcp_{name}", doc, names).add_metric(lab, v)
                else:
                    fam(CounterMetricFamily, f"xdpstack_tcp_{k}",
                        f"The stack's TCP {k} (struct us_tcp_stats)", names).add_metric(lab, v)
        for q in s.xsk:
            ql = lab + [str(q.get("queue_id", 0))]
            for k, v in q.items():
                if k != "queue_id" and isinstance(v, int):
                    fam(CounterMetricFamily, f"xdpstack_xsk_{k}",
                        f"AF_XDP socket {k} (XDP_STATISTICS)", names + ["queue"]).add_metric(ql, v)


def registry(ifnames: list[str] | None = None) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(Collector(ifnames))
    return r
