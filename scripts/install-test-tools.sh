#!/usr/bin/env bash
# Installs the Debian tools that tests start for real (Prometheus/promtool, ...).
# Idempotent; needs root + apt-get, otherwise it only reports what is missing.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing test tools: ${need[*]} (need root + apt-get)" >&2
  fi
fi
