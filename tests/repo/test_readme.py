"""The README's examples stay true: its C example compiles against the real api.h."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_c_example_compiles(tmp_path):
    text = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```c\n(.*?)```", text, re.S)
    src = tmp_path / "example.c"
    src.write_text(code)
    r = subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                        f"-I{ROOT / 'userstack' / 'csrc'}", str(src)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_readme_names_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
