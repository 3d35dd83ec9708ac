"""bpftool's output format, reproduced by xdpstack.maps, on crafted bytes (no kernel needed).

The expected strings are what bpftool 7.1 printed for the same bytes (captured once by hand; the
e2e tests compare against the live bpftool on every map)."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from xdpstack import maps
from xdpstack.layout import ffi, tuple_key
from xdpstack.mapdump import JsonWriter, _formatter, fprint_hex
from xdpstack.maps import parse_maps_header


def render(ctype_name: str, data: bytes, pretty: bool) -> str:
    out: list[str] = []
    w = JsonWriter(out, pretty=pretty)
    _formatter(ffi.typeof(ctype_name))(w, data, 0)
    return "".join(out)


def claims_entry(pretty: bool) -> str:
    key = bytes(ffi.buffer(tuple_key("tcp", "2001:db8::1", 80)))
    value = struct.pack("II", 7, 2)
    out: list[str] = []
    w = JsonWriter(out, pretty=pretty)
    w.start_array()
    w.start_object()
    w.name("key")
    _formatter(ffi.typeof("struct xs_tuple"))(w, key, 0)
    w.name("value")
    _formatter(ffi.typeof("struct xs_claim"))(w, value, 0)
    w.end_object()
    w.end_array()
    w.destroy()
    return "".join(out)


def test_pretty_struct_with_byte_array_matches_bpftool():
    assert claims_entry(pretty=True) == (
        '[{\n'
        '        "key": {\n'
        '            "proto": 6,\n'
        '            "family": 6,\n'
        '            "port": 80,\n'
        '            "addr": [32,1,13,184,0,0,0,0,0,0,0,0,0,0,0,1\n'
        '            ]\n'
        '        },\n'
        '        "value": {\n'
        '            "stack": 7,\n'
        '            "target": 2\n'
        '        }\n'
        '    }\n'
        ']\n')


def test_compact_matches_bpftool():
    assert claims_entry(pretty=False) == (
        '[{"key":{"proto":6,"family":6,"port":80,"addr":[32,1,13,184,0,0,0,0,0,0,0,0,0,0,0,1]},'
        '"value":{"stack":7,"target":2}}]\n')


def stack_value(name: bytes) -> bytes:
    return name.ljust(32, b"\0")[:32] + struct.pack("6I", 12345, 1000, 192, 2, 0, 1)


@pytest.mark.parametrize("name, expected", [
    (b"echo", '"echo"'),
    (b'echo"\\A', '"echo\\"\\nA"'),                       # bpftool writes a backslash as \n
    (b"", '""'),
    (b"e\x01ho", "[101,1,104,111" + ",0" * 28 + "]"),     # unprintable: an array
    (b"A\n\t\\A\xc8A", "[65,10,9,92,65,-56,65" + ",0" * 25 + "]"),   # char is signed
    (b"A" * 32, "[" + ",".join(["65"] * 32) + "]"),        # no NUL: not a string
])
def test_char_arrays_follow_is_str_array(name, expected):
    text = render("struct xs_stack", stack_value(name), pretty=False)
    assert text.startswith('{"name":' + expected + ',"pid":12345,')


def test_unsigned_64_bit_counters_print_in_full():
    data = b"\xff" * 8 + bytes(ffi.sizeof("struct xs_stats") - 8)
    assert render("struct xs_stats", data, pretty=False).startswith('{"redirected":18446744073709551615,')


def test_signed_int_keys():
    assert render("int", struct.pack("i", -1), pretty=False) == "-1"
    assert render("__u32", struct.pack("I", 0xFFFFFFFF), pretty=False) == "4294967295"


def test_fprint_hex_groups_like_bpftool():
    assert fprint_hex(bytes(range(20))) == (
        "00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n10 11 12 13")
    assert fprint_hex(b"") == ""


def test_empty_array_and_empty_object():
    out: list[str] = []
    w = JsonWriter(out, pretty=True)
    w.start_array()
    w.end_array()
    w.destroy()
    assert "".join(out) == "[]\n"


def test_escapes():
    assert JsonWriter.quote('a"b\tc\nd\\e') == '"a\\"b\\tc\\nd\\ne"'


def test_maps_header_declares_every_map_once():
    text = """
    BPF_HASH(claims, struct xs_tuple, struct xs_claim, XS_MAX_CLAIMS);  /* c */
    BPF_ARRAY(iface, struct xs_iface, 1);
    BPF_XSKMAP(xsks, 64);
    BPF_DEVMAP(ports, 8);
    BPF_PERCPU_ARRAY(stats, struct xs_stats, 1);
    /* BPF_HASH(commented, int, int, 1); */
    """
    d = parse_maps_header(text)
    assert list(d) == ["claims", "iface", "xsks", "ports", "stats"]
    assert (d["claims"].key_type, d["claims"].value_type) == ("struct xs_tuple", "struct xs_claim")
    assert (d["iface"].key_type, d["stats"].key_type) == ("int", "int")
    assert d["xsks"].value_type == "int"


def test_every_declared_map_has_a_layout():
    for decl in maps.DECLS.values():
        assert ffi.sizeof(decl.key_type) > 0 and ffi.sizeof(decl.value_type) > 0


def test_tuple_key_wildcards_are_all_zero():
    k = tuple_key("udp", None, 53, family=6)
    assert bytes(ffi.buffer(k.addr)) == bytes(16)
    k4 = tuple_key("udp", "198.18.0.1", 53)
    assert bytes(ffi.buffer(k4.addr))[:4] == ipaddress.ip_address("198.18.0.1").packed
