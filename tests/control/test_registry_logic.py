"""Pure logic of the claims registry: tuple parsing, expansion, index positions (no root)."""
from __future__ import annotations

import pytest

from xdpstack import registry
from xdpstack.errors import UsageError
from xdpstack.layout import CONST


@pytest.mark.parametrize("spec, want", [
    ("udp:7000", ("udp", None, 7000)),
    ("TCP:80", ("tcp", None, 80)),
    ("tcp:198.18.0.1:80", ("tcp", "198.18.0.1", 80)),
    ("udp:[2001:db8::1]:53", ("udp", "2001:db8::1", 53)),
    ("udp:[::]:53", ("udp", "::", 53)),
    ("tcp:0.0.0.0:8080", ("tcp", "0.0.0.0", 8080)),
])
def test_parse_tuple(spec, want):
    assert registry.parse_tuple(spec) == want


@pytest.mark.parametrize("spec", ["7000", "icmp:7", "udp:0", "udp:70000", "udp:x", "tcp:1.2.3:80",
                                  "udp:[::1:53", "tcp:[::ffff:1.2.3.4]:80"])
def test_parse_tuple_rejects(spec):
    with pytest.raises(UsageError):
        registry.parse_tuple(spec)


def test_expand_wildcards():
    assert registry._expand("udp", None, 7) == [("udp", 4, None, 7), ("udp", 6, None, 7)]
    assert registry._expand("udp", "0.0.0.0", 7) == [("udp", 4, None, 7)]
    assert registry._expand("tcp", "::", 7) == [("tcp", 6, None, 7)]
    assert registry._expand("tcp", "2001:DB8::1", 7) == [("tcp", 6, "2001:db8::1", 7)]


def test_index_positions():
    assert registry.claims_by_port_index(4, "tcp", 80) == 80
    assert registry.claims_by_port_index(4, "udp", 80) == 65536 + 80
    assert registry.claims_by_port_index(6, "udp", 53) == 131072 + 65536 + 53
    assert registry.claims_by_port_index(6, 6, 1) == 131072 + 1


def test_index_map_fits_the_header():
    assert registry.claims_by_port_index(6, "udp", 65535) == CONST["XS_CLAIMS_BY_PORT_LEN"] - 1


def test_tuple_text():
    assert registry.tuple_text("udp", 4, None, 7000) == "udp 0.0.0.0:7000"
    assert registry.tuple_text("tcp", 6, "2001:db8::1", 80) == "tcp [2001:db8::1]:80"
    assert str(registry.ClaimInfo("udp", 6, "::", 53, 0, 1)) == "udp [::]:53"
    assert registry.ClaimInfo("udp", 6, "::", 53, 0, 1).wildcard
    assert not registry.ClaimInfo("udp", 4, "198.18.0.1", 53, 0, 1).wildcard


def test_stack_record_round_trip():
    r = registry.StackRecord(3, "echo", 42, 1000, 192, 2, 7, registry.TARGET_PORT)
    assert registry.StackRecord.from_cdata(3, r.to_cdata()) == r


def test_stack_record_name_is_truncated_to_fit():
    r = registry.StackRecord(0, "x" * 40, 1, 0, 0, 1, 0, 1)
    back = registry.StackRecord.from_cdata(0, r.to_cdata())
    assert back.name == "x" * (CONST["XS_NAME_LEN"] - 1)
