"""CLI argument handling that needs no root: help, bad arguments (exit 2, one clear line)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from xdpstack.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("args", [[], ["attach"], ["detach"], ["status"], ["maps"], ["maps", "list"],
                                  ["maps", "dump"], ["stats"], ["bench"], ["bench", "demux"]])
def test_help(args):
    r = run(*args, "--help")
    assert r.exit_code == 0, r.output
    assert "Usage: " in r.output


@pytest.mark.parametrize("args, needle", [
    (["attach", "x0", "--mode", "turbo"], "'turbo' is not one of"),
    (["attach"], "Missing argument 'IFACE'"),
    (["detach"], "Missing argument 'IFACE'"),
    (["maps", "dump", "x0", "nosuchmap"], "is not one of 'claims'"),
    (["maps", "dump", "x0"], "Missing argument 'MAP'"),
    (["stats", "x0", "--interval", "0"], "x>=0.05"),
    (["stats", "x0", "--count", "0"], "x>=1"),
    (["bench", "demux", "--repeat", "0"], "x>=1"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_bad_arguments_exit_2(args, needle):
    r = run(*args)
    assert r.exit_code == 2
    assert needle in r.output.replace("\n", " "), r.output


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and "xdpstack" in r.output
