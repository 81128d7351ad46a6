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

.PHONY: install browser run test test-all test-unit test-integration lint bench stack-up stack-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $@

# Headless Chromium for the report page's browser test, from Debian's packages when we are
# root; otherwise the test is skipped and this says how to install it.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "== installing chromium and chromium-driver for the browser test"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium chromium-driver; } \
			|| echo "== could not install chromium: the browser test will be skipped"; \
	else \
		echo "== no chromium: the browser test will be skipped. To run it:"; \
		echo "   sudo apt-get install -y chromium chromium-driver"; \
	fi

run: install
	$(LEADEDGE) stack up
	LEADEDGE_GEOIP_DB=$${LEADEDGE_GEOIP_DB:-$(GEOIP_DB)} $(LEADEDGE) demo

# Starts the stack unless it is already up, runs every check, and stops only what it started.
test: install browser
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

# Every benchmark, results in bench/results/latest.json, BENCHMARKS.md and its plot.
# Smaller: make bench BENCH_ARGS="--events 50000 --duration 10 --ids 100000"
# Starts the local stack unless it is up, and leaves it running (as `make run` does).
bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[bench]"
	@$(LEADEDGE) stack status --check >/dev/null 2>&1 || $(LEADEDGE) stack up
	$(BIN)/python -m bench.run $(BENCH_ARGS)

stack-up: install
	$(LEADEDGE) stack up

stack-down: install
	$(LEADEDGE) stack down

clean:
	rm -rf $(VENV) .stack *-data .pytest_cache .mypy_cache .ruff_cache
