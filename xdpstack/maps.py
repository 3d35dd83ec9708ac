"""Typed access to the pinned maps, and dumps that print exactly what bpftool prints.

Any process reads and writes the state through the pins, without compiling anything:

    with open_map("eth0", "claims") as m:
        for key, value in m.items():            # cffi cdata of struct xs_tuple / struct xs_claim
            ...

Key and value types come from bpf/maps.h (which declares each map once) and their layouts from
bpf/xdpstack.h through layout.ffi: nothing here restates a field or an offset.

`dump_json(path)` / `dump_text(path)` reproduce `bpftool [-j] map dump pinned PATH` (bpftool 7.1)
byte for byte, and `show_text` / `show_json` reproduce `bpftool [-j] -f map show pinned PATH`:
raw key/value hex, per-CPU values, error entries (an XSKMAP cannot be read back: every slot prints
"Operation not supported"; an empty DEVMAP slot prints "<no entry>"), and the BTF "formatted" view
rendered from the same layouts the program was compiled with, following bpftool's btf_dumper rules
(char arrays holding a printable NUL-terminated string print as a string, other integers in
decimal with their C signedness). bpftool's JSON writer has quirks (a backslash in a string is
written as "\\n"); they are reproduced on purpose, since the point is identical output.
"""
from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from xdpstack import libbpf, nsstate, paths
from xdpstack.errors import NotAttached, UsageError, XdpstackError
from xdpstack.layout import BPF_DIR, ffi

MAPS_HEADER = BPF_DIR / "maps.h"


# ---- declarations from bpf/maps.h -------------------------------------------------------------

@dataclass(frozen=True)
class MapDecl:
    name: str
    macro: str                 # BPF_HASH, BPF_ARRAY, ...
    key_type: str              # C type names, as ffi knows them
    value_type: str


# bcc macro -> (key type, value type) given the macro's arguments after the name. XSKMAP and DEVMAP
# keys are u32 (bcc's BPF_XDP_REDIRECT_MAP); a DEVMAP value is an ifindex, an XSKMAP value a socket fd.
_MACROS = {
    "BPF_HASH": lambda a: (a[0], a[1]),
    "BPF_PERCPU_HASH": lambda a: (a[0], a[1]),
    "BPF_LRU_HASH": lambda a: (a[0], a[1]),
    "BPF_ARRAY": lambda a: ("int", a[0]),
    "BPF_PERCPU_ARRAY": lambda a: ("int", a[0]),
    "BPF_XSKMAP": lambda a: ("__u32", "int"),
    "BPF_DEVMAP": lambda a: ("__u32", "__u32"),
}


def parse_maps_header(text: str) -> dict[str, MapDecl]:
    out = {}
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    for m in re.finditer(r"^\s*(BPF_[A-Z_]+)\s*\(([^;]*)\)\s*;", text, flags=re.M):
        macro, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if macro not in _MACROS:
            continue
        key, value = _MACROS[macro](args[1:])
        out[args[0]] = MapDecl(args[0], macro, key, value)
    return out


DECLS: dict[str, MapDecl] = parse_maps_header(MAPS_HEADER.read_text())
MAP_NAMES: tuple[str, ...] = tuple(DECLS)


class LayoutMismatch(XdpstackError):
    pass


# ---- pinned maps --------------------------------------------------------------------------------

def _int_kind(ctype) -> tuple[int, bool]:
    """(size, signed) of a primitive cffi type."""
    name = ctype.cname
    signed = not (name.startswith("uint") or name.startswith("unsigned") or name in ("_Bool", "bool"))
    return ffi.sizeof(ctype), signed


