# Two commands do everything on a fresh Debian 12 machine, as root:
#   make demo   install what is missing, then run the demo on a throwaway testbed
#   make test   install what is missing, then run every test (soaks excluded)
PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest

.PHONY: setup test demo lint soak clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PYTEST) -q

demo: setup
	.venv/bin/xdpstack demo

soak: setup
	$(PYTEST) -q -m soak -o addopts='-p no:cacheprovider'

C_SOURCES := $(wildcard userstack/csrc/*.c userstack/csrc/tcp/*.c userstack/csrc/apps/*.c tools/*.c)

lint: setup
	.venv/bin/ruff check xdpstack userstack tools tests
	$(PY) -m xdpstack.loader --check
	@for cc in gcc clang; do for f in $(C_SOURCES); do \
	  $$cc -std=gnu11 -O2 -Wall -Wextra -Werror -fsyntax-only -Iuserstack/csrc $$f || exit 1; done; done; \
	  echo "C sources: warning-free with gcc and clang (-Wall -Wextra -Werror)"

clean:
	rm -rf build *.egg-info .venv .hypothesis .ruff_cache
