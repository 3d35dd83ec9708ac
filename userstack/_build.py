"""cffi builder for userstack._fastpath (out-of-line API mode).

The C fast path lives in userstack/csrc; this module compiles it into one extension together with
Python bindings for its public headers. The cdef is derived from the headers themselves (comments,
preprocessor lines other than integer #defines, static inline bodies and static asserts removed),
so a declaration is written once.

    python userstack/_build.py          # build in place (writes userstack/_fastpath*.so)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
# Order matters: a header's types before their use. Paths relative to userstack/csrc.
HEADERS = ["base/addr.h", "base/env.h", "base/capring.h", "stack/ctl.h", "dev/netdev.h", "tcp/tcp_stats.h",
           "dev/xdp_stats.h", "api.h", "dev/xsk.h", "base/wire.h", "dev/memdev.h", "stack/testing.h",
           "dev/fault.h", "stack/faults.h"]


def read_sources(path: Path = CSRC / "SOURCES") -> list[str]:
    """The C sources of the stack (userstack/csrc/SOURCES, shared with userstack/csrc/Makefile)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


SOURCES = read_sources()
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-fno-strict-aliasing"]


def _strip_static_inline(text: str) -> str:
    out, i = [], 0
    while True:
        j = text.find("static inline", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = text.index("{", j)
        depth = 0
        while True:
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1


def header_cdef(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = _strip_static_inline(text)
    text = re.sub(r"_Static_assert\([^;]*\);", "", text)
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            m = re.match(r"#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)(ull|u)?\s*$", s)
            if m:
                lines.append(f"#define {m.group(1)} {int(m.group(2), 0)}")
            continue
        lines.append(line)
    return "\n".join(lines)


def cdef_text() -> str:
    text = "\n".join(header_cdef((CSRC / h).read_text()) for h in HEADERS)
    # cffi wants array sizes as numbers: substitute the integer #defines seen above.
    consts = dict(re.findall(r"#define (\w+) (\d+)", text))
    return re.sub(r"\[(\w+)\]", lambda m: f"[{consts.get(m.group(1), m.group(1))}]", text)


ffibuilder = cffi.FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "userstack._fastpath",
    # Warnings are errors in our sources; cffi's generated glue is compiled with these relaxed.
    '#pragma GCC diagnostic ignored "-Wunused-parameter"\n'
    '#pragma GCC diagnostic ignored "-Wmissing-field-initializers"\n'
    + "".join(f'#include "{h}"\n' for h in HEADERS),
    # relative to the project root: setuptools refuses absolute paths
    sources=[f"userstack/csrc/{s}" for s in SOURCES],
    include_dirs=["userstack/csrc"],
    libraries=["xdp", "bpf", "pcap", "pthread"],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    import os
    os.chdir(HERE.parent)
    # tmpdir "." builds in place: userstack/_fastpath.c and the extension next to this file.
    print("built", ffibuilder.compile(tmpdir=".", verbose="-v" in sys.argv))
