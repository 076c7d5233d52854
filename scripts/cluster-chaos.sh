#!/usr/bin/env bash
# Node loss on a real 3-node local Ray cluster (R = 2): N SIGKILLs of a worker node's whole
# process tree while a writer and a reader run, each followed by `add-node --name`; then
# every acknowledged batch must be on every replica, bit-equal. Prints the figures
# (writes, reads, errors during the switches, acknowledged batches).
#   scripts/cluster-chaos.sh [KILLS]   (default 5; needs the "cluster" extra: pip install ray)
set -euo pipefail
cd "$(dirname "$0")/.."
export LAM_CHAOS_KILLS="${1:-5}"
exec python -m pytest -q -s -m slow -p no:randomly \
  "tests/cluster/test_ray_bank.py::test_node_loss_loses_no_acknowledged_write"
