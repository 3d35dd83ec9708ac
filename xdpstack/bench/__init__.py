"""Measurements behind `xdpstack bench ...`: each module exposes run(..., progress=None) -> dict,
format_text(dict) and plots(dict, outdir) -> [(title, path)]; xdpstack.bench.suite runs them all.

Every result has "targets": {name: {"value": number, "target": "text", "met": bool}}, the names
the issue tracker and `bench all --json` use.
"""
from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def met(ok: bool) -> str:
    """How format_text says whether a target was reached."""
    return "met" if ok else "NOT met"


def target(value: float | None, text: str, ok: bool) -> dict:
    """One entry of result["targets"]: a value measured in this run, what it is held against."""
    return {"value": value, "target": text, "met": bool(ok) and value is not None}


def say(progress: Progress | None, msg: str) -> None:
    """Report a step of a long run (bench all prints these to stderr)."""
    if progress is not None:
        progress(msg)
