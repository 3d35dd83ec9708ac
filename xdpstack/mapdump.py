"""Dumps of pinned maps that print exactly what bpftool prints.

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
import sys

from xdpstack import libbpf
from xdpstack.layout import ffi
from xdpstack.maps import PinnedMap, int_kind, map_pins

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
        size, signed = int_kind(ctype)
        if ctype.cname in ("_Bool", "bool"):
            return lambda d, o, depth, pretty: "true" if d[o] else "false"
        order = sys.byteorder
        return lambda d, o, depth, pretty: str(int.from_bytes(d[o:o + size], order, signed=signed))
    if kind == "array":
        item, n = ctype.item, ctype.length
        isz = ffi.sizeof(item)
        if item.kind == "primitive" and item.cname not in ("_Bool", "bool"):
            _, isigned = int_kind(item)
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
