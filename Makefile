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

lint: setup
	.venv/bin/ruff check xdpstack userstack tools tests
	$(PY) -m xdpstack.loader --check

clean:
	rm -rf build *.egg-info .venv .hypothesis .ruff_cache
