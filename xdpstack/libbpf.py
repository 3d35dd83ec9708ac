"""The few bpf(2) and XDP calls the control plane makes, through libbpf.so.1 and ctypes.

No compiler here: any process (CLI, launcher, tests) opens pinned objects and reads or writes maps
with these. libbpf 1.x returns -errno (and sets errno); every wrapper raises OSError instead.
The kernel structs below are prefixes of <linux/bpf.h> ones: the kernel copies min(sizes), and a
zero tail beyond what it knows is accepted.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8

# bpf_map_type values we meet, named as libbpf's libbpf_bpf_map_type_str() names them.
MAP_TYPE_NAMES = {
    1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash",
    6: "percpu_array", 7: "stack_trace", 8: "cgroup_array", 9: "lru_hash", 10: "lru_percpu_hash",
    11: "lpm_trie", 12: "array_of_maps", 13: "hash_of_maps", 14: "devmap", 15: "sockmap",
    16: "cpumap", 17: "xskmap", 18: "sockhash", 19: "cgroup_storage", 20: "reuseport_sockarray",
    21: "percpu_cgroup_storage", 22: "queue", 23: "stack", 24: "sk_storage", 25: "devmap_hash",
    26: "struct_ops", 27: "ringbuf", 28: "inode_storage", 29: "task_storage", 30: "bloom_filter",
    31: "user_ringbuf", 32: "cgrp_storage",
}
PERCPU_TYPES = {5, 6, 10, 21}          # values are per possible CPU
MAP_OF_MAPS_TYPES = {12, 13}
PROG_ARRAY_TYPES = {3}

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2

XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_SKB_MODE = 2
XDP_FLAGS_DRV_MODE = 4
XDP_FLAGS_REPLACE = 16

BPF_FS_MAGIC = 0xCAFE4A11


class MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN), ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64), ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32), ("_pad", ctypes.c_uint32), ("map_extra", ctypes.c_uint64),
    ]


class ProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32), ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class MapCreateOpts(ctypes.Structure):      # a prefix of libbpf's struct bpf_map_create_opts
    _fields_ = [("sz", ctypes.c_size_t), ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32)]


class XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int), ("_pad", ctypes.c_int)]


def _load():
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        lib = ctypes.CDLL(name, use_errno=True)
    c = ctypes
    sig = {
        "bpf_obj_get": (c.c_int, [c.c_char_p]),
        "bpf_obj_pin": (c.c_int, [c.c_int, c.c_char_p]),
        "bpf_map_lookup_elem": (c.c_int, [c.c_int, c.c_void_p, c.c_void_p]),
        "bpf_map_update_elem": (c.c_int, [c.c_int, c.c_void_p, c.c_void_p, c.c_uint64]),
        "bpf_map_delete_elem": (c.c_int, [c.c_int, c.c_void_p]),
        "bpf_map_get_next_key": (c.c_int, [c.c_int, c.c_void_p, c.c_void_p]),
        "bpf_obj_get_info_by_fd": (c.c_int, [c.c_int, c.c_void_p, c.POINTER(c.c_uint32)]),
        "bpf_prog_get_fd_by_id": (c.c_int, [c.c_uint32]),
        "bpf_map_get_fd_by_id": (c.c_int, [c.c_uint32]),
        "bpf_xdp_attach": (c.c_int, [c.c_int, c.c_int, c.c_uint32, c.POINTER(XdpAttachOpts)]),
        "bpf_map_create": (c.c_int, [c.c_int, c.c_char_p, c.c_uint32, c.c_uint32, c.c_uint32, c.c_void_p]),
        "bpf_map_freeze": (c.c_int, [c.c_int]),
        "bpf_btf_load": (c.c_int, [c.c_void_p, c.c_size_t, c.c_void_p]),
        "libbpf_num_possible_cpus": (c.c_int, []),
    }
    for fn, (res, args) in sig.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


_lib = _load()


def _check(rc: int, what: str, path: str | None = None) -> int:
    if rc < 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return rc


def obj_get(path: str) -> int:
    """fd of a pinned map or program."""
    return _check(_lib.bpf_obj_get(os.fsencode(path)), "bpf_obj_get", path)


def obj_pin(fd: int, path: str) -> None:
    _check(_lib.bpf_obj_pin(fd, os.fsencode(path)), "bpf_obj_pin", path)


def btf_load(blob: bytes) -> int:
    """fd of BTF type information (a raw .BTF section: header, types, strings)."""
    buf = ctypes.create_string_buffer(blob, len(blob))
    return _check(_lib.bpf_btf_load(buf, len(blob), None), "bpf_btf_load")


def map_create(map_type: int, name: str, key_size: int, value_size: int, max_entries: int,
               btf: tuple[int, int, int] | None = None) -> int:
    """fd of a new map; btf = (BTF fd, key type id, value type id) for bpftool's formatted view."""
    opts = None
    if btf:
        opts = ctypes.byref(MapCreateOpts(ctypes.sizeof(MapCreateOpts), *btf))
    return _check(_lib.bpf_map_create(map_type, name.encode(), key_size, value_size, max_entries, opts),
                  f"bpf_map_create({name})")


