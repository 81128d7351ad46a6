# leadedge: `make run` to try it, `make test` to check it. See README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
LEADEDGE := $(BIN)/leadedge
# MaxMind's test City database when the checkout has it beside it, for `make run`.
GEOIP_DB ?= $(firstword $(wildcard ../shared/geoip/GeoLite2-City-Test.mmdb))
PYTEST_ARGS ?=
# Stack state and unpacked downloads inside the checkout: Elasticsearch runs as an
# unprivileged user when started by root, and must be able to read them.
export LEADEDGE_STACK_DIR ?= $(CURDIR)/.stack
export LEADEDGE_STACK_CACHE ?= $(CURDIR)/.stack/cache

.PHONY: install run test test-all test-unit test-integration lint bench stack-up stack-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $@

run: install
	$(LEADEDGE) stack up
	LEADEDGE_GEOIP_DB=$${LEADEDGE_GEOIP_DB:-$(GEOIP_DB)} $(LEADEDGE) demo

# Starts the stack unless it is already up, runs every check, and stops only what it started.
test: install
	@if $(LEADEDGE) stack status --check >/dev/null 2>&1; then \
		echo "== using the stack that is already up"; \
		$(MAKE) --no-print-directory lint test-all; \
	else \
		$(LEADEDGE) stack up || { $(LEADEDGE) stack down; exit 1; }; \
		$(MAKE) --no-print-directory lint test-all; rc=$$?; \
		$(LEADEDGE) stack down; exit $$rc; \
	fi

test-all:
	$(BIN)/pytest -p no:cacheprovider -ra $(PYTEST_ARGS) tests

test-unit: install
	$(BIN)/pytest -p no:cacheprovider -q tests/unit

test-integration: install
	$(BIN)/pytest -p no:cacheprovider -ra tests/integration

lint: install
	$(BIN)/ruff check leadedge agents tables tests bench
	$(BIN)/mypy

stack-up: install
	$(LEADEDGE) stack up

stack-down: install
	$(LEADEDGE) stack down

clean:
	rm -rf $(VENV) .stack *-data .pytest_cache .mypy_cache .ruff_cache
