"""Measurements behind `xdpstack bench ...`: each module exposes run(...) -> dict and format_text(dict)."""