class PinnedMap:
    """A map opened from its pin. Keys and values are accepted as bytes, int (for integer types),
    dict or cdata; returned as int for integer types, else as an owning cdata pointer. Per-CPU
    maps return one value per possible CPU."""

    def __init__(self, path: str | os.PathLike, decl: MapDecl | None = None, fd: int | None = None,
                 typed: bool = True):
        """typed=False: metadata only (id, info), no layout from maps.h needed or checked."""
        self.path = str(path)
        self.fd = libbpf.obj_get(self.path) if fd is None else os.dup(fd)
        try:
            self.info = libbpf.map_info(self.fd)
        except BaseException:
            os.close(self.fd)
            raise
        self.name = self.info.name.decode()
        self.decl = (decl or DECLS.get(self.name)) if typed else None
        self.percpu = self.info.type in libbpf.PERCPU_TYPES
        self.ncpus = libbpf.possible_cpus() if self.percpu else 1
        self.stride = (self.info.value_size + 7) // 8 * 8 if self.percpu else self.info.value_size
        self.value_len = self.stride * self.ncpus if self.percpu else self.info.value_size
        self.key_ctype = ffi.typeof(self.decl.key_type) if self.decl else None
        self.value_ctype = ffi.typeof(self.decl.value_type) if self.decl else None
        if self.decl and (ffi.sizeof(self.key_ctype), ffi.sizeof(self.value_ctype)) != (
                self.info.key_size, self.info.value_size):
            os.close(self.fd)
            raise LayoutMismatch(
                f"{self.path}: the pinned map has {self.info.key_size}/{self.info.value_size}-byte "
                f"keys/values "
                f"but bpf/xdpstack.h says {ffi.sizeof(self.key_ctype)}/{ffi.sizeof(self.value_ctype)}: "
                f"it was built from another version of the header; detach and attach again")

    @classmethod
    def from_fd(cls, fd: int, decl: MapDecl | None = None) -> PinnedMap:
        """Typed access through a map fd we already hold (duplicated; the caller keeps its own)."""
        return cls(f"fd:{fd}", decl, fd=fd)

    # -- life cycle
    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PinnedMap:
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def type_name(self) -> str:
        return libbpf.MAP_TYPE_NAMES.get(self.info.type, f"type {self.info.type}")

    # -- conversions
    def _pack(self, ctype, v, size: int) -> bytes:
        if isinstance(v, (bytes, bytearray)):
            b = bytes(v)
        elif isinstance(v, int):
            _, signed = _int_kind(ctype) if ctype is not None and ctype.kind == "primitive" else (size, False)
            b = v.to_bytes(size, sys.byteorder, signed=signed)
        elif isinstance(v, dict):
            b = bytes(ffi.buffer(ffi.new(ffi.getctype(ctype, "*"), v)))
        else:                                   # cdata pointer to the type
            b = bytes(ffi.buffer(v, size))
        if len(b) != size:
            raise ValueError(f"{self.name}: expected {size} bytes, got {len(b)}")
        return b

    def _unpack(self, ctype, b: bytes):
        if ctype is None:
            return b
        if ctype.kind == "primitive":
            _, signed = _int_kind(ctype)
            return int.from_bytes(b, sys.byteorder, signed=signed)
        p = ffi.new(ffi.getctype(ctype, "*"))
        ffi.memmove(p, b, len(b))
        return p

    def key_bytes(self, key) -> bytes:
        return self._pack(self.key_ctype, key, self.info.key_size)

    def value_bytes(self, value) -> bytes:
        """A value for update(); per-CPU maps get the same value on every CPU (like bpftool)."""
        if self.percpu and isinstance(value, list):
            parts = [self._pack(self.value_ctype, v, self.info.value_size) for v in value]
        else:
            parts = [self._pack(self.value_ctype, value, self.info.value_size)] * self.ncpus
        pad = b"\0" * (self.stride - self.info.value_size)
        return b"".join(p + pad for p in parts) if self.percpu else parts[0]

    def _values(self, raw: bytes):
        if not self.percpu:
            return self._unpack(self.value_ctype, raw)
        n = self.info.value_size
        s = self.stride
        return [self._unpack(self.value_ctype, raw[i * s:i * s + n]) for i in range(self.ncpus)]

    # -- raw access
    def lookup_raw(self, key: bytes) -> bytes | None:
        return libbpf.map_lookup(self.fd, key, self.value_len)

    def keys_raw(self) -> Iterator[bytes]:
        k = None
        while True:
            k = libbpf.map_next_key(self.fd, k, self.info.key_size)
            if k is None:
                return
            yield k

    # -- typed access
    def get(self, key):
        raw = self.lookup_raw(self.key_bytes(key))
        return None if raw is None else self._values(raw)

    def update(self, key, value, flags: int = libbpf.BPF_ANY) -> None:
        libbpf.map_update(self.fd, self.key_bytes(key), self.value_bytes(value), flags)

    def delete(self, key) -> bool:
        return libbpf.map_delete(self.fd, self.key_bytes(key))

    def keys(self) -> Iterator:
        for k in list(self.keys_raw()):
            yield self._unpack(self.key_ctype, k)

    def items(self) -> Iterator[tuple]:
        """(key, value) for every entry that can be read (hash order, like bpftool)."""
        for k in list(self.keys_raw()):
            raw = self.lookup_raw(k)
            if raw is not None:
                yield self._unpack(self.key_ctype, k), self._values(raw)

    def sum(self, key) -> dict[str, int]:
        """Per-CPU struct value summed over CPUs, as {field: total}; zeros when there is no entry."""
        fields = [name for name, _ in self.value_ctype.fields]
        out = dict.fromkeys(fields, 0)
        for v in self.get(key) or []:
            for f in fields:
                out[f] += getattr(v, f)
        return out


