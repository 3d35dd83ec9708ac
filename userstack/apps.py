"""Console entry points of the C applications compiled into userstack._fastpath.

`userstack-echo` runs csrc/apps/echo.c (the C API only, no Python in its loop)."""
from __future__ import annotations

import sys


def echo_main(argv: list[str] | None = None) -> int:
    from userstack._fastpath import ffi, lib
    args = ["userstack-echo", *(sys.argv[1:] if argv is None else argv)]
    keep = [ffi.new("char[]", a.encode()) for a in args]
    cargv = ffi.new("char *[]", keep + [ffi.NULL])
    sys.stdout.flush()
    return lib.us_echo_main(len(args), cargv)


def main() -> None:
    sys.exit(echo_main())


if __name__ == "__main__":
    main()
