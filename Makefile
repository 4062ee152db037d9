# wfclock: `make demo` runs the local stack with schedules firing; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml devstack/pyproject.toml | sha1sum | cut -c1-12)

.PHONY: faults help venv postgres stack-deps control-plane browser checkov deps test test-unit lint up down demo bench clean kind-e2e image

help:
	@echo "make demo   - start the local stack (control plane, node, Postgres, the chart's operator pod) and watch schedules fire"
	@echo "make test   - install what the tests need (idempotent, cached) and run them all"
	@echo "make up / make down - start / stop the local stack in the background"
	@echo "make lint   - ruff, shellcheck, helm lint, the policy scan (checkov)"
	@echo "make bench  - benchmarks (print figures)"
	@echo "make faults - fault scenarios with an independent accounting of every fire"
	@echo "make image  - build the image with podman (cached); prints its archive for containerd"
	@echo "make kind-e2e - build the image, install the chart on kind, smoke test (needs Docker)"

# The product with its test tools, and the development harness (devstack/, its own package).
$(STAMP): pyproject.toml devstack/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.2
	$(PY) -m pip install --quiet -e '.[test]' -e ./devstack
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# A PostgreSQL server from Debian's packages when none is present.
postgres:
	@scripts/ensure-postgres.sh

control-plane:
	@scripts/build-control-plane.sh etcd kubernetes helm cronref >/dev/null

# The local node: kubelet, kube-scheduler, containerd, CNI plugins, the pause and test images;
# runc and podman from Debian's packages when missing.
.PHONY: node
node:
	@scripts/build-node.sh >/dev/null

# The console's browser tests: Debian's chromium, and axe-core at its pinned npm version.
browser:
	@scripts/ensure-browser.sh

# The policy scanner of `make lint` and its test: checkov from PyPI, in a venv of its own (cached).
checkov:
	@scripts/build-checkov.sh >/dev/null

deps: venv postgres control-plane node browser checkov

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not cluster" tests/unit $(PYTEST_ARGS)

lint: venv control-plane checkov
	$(VENV)/bin/ruff check operator launcher_job devstack tests bench
	$(VENV)/bin/ruff format --check operator launcher_job devstack tests bench
	$(VENV)/bin/shellcheck -x scripts/*.sh .ci/run
	$(shell scripts/build-control-plane.sh helm 2>/dev/null)/helm lint --strict charts/wfclock
	$(PY) -m wfclock_devstack.policyscan

# What the local stack runs, and no test tool: the image builds (debootstrap, pip: mostly waiting
# on the network and the disk) while Go compiles the control plane and the node (both cores).
stack-deps: venv postgres
	@scripts/build-node.sh packages >/dev/null
	@scripts/build-image.sh >/dev/null & image=$$!; \
	  scripts/build-control-plane.sh etcd kubernetes helm >/dev/null \
	  && scripts/build-node.sh kubelet containerd cni pause >/dev/null; built=$$?; \
	  wait $$image && exit $$built

# The operator runs as the chart installs it, from the image built here, on the local node.
up: stack-deps
	$(PY) -m wfclock_devstack.localstack up

down:
	@test -x $(PY) && $(PY) -m wfclock_devstack.localstack down || true

demo: up
	$(PY) -m wfclock_devstack.localstack demo

# Fault scenarios and the full soak: each prints its accounting line (docs/reliability.md).
faults: deps
	$(PY) -m pytest -m faults -s tests/cluster $(PYTEST_ARGS)

# Every benchmark, sized for this 2-core machine (about 45 minutes); each size is settable, e.g.
# `make bench BENCH_SCHEDULES=1000 BENCH_RESTART=10000`. The node's benchmarks need `make node`.
BENCH_SCHEDULES ?= 1000
BENCH_RESTART ?= 2000
BENCH_TOP ?= 40
BENCH_LARGE ?= 2000
BENCH_FIRES ?= 10000
BENCH_LEDGER ?= 200000
BENCH_SWEEP ?= 300
bench: deps
	@set -e; run() { echo "== $$*"; $(PY) "$$@"; }; \
	run bench/launcher_throughput.py $(BENCH_FIRES); \
	run bench/launcher_cold_start.py 20; \
	run bench/diffbase_build.py 20000; \
	run bench/overlap_policy.py 3000; \
	run bench/calendar_policy.py 2000; \
	run bench/ledger_housekeeping.py $(BENCH_LEDGER); \
	run bench/release_lag.py 200; \
	run bench/api_write_costs.py $(BENCH_SCHEDULES); \
	run bench/operator_apply.py $(BENCH_SCHEDULES); \
	run bench/registration_floor.py $(BENCH_SCHEDULES); \
	run bench/restart_cost.py $(BENCH_RESTART); \
	run bench/sweep_backlog.py $(BENCH_SWEEP); \
	run bench/large_scale.py $(BENCH_LARGE); \
	run bench/operator_memory.py $(BENCH_SCHEDULES); \
	run bench/node_latency.py 4 8 4; \
	run bench/top_of_hour.py $(BENCH_TOP)

# Users with Docker: the same end-to-end smoke on kind (cannot run without Docker, as on this
# project's CI machine).
kind-e2e:
	scripts/kind-e2e.sh

# The image, built with podman from the Dockerfile (a Debian base where no registry answers),
# cached; the last line is its docker-archive for `ctr images import` (docs/image.md).
image:
	@scripts/build-image.sh

clean: down
	rm -rf $(VENV) .wfclock
