"""Typed access to the pinned maps, and dumps that print exactly what bpftool prints.

Any process reads and writes the state through the pins, without compiling anything:

    with open_map("eth0", "claims") as m:
        for key, value in m.items():            # cffi cdata of struct xs_tuple / struct xs_claim
            ...

Key and value types come from bpf/maps.h (which declares each map once) and their layouts from
bpf/xdpstack.h through layout.ffi: nothing here restates a field or an offset.

The bpftool-identical dumps of these maps are in mapdump.py.
"""
from __future__ import annotations

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

def int_kind(ctype) -> tuple[int, bool]:
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
            _, signed = int_kind(ctype) if ctype is not None and ctype.kind == "primitive" else (size, False)
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
            _, signed = int_kind(ctype)
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
