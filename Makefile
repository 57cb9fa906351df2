# `make run` and `make test` do all the set-up: a virtual environment in .venv
# with the pinned dependencies, installed once and again whenever a pin changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

WEB_STAMP := web/node_modules/.stamp

# `make run PORT=5002` serves on another port (passed on as --port).
PORT ?=

.PHONY: run test lint bench bench-cluster clean fetch web system-packages

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# The dashboard's chart library, pinned in web/package-lock.json; installed again
# whenever the lock changes. The app serves it itself (no CDN).
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

web: $(WEB_STAMP)

# System packages the tests need, installed only when absent and without recommended
# packages (Chromium alone would pull ~115): Debian's Chromium for tests/browser/,
# redis-server and HAProxy for tests/cluster/.
system-packages:
	@missing=""; \
	for pair in chromium:/usr/bin/chromium redis-server:/usr/bin/redis-server \
	            haproxy:/usr/sbin/haproxy; do \
	    test -x "$${pair#*:}" || missing="$$missing $${pair%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	    apt-get update && apt-get install -y --no-install-recommends $$missing; \
	fi

run: $(VENV)/.runtime $(WEB_STAMP)
	$(BIN)/lestats serve $(if $(PORT),--port $(PORT))

# ruff (lint) and mypy, configured in pyproject.toml.
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint $(WEB_STAMP) system-packages
	$(BIN)/python -m pytest -q

# The real CDC dataset, into data/cache/ (docs/operations.md, "Using the data").
fetch: $(VENV)/.runtime
	$(BIN)/lestats data fetch

# The benchmark (docs/benchmark.md): the server as a real process on a loopback port,
# locust headless in separate processes; prints a table, writes bench-results.json.
# About 6 minutes on 2 CPUs. Uses wrk for the load-generator check when installed.
bench: $(VENV)/.dev
	$(BIN)/python -m tests.load.bench

# The cluster benchmark (docs/cluster-benchmark.md): Redis, front-ends and a worker
# node as real processes, jobs/s, p99 and CPU per job per component, the embedded
# mode in the same run. About 2 minutes on 2 CPUs.
bench-cluster: $(VENV)/.dev system-packages
	$(BIN)/python -m tests.load.cluster_bench

clean:
	rm -rf $(VENV) results webserver.log* web/node_modules bench-results.json \
		cluster-bench-results.json build dist
