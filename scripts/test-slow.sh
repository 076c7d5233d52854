#!/usr/bin/env bash
# The `slow` tests, which the default run (`make test`, CI) leaves out: each is a longer
# version of a check that the default run makes on a smaller case (README, "Tests").
#
#   scripts/test-slow.sh                 # every slow test
#   scripts/test-slow.sh tests/reliability -x
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PY:-python3}" -m pytest -q -m slow "$@"