def open_map(ifname: str, name: str) -> PinnedMap:
    """The pinned map `name` of interface `ifname` in the current network namespace."""
    if name not in DECLS:
        raise UsageError(f"no map {name!r}: xdpstack's maps are {', '.join(MAP_NAMES)}")
    nsstate.ensure()
    path = paths.pin_dir(ifname) / name
    try:
        return PinnedMap(path)
    except FileNotFoundError:
        raise NotAttached(f"{ifname} is not attached (no pin at {path}): "
                          f"run `xdpstack attach {ifname}`") from None


def map_pins(ifname: str) -> list[Path]:
    """Pin paths of the maps of `ifname` that exist, in maps.h order."""
    nsstate.ensure()
    d = paths.pin_dir(ifname)
    return [d / n for n in MAP_NAMES if (d / n).exists()]


# ---- bpftool's JSON writer (json_writer.c), reproduced ------------------------------------------

class JsonWriter:
    """Port of bpftool's json_writer: same separators, indentation and escaping."""

    def __init__(self, out: list[str], pretty: bool = False):
        self.out, self.pretty, self.depth, self.sep = out, pretty, 0, ""

    def _eol(self):
        if self.pretty:
            self.out.append("\n" + "    " * self.depth)

    def _eor(self):
        if self.sep:
            self.out.append(self.sep)
        self.sep = ","

    @staticmethod
    def quote(s: str) -> str:
        # json_writer.c's jsonw_puts: note '\\' becomes "\n" there, and so here.
        return '"' + s.translate(_ESCAPES) + '"'

    def _begin(self, c: str):
        self._eor()
        self.out.append(c)
        self.depth += 1
        self.sep = ""

    def _end(self, c: str):
        self.depth -= 1
        if self.sep:
            self._eol()
        self.out.append(c)
        self.sep = ","

    def start_object(self):
        self._begin("{")

    def end_object(self):
        self._end("}")

    def start_array(self):
        self._begin("[")

    def end_array(self):
        self._end("]")

    def name(self, name: str):
        self._eor()
        self._eol()
        self.sep = ""
        self.out.append(self.quote(name) + (": " if self.pretty else ":"))

    def printf(self, text: str):
        self._eor()
        self.out.append(text)

    def string(self, s: str):
        self._eor()
        self.out.append(self.quote(s))

    def array_of(self, items: list[str]):
        """start_array, printf(item) for each, end_array; in one go."""
        self._eor()
        if items:
            self.out.append("[" + ",".join(items))
            if self.pretty:
                self.out.append("\n" + "    " * self.depth)
            self.out.append("]")
        else:
            self.out.append("[]")
        self.sep = ","

    def destroy(self):
        self.out.append("\n")


_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\b": "\\b",
                          "\\": "\\n", '"': '\\"'})
_HEXJ = [f'"0x{b:02x}"' for b in range(256)]


def fprint_hex(data: bytes, sep: str = " ") -> str:
    """bpftool's fprint_hex: 8 bytes, two spaces, 8 bytes, newline every 16."""
    out = []
    for i, b in enumerate(data):
        if not i:
            pfx = ""
        elif i % 16 == 0:
            pfx = "\n"
        elif i % 8 == 0:
            pfx = "  "
        else:
            pfx = sep
        out.append(f"{pfx}{b:02x}")
    return "".join(out)


# ---- btf_dumper, driven by the cffi layouts -----------------------------------------------------

def _is_str_array(data: bytes) -> bool:
    for b in data:
        if b == 0:
            return True
        if b <= 0x1F or b >= 0x7F:
            return False
    return False


