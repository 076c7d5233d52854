PY ?= python3
PIP = $(PY) -m pip
export LAM_DATA_DIR ?= ./data

.PHONY: install install-dev run test test-slow test-tools lint bench bench-quick bench-tools

install:
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e .
	$(PY) -m lam_engine.kernels.build

install-dev: install
	$(PIP) install -c constraints.txt -e ".[dev]"

run: install
	$(PY) -m service

# Installs Debian tools the integration tests start for real (Prometheus, promtool).
test-tools:
	bash scripts/install-test-tools.sh

# Lint first: a tree that is not ruff-clean and typed does not pass.
test: install-dev test-tools
	$(MAKE) --no-print-directory lint PY=$(PY)
	PY=$(PY) bash scripts/test-ci.sh

# The tests marked `slow` (left out of `make test`; each has a smaller case in it).
test-slow: install-dev test-tools
	PY=$(PY) bash scripts/test-slow.sh

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy lam_engine service lam_client lam_cluster
	$(PY) -m lam_client._codegen --check

# wrk (Debian) is the HTTP load generator; without it bench_http falls back to httpx processes.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; } || echo "wrk missing: HTTP bench uses httpx"

bench: bench-tools
	$(PY) -m bench

bench-quick:
	$(PY) -m bench --quick
