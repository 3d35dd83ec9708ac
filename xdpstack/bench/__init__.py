"""Measurements behind `xdpstack bench ...`: each module exposes run(...) -> dict and format_text(dict)."""


def met(ok: bool) -> str:
    """How format_text says whether a target was reached."""
    return "met" if ok else "NOT met"
