# pbc — every target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev
SPARK  := $(VENV)/.installed-spark
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck unit bench docs clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

demo: $(CORE) ## Synthesise a health economy, load it, run every stage (PBC_DEMO_NO_SERVE=1: no web app)
	$(BIN)/pbc demo

test: $(DEV) $(SPARK) ## Lint, type-check and run the whole test suite
	$(MAKE) lint
	$(MAKE) typecheck
	$(MAKE) unit

unit: $(DEV)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

lint: $(DEV) ## ruff
	$(BIN)/ruff check src tests benchmarks

typecheck: $(DEV) ## mypy
	$(BIN)/mypy

bench: $(DEV) ## Benchmarks against baselines (synth, load, pricing, budgets, risk, indicators); prints ratios
	$(BIN)/python benchmarks/run.py

docs: $(CORE) ## Regenerate docs/data-contracts.md from the contracts
	$(BIN)/python -m pbc.contracts.docs > docs/data-contracts.md

clean: ## Remove the venv and generated demo files
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "pbc needs Python 3.11 or newer"' \
	  || { echo "pbc needs Python 3.11+; set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(CORE): $(VENV)/bin/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(DEV): $(CORE) pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(SPARK): $(DEV) pyproject.toml
	$(BIN)/pip install -q -e '.[dev,spark]'
	@touch $@