def _compile_renderer(ctype):
    """fn(data, offset, depth, pretty) -> the JSON text btf_dumper writes for a value of ctype, as
    bpftool's json writer lays it out when the value starts at nesting `depth`."""
    kind = ctype.kind
    if kind == "primitive":
        size, signed = _int_kind(ctype)
        if ctype.cname in ("_Bool", "bool"):
            return lambda d, o, depth, pretty: "true" if d[o] else "false"
        order = sys.byteorder
        return lambda d, o, depth, pretty: str(int.from_bytes(d[o:o + size], order, signed=signed))
    if kind == "array":
        item, n = ctype.item, ctype.length
        isz = ffi.sizeof(item)
        if item.kind == "primitive" and item.cname not in ("_Bool", "bool"):
            _, isigned = _int_kind(item)
            is_char = item.cname == "char"
            order = sys.byteorder

            def render_int_array(d, o, depth, pretty):
                chunk = d[o:o + n * isz]
                if is_char and _is_str_array(chunk):
                    return JsonWriter.quote(chunk[:chunk.index(0)].decode("ascii"))
                items = ",".join(str(int.from_bytes(chunk[i * isz:(i + 1) * isz], order, signed=isigned))
                                 for i in range(n))
                return "[" + items + ("\n" + "    " * depth if pretty and n else "") + "]"
            return render_int_array
        sub = _compile_renderer(item)

        def render_array(d, o, depth, pretty):
            items = ",".join(sub(d, o + i * isz, depth + 1, pretty) for i in range(n))
            return "[" + items + ("\n" + "    " * depth if pretty and n else "") + "]"
        return render_array
    if kind == "struct":
        members = [(JsonWriter.quote(name), f.offset, _compile_renderer(f.type)) for name, f in ctype.fields]

        def render_struct(d, o, depth, pretty):
            if not members:
                return "{}"
            if pretty:
                ind = "\n" + "    " * (depth + 1)
                body = ",".join(ind + q + ": " + f(d, o + off, depth + 1, True) for q, off, f in members)
                return "{" + body + "\n" + "    " * depth + "}"
            return "{" + ",".join(q + ":" + f(d, o + off, depth + 1, False) for q, off, f in members) + "}"
        return render_struct
    if kind == "enum":
        size = ffi.sizeof(ctype)
        names = {v: k for k, v in ctype.elements.items()}

        def render_enum(d, o, depth, pretty):
            v = int.from_bytes(d[o:o + size], sys.byteorder, signed=True)
            return f'"{names[v]}"' if v in names else str(v)
        return render_enum
    raise ValueError(f"no bpftool rendering for {ctype.cname}")


_FORMATTERS: dict = {}


def _formatter(ctype):
    """fn(writer, data, offset): write a value of ctype at the writer's position."""
    f = _FORMATTERS.get(ctype)
    if f is None:
        render = _compile_renderer(ctype)
        f = _FORMATTERS[ctype] = lambda w, d, o: w.printf(render(d, o, w.depth, w.pretty))
    return f


# ---- map dump ----------------------------------------------------------------------------------

class _Memo(dict):
    """A small cache of rendered text by raw bytes: array maps are mostly identical (zero) values."""

    def get_or(self, key, make):
        v = self.get(key)
        if v is None:
            if len(self) > 65536:
                self.clear()
            v = self[key] = make()
        return v


