# The two commands of the README, and what stands behind them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= sqlite:///./dripflow.db

.PHONY: demo test lint typecheck unit bench-quick clean

$(BIN)/dripflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

## First command: set up and run the demo on the embedded SQLite database.
demo: $(BIN)/dripflow
	DRIPFLOW_DATABASE_URL=$(DEMO_DB) bash scripts/demo.sh

## Second command: the whole suite (lint, types, tests on SQLite and PostgreSQL, benchmark smoke run).
test: $(BIN)/dripflow lint typecheck
	$(BIN)/pytest -n 2 -q
	$(BIN)/python -m bench all --quick

lint: $(BIN)/dripflow
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/dripflow
	$(BIN)/mypy

clean:
	rm -rf $(VENV) dripflow.db dripflow.db-wal dripflow.db-shm out
