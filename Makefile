# iocstream — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PATH := $(abspath $(VENV))/bin:$(PATH)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create the virtual environment with the package and dev tools

.PHONY: install
install: venv ## install everything: Python packages, Mosquitto and Chromium (apt), Kafka jars (Maven)
	@if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing mosquitto with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	    systemctl disable --now mosquitto >/dev/null 2>&1 || true; \
	  else echo "mosquitto is missing: run 'sudo apt-get install mosquitto'"; exit 1; fi; fi
	@if ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium and chromium-driver with apt-get (browser test of the alert feed)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromedriver is missing: run 'sudo apt-get install chromium chromium-driver'"; exit 1; fi; fi
	$(PY) -c "from streams.stack.kafka import fetch_jars; from streams.stack.settings import StackSettings; print('kafka jars in', fetch_jars(StackSettings()))"

.PHONY: run
run: install ## run the whole platform locally (iocstream up); Ctrl-C stops it
	$(VENV)/bin/iocstream up

.PHONY: test
test: install ## lint, type-check, then all tests (starts and stops its own stack)
	$(MAKE) --no-print-directory lint
	$(VENV)/bin/pytest -m "not soak" -p no:cacheprovider

.PHONY: unit
unit: venv ## unit tests only (no services)
	$(VENV)/bin/pytest -m "not integration and not soak"

.PHONY: lint
lint: venv ## ruff lint, ruff format check, mypy strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: venv ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: soak
soak: install ## long soak and fault tests
	$(VENV)/bin/pytest -m soak

.PHONY: bench
bench: install ## benchmarks against a throw-away stack (BENCH=<name> runs one); writes bench-results.json
	$(VENV)/bin/iocstream bench $(BENCH)

.PHONY: stack-up stack-down
stack-up: install ## start Kafka, Mosquitto and ClickHouse in the background
	$(VENV)/bin/iocstream stack up
stack-down: venv ## stop them
	$(VENV)/bin/iocstream stack down

.PHONY: clean
clean: ## remove local data (.data) but keep the jar cache and venv
	rm -rf .data
