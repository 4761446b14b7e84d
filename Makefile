# bluegreen: `make run` serves the dashboard on the local emulator; `make test` runs every tier.
# Both install what they need into .venv first (idempotent; reinstalls when requirements change).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STATE_DIR ?= .emulator
PORT ?= 8501
# Added latency of the emulator's control-plane and metrics answers, in ms (empty = the value
# kept in the state directory, 0 unless set); e.g. make run ARM_LATENCY_MS=150
ARM_LATENCY_MS ?=
START_FLAGS := $(if $(ARM_LATENCY_MS),--arm-latency-ms $(ARM_LATENCY_MS))
CHROMIUM := /usr/bin/chromium

.PHONY: install install-dev models browser run emulator stop stop-emulator test lint unit emulator-tests bench clean

install: $(VENV)/.runtime models

install-dev: $(VENV)/.dev models

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The example models are trained here, on scikit-learn's bundled diabetes data.
models: $(VENV)/.runtime
	$(PY) examples/train.py

# Debian's Chromium for the browser tier (Playwright's own download cannot work offline).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing Debian's chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

emulator: install
	$(PY) -m emulator start --state-dir $(STATE_DIR) $(START_FLAGS)
	$(PY) -m emulator apply --state-dir $(STATE_DIR) -f examples/endpoint.yml --if-missing
	$(PY) -m emulator apply --state-dir $(STATE_DIR) -f examples/blue-deployment.yml --all-traffic --if-missing

# Ctrl-C (or any other end of the dashboard) stops the emulator and its instances again
# when this recipe started it; an emulator that was already running is left running.
run: install
	@if ! $(PY) -m emulator status --state-dir $(STATE_DIR) >/dev/null 2>&1; then \
		trap '$(PY) -m emulator stop --state-dir $(STATE_DIR)' EXIT; \
		trap 'exit 130' INT; trap 'exit 143' TERM; \
	fi; \
	$(PY) -m emulator start --state-dir $(STATE_DIR) $(START_FLAGS) && \
	$(PY) -m emulator apply --state-dir $(STATE_DIR) -f examples/endpoint.yml --if-missing && \
	$(PY) -m emulator apply --state-dir $(STATE_DIR) -f examples/blue-deployment.yml \
		--all-traffic --if-missing && \
	EMULATOR_STATE_DIR=$(abspath $(STATE_DIR)) $(BIN)/streamlit run app.py \
		--server.address 127.0.0.1 --server.port $(PORT)

# Stops the emulator of $(STATE_DIR) and its instances (what `make run` or `make emulator` started).
stop stop-emulator:
	-$(PY) -m emulator stop --state-dir $(STATE_DIR)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install-dev browser lint
	$(PY) -m pytest

unit: install-dev
	$(PY) -m pytest tests/unit

emulator-tests: install-dev
	$(PY) -m pytest tests/emulator

# Issue 3: the scoring path against azmlinfsrv (bench.run, ~2.5 min), then the metrics API
# (bench.bench_metrics), then the dashboard on a remote-like workspace (bench.dashboard),
# then what deployment environments cost to build (bench.bench_env_builds); see bench/README.md.
# BENCH_ARGS passes options to bench.run, e.g. make bench BENCH_ARGS=--quick;
# DASHBOARD_BENCH_ARGS to bench.dashboard, e.g. make bench DASHBOARD_BENCH_ARGS=--quick
bench: install-dev
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.bench_metrics
	$(PY) -m bench.dashboard $(DASHBOARD_BENCH_ARGS)
	$(PY) -m bench.bench_env_builds

clean: stop-emulator
	rm -rf $(STATE_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis
