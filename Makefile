# colorloop: `make reproduce` and `make test` do all set-up themselves on a fresh Debian 12.
# Each part of the artifact adds its own targets in mk/<part>.mk; this file holds what all share.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
QUICK      ?=
export QUICK

# Debian packages the artifact needs, installed only when missing (as root, or through sudo).
APT_PACKAGES := wrk nginx apache2 curl linux-perf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup apt venv test bench reproduce clean
help:
	@echo "make reproduce   run every experiment, figure and notebook (QUICK=1: a 5-minute version;"
	@echo "                 FREETHREADED=0: without building the free-threaded CPython 3.13t)"
	@echo "make test        run the test suite"
	@echo "make setup       only the set-up: missing Debian packages, then .venv"
	@echo "make bench       only the benchmarks (runtime, SFS, web), each writing its CSV"
	@echo "make fig-NAME    one experiment and its figure; NAME: sfs web blocksize lines callbacks sched gil gilsplit model"
	@echo "make figs-redraw redraw every figure from the CSVs there; make claims: the claims table"
	@echo "make notebooks   execute notebooks/ into artifact/notebooks-executed/"
	@echo "make freethreaded, test-freethreaded, test-freethreaded-stress: the CPython 3.13t track"
	@echo "make web-serve, web-wrk, web-bench, web-test; sfs-test, sfs-bench, sfs-count: one app"
	@echo "make clean       remove build/ (with 3.13t), caches and executed notebooks; keeps .venv and"
	@echo "                 the committed figures and CSVs"

setup: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if ! $(PYTHON_SYS) -c 'import venv, ensurepip' 2>/dev/null; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "== apt-get install$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(STAMP)
$(STAMP): pyproject.toml
	@echo "== creating $(VENV) and installing pinned packages (pyproject.toml)"
	$(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[full]'
	touch $@

test: setup
	$(PY) -m pytest -q

bench: setup

# The full run also measures the free-threaded CPython 3.13t, built once from Debian's source
# package (about 1m45s on an idle 2-core machine); FREETHREADED=0 leaves it out (then the 3.13t
# curves are modelled only, and the figures say so).
FREETHREADED ?= 1
# The venv (mostly downloads and unpacking) is made while 3.13t compiles: about 25 s less set-up on
# a fresh machine. apt comes first: both it and the 3.13t build may call apt-get.
reproduce: apt
	@$(MAKE) --no-print-directory -j2 venv $(if $(filter 1,$(FREETHREADED)),freethreaded)
	$(PY) -m experiments.reproduce

clean:
	rm -rf build/ .pytest_cache artifact/notebooks-executed
	find . -name __pycache__ -prune -exec rm -rf {} +

include $(wildcard mk/*.mk)