def _dump(path: str, json_output: bool) -> str:
    """bpftool's do_dump()/map_dump() for one map. Entries are laid out as bpftool's json writer
    lays them out (see JsonWriter), built as strings for speed: a 262,144-entry array is 95 MB."""
    out: list[str] = []
    with PinnedMap(path) as m:
        info = m.info
        # get_map_kv_btf(): the formatted view needs the value's BTF type
        btf = bool(info.btf_vmlinux_value_type_id or info.btf_value_type_id)
        if btf and m.decl is None:
            raise ValueError(f"{path}: map {m.name!r} is not one of xdpstack's maps: no layout to render")
        if json_output:
            wtr = JsonWriter(out, pretty=False)
        else:
            wtr = JsonWriter(out, pretty=True) if info.btf_id else None
        rkey = _compile_renderer(m.key_ctype) if btf and info.btf_key_type_id else None
        rval = _compile_renderer(m.value_ctype) if btf else None
        ks, vs, ncpu, step = info.key_size, info.value_size, m.ncpus, m.stride
        hexes, vals = _Memo(), _Memo()

        def hexarr(b: bytes) -> str:
            return hexes.get_or(b, lambda: "[" + ",".join([_HEXJ[x] for x in b]) + "]")

        def fval(b: bytes, depth: int, pretty: bool) -> str:
            return vals.get_or((b, depth), lambda: rval(b, 0, depth, pretty))

        def formatted(key: bytes, value: bytes, depth: int, pretty: bool) -> str:
            """do_dump_btf(): the object {"key": ..., "value"/"values": ...} at nesting `depth`."""
            if pretty:
                i1, i2, i3 = ("\n" + "    " * (depth + k) for k in (1, 2, 3))
                parts = [i1 + '"key": ' + rkey(key, 0, depth + 1, True)] if rkey else []
                if not m.percpu:
                    parts.append(i1 + '"value": ' + fval(value[:vs], depth + 1, True))
                else:
                    cpus = [("{" + i3 + f'"cpu": {i},' + i3 + '"value": '
                             + fval(value[i * step:i * step + vs], depth + 3, True) + i2 + "}")
                            for i in range(ncpu)]
                    parts.append(i1 + '"values": [' + ",".join(cpus) + i1 + "]")
                return "{" + ",".join(parts) + "\n" + "    " * depth + "}"
            parts = ['"key":' + rkey(key, 0, 0, False)] if rkey else []
            if not m.percpu:
                parts.append('"value":' + fval(value[:vs], 0, False))
            else:
                parts.append('"values":[' + ",".join(
                    f'{{"cpu":{i},"value":' + fval(value[i * step:i * step + vs], 0, False) + "}"
                    for i in range(ncpu)) + "]")
            return "{" + ",".join(parts) + "}"

        def entry_json(key: bytes, value: bytes) -> str:
            """print_entry_json(), compact."""
            s = '{"key":' + hexarr(key)
            if not m.percpu:
                s += ',"value":' + hexarr(value[:vs])
            else:
                s += ',"values":[' + ",".join(
                    f'{{"cpu":{i},"value":' + hexarr(value[i * step:i * step + vs]) + "}"
                    for i in range(ncpu)) + "]"
            if btf:
                s += ',"formatted":' + formatted(key, value, 1, False)
            return s + "}"

        def entry_plain(key: bytes, value: bytes) -> str:
            """print_entry_plain()."""
            if not m.percpu:
                break_names = ks > 16 or vs > 16
                single_line = ks + vs <= 24 and not break_names
                s = ""
                if ks:
                    s += ("key:" + ("\n" if break_names else " ") + fprint_hex(key)
                          + ("  " if single_line else "\n"))
                if vs:
                    s += "value:" + ("\n" if break_names else " ") + fprint_hex(value[:vs])
                return s + "\n"
            s = "key:\n" + fprint_hex(key) + "\n" if ks else ""
            if vs:
                for i in range(ncpu):
                    s += (f"value (CPU {i:02d}):" + ("\n" if vs > 16 else " ")
                          + fprint_hex(value[i * step:i * step + vs]) + "\n")
            return s

        def entry_error(key: bytes, err: int):
            """print_entry_error()."""
            if info.type in libbpf.MAP_OF_MAPS_TYPES | libbpf.PROG_ARRAY_TYPES and err == errno.ENOENT:
                return
            if json_output:
                error = JsonWriter.quote(os.strerror(err))
                wtr.printf('{"key":' + hexarr(key) + ',"value":{"error":' + error + "}}")
                return
            msg = "<no entry>" if err == errno.ENOENT else (
                "<cannot read>" if err == errno.ENOSPC and info.type == 20 else os.strerror(err))
            break_names = ks > 16 or len(msg) > 16
            single_line = ks + len(msg) <= 24 and not break_names
            out.append("key:" + ("\n" if break_names else " ") + fprint_hex(key)
                       + ("  " if single_line else "\n")
                       + "value:" + ("\n" if break_names else " ") + msg + "\n")

        if wtr:
            wtr.start_array()
        num = 0
        for key, err, value in libbpf.map_entries(m.fd, ks, m.value_len):
            if err:
                entry_error(key, err)
                continue
            num += 1
            if json_output:
                wtr.printf(entry_json(key, value))
            elif btf:
                wtr.printf(formatted(key, value, wtr.depth, True))
            else:
                out.append(entry_plain(key, value))
        if wtr:
            wtr.end_array()
            wtr.destroy()              # jsonw_destroy(): the final newline
        else:
            out.append(f"Found {num} element{'s' if num != 1 else ''}\n")
    return "".join(out)


