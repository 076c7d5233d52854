#!/usr/bin/env bash
# Long schemathesis run (>= 10 000 generated cases) against a throwaway server WITH API keys and
# small limits, every phase including the stateful one. Complements scripts/fuzz_api.sh (no auth,
# default limits). Exit status 1 on any 5xx, schema violation, server death or logged traceback.
#
#   scripts/fuzz_long.sh                    # 600 examples per operation and phase, seed 3
#   EXAMPLES=1500 SEED=9 WORKERS=2 scripts/fuzz_long.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PY:-python3}" -m tests.reliability.rel_fuzz \
  --examples "${EXAMPLES:-600}" --seed "${SEED:-3}" --workers "${WORKERS:-2}"
