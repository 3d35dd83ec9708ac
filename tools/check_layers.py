#!/usr/bin/env python3
"""Check the layers of userstack/csrc (userstack/csrc/LAYERS): every C file includes only headers
of its own layer and of the layers it may use, and (with --objects) its object calls only
functions defined there, and the files of an acyclic layer never call each other in a circle.
One line per violation; exit status 1 when there is any.

    tools/check_layers.py                                   # the include graph
    make -C userstack/csrc && tools/check_layers.py --objects userstack/csrc/build
    tools/check_layers.py --objects userstack/csrc/build --cycles   # also list file-level call cycles

Python 3 standard library only (and binutils' nm for --objects).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "userstack" / "csrc"
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
C_FILE = (".c", ".h")


@dataclass
class Layer:
    name: str
    paths: list[str]                    # folders (ending in /) or files, relative to the root
    uses: set[str] = field(default_factory=set)
    line: int = 0
    acyclic: bool = False               # its files must not call each other in a circle


def parse_layers(text: str) -> tuple[list[Layer], list[str]]:
    """LAYERS: `NAME FILES... : USES...` per line, and `acyclic : NAMES...`; '#' starts a comment."""
    layers, errors = [], []
    acyclic: list[tuple[int, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, sep, uses = line.partition(":")
        words = head.split()
        if sep and words == ["acyclic"]:
            acyclic += [(n, u) for u in uses.split()]
            continue
        if not sep or len(words) < 2:
            errors.append(f"LAYERS:{n}: expected 'NAME FILES... : USES...': {raw.strip()}")
            continue
        layers.append(Layer(words[0], words[1:], set(uses.split()), n))
    names = {la.name for la in layers}
    for la in layers:
        for u in sorted(la.uses - names):
            errors.append(f"LAYERS:{la.line}: layer {la.name} uses unknown layer {u}")
    for n, u in acyclic:
        if u not in names:
            errors.append(f"LAYERS:{n}: acyclic names unknown layer {u}")
        else:
            next(la for la in layers if la.name == u).acyclic = True
    return layers, errors


def layer_of(rel: str, layers: list[Layer]) -> Layer | None:
    """The layer whose path matches rel best (the longest folder, or the file itself)."""
    best, best_len = None, -1
    for la in layers:
        for p in la.paths:
            hit = rel.startswith(p) if p.endswith("/") else rel == p
            if hit and len(p) > best_len:
                best, best_len = la, len(p)
    return best


def c_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in C_FILE
                  and "build" not in p.relative_to(root).parts)


def resolve(root: Path, src: Path, inc: str) -> Path | None:
    """Where `#include "inc"` in src lands: next to src first, then -I root (as the builds do)."""
    for base in (src.parent, root):
        p = (base / inc).resolve()
        if p.is_file():
            return p
    return None


def check_includes(root: Path, layers: list[Layer]) -> list[str]:
    out = []
    root = root.resolve()
    for src in c_files(root):
        rel = src.relative_to(root).as_posix()
        la = layer_of(rel, layers)
        if la is None:
            out.append(f"{rel}: belongs to no layer of LAYERS")
            continue
        text = src.read_text(errors="replace")
        for m in INCLUDE.finditer(text):
            lineno = text.count("\n", 0, m.start()) + 1
            inc = m.group(1)
            tgt = resolve(root, src, inc)
            if tgt is None:
                out.append(f"{rel}:{lineno}: includes \"{inc}\", which is not in {root.name}/")
                continue
            try:
                trel = tgt.relative_to(root).as_posix()
            except ValueError:
                out.append(f"{rel}:{lineno}: includes \"{inc}\" from outside {root.name}/ ({tgt})")
                continue
            tl = layer_of(trel, layers)
            if tl is None:
                out.append(f"{rel}:{lineno}: includes {trel}, which belongs to no layer")
            elif tl.name != la.name and tl.name not in la.uses:
                out.append(f"{rel}:{lineno}: layer {la.name} includes {trel} of layer {tl.name} "
                           f"({la.name} may use: {' '.join(sorted(la.uses)) or 'nothing'})")
    return out


def declared_functions(text: str) -> set[str]:
    """Names a header declares as functions (comments, preprocessor lines and inline bodies out)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"^\s*#.*$", "", text, flags=re.M)
    while True:                                   # drop every {...} body, innermost first
        t = re.sub(r"\{[^{}]*\}", ";", text)
        if t == text:
            break
        text = t
    return {m.group(1) for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", text)}


def nm(obj: Path) -> tuple[set[str], set[str]]:
    """(defined global symbols, undefined symbols) of an object file."""
    r = subprocess.run(["nm", "-P", str(obj)], capture_output=True, text=True, check=True)
    defined, undefined = set(), set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper() or kind in "vw" and len(parts) > 2:
            defined.add(name)
    return defined, undefined


def call_graph(root: Path, objdir: Path, layers: list[Layer]):
    """{source: (layer, defined, undefined)} for every object under objdir that has a source."""
    objs = {}
    for o in sorted(objdir.rglob("*.o")):
        rel = o.relative_to(objdir).with_suffix(".c").as_posix()
        if not (root / rel).is_file():
            continue
        la = layer_of(rel, layers)
        if la is not None:
            objs[rel] = (la, *nm(o))
    return objs


def check_calls(root: Path, objdir: Path, layers: list[Layer]
                ) -> tuple[list[str], dict[str, set[str]], dict[tuple[str, str], set[str]]]:
    """(violations, file -> files it calls, (caller, callee) -> the functions called)."""
    root = root.resolve()
    objs = call_graph(root, objdir, layers)
    if not objs:
        return [f"{objdir}: no objects of {root.name}/ sources (build them first)"], {}, {}
    where = {}
    for rel, (_la, defined, _undef) in objs.items():
        for s in defined:
            where.setdefault(s, rel)
    with_sources = {layer_of(rel, layers).name for rel in
                    (f.relative_to(root).as_posix() for f in c_files(root) if f.suffix == ".c")
                    if layer_of(rel, layers)}
    # header-only layers (the public API): the functions their headers declare
    api_decls: dict[str, set[str]] = {}
    for la in layers:
        if la.name in with_sources:
            continue
        for f in c_files(root):
            rel = f.relative_to(root).as_posix()
            if layer_of(rel, layers) is la:
                api_decls.setdefault(la.name, set()).update(declared_functions(f.read_text()))
    out, edges, syms = [], {}, {}
    for rel, (la, _defined, undefined) in objs.items():
        for s in sorted(undefined):
            d = where.get(s)
            if d is None or d == rel:
                continue
            edges.setdefault(rel, set()).add(d)
            syms.setdefault((rel, d), set()).add(s)
            dl = objs[d][0]
            if dl.name == la.name or dl.name in la.uses:
                continue
            if any(s in api_decls.get(u, ()) for u in la.uses):
                continue
            out.append(f"{rel}: layer {la.name} calls {s}, defined in {d} of layer {dl.name} "
                       f"({la.name} may use: {' '.join(sorted(la.uses)) or 'nothing'})")
    return out, edges, syms


def check_acyclic(layers: list[Layer], edges: dict[str, set[str]],
                  syms: dict[tuple[str, str], set[str]]) -> list[str]:
    """A call cycle among the files of an acyclic layer: one line per cycle, with its calls."""
    out = []
    for la in layers:
        if not la.acyclic:
            continue
        inside = {a: {b for b in bs if layer_of(b, layers) is la}
                  for a, bs in edges.items() if layer_of(a, layers) is la}
        for comp in cycles(inside):
            calls = "; ".join(f"{a} -> {b}: {' '.join(sorted(syms[(a, b)]))}"
                              for a in comp for b in sorted(inside.get(a, ())) if b in comp)
            out.append(f"layer {la.name} (acyclic) has a call cycle: {' <-> '.join(comp)} ({calls}); "
                       f"a call back up goes through a pointer the caller above installs")
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    nodes = sorted(set(edges) | {d for ds in edges.values() for d in ds})

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(comps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="the C tree (default: userstack/csrc)")
    ap.add_argument("--layers", type=Path, help="the rule file (default: ROOT/LAYERS)")
    ap.add_argument("--objects", type=Path, help="also check calls: the objects built from ROOT, "
                    "at the same relative paths (userstack/csrc/build)")
    ap.add_argument("--cycles", action="store_true", help="with --objects: list file-level call cycles")
    a = ap.parse_args(argv)
    layers, errors = parse_layers((a.layers or a.root / "LAYERS").read_text())
    errors += check_includes(a.root, layers)
    edges = {}
    if a.objects:
        calls, edges, syms = check_calls(a.root, a.objects, layers)
        errors += calls + check_acyclic(layers, edges, syms)
    for e in errors:
        print(e)
    if a.cycles:
        for comp in cycles(edges):
            print("call cycle: " + " <-> ".join(comp))
    if errors:
        print(f"check_layers: {len(errors)} violation(s) of {a.layers or a.root / 'LAYERS'}", file=sys.stderr)
        return 1
    print(f"check_layers: {a.root.name}/ keeps its layers ({' < '.join(la.name for la in layers)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
