# knockout: every target is idempotent and does its own set-up on a fresh machine.
#   make setup   Debian packages when missing, .venv, pip install -e .[test]
#   make test    setup, then every test tier (unit, process, vm)
#   make lint    ruff + mypy --strict

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Host tools the tests and the guest need; installed only when missing.
APT_PACKAGES := gcc make binutils gdb llvm linux-perf \
	qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static kmod cpio \
	gcc-aarch64-linux-gnu gdb-multiarch stress-ng python3.11-dbg
APT_STAMP := $(VENV)/.apt-stamp
PIP_STAMP := $(VENV)/.pip-stamp

.PHONY: setup test test-unit test-process test-vm lint bench clean demo

# Each area adds its own set-up steps in mk/<area>.mk by appending to SETUP_TARGETS
# (guest kernels, debug packages, the arm64 guest root...); every step is idempotent and cached.
SETUP_TARGETS :=
-include mk/*.mk

setup: $(PIP_STAMP) $(APT_STAMP) $(SETUP_TARGETS) bytecode

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(PIP_STAMP): $(VENV)/bin/python pyproject.toml
	@# compat mode: a plain .pth path; the default editable finder costs 70 ms of every start-up
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@# byte-compile the venv once: with PYTHONDONTWRITEBYTECODE set (as in the guest) every
	@# command would otherwise compile its imports again (~0.15 s of start-up)
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	touch $@

.PHONY: bytecode
bytecode:
	@$(PY) -m compileall -q knockout >/dev/null || true

$(APT_STAMP): Makefile | $(VENV)/bin/python
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	touch $@

lint: setup
	$(VENV)/bin/ruff check knockout tests bench
	$(VENV)/bin/mypy

test-unit: setup
	$(PY) -m pytest -q tests/unit knockout

test-process: setup
	$(PY) -m pytest -q tests/process

test-vm: setup
	$(PY) -m pytest -q tests/vm

test: setup lint
	$(PY) -m pytest -q --durations=25 tests knockout

# the seed incident reproduced in the guest and diagnosed (see README "Example")
demo: setup
	$(VENV)/bin/knockout demo --out demo-out --bench bench/out/demo.json

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
