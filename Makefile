# pbc — every target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev
LOCKS  := requirements/core.lock requirements/dev.lock
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck unit bench bench-national docs lock clean screenshots vendor

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

demo: $(CORE) ## Synthesise a health economy, play six months of deliveries, run every stage, then serve the web app with a login per role (PBC_DEMO_NO_SERVE=1: stop after the pipeline)
	$(BIN)/pbc demo

test: $(DEV) ## Lint, type-check and run the whole test suite
	$(MAKE) lint
	$(MAKE) typecheck
	$(MAKE) unit

unit: $(DEV)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder -q --durations=15 --junitxml=build/junit.xml

lint: $(DEV) ## ruff
	$(BIN)/ruff check src tests benchmarks

typecheck: $(DEV) ## mypy
	$(BIN)/mypy

bench: $(DEV) ## Benchmarks against baselines (synth, load, pricing, budgets, risk, indicators, monitoring, web app); prints ratios
	$(BIN)/python benchmarks/run.py

bench-national: $(DEV) ## The national year end to end with pbc run (about an hour the first time: it synthesises England); writes docs/performance.md
	$(BIN)/python benchmarks/bench_national.py

docs: $(CORE) ## Regenerate docs/data-contracts.md from the contracts
	$(BIN)/python -m pbc.contracts.docs > docs/data-contracts.md

# the screenshots the test run saves in build/screenshots (Debian's chromium, playwright)
SHOTS := statement-1-summary statement-2-budget statement-3-monthly-phasing \
  statement-4-explanation group-statement-1-summary group-statement-2-practices \
  benchmark-1-table benchmark-2-monthly benchmark-3-indicator export-reconciliation \
  emergency_admissions_practice_funnel emergency_admissions_practice_caterpillar \
  emergency_admissions_practice_spc_A81000 emergency_admissions_practice_deciles \
  chart-calibration monitoring-pack-1-summary monitoring-pack-2-position \
  monitoring-pack-3-months chart-cumulative-spend

screenshots: $(DEV) ## Screenshots of workbooks and charts (needs /usr/bin/chromium) into docs/screenshots/
	$(BIN)/python -m pytest -p no:xdist -q tests/test_workbooks.py tests/test_monitoring_pack.py \
	  -k screenshots
	mkdir -p docs/screenshots
	for s in $(SHOTS); do cp build/screenshots/$$s.png docs/screenshots/ || exit 1; done

lock: ## Re-resolve requirements/*.lock from pyproject.toml (uv, installed into the venv)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 -q -o requirements/core.lock
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
	  --extra dev --extra spark --extra postgres -q -o requirements/dev.lock

vendor: ## Re-vendor the web app's frontend (NHS.UK frontend, htmx, Vega, axe-core) from npm
	$(BIN)/python scripts/vendor_frontend.py

clean: ## Remove the venv and generated demo files
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "pbc needs Python 3.11 or newer"' \
	  || { echo "pbc needs Python 3.11+; set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Installs are pinned: every package at the version in requirements/*.lock (make lock
# re-resolves them), then pbc itself without re-resolving.
$(CORE): $(VENV)/bin/python pyproject.toml requirements/core.lock
	$(BIN)/pip install -q -r requirements/core.lock
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

# dev.lock holds the test tools, the Spark extra and the PostgreSQL driver
$(DEV): $(CORE) requirements/dev.lock
	$(BIN)/pip install -q -r requirements/dev.lock
	@touch $@
