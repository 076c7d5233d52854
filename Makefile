PY ?= python3
PIP = $(PY) -m pip
export LAM_DATA_DIR ?= ./data

.PHONY: install install-dev run test test-tools lint bench bench-quick

install:
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e .

install-dev: install
	$(PIP) install -c constraints.txt -e ".[dev]"

run: install
	$(PY) -m service

# Installs Debian tools the integration tests start for real (Prometheus, promtool).
test-tools:
	bash scripts/install-test-tools.sh

test: install-dev test-tools
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy lam_engine service

bench:
	$(PY) -m bench

bench-quick:
	$(PY) -m bench --quick
