"""Where xdpstack keeps its state: pins under a bpffs root, a lock file under /run/xdpstack."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BPFFS = "/sys/fs/bpf/xdpstack"
RUN_DIR = Path("/run/xdpstack")
PROG_PINS = ("prog", "port_rx", "port_tx_tc")    # pin name of xdp_demux, xdp_port_rx, tc_port_tx


def bpffs_root() -> Path:
    """$XDPSTACK_BPFFS, else /sys/fs/bpf/xdpstack: one directory per interface below it."""
    return Path(os.environ.get("XDPSTACK_BPFFS") or DEFAULT_BPFFS)


def pin_dir(ifname: str) -> Path:
    if not ifname or "/" in ifname or ifname in (".", ".."):
        from xdpstack.errors import UsageError
        raise UsageError(f"{ifname!r} is not an interface name")
    return bpffs_root() / ifname


def lock_path() -> Path:
    return RUN_DIR / "lock"
