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

# uv from PATH or the user's pip directory (~/.local/bin), installed when missing. A Debian
# 12 system Python refuses a plain `pip install` (PEP 668); `--user` with
# --break-system-packages installs into the home directory, not over the system's files.
UV_USER := $(shell python3 -m site --user-base 2>/dev/null)/bin/uv

$(BIN)/cityfix: pyproject.toml uv.lock
	@if ! command -v uv >/dev/null && [ ! -x "$(UV_USER)" ]; then \
		echo "installing uv with pip"; \
		python3 -m pip install --quiet uv 2>/dev/null \
		|| python3 -m pip install --quiet --user uv 2>/dev/null \
		|| python3 -m pip install --quiet --user --break-system-packages uv \
		|| { echo "cannot install uv with pip; install it (https://docs.astral.sh/uv/)" >&2; exit 1; }; \
	fi
	@uv=$$(command -v uv || echo "$(UV_USER)"); echo "$$uv sync --frozen"; "$$uv" sync --frozen
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
