"""The layers of userstack/csrc (userstack/csrc/LAYERS) hold, and tools/check_layers.py sees a
breach: an upward include, and (on objects, through nm) a call from a lower layer into a higher."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "userstack" / "csrc"
CHECK = ROOT / "tools" / "check_layers.py"


def run(*args):
    return subprocess.run([sys.executable, str(CHECK), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_real_tree_keeps_its_layers():
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr


def tree(tmp_path):
    root = tmp_path / "csrc"
    shutil.copytree(CSRC, root, ignore=shutil.ignore_patterns("build", "fuzz"))
    return root


def test_upward_include_fails(tmp_path):
    root = tree(tmp_path)
    f = root / "base" / "timer.c"
    f.write_text('#include "../stack/stack.h"\n' + f.read_text())
    r = run("--root", root)
    assert r.returncode == 1
    (line,) = r.stdout.splitlines()
    assert line.startswith("base/timer.c:1: layer base includes stack/stack.h of layer stack"), line


def test_app_beside_the_api_fails(tmp_path):
    root = tree(tmp_path)
    f = root / "apps" / "net.h"
    f.write_text(f.read_text().replace('#include "../api.h"',
                                       '#include "../api.h"\n#include "../base/wire.h"'))
    r = run("--root", root)
    assert r.returncode == 1 and "apps/net.h:" in r.stdout and "layer base" in r.stdout, r.stdout


def test_upward_call_fails(tmp_path):
    if not shutil.which("nm") or not shutil.which("cc"):
        pytest.skip("needs cc and nm")
    root = tmp_path / "csrc"
    for d in ("base", "stack"):
        (root / d).mkdir(parents=True)
    (root / "LAYERS").write_text("base base/ :\nstack stack/ : base\n")
    (root / "base" / "low.c").write_text("int high(void);\nint low(void) { return high(); }\n")
    (root / "stack" / "high.c").write_text("int high(void) { return 1; }\n")
    objs = tmp_path / "build"
    for src in ("base/low.c", "stack/high.c"):
        (objs / src).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-c", str(root / src), "-o", str(objs / src.replace(".c", ".o"))], check=True)
    r = run("--root", root, "--objects", objs)
    assert r.returncode == 1
    assert r.stdout.startswith("base/low.c: layer base calls high, defined in stack/high.c"), r.stdout


def _objects(tmp_path, root, sources):
    objs = tmp_path / "build"
    for src in sources:
        (objs / src).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-c", str(root / src), "-o", str(objs / src.replace(".c", ".o"))], check=True)
    return objs


@pytest.mark.parametrize("acyclic", [True, False])
def test_call_cycle_in_an_acyclic_layer_fails(tmp_path, acyclic):
    """Two files of one layer calling each other: a breach only where LAYERS says acyclic."""
    if not shutil.which("nm") or not shutil.which("cc"):
        pytest.skip("needs cc and nm")
    root = tmp_path / "csrc"
    (root / "stack").mkdir(parents=True)
    (root / "LAYERS").write_text("stack stack/ :\n" + ("acyclic : stack\n" if acyclic else ""))
    (root / "stack" / "poll.c").write_text("int sock_wait(void);\nint poll_once(void) { return 1; }\n"
                                           "int poll_run(void) { return sock_wait(); }\n")
    (root / "stack" / "sock.c").write_text("int poll_once(void);\n"
                                           "int sock_wait(void) { return poll_once(); }\n")
    r = run("--root", root, "--objects", _objects(tmp_path, root, ["stack/poll.c", "stack/sock.c"]))
    if not acyclic:
        assert r.returncode == 0, r.stdout + r.stderr
        return
    assert r.returncode == 1
    (line,) = r.stdout.splitlines()
    assert line.startswith("layer stack (acyclic) has a call cycle: stack/poll.c <-> stack/sock.c"), line
    assert "stack/sock.c -> stack/poll.c: poll_once" in line
    assert "stack/poll.c -> stack/sock.c: sock_wait" in line


def test_unknown_acyclic_layer_is_an_error(tmp_path):
    root = tmp_path / "csrc"
    (root / "base").mkdir(parents=True)
    (root / "LAYERS").write_text("base base/ :\nacyclic : stak\n")
    r = run("--root", root)
    assert r.returncode == 1 and "acyclic names unknown layer stak" in r.stdout, r.stdout
