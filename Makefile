PY ?= python3
PIP = $(PY) -m pip
export LAM_DATA_DIR ?= ./data

.PHONY: install install-dev run test test-slow test-tools lint lint-style lint-types bench bench-quick bench-tools

# torch first, from the CPU wheel on disk (a bare range lets pip pick a multi-GB CUDA build);
# then the project (with $(1): its extras) and the native kernels. One pip resolution each.
define setup
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".$(1)"
	$(PY) -m lam_engine.kernels.build
endef

install:
	$(call setup,)

install-dev:
	$(call setup,[dev])

run: install
	$(PY) -m service

# Installs Debian tools the integration tests start for real (Prometheus, promtool).
test-tools:
	bash scripts/install-test-tools.sh

# Lint first: a tree that is not ruff-clean does not start the tests; the type check (a
# minute of one core) runs beside the test lanes (scripts/test-ci.sh, TYPES_LANE), and a
# tree that is not typed does not pass.
test: install-dev test-tools
	$(MAKE) --no-print-directory lint-style PY=$(PY)
	PY=$(PY) TYPES_LANE=1 bash scripts/test-ci.sh

# The tests marked `slow` (left out of `make test`; each has a smaller case in it).
test-slow: install-dev test-tools
	PY=$(PY) bash scripts/test-slow.sh

lint: lint-style lint-types

lint-style:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

lint-types:
	$(PY) -m mypy lam_engine service lam_client lam_cluster
	$(PY) -m lam_client._codegen --check

# wrk (Debian) is the HTTP load generator; without it bench_http falls back to httpx processes.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; } || echo "wrk missing: HTTP bench uses httpx"

bench: bench-tools
	$(PY) -m bench

bench-quick:
	$(PY) -m bench --quick