def map_freeze(fd: int) -> None:
    """No more writes from user space (bpftool shows the map as frozen)."""
    _check(_lib.bpf_map_freeze(fd), "bpf_map_freeze")


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)), "bpf_obj_get_info_by_fd")
    return info


def prog_info(fd: int) -> ProgInfo:
    info = ProgInfo()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)), "bpf_obj_get_info_by_fd")
    return info


def prog_fd_by_id(prog_id: int) -> int:
    return _check(_lib.bpf_prog_get_fd_by_id(prog_id), f"bpf_prog_get_fd_by_id({prog_id})")


def map_lookup(fd: int, key: bytes, value_len: int) -> bytes | None:
    """The value (value_len bytes: value_size, or per-CPU stride x CPUs), None if there is no entry.
    Other errors (EOPNOTSUPP on an XSKMAP, ...) raise OSError."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value_len)
    rc = _lib.bpf_map_lookup_elem(fd, kbuf, vbuf)
    if rc < 0:
        err = ctypes.get_errno() or -rc
        if err == 2:
            return None
        raise OSError(err, f"bpf_map_lookup_elem: {os.strerror(err)}")
    return vbuf.raw


def map_lookup_errno(fd: int, key: bytes, value_len: int) -> tuple[int, bytes]:
    """(0, value) or (errno, b""): for dumps, which print the error per entry like bpftool."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value_len)
    rc = _lib.bpf_map_lookup_elem(fd, kbuf, vbuf)
    if rc < 0:
        return ctypes.get_errno() or -rc, b""
    return 0, vbuf.raw


def map_entries(fd: int, key_size: int, value_len: int):
    """(key, errno, value) for every key, in get_next_key order, the way bpftool walks a map:
    errno is 0 with the value, or the lookup's error (EOPNOTSUPP on an XSKMAP...) with b""."""
    nxt = ctypes.create_string_buffer(key_size)
    vbuf = ctypes.create_string_buffer(value_len)
    prev = None
    get_next, lookup = _lib.bpf_map_get_next_key, _lib.bpf_map_lookup_elem
    while True:
        if get_next(fd, prev, nxt) < 0:
            err = ctypes.get_errno()
            if err == 2:
                return
            raise OSError(err, f"bpf_map_get_next_key: {os.strerror(err)}")
        if lookup(fd, nxt, vbuf) < 0:
            yield nxt.raw, ctypes.get_errno(), b""
        else:
            yield nxt.raw, 0, vbuf.raw
        prev = nxt                     # the kernel copies the key in before writing the next one


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value, len(value))
    _check(_lib.bpf_map_update_elem(fd, kbuf, vbuf, flags), "bpf_map_update_elem")


def map_delete(fd: int, key: bytes) -> bool:
    """True if an entry was deleted, False if there was none."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    rc = _lib.bpf_map_delete_elem(fd, kbuf)
    if rc < 0:
        err = ctypes.get_errno() or -rc
        if err == 2:
            return False
        raise OSError(err, f"bpf_map_delete_elem: {os.strerror(err)}")
    return True


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after `key` (the first key for None); None at the end."""
    nbuf = ctypes.create_string_buffer(key_size)
    kbuf = None if key is None else ctypes.create_string_buffer(key, len(key))
    rc = _lib.bpf_map_get_next_key(fd, kbuf, nbuf)
    if rc < 0:
        err = ctypes.get_errno() or -rc
        if err == 2:
            return None
        raise OSError(err, f"bpf_map_get_next_key: {os.strerror(err)}")
    return nbuf.raw


def xdp_attach(ifindex: int, prog_fd: int, flags: int, old_prog_fd: int | None = None) -> None:
    """Attach (prog_fd >= 0) or detach (prog_fd -1). With old_prog_fd, only if that program is
    the one attached (XDP_FLAGS_REPLACE): we never remove a program that raced in meanwhile."""
    opts = None
    if old_prog_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        opts = ctypes.pointer(XdpAttachOpts(sz=ctypes.sizeof(XdpAttachOpts), old_prog_fd=old_prog_fd))
    _check(_lib.bpf_xdp_attach(ifindex, prog_fd, flags, opts), "bpf_xdp_attach")


def possible_cpus() -> int:
    """Number of possible CPUs: per-CPU values have this many slots (like bpftool's count)."""
    n = _lib.libbpf_num_possible_cpus()
    if n > 0:
        return n
    return _possible_from_sysfs()


def _possible_from_sysfs() -> int:
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def fdinfo(fd: int) -> dict[str, str]:
    """/proc/self/fdinfo/FD as a dict (memlock, frozen, map_id, ...)."""
    out = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


_libc = ctypes.CDLL(None, use_errno=True)


def is_bpffs(path: str) -> bool:
    st = _Statfs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(st)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return (st.f_type & 0xFFFFFFFF) == BPF_FS_MAGIC


def mount_bpffs(path: str) -> None:
    if _libc.mount(b"bpf", os.fsencode(path), b"bpf", 0, b"mode=0700") != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t bpf bpf {path}: {os.strerror(err)}", path)


def setns(fd: int, nstype: int = 0x40000000) -> None:
    """setns(2) for the calling thread (default CLONE_NEWNET); os.setns is Python 3.12+."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")
