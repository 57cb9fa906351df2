# `make run` and `make test` do all the set-up: a virtual environment in .venv
# with the pinned dependencies, installed once and again whenever a pin changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean fetch

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

run: $(VENV)/.runtime
	$(BIN)/lestats serve

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

# The real CDC dataset, into data/cache/ (README "Using the data").
fetch: $(VENV)/.runtime
	$(BIN)/lestats data fetch

clean:
	rm -rf $(VENV) results webserver.log*
