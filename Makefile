# Two commands do everything on a fresh Debian 12 machine, as root:
#   make demo   install what is missing, then run the demo on a throwaway testbed
#   make test   install what is missing, then run every test (soaks excluded)
# Every recipe runs in the checkout, whatever the caller's directory (make -C DIR, make -f DIR/Makefile).
HERE    := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest

.PHONY: setup test demo lint soak clean

setup:
	@bash "$(HERE)/scripts/setup.sh"

test: setup
	cd "$(HERE)" && $(PYTEST) -q

demo: setup
	cd "$(HERE)" && .venv/bin/xdpstack demo

soak: setup
	cd "$(HERE)" && $(PYTEST) -q -m soak -o addopts='-p no:cacheprovider'

C_SOURCES := $(patsubst $(HERE)/%,%,$(wildcard $(addprefix $(HERE)/,userstack/csrc/*.c userstack/csrc/tcp/*.c \
               userstack/csrc/apps/*.c tools/*.c)))

lint: setup
	cd "$(HERE)" && .venv/bin/ruff check xdpstack userstack tools tests
	cd "$(HERE)" && $(PY) -m xdpstack.loader --check
	@cd "$(HERE)" && for cc in gcc clang; do for f in $(C_SOURCES); do \
	  $$cc -std=gnu11 -O2 -Wall -Wextra -Werror -fsyntax-only -Iuserstack/csrc $$f || exit 1; done; done; \
	  echo "C sources: warning-free with gcc and clang (-Wall -Wextra -Werror)"

clean:
	cd "$(HERE)" && rm -rf build *.egg-info .venv .hypothesis .ruff_cache