def dump_json(path: str | os.PathLike) -> str:
    """Exactly what `bpftool -j map dump pinned PATH` writes to stdout."""
    return _dump(str(path), json_output=True)


def dump_text(path: str | os.PathLike) -> str:
    """Exactly what `bpftool map dump pinned PATH` writes to stdout."""
    return _dump(str(path), json_output=False)


# ---- map show ----------------------------------------------------------------------------------

def _show(m: PinnedMap, w: JsonWriter | None, out: list[str], pinned: list[str] | None):
    info = m.info
    fdi = libbpf.fdinfo(m.fd)
    memlock, frozen = fdi.get("memlock"), int(fdi.get("frozen", "0") or 0)
    name = info.name.decode()
    if w is not None:                          # show_map_close_json()
        w.start_object()
        w.name("id")
        w.printf(str(info.id))
        if info.type in libbpf.MAP_TYPE_NAMES:
            w.name("type")
            w.string(libbpf.MAP_TYPE_NAMES[info.type])
        else:
            w.name("type")
            w.printf(str(info.type))
        if name:
            w.name("name")
            w.string(name)
        w.name("flags")
        w.printf(str(info.map_flags))
        for k, v in (("bytes_key", info.key_size), ("bytes_value", info.value_size),
                     ("max_entries", info.max_entries)):
            w.name(k)
            w.printf(str(v))
        if memlock is not None:
            w.name("bytes_memlock")
            w.printf(str(int(memlock)))
        w.name("frozen")
        w.printf(str(frozen))
        if info.btf_id:
            w.name("btf_id")
            w.printf(str(info.btf_id))
        if pinned is not None:
            w.name("pinned")
            w.start_array()
            for p in pinned:
                w.string(p)
            w.end_array()
        w.end_object()
        return
    s = f"{info.id}: "                         # show_map_close_plain()
    tname = libbpf.MAP_TYPE_NAMES.get(info.type)
    s += f"{tname}  " if tname else f"type {info.type}  "
    if name:
        s += f"name {name}  "
    s += f"flags 0x{info.map_flags:x}\n"
    s += f"\tkey {info.key_size}B  value {info.value_size}B  max_entries {info.max_entries}"
    if memlock is not None:
        s += f"  memlock {memlock}B"
    for p in pinned or []:
        s += f"\n\tpinned {p}"
    if info.btf_id or frozen:
        s += "\n\t"
    if info.btf_id:
        s += f"btf_id {info.btf_id}"
    if frozen:
        s += ("  " if info.btf_id else "") + "frozen"
    out.append(s + "\n")


def show_text(path: str | os.PathLike, show_pinned: bool = True) -> str:
    """`bpftool [-f] map show pinned PATH` (-f: with the pinned line)."""
    out: list[str] = []
    with PinnedMap(path, typed=False) as m:
        _show(m, None, out, [str(path)] if show_pinned else None)
    return "".join(out)


def show_json(path: str | os.PathLike, show_pinned: bool = True) -> str:
    """`bpftool -j [-f] map show pinned PATH`."""
    out: list[str] = []
    w = JsonWriter(out)
    with PinnedMap(path, typed=False) as m:
        _show(m, w, out, [str(path)] if show_pinned else None)
    w.destroy()
    return "".join(out)


def list_maps(ifnames: str | list[str], json_output: bool = False) -> str:
    """The maps of the interfaces like `bpftool [-j] -f map show` prints them (by id, with pin paths)."""
    pins = [p for n in ([ifnames] if isinstance(ifnames, str) else ifnames) for p in map_pins(n)]
    opened = []
    try:
        for p in pins:
            opened.append(PinnedMap(p, typed=False))
    except BaseException:
        for m in opened:
            m.close()
        raise
    try:
        opened.sort(key=lambda m: m.id)
        out: list[str] = []
        w = JsonWriter(out) if json_output else None
        if w:
            w.start_array()
        for m in opened:
            _show(m, w, out, [m.path])
        if w:
            w.end_array()
            w.destroy()
        return "".join(out)
    finally:
        for m in opened:
            m.close()
