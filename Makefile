# wfclock: `make demo` runs the local stack with schedules firing; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: help venv postgres control-plane deps test test-unit lint up down demo bench clean

help:
	@echo "make demo   - start the local stack (control plane, Postgres, operator) and watch schedules fire"
	@echo "make test   - install what the tests need (idempotent, cached) and run them all"
	@echo "make up / make down - start / stop the local stack in the background"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmarks (print figures)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.2
	$(PY) -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# A PostgreSQL server from Debian's packages when none is present.
postgres:
	@scripts/ensure-postgres.sh

control-plane:
	@scripts/build-control-plane.sh etcd kubernetes helm cronref >/dev/null

deps: venv postgres control-plane

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not cluster" tests/unit $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check operator launcher_job tests bench
	$(VENV)/bin/ruff format --check operator launcher_job tests bench

up: deps
	$(PY) -m wfclock.localstack up

down:
	@test -x $(PY) && $(PY) -m wfclock.localstack down || true

demo: up
	$(PY) -m wfclock.localstack demo

bench: deps
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: down
	rm -rf $(VENV) .wfclock
