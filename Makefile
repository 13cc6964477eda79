# cityfix: targets named by intent. `make test` and `make demo` work from a fresh clone.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup web test test-unit test-integration lint fmt bench demo services-up services-down services-status clean

## setup: Python environment (uv, from the lock file), system packages, the web map bundle
setup: $(BIN)/cityfix
	$(BIN)/cityfix services install
	@if [ -f api/web/package.json ]; then $(MAKE) --no-print-directory web; fi

$(BIN)/cityfix: pyproject.toml uv.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	uv sync --frozen
	@touch $@

web:
	cd api/web && npm ci --no-audit --no-fund --loglevel=error && npm run build

## services-up / services-down: Mosquitto, Kafka and PostgreSQL on 127.0.0.1, under .services/
services-up: $(BIN)/cityfix
	$(BIN)/cityfix services up

services-down:
	@if [ -x $(BIN)/cityfix ]; then $(BIN)/cityfix services down; fi

services-status: $(BIN)/cityfix
	$(BIN)/cityfix services status

## lint checks, fmt fixes
lint: $(BIN)/cityfix
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy core geo dispatch

fmt: $(BIN)/cityfix
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-unit: $(BIN)/cityfix
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

test-integration: services-up
	$(BIN)/pytest tests/integration -q $(PYTEST_ARGS)

## test: set-up + lint + unit + integration, everything from a fresh clone
test: setup lint test-unit test-integration

## bench: the benchmarks (not tests); each prints a table and writes bench/results/*.json
bench: setup services-up
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## demo: a living city on the default map, until Ctrl-C
demo: setup services-up
	$(BIN)/cityfix demo

clean: services-down
	rm -rf .services
