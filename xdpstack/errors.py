"""Errors the control plane reports to people: each message says what is wrong and what to do.

The CLI prints str(error) as one line and exits with error.code; library users catch XdpstackError.
"""
from __future__ import annotations


class XdpstackError(Exception):
    code = 1


class UsageError(XdpstackError):
    """Bad arguments (exit 2, like click's own usage errors)."""
    code = 2


class NotRoot(XdpstackError):
    pass


class NoSuchInterface(XdpstackError):
    def __init__(self, ifname: str, extra: str = ""):
        super().__init__(f"no such interface {ifname!r} in this network namespace"
                         f"{extra or ': check `ip link`, or pass --netns NAME'}")
        self.ifname = ifname


class BadNamespace(XdpstackError):
    pass


class NotAttached(XdpstackError):
    pass


class ForeignProgram(XdpstackError):
    """An XDP program xdpstack did not attach is on the interface."""


class Busy(XdpstackError):
    """The interface still has stacks holding claims."""


class CompileError(XdpstackError):
    pass


class ClaimError(XdpstackError):
    """A 3-tuple could not be claimed: nothing of the failed claim is left behind."""


class PortInUse(ClaimError):
    pass


class PermissionDenied(ClaimError):
    pass


class StackError(XdpstackError):
    pass
