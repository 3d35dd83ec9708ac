# Two commands do everything on a fresh Debian 12 machine, as root:
#   make demo   install what is missing, then run the demo on a throwaway testbed
#   make test   install what is missing, then run every test (soaks excluded)
# and, once set up, `make bench` writes bench/report.md (every benchmark, with plots).
# Every recipe runs in the checkout, whatever the caller's directory (make -C DIR, make -f DIR/Makefile).
HERE    := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest

.PHONY: setup test demo bench lint soak clean

setup:
	@bash "$(HERE)/scripts/setup.sh"

test: setup
	cd "$(HERE)" && $(PYTEST) -q

demo: setup
	cd "$(HERE)" && .venv/bin/xdpstack demo

# Every benchmark on fresh testbeds (about 12 minutes): bench/report.md, report.json and PNG plots.
bench: setup
	cd "$(HERE)" && .venv/bin/xdpstack bench all --out bench

soak: setup
	cd "$(HERE)" && $(PYTEST) -q -m soak -o addopts='-p no:cacheprovider'

# The stack's sources (userstack/csrc/SOURCES, the list its Makefile and userstack/_build.py read),
# the applications and the tools.
C_SOURCES := $(addprefix userstack/csrc/,$(shell sed -e 's/\#.*//' "$(HERE)/userstack/csrc/SOURCES")) \
             $(patsubst $(HERE)/%,%,$(wildcard $(HERE)/userstack/csrc/apps/*.c $(HERE)/tools/*.c))

lint: setup
	cd "$(HERE)" && .venv/bin/ruff check xdpstack userstack tools tests
	cd "$(HERE)" && $(PY) -m xdpstack.loader --check
	@cd "$(HERE)" && for cc in gcc clang; do for f in $(C_SOURCES); do \
	  $$cc -std=gnu11 -O2 -Wall -Wextra -Werror -fsyntax-only -Iuserstack/csrc $$f || exit 1; done; done; \
	  echo "C sources: warning-free with gcc and clang (-Wall -Wextra -Werror)"
	cd "$(HERE)" && $(MAKE) -s -C userstack/csrc && $(PY) tools/check_layers.py --objects userstack/csrc/build

clean:
	cd "$(HERE)" && rm -rf build *.egg-info .venv .hypothesis .ruff_cache
